"""One audit run, as cron needs it: one at a time (a lock), ``--since last`` from a state file, the checks,
and an exit code that says clean, warnings or critical.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pcnctl.ent.platform import EntDriver
from pcnctl.errors import ExitCode, RefusedError, UsageError
from pcnctl.files import private_dir, write_private
from pcnctl.forensics.mailstore import Mailstore
from pcnctl.progress import progress_bar
from pcnctl.records import JsonObject
from pcnctl.reports.audit.checks import CHECKS, SEVERITIES, AuditEnv, Finding, Thresholds, check_watchlist
from pcnctl.state.store import StateStore
from pcnctl.timespec import iso, parse_when

FIRST_RUN = timedelta(hours=24)


@dataclass
class AuditReport:
    profile: str
    url: str
    since: datetime
    until: datetime
    findings: list[Finding]

    @property
    def worst(self) -> str:
        return max((f.severity for f in self.findings), key=SEVERITIES.index, default="ok")

    def exit_code(self, fail_on: str) -> ExitCode:
        worst = SEVERITIES.index(self.worst)
        if worst >= SEVERITIES.index("critical") and SEVERITIES.index(fail_on) <= worst:
            return ExitCode.AUDIT_CRITICAL
        if worst >= SEVERITIES.index("warning") and fail_on == "warning":
            return ExitCode.AUDIT_WARNING
        return ExitCode.OK

    def to_json(self) -> JsonObject:
        return {
            "profile": self.profile,
            "url": self.url,
            "since": iso(self.since),
            "until": iso(self.until),
            "worst": self.worst,
            "findings": [f.to_json() for f in self.findings],
        }


@contextmanager
def exclusive(state: StateStore) -> Iterator[None]:
    """Only one audit run at a time: a second one refuses at once instead of piling up behind cron."""
    path = state.home / "audit.lock"
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RefusedError(
                "another audit run is in progress",
                hint="cron runs overlap: lengthen the period or look at why the previous run is slow",
            ) from None
        yield
    finally:
        os.close(fd)


def window(state: StateStore, since: str, ent: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The audit window; ``last`` starts where the last successful audit of this ENT ended."""
    now = now or datetime.now(UTC)
    if since == "last":
        last = (state.setting("audit-state") or {}).get(ent, {}).get("last_success")
        start = datetime.fromisoformat(last.replace("Z", "+00:00")) if last else now - FIRST_RUN
    else:
        start = parse_when(since, now=now, future=False)
    if start >= now:
        raise UsageError(f"--since {since} is not in the past")
    return start, now


def remember(state: StateStore, ent: str, until: datetime) -> None:
    saved = state.setting("audit-state") or {}
    # Milliseconds, as the message and event dates: a window rounded to the second would report again
    # what arrived in the last second of the previous run.
    saved[ent] = {"last_success": until.astimezone(UTC).isoformat(timespec="milliseconds")}
    state.set_setting("audit-state", saved)


def run(
    driver: EntDriver,
    state: StateStore,
    mailstore: Mailstore | None,
    checks: Sequence[str],
    start: datetime,
    end: datetime,
    thresholds: Thresholds | None = None,
    watchlist: tuple[tuple[str, str], ...] | None = None,
    progress: bool = False,
) -> AuditReport:
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise UsageError(f"unknown check(s) {', '.join(unknown)}", hint=f"choose from {', '.join(CHECKS)}")
    env = AuditEnv(
        driver,
        mailstore,
        int(start.timestamp() * 1000),
        int(end.timestamp() * 1000),
        thresholds or Thresholds(),
        state=state,
    )
    if watchlist:
        env.watchlist = watchlist
    if "watchlist" in checks:
        check_watchlist(env.watchlist)  # a pattern that can backtrack for ever: refused before any read
    findings = []
    with progress_bar(len(checks), "audit checks", enabled=progress) as advance:
        for name in checks:
            findings.append(CHECKS[name](env))
            advance(1)
    return AuditReport(driver.profile.name, driver.profile.url, start, end, findings)


EXTENSIONS = {"markdown": "md", "html": "html", "json": "json", "csv": "csv"}


def keep_report(directory: Path, text: str, fmt: str, until: datetime) -> Path:
    """Write this run's report under its own UTC time, and point ``latest.EXT`` at it.

    A report every 15 minutes must not replace the critical one of a quarter of an hour ago: each run keeps
    its file, and the link (replaced atomically) says which one is the newest.
    """
    ext = EXTENSIONS[fmt]
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"audit-{until.astimezone(UTC):%Y%m%dT%H%M%S}Z.{ext}"
    write_private(path, text)
    link = directory / f"latest.{ext}"
    staging = directory / f".latest.{ext}.{os.getpid()}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(path.name)
    staging.replace(link)
    return path
