"""``pcnctl incident``: open, list, show and resume incidents; ``pcnctl audit verify-log``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    ConcurrencyOpt,
    EntProfileOpt,
    OutputOpt,
    QuietOpt,
    check_writable,
    emit,
    emit_record,
    get_driver,
    get_state,
    handle_errors,
    local_operator,
    note,
)
from pcnctl.cli.examples import examples

if TYPE_CHECKING:
    from pcnctl.state.incidents import Incident

app = typer.Typer(help="Incidents: open, list, show, report, verify, resume, close.", no_args_is_help=True)
audit_app = typer.Typer(
    help="Audit reports for cron (run) and the hash-chained audit log (verify-log).", no_args_is_help=True
)

IdArg = Annotated[str, typer.Argument(help="Incident id.")]


@app.command("open", epilog=examples("incident open"))
@handle_errors
def open_(
    incident_id: Annotated[str | None, typer.Option("--id", help="Incident id (default: generated).")] = None,
    title: Annotated[str, typer.Option("--title", help="What happened, in a few words.")] = "",
) -> None:
    """Open an incident; mutating commands record into it with --incident ID."""

    from pcnctl.state.incidents import create_incident

    operator = local_operator()
    incident = create_incident(get_state(), incident_id, title=title, operator=operator)
    get_state().audit_log().append(
        actor=operator,
        incident=incident.id,
        action="incident:open",
        target=incident.id,
        result="opened",
        detail=title,
    )
    typer.echo(incident.id)
    note(f"Opened incident {incident.id} in {incident.path}")


@app.command("list", epilog=examples("incident list"))
@handle_errors
def list_(output: OutputOpt = "table") -> None:
    """List incidents."""
    from pcnctl.state.incidents import list_incidents

    rows = [
        {"id": i.id, "status": i.status, "opened_at": i.opened_at, "opened_by": i.opened_by, "title": i.title}
        for i in list_incidents(get_state())
    ]
    emit(rows, output, ("id", "status", "opened_at", "opened_by", "title"))


@app.command("show", epilog=examples("incident show"))
@handle_errors
def show(incident_id: IdArg, output: OutputOpt = "table") -> None:
    """Show an incident's runs: what was done, by whom, with which identity, how it ended."""
    from pcnctl.state.incidents import Incident
    from pcnctl.state.journal import read

    incident = Incident.load(get_state(), incident_id)
    rows = []
    for state in read(get_state(), incident.id):
        counts = state.counts()
        rows.append(
            {
                "run": state.run,
                "op": state.op,
                "identity": state.meta.get("identity"),
                "auth": state.meta.get("auth"),
                "ent": state.ent,
                "items": len(state.items),
                "done": counts.get("done", 0),
                "already": counts.get("already", 0),
                "failed": counts.get("failed", 0) + counts.get("refused", 0),
                "status": state.end or ("interrupted" if state.pending else "completed"),
            }
        )
    note(f"Incident {incident.id} ({incident.status}), opened {incident.opened_at} by {incident.opened_by}")
    columns: tuple[str, ...] = (
        "run",
        "op",
        "identity",
        "auth",
        "items",
        "done",
        "already",
        "failed",
        "status",
    )
    if len(incident.ents) > 1:
        columns = (*columns[:2], "ent", *columns[2:])
    emit(rows, output, columns)


@app.command("report", epilog=examples("incident report"))
@handle_errors
def report(
    incident_id: IdArg,
    fmt: Annotated[str, typer.Option("--output", "-o", help="markdown, html or json.")] = "markdown",
    out: Annotated[str | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
    lang: Annotated[str, typer.Option("--lang", help="en or fr (Markdown and HTML).")] = "en",
    tz: Annotated[
        str, typer.Option("--tz", help="Time zone of the times shown (default Europe/Paris).")
    ] = "Europe/Paris",
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Do not ask the ENT for school names (the incident's records only)."),
    ] = False,
) -> None:
    """The incident report for the crisis cell and the post-mortem (Markdown, HTML or JSON).

    Examples:
      pcnctl incident report INC-0327 -o html --lang fr --out rapport.html
      pcnctl incident report INC-0327 -o json --offline
    """
    from pcnctl.errors import PcnError, UsageError
    from pcnctl.reports import incident as core
    from pcnctl.state.incidents import Incident

    if fmt not in ("markdown", "html", "json"):
        raise UsageError(f"{fmt!r} is not a report format: markdown, html or json")
    if lang not in core.LABELS:
        raise UsageError("--lang takes en or fr")
    _check_zone(tz)
    if out:
        check_writable(Path(out))
    incident = Incident.load(get_state(), incident_id)
    names: dict[str, str] = {}
    if not offline and incident.profiles:
        try:
            names = {s.uai: s.name for s in get_driver(incident.profiles[0]).list_schools()}
        except PcnError as exc:
            note(f"School names from the incident's records only (ENT: {exc.message})")
    data = core.collect(get_state(), incident, names)
    if fmt == "json":
        text = core.to_json(data)
    else:
        text = (core.markdown if fmt == "markdown" else core.html_page)(data, lang, tz)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        note(f"Report written to {out}")
    else:
        typer.echo(text, nl=False)


@app.command("exposure", epilog=examples("incident exposure"))
@handle_errors
def exposure(
    incident_id: IdArg,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the files: one exposition-UAI.xlsx per school.")
    ],
    school: Annotated[
        list[str] | None,
        typer.Option("--school", help="Only this school (a UAI of the incident; repeatable)."),
    ] = None,
    tz: Annotated[
        str, typer.Option("--tz", help="Time zone of the times in the files (default Europe/Paris).")
    ] = "Europe/Paris",
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Who received the threat and who opened it, per school, as French Excel files for the schools.

    Read from the evidence (each copy's read flag, recorded before the purge); names, classes and
    relatives come from the ENT's directory. Files name people: they are written 0600.
    """
    from pcnctl.reports import export
    from pcnctl.reports.wording import Wording
    from pcnctl.state.incidents import Incident

    _check_zone(tz)
    check_writable(out, directory=True)
    incident = Incident.load(get_state(), incident_id)
    plan = export.plan_exposure(get_state(), incident, school or ())
    done = export.write_exposure(get_driver(profile or _profile_of(incident)), plan, out, tz=tz)
    emit([f.to_row() for f in done.files], output, export.EXPOSURE_COLUMNS)
    words = Wording("en")
    note(f"{words.count('files', len(done.files))} written to {out} (0600: they name people)")
    if done.skipped:
        note(f"Not in this profile's directory, not exported: {', '.join(done.skipped)}")
    if plan.unplaced:
        note(f"{words.count('recipients', plan.unplaced)} with no known school: in no school's file")


def _check_zone(tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from pcnctl.errors import UsageError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {tz!r}", hint="an IANA name such as Europe/Paris") from None


def _profile_of(incident: Incident) -> str | None:
    """The profile the incident was worked with, when none is given (its first)."""
    return incident.profiles[0] if incident.profiles else None


@app.command("close", epilog=examples("incident close"))
@handle_errors
def close(
    incident_id: IdArg,
    force: Annotated[
        bool, typer.Option("--force", help="Close even with messaging blocks in force.")
    ] = False,
) -> None:
    """Close an incident (its journal and evidence stay); refused while its messaging blocks are in force."""
    from pcnctl.errors import RefusedError
    from pcnctl.state import blocks as registry
    from pcnctl.state.incidents import Incident
    from pcnctl.timespec import utcnow

    state = get_state()
    inc = Incident.load(state, incident_id)
    active = [b for b in registry.blocks(state, None) if b.incident == inc.id]
    if active and not force:
        raise RefusedError(
            f"incident {inc.id} still has {len(active)} messaging block(s) in force",
            hint=f"lift them (pcnctl messaging unblock --incident {inc.id} or pcnctl rollback "
            f"{inc.id}), or pass --force",
        )
    inc.status, inc.closed_at = "closed", utcnow()
    inc.save(state)
    forced = f"closed with {len(active)} messaging block(s) in force (--force)" if active else "closed"
    state.audit_log().append(
        actor=local_operator(), incident=inc.id, action="incident:close", target=inc.id, result=forced
    )
    note(f"Incident {inc.id} closed")


@app.command("verify", epilog=examples("incident verify"))
@handle_errors
def verify(incident_id: IdArg, output: OutputOpt = "table") -> None:
    """Recompute the hashes of the incident's evidence bundles; exits 11 if anything changed."""
    import sys

    from pcnctl.errors import ExitCode
    from pcnctl.forensics import evidence
    from pcnctl.state.incidents import Incident

    checks = evidence.verify(get_state(), Incident.load(get_state(), incident_id))
    emit([c.to_row() for c in checks], output, ("bundle", "file", "ok", "problem"))
    bad = [c for c in checks if not c.ok]
    if not checks:
        note(f"Incident {incident_id} holds no evidence bundle")
    if bad:
        sys.stderr.write(f"Error: evidence altered: {bad[0].bundle}/{bad[0].file}: {bad[0].problem}\n")
        raise typer.Exit(int(ExitCode.AUDIT_CRITICAL))
    if checks:
        note(f"{len(checks)} hash(es) checked: intact")


@app.command("resume", epilog=examples("incident resume"))
@handle_errors
def resume(
    incident_id: IdArg,
    profile: EntProfileOpt = None,
    concurrency: ConcurrencyOpt = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Finish the runs an interruption (Ctrl-C, crash, kill) left unfinished: only what is left.

    Each run continues its own recorded plan (never a new one) on the ENT it acted on; items whose answer
    was lost are re-read from the ENT first. Playbook runs resume with 'pcnctl playbook resume'.
    """
    from pcnctl.cli._common import context_options, tell
    from pcnctl.ops import runner as core
    from pcnctl.ops.context import RunContext
    from pcnctl.playbooks import runner
    from pcnctl.state.incidents import Incident
    from pcnctl.state.journal import read
    from pcnctl.state.store import ent_key

    state = get_state()
    incident = Incident.load(state, incident_id)
    todo = core.unfinished(read(state, incident.id))
    if runner.unfinished(state, incident.id) is not None:
        note(f"A playbook run of {incident.id} is unfinished: pcnctl playbook resume {incident.id}", quiet)
    if not todo:
        note(f"Incident {incident.id}: nothing left to resume", quiet)
        return
    driver = get_driver(profile or todo[0].meta.get("profile"))
    mine = [r for r in todo if r.ent == ent_key(driver.profile.url)]
    for other in sorted({r.meta.get("profile", "?") for r in todo if r not in mine}):
        note(
            f"Runs on another ENT are left for its profile: "
            f"pcnctl incident resume {incident.id} --ent {other}"
        )
    options = context_options(driver, quiet, max_concurrency=concurrency)
    verdicts = []
    with RunContext.create(driver, incident, state, **options) as ctx:
        for verdict in core.resume_all(ctx, mine):
            note(f"Resumed {verdict.op} run {verdict.run}", quiet)
            verdicts.append(verdict)
            tell(verdict, output, quiet, check=False)  # the other runs are resumed all the same
    worst = core.worst(verdicts)
    if worst is not None:
        raise core.failed(worst)


@audit_app.command("verify-log", epilog=examples("audit verify-log"))
@handle_errors
def verify_log(
    path: Annotated[
        str | None, typer.Option("--file", help="Audit log (default: $PCNCTL_HOME/audit.log).")
    ] = None,
    output: OutputOpt = "table",
) -> None:
    """Check the audit log's hash chain; exits 11 at the first altered, removed or reordered line."""
    from pathlib import Path

    from pcnctl.errors import ExitCode
    from pcnctl.state import auditlog

    log = get_state().audit_log()
    if path:
        # Another file: no seal to compare with. Checked first: verifying must not create what it reads.
        log = auditlog.AuditLog(auditlog.readable_log(Path(path)), None, log.key)
    result = auditlog.verify(log)
    emit_record(
        {
            "file": log.where,
            "entries": result.entries,
            "sealed": result.sealed,
            "intact": result.ok,
            "first_bad_line": result.line,
            "problem": result.problem,
            "warnings": "; ".join(result.warnings),
        },
        output,
    )
    if not result.ok:
        import sys

        sys.stderr.write(f"Error: the audit log was altered at line {result.line}: {result.problem}\n")
        raise typer.Exit(int(ExitCode.AUDIT_CRITICAL))
