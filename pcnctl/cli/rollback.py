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
    from pcnctl.errors import RefusedError
    from pcnctl.ops import rollback as core
    from pcnctl.ops.context import RunContext
    from pcnctl.state.incidents import Incident

    state = get_state()
    inc = Incident.load(state, incident_id)
    name = profile or (inc.profiles[0] if inc.profiles else None)
    ent = ent_of(name)
    undos = core.plan(state, inc, ent)
    rows = [{"run": u.run, "kind": u.kind, "undo": u.description} for u in undos]
    if not undos:
        note(f"Incident {inc.id}: nothing to undo on {ent}")
        return
    if dry_run:
        emit(rows, output, ("run", "kind", "undo"))
        note("Dry run: nothing was changed.")
        return
    driver = get_driver(name)
    results = []
    with RunContext.create(driver, inc, state) as ctx:
        for undo in undos:
            answer = "kept"
            if undo.kind != "irreversible":
                if not yes and not sys.stdin.isatty():
                    raise RefusedError(
                        "not confirmed: rollback needs --yes when no one is at a terminal",
                        hint="check it with --dry-run first",
                    )
                if yes or typer.confirm(f"Undo: {undo.description}?", err=True):
                    answer = core.execute(ctx, undo)
                else:
                    answer = "skipped"
            results.append({"run": undo.run, "kind": undo.kind, "undo": undo.description, "result": answer})
    emit(results, output, ("run", "kind", "undo", "result"))
