"""``pcnctl rollback ID``: undo an incident's reversible changes, newest first, each one confirmed."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pcnctl.cli._common import (
    EntProfileOpt,
    OutputOpt,
    emit,
    ent_of,
    get_driver,
    get_state,
    handle_errors,
    note,
)


@handle_errors
def rollback(
    incident_id: Annotated[str, typer.Argument(help="Incident id.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be undone; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Undo everything without asking.")] = False,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Undo an incident's messaging blocks, account blocks and profile blocks, newest first."""
    from pcnctl.cli._common import context_options
    from pcnctl.errors import RefusedError
    from pcnctl.ops import rollback as core
    from pcnctl.ops import runner
    from pcnctl.ops.context import Records, RunContext
    from pcnctl.state.incidents import Incident
    from pcnctl.state.journal import read

    state = get_state()
    inc = Incident.load(state, incident_id)
    name = profile or (inc.profiles[0] if inc.profiles else None)
    ent = ent_of(name)
    steps = core.plan(Records(state, state.audit_log(), inc.id, ent), read(state, inc.id, ent=ent))
    rows = [{"run": s.run, "kind": _kind(s), "undo": s.description} for s in steps]
    if not steps:
        note(f"Incident {inc.id}: nothing to undo on {ent}")
        return
    if dry_run:
        emit(rows, output, ("run", "kind", "undo"))
        note("Dry run: nothing was changed.")
        return
    if any(s.reversible for s in steps) and not yes and not sys.stdin.isatty():
        raise RefusedError(
            "not confirmed: rollback needs --yes when no one is at a terminal",
            hint="check it with --dry-run first",
        )
    driver = get_driver(name)
    results, verdicts = [], []
    with RunContext.create(driver, inc, state, **context_options(driver, False)) as ctx:
        for step in steps:
            answer = "kept"
            if step.reversible:
                if yes or typer.confirm(f"Undo: {step.description}?", err=True):
                    verdict = core.execute(ctx, step)
                    verdicts.append(verdict)
                    answer = verdict.summary
                else:
                    answer = "skipped"
            results.append({"run": step.run, "kind": _kind(step), "undo": step.description, "result": answer})
    emit(results, output, ("run", "kind", "undo", "result"))
    worst = runner.worst(verdicts)
    if worst is not None:
        raise runner.failed(worst)


def _kind(step: object) -> str:
    from pcnctl.ops.rollback import UndoStep

    assert isinstance(step, UndoStep)
    return step.kind if step.reversible else "irreversible"
