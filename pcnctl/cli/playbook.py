"""``pcnctl playbook``: validate, plan (check mode), run and resume reviewed YAML playbooks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    EntProfileOpt,
    OutputOpt,
    QuietOpt,
    get_state,
    handle_errors,
    note,
)
from pcnctl.cli._playbooks import execute, load_valid, show_plan
from pcnctl.cli.examples import examples

if TYPE_CHECKING:
    pass

app = typer.Typer(help="Reviewed YAML playbooks: validate, plan, run, resume.", no_args_is_help=True)

FileArg = Annotated[Path, typer.Argument(help="Playbook YAML file.")]
InputOpt = Annotated[list[str] | None, typer.Option("--input", "-i", help="NAME=VALUE (repeatable).")]
ApproveOpt = Annotated[list[str] | None, typer.Option("--approve", help="Approve this step id (repeatable).")]
ApproveAllOpt = Annotated[bool, typer.Option("--approve-all", help="Approve every step that needs it.")]


def parse_inputs(values: list[str] | None) -> dict[str, str]:
    from pcnctl.errors import UsageError

    out = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--input {item!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


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
    execute(playbook, inputs, incident, profile, approve, approve_all, output, quiet)


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
    execute(
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
