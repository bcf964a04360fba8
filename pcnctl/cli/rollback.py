"""``pcnctl rollback ID``: undo an incident's reversible changes, newest first, each one confirmed."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pcnctl.cli._common import EntProfileOpt, OutputOpt, emit, get_driver, handle_errors, note


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
    from pcnctl import accounts, messaging
    from pcnctl import rollback as core
    from pcnctl.errors import RefusedError
    from pcnctl.incident import Incident
    from pcnctl.incident.run import RunContext

    inc = Incident.load(incident_id)
    undos = core.plan(inc)
    rows = [{"run": u.run, "kind": u.kind, "undo": u.description} for u in undos]
    if dry_run or not undos:
        emit(rows, output, ("run", "kind", "undo"))
        note("Dry run: nothing was changed." if dry_run else f"Incident {inc.id}: nothing to undo")
        return
    driver = get_driver(profile or (inc.profiles[0] if inc.profiles else None))
    ctx = RunContext.create(driver, inc)
    results = []
    try:
        for undo in undos:
            if undo.kind == "irreversible":
                results.append(
                    {"run": undo.run, "kind": undo.kind, "undo": undo.description, "result": "kept"}
                )
                continue
            if not yes:
                if not sys.stdin.isatty():
                    raise RefusedError(
                        "not confirmed: rollback needs --yes when no one is at a terminal",
                        hint="check it with --dry-run first",
                    )
                if not typer.confirm(f"Undo: {undo.description}?", err=True):
                    results.append(
                        {"run": undo.run, "kind": undo.kind, "undo": undo.description, "result": "skipped"}
                    )
                    continue
            if undo.kind == "messaging":
                done = messaging.execute_unblock(ctx, undo.targets)
                detail = f"{sum(1 for r in done if r['result'] == 'done')} lifted"
            elif undo.kind == "accounts":
                users = accounts.resolve_targets(driver, undo.targets)
                accounts.check_scope(driver, users)
                result = accounts.execute(ctx, accounts.plan("accounts.unblock", users))
                detail = ", ".join(f"{n} {k}" for k, n in sorted(result.counts().items()))
            else:
                plan = accounts.plan_profile_block(driver, undo.targets, undo.profile, False)
                accounts.execute_profile_block(ctx, plan)
                detail = f"{len(undo.targets)} school(s)"
            results.append({"run": undo.run, "kind": undo.kind, "undo": undo.description, "result": detail})
    finally:
        ctx.journal.close()
    emit(results, output, ("run", "kind", "undo", "result"))
