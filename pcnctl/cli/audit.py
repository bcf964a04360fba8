"""``pcnctl audit run``: the cron-made report (``audit verify-log`` lives with the incident commands)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    EntProfileOpt,
    check_writable,
    get_config,
    get_driver,
    get_state,
    handle_errors,
)

if TYPE_CHECKING:
    from pcnctl.reports.audit.checks import Thresholds


@handle_errors
def run(
    checks: Annotated[
        str,
        typer.Option(
            "--checks",
            help="Comma-separated: mass_senders, watchlist, blocks, drift, evidence, health (default: all).",
        ),
    ] = "",
    since: Annotated[
        str,
        typer.Option("--since", help="'last' (since the previous successful run) or a duration/ISO time."),
    ] = "last",
    output: Annotated[str, typer.Option("--output", "-o", help="markdown, html, json or csv.")] = "markdown",
    out: Annotated[Path | None, typer.Option("--out", help="Write the report to this file.")] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir", help="Keep each run's report in this directory (audit-TIME.EXT) and link latest.EXT."
        ),
    ] = None,
    fail_on: Annotated[
        str, typer.Option("--fail-on", help="warning or critical: lowest severity that fails.")
    ] = "warning",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Nothing on stdout unless something is found.")
    ] = False,
    lang: Annotated[str, typer.Option("--lang", help="en or fr.")] = "en",
    mass_messages: Annotated[
        int | None, typer.Option("--mass-messages", help="Mass-sender threshold (default: config, else 20).")
    ] = None,
    watchlist: Annotated[
        Path | None,
        typer.Option(
            "--watchlist",
            help="File of 'name: regex' lines (default: the French list for bomb and attack threats).",
        ),
    ] = None,
    profile: EntProfileOpt = None,
) -> None:
    """Audit the ENT: mass senders, threat watchlist, blocks in force, drift, evidence gaps, health.

    Exit codes: 0 clean, 10 warnings, 11 critical findings; 3/4/5/7 when the audit could not run.
    """
    from pcnctl.forensics.mailstore import optional_mailstore
    from pcnctl.reports.audit import render
    from pcnctl.reports.audit import run as core
    from pcnctl.reports.audit.checks import CHECKS
    from pcnctl.state.store import ent_key

    _check_options(output, fail_on, lang, out, out_dir)
    names = [c.strip() for c in checks.split(",") if c.strip()] or list(CHECKS)
    thresholds, patterns = _settings(watchlist, mass_messages)
    state = get_state()
    with core.exclusive(state):
        driver = get_driver(profile)
        ent = ent_key(driver.profile.url)
        start, end = core.window(state, since, ent)
        store = optional_mailstore(driver.profile)
        try:
            report = core.run(
                driver, state, store, names, start, end, thresholds, patterns, progress=not quiet
            )
        finally:
            if store is not None:
                store.close()
        core.remember(state, ent, end)
    if output == "json":
        text = render.to_json(report)
    elif output == "csv":
        text = render.to_csv(report)
    else:
        text = render.RENDERERS[output](report, lang)
    code = report.exit_code(fail_on)
    found = code != 0  # --fail-on decides what counts: below it a quiet run stays silent
    if out_dir is not None:
        core.keep_report(out_dir, text, output, end)
    elif out is not None:
        out.write_text(text, encoding="utf-8")
    elif found or not quiet:
        sys.stdout.write(text)
    if not quiet or found:
        sys.stderr.write(
            f"audit: {report.worst} ({', '.join(f'{f.check}={f.severity}' for f in report.findings)})\n"
        )
    if code:
        raise typer.Exit(int(code))


def _check_options(output: str, fail_on: str, lang: str, out: Path | None, out_dir: Path | None) -> None:
    """Every option checked, and the report's destination writable, before anything is read."""
    from pcnctl.errors import UsageError
    from pcnctl.reports.audit import render

    if output not in ("markdown", "html", "json", "csv"):
        raise UsageError(f"{output!r} is not a report format: markdown, html, json or csv")
    if fail_on not in ("warning", "critical"):
        raise UsageError("--fail-on takes warning or critical")
    if lang not in render.LABELS:
        raise UsageError("--lang takes en or fr")
    if out is not None and out_dir is not None:
        raise UsageError("--out and --out-dir are exclusive: one file, or one file a run in a directory")
    if out is not None:
        check_writable(out)
    if out_dir is not None:
        check_writable(out_dir, directory=True)


def _settings(
    watchlist: Path | None, mass_messages: int | None
) -> tuple[Thresholds, tuple[tuple[str, str], ...] | None]:
    """The thresholds and the watchlist: the options, else the config file's 'audit' section."""
    from pcnctl.reports.audit.checks import Thresholds, load_watchlist

    settings = get_config().audit
    source = watchlist or (Path(settings["watchlist"]) if settings.get("watchlist") else None)
    thresholds = Thresholds(**{k: v for k, v in settings.items() if k != "watchlist"})
    if mass_messages is not None:
        thresholds.mass_messages = mass_messages
    return thresholds, load_watchlist(source) if source else None
