"""``pcnctl doctor``: is the ENT reachable, is TLS right, does login work, who are we, what may we do.

Each check records ok / warn / fail and a detail, and the first failure's error is kept so the CLI exits
with the matching code. Checks after a failed login are skipped rather than run into confusing errors.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pcnctl.config import Profile
from pcnctl.errors import ConfigError, PcnError
from pcnctl.models import DoctorReport, Identity

if TYPE_CHECKING:
    from pcnctl.ent.edifice.driver import EdificeDriver
    from pcnctl.state.store import StateStore

_PAGES = {
    "login": ("ok", ""),
    "saturated": ("warn", ": the ENT's session limit is reached (its login page asks users to wait)"),
    "foreign": ("warn", ": the login page does not look like an Edifice one (wrong URL or a proxy page?)"),
    "none": ("warn", ": no login page at /auth/login"),
}


def _reachability(times: list[float], page: str) -> dict[str, str]:
    status, note = _PAGES[page]
    return {
        "check": "reachability",
        "status": status,
        "detail": f"round trip {statistics.median(times):.0f} ms (median of {len(times)}){note}",
    }


def run(
    profile: Profile,
    open_driver: Callable[[Profile], object],
    *,
    audit_key: str | None = None,
    state: StateStore | None = None,
) -> tuple[DoctorReport, PcnError | None]:
    """Run every check; ``open_driver`` logs in (the CLI passes one that can prompt for MFA). The checks
    that need the ENT run in order and stop at the first failure: a failed login makes the rest noise.
    ``audit_key`` is where the key signing the audit log comes from (None: the log is not signed);
    ``state``, the home's store, where the watcher's heartbeat is read."""
    report = DoctorReport()
    first_error: PcnError | None = None

    def fail(check: str, exc: PcnError) -> None:
        nonlocal first_error
        report.checks.append({"check": check, "status": "fail", "detail": exc.message})
        first_error = first_error or exc

    report.checks.append(
        {"check": "profile", "status": "ok", "detail": f"{profile.name}: {profile.url} ({profile.auth})"}
    )
    report.checks.append(_audit_key(audit_key))
    watch = _watcher(profile, state) if state is not None else None
    if watch is not None:
        report.checks.append(watch)
    if profile.approvers:
        from pcnctl.ops.approvals import readiness

        status, detail = readiness(profile.approvers)
        if status == "fail":
            fail("approvals", ConfigError(detail, hint="see docs/approvals.md"))
        else:
            report.checks.append({"check": "approvals", "status": status, "detail": detail})
    check = "reachability"
    try:
        _reach(profile, report)
        check = "authentication"
        driver = _authenticate(profile, open_driver, report)
        check = "identity"
        report.identity = driver.whoami()
        report.checks.append(_identity(driver, report.identity))
        check = "capabilities"
        report.capabilities = driver.probe()
    except PcnError as exc:
        fail(check, exc)
        return report, first_error
    events = _event_store_data(driver, report)
    if events is not None:
        report.checks.append(events)
    report.checks.append(_audit_readiness(report, has_mailstore=bool(profile.mailstore)))
    return report, first_error


def _audit_key(source: str | None) -> dict[str, str]:
    """Whether the audit log's entries are signed: without a key, entries appended with a recomputed chain
    are caught by the seal in the state store only, which whoever can write the home can also rewrite."""
    if source is not None:
        return {
            "check": "audit-key",
            "status": "ok",
            "detail": f"audit log entries signed (key from {source})",
        }
    return {
        "check": "audit-key",
        "status": "warn",
        "detail": "audit log entries are not signed: run 'pcnctl profile add NAME ... --force --audit-key' "
        "(a key kept in the keyring) or set PCNCTL_AUDIT_KEY from a secret kept outside the home",
    }


def _watcher(profile: Profile, state: StateStore) -> dict[str, str] | None:
    """The watcher's heartbeat on the profile's ENT (no ENT call): alive, stopped or stale; nothing to say
    when no watcher ever ran and the profile names no on-call channel or policy."""
    from pcnctl.state.store import ent_key
    from pcnctl.watch.state import heartbeat

    beat = heartbeat(state, ent_key(profile.url))
    expected = bool(profile.page_to or profile.page_webhook or profile.policy)
    if beat is None:
        if not expected:
            return None
        detail = "no watcher has run on this ENT, yet the profile names on-call channels: start pcnctl watch"
        return {"check": "watcher", "status": "warn", "detail": detail}
    age = beat.age_s(int(time.time() * 1000))
    if beat.status == "stopped":
        status, detail = "warn", f"stopped at {beat.beat_at} ({beat.holder}): nobody is paged"
    elif beat.stale(int(time.time() * 1000)):
        status, detail = "warn", f"no heartbeat for {age:.0f} s ({beat.holder}, {beat.status}): stuck or gone"
    else:
        status = "ok" if beat.status in ("ok", "slow") else "warn"
        detail = f"{beat.holder}: last beat {age:.0f} s ago, {beat.status}, every {beat.interval_s:g} s"
    return {"check": "watcher", "status": status, "detail": detail}


def _reach(profile: Profile, report: DoctorReport) -> None:
    from pcnctl.ent.edifice.driver import EdificeDriver

    reach = EdificeDriver.reach(profile)
    report.checks.append(_reachability(reach.times_ms, reach.page))
    if urlsplit(profile.url).scheme == "https":
        where = f"CA file {profile.ca_file}" if profile.ca_file else "system CA bundle"
        report.checks.append({"check": "tls", "status": "ok", "detail": f"certificate verified ({where})"})
    else:
        report.checks.append(
            {"check": "tls", "status": "warn", "detail": "plain http on loopback (lab only)"}
        )


def _authenticate(
    profile: Profile, open_driver: Callable[[Profile], object], report: DoctorReport
) -> EdificeDriver:
    from pcnctl.ent.edifice.driver import EdificeDriver

    started = time.perf_counter()
    driver = open_driver(profile)
    assert isinstance(driver, EdificeDriver)
    elapsed = (time.perf_counter() - started) * 1000
    detail = f"{profile.auth} session in {elapsed:.0f} ms"
    report.checks.append({"check": "authentication", "status": "ok", "detail": detail})
    return driver


def _identity(driver: EdificeDriver, ident: Identity) -> dict[str, str]:
    """Who the profile acts as, and what that allows (an ADML's schools, a service account's reach)."""
    if ident.role == "ADMC":
        detail = f"{ident.login}: ADMC (whole platform)"
    elif ident.role == "ADML":
        uais = ", ".join(s.uai for s in driver.list_schools())
        detail = f"{ident.login}: ADML of {len(ident.adml_structures)} school(s): {uais}"
    elif ident.role == "service":
        detail = f"service account {ident.client_id} (client_credentials: bypasses rights filters and MFA)"
    elif ident.role == "unknown":
        detail = (
            f"{ident.login}: the ENT's userinfo does not say which admin functions this account holds; "
            "actions bound to an ADML's schools will be refused"
        )
    else:
        detail = f"{ident.login}: not an administrator"
    status = "ok" if ident.role in ("ADMC", "ADML", "service") else "warn"
    return {"check": "identity", "status": status, "detail": detail}


# Windows ending now in which the event store must hold a login (this check's own, when it logged in; an
# ENT's pupils and staff otherwise), tried shortest first: a busy ENT answers the first one, a quiet one
# costs three small pages.
EVENT_WINDOWS_MS = ((5 * 60_000, "5 minutes"), (3_600_000, "hour"), (24 * 3_600_000, "24 hours"))


def _event_store_data(driver: EdificeDriver, report: DoctorReport) -> dict[str, str] | None:
    """Does the event store hold the logins it must? The route reads MongoDB's events only (infra
    ``Starter`` builds a ``MongoDbEventStore`` for it): a deployment whose events go to another store
    answers it with an empty list, which the probe alone takes for available. The capability is then
    marked unavailable, so the audit readiness says what cannot run."""
    capability = next((c for c in report.capabilities if c.name == "infra.event_store"), None)
    if capability is None or not capability.available:
        return None
    now = int(time.time() * 1000)
    try:
        for window, label in EVENT_WINDOWS_MS:
            rows, _more = driver.list_events(now - window, window + 60_000, ["LOGIN"])
            if rows:
                return {"check": "events", "status": "ok", "detail": f"logins recorded in the last {label}"}
    except PcnError as exc:
        return {"check": "events", "status": "warn", "detail": f"the event store failed: {exc.message}"}
    capability.available = False
    capability.detail = "answers, but empty: no login in 24 hours"
    detail = (
        "the event store answers an empty list for the last 24 hours, which must hold logins (this "
        "check's own included when it logged in): this deployment's events probably go to another store "
        "than the MongoDB collection the route reads; hunt, senders and the mass_senders audit would see "
        "nothing (ask the hosting team for the events, see docs/hunt.md)"
    )
    return {"check": "events", "status": "warn", "detail": detail}


# What each audit check reads, as capability names of the driver's probe ("mailstore": a DSN on the profile).
AUDIT_NEEDS = {
    "mass_senders": ("directory.schools", "infra.event_store"),
    "watchlist": ("mailstore",),
    "blocks": (),
    "drift": ("directory.users",),
    "evidence": (),
    "health": ("directory.schools",),
}


def _audit_readiness(report: DoctorReport, *, has_mailstore: bool) -> dict[str, str]:
    """Which audit checks this identity can run from cron, and what stops the others."""
    have = {c.name for c in report.capabilities if c.available} | ({"mailstore"} if has_mailstore else set())
    blocked = {check: [n for n in needs if n not in have] for check, needs in AUDIT_NEEDS.items()}
    missing = {check: needs for check, needs in blocked.items() if needs}
    if not missing:
        return {"check": "audit", "status": "ok", "detail": "every audit check can run with this profile"}
    detail = "; ".join(f"{check} needs {', '.join(needs)}" for check, needs in missing.items())
    return {"check": "audit", "status": "warn", "detail": f"audit checks that cannot run: {detail}"}
