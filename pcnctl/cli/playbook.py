"""``pcnctl playbook``: validate, plan (check mode), run and resume reviewed YAML playbooks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pcnctl.cli._common import (
    EntProfileOpt,
    OutputOpt,
    QuietOpt,
    check_incident,
    emit,
    get_driver,
    get_state,
    handle_errors,
    note,
    record_in,
)
from pcnctl.cli.examples import examples

if TYPE_CHECKING:
    from pcnctl.playbooks.model import Playbook, Step
    from pcnctl.playbooks.params import StepParams
    from pcnctl.playbooks.runner import PlaybookRun
    from pcnctl.records import JsonObject

app = typer.Typer(help="Reviewed YAML playbooks: validate, plan, run, resume.", no_args_is_help=True)

FileArg = Annotated[Path, typer.Argument(help="Playbook YAML file.")]
InputOpt = Annotated[list[str] | None, typer.Option("--input", "-i", help="NAME=VALUE (repeatable).")]
ApproveOpt = Annotated[list[str] | None, typer.Option("--approve", help="Approve this step id (repeatable).")]
ApproveAllOpt = Annotated[bool, typer.Option("--approve-all", help="Approve every step that needs it.")]
STEP_COLUMNS = ("step", "op", "status", "summary")


def load_valid(path: Path) -> Playbook:
    from pcnctl.errors import PlaybookError
    from pcnctl.playbooks.model import load

    playbook, problems = load(path)
    if problems or playbook is None:
        for p in problems:
            sys.stderr.write(f"{p}\n")
        raise PlaybookError(f"{path}: {len(problems)} problem(s); nothing was run")
    return playbook


def parse_inputs(values: list[str] | None) -> dict[str, str]:
    from pcnctl.errors import UsageError

    out = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--input {item!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def _mailstore(driver: Any) -> Any:
    from pcnctl.forensics.mailstore import Mailstore

    return Mailstore(driver.profile.mailstore) if driver.profile.mailstore else None


@app.command("validate", epilog=examples("playbook validate"))
@handle_errors
def validate(file: FileArg) -> None:
    """Check a playbook: every problem with file, line and column; nothing runs."""
    playbook = load_valid(file)
    note(f"{file}: valid ({len(playbook.steps)} steps: {', '.join(s.id for s in playbook.steps)})")


@app.command("plan", epilog=examples("playbook plan"))
@handle_errors
def plan(
    file: FileArg, input_: InputOpt = None, profile: EntProfileOpt = None, output: OutputOpt = "table"
) -> None:
    """Check mode: run the read-only steps against the ENT and show what each other step would do."""
    from pcnctl.playbooks import runner

    playbook = load_valid(file)
    show_plan(playbook, runner.coerce_inputs(playbook, parse_inputs(input_)), profile, output)
    note("Check mode: nothing was changed.")


def show_plan(playbook: Playbook, inputs: JsonObject, profile: str | None, output: str) -> None:
    """Check mode against the ENT, rendered: what ``playbook plan`` and a quarantine's dry run show."""
    from pcnctl.playbooks import runner

    driver = get_driver(profile)
    store = _mailstore(driver)
    try:
        reports = runner.plan(playbook, inputs, driver, store, get_state())
    finally:
        if store is not None:
            store.close()
    emit([r.to_row() for r in reports], output, STEP_COLUMNS)


def _confirm(step: Step, params: StepParams) -> bool:
    from pcnctl.playbooks.ops import OPS

    if not sys.stdin.isatty():
        return False
    return bool(typer.confirm(f"Step {step.id} ({OPS[step.op].summary}) needs approval. Proceed?", err=True))


def _execute(
    playbook: Playbook,
    inputs: JsonObject,
    incident_id: str | None,
    profile: str | None,
    approvals: list[str] | None,
    approve_all: bool,
    output: str,
    quiet: bool,
    resume_from: PlaybookRun | None = None,
) -> None:
    from pcnctl.ops.context import RunContext
    from pcnctl.playbooks import runner

    state = check_incident(incident_id)
    driver = get_driver(profile)
    inc = record_in(incident_id, driver.whoami().label, quiet, title=playbook.name)
    ctx = RunContext.create(driver, inc, state, show_progress=not quiet)
    store = _mailstore(driver)

    def show(report: runner.StepReport) -> None:
        note(f"[{report.status}] {report.id} ({report.op}) {report.summary}", quiet)

    try:
        reports = runner.run(
            playbook,
            inputs,
            ctx,
            store,
            approvals=set(approvals or []),
            approve_all=approve_all,
            confirm=_confirm,
            resume_from=resume_from,
            on_step=show,
        )
    finally:
        ctx.close()
        if store is not None:
            store.close()
    emit([r.to_row() for r in reports], output, STEP_COLUMNS)
    note(f"Playbook {playbook.name!r} completed in incident {inc.id}", quiet)


@app.command("run", epilog=examples("playbook run"))
@handle_errors
def run(
    file: FileArg,
    incident: Annotated[
        str | None,
        typer.Option("--incident", help="An existing incident to run in (default: open a new one)."),
    ] = None,
    input_: InputOpt = None,
    approve: ApproveOpt = None,
    approve_all: ApproveAllOpt = False,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Run a playbook step by step in an incident; steps that need approval wait for it."""
    from pcnctl.playbooks import runner

    playbook = load_valid(file)
    inputs = runner.coerce_inputs(playbook, parse_inputs(input_))
    _execute(playbook, inputs, incident, profile, approve, approve_all, output, quiet)


@app.command("resume", epilog=examples("playbook resume"))
@handle_errors
def resume(
    incident: Annotated[str, typer.Argument(help="Incident id.")],
    approve: ApproveOpt = None,
    approve_all: ApproveAllOpt = False,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Continue an interrupted or stopped playbook run: only the steps not finished."""
    from pcnctl.playbooks import runner
    from pcnctl.state.incidents import Incident

    inc = Incident.load(get_state(), incident)
    state = runner.unfinished(get_state(), inc.id)
    if state is None:
        note(f"Incident {incident}: no unfinished playbook run", quiet)
        return
    path = runner.check_unchanged(state)
    playbook = load_valid(path)
    note(f"Resuming {playbook.name!r}: {len(state.results)} step(s) already done", quiet)
    _execute(
        playbook,
        state.inputs,
        incident,
        profile or state.meta.get("profile"),
        approve,
        approve_all,
        output,
        quiet,
        resume_from=state,
    )
