"""``pcnctl messaging``: block and lift messaging with the lever chosen, prove it works, expire it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    ConcurrencyOpt,
    EntProfileOpt,
    OutputOpt,
    QuietOpt,
    check_incident,
    emit,
    ent_of,
    get_driver,
    get_state,
    handle_errors,
    note,
    tell,
    terminal_width,
    warn,
)
from pcnctl.cli.examples import examples

if TYPE_CHECKING:
    from pcnctl.ops.messaging_plan import BlockPlan
    from pcnctl.state.blocks import Block

app = typer.Typer(
    help="Block messaging (communication, roles or login lever), verify, lift, expire.", no_args_is_help=True
)

SchoolsOpt = Annotated[list[str] | None, typer.Option("--school", help="UAI (repeatable).")]
AllSchoolsOpt = Annotated[bool, typer.Option("--all-schools", help="Every school in this profile's scope.")]
IncidentOpt = Annotated[
    str | None,
    typer.Option("--incident", help="An existing incident to record in (default: open a new one)."),
]
OfIncidentOpt = Annotated[str | None, typer.Option("--incident", help="The blocks of this incident.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Act without asking (unattended runs).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan and stop; change nothing.")]
BLOCK_COLUMNS = ("school", "name", "method", "result", "detail")
STATUS_COLUMNS = ("school", "profile", "method", "since", "by", "incident", "until", "expired", "reason")
VERIFY_COLUMNS = ("school", "check", "expected", "observed", "ok")


@app.command("block", epilog=examples("messaging block"))
@handle_errors
def block(
    user_profile: Annotated[
        str, typer.Option("--profile", help="Student, Teacher, Personnel, Relative, Guest.")
    ],
    school: SchoolsOpt = None,
    all_schools: AllSchoolsOpt = False,
    method: Annotated[
        str, typer.Option("--method", help="communication (default), roles or login.")
    ] = "communication",
    until: Annotated[
        str | None, typer.Option("--until", help="Expiry: ISO date/time or duration (8h, 3d).")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the status and the report.")] = "",
    revoke_sessions: Annotated[
        bool, typer.Option("--revoke-sessions", help="With --method roles: also end live sessions.")
    ] = False,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip the verification after the block.")
    ] = False,
    keep_relatives: Annotated[
        bool,
        typer.Option(
            "--keep-relatives",
            help="Student blocks: leave the pupils' links to their own parents, and with them the hand-made "
            "links into parents that the relatives' cut would delete for good.",
        ),
    ] = False,
    profile: EntProfileOpt = None,
    incident: IncidentOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    concurrency: ConcurrencyOpt = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Stop a profile from sending messages in schools, saving the exact prior state first."""
    from pcnctl.cli._common import command_door
    from pcnctl.forensics.mailstore import open_mailstore
    from pcnctl.ops import messaging, messaging_plan, runner
    from pcnctl.timespec import parse_when

    when = parse_when(until) if until else None
    state = check_incident(incident)
    driver = get_driver(profile)
    mailstore = open_mailstore(driver.profile) if driver.profile.mailstore else None  # the reply surface
    p = messaging_plan.plan_block(
        driver,
        user_profile,
        school or [],
        all_schools=all_schools,
        method=method,
        until=when,
        reason=reason,
        max_concurrency=concurrency or 16,
        state=state,
        incident=incident,
        revoke_sessions=revoke_sessions,
        verify=not no_verify,
        keep_relatives=keep_relatives,
        mailstore=mailstore,
    )
    if mailstore is not None:
        mailstore.close()
    op = messaging.BLOCK
    _show_plan(p, quiet)
    if dry_run:  # the plan is the data: on stdout in the chosen format, not also as a table on stderr
        emit(op.rows(p), output, op.columns)
        note("Dry run: nothing was changed.", quiet)
        return
    if not quiet:
        from pcnctl.output import render

        render(op.rows(p), "table", op.columns, stream=sys.stderr, width=terminal_width())
    door = command_door(state, incident, driver, yes=yes, quiet=quiet, max_concurrency=concurrency)
    verdict = runner.run(op, p, door)
    if verdict.status == "nothing":
        note("Nothing to do: messaging is already blocked there.", quiet)
        return
    if verdict.checks and not quiet:
        from pcnctl.output import render

        render(verdict.checks, "table", VERIFY_COLUMNS, stream=sys.stderr, width=terminal_width())
    note(
        f"Snapshot of the prior state sealed in {state.where} (run {verdict.run}); lift with "
        f"'pcnctl messaging unblock --incident {verdict.incident}'",
        quiet,
    )
    tell(verdict, output, quiet)


def _show_plan(p: BlockPlan, quiet: bool) -> None:
    """The lever and what it does, and the plan's counts (the table follows)."""
    from pcnctl.ops import messaging_plan

    note(f"Lever '{p.method}': {messaging_plan.LEVERS[p.method]}", quiet)
    if p.cuts_relatives:
        from pcnctl.ops.messaging_cut import RELATIVES_LOSS

        note(f"Note: {RELATIVES_LOSS}", quiet)
    already = len(p.schools) - len(p.to_change)
    note(
        f"Plan: block {p.profile} messaging in {len(p.to_change)} school(s), {p.users} account(s)"
        + (f"; {already} already blocked" if already else ""),
        quiet,
    )


def _confirm_lift(blocks: list[Block], yes: bool) -> None:
    """The same question a lift's operation asks, before its runs (one per incident) start."""
    from pcnctl.cli._common import confirm_action
    from pcnctl.ops.messaging_lift import LIFT, plan_lift

    asked = LIFT.confirmation(plan_lift(blocks))
    confirm_action(asked.question, yes=yes, count=asked.count)


def _unblock(blocks: list[Block], profile: str | None, output: str, quiet: bool) -> None:
    """Lift the blocks, each incident's in a run of its own (the lift is recorded where the block is)."""
    from pcnctl.cli._common import context_options
    from pcnctl.ops import runner
    from pcnctl.ops.context import RunContext
    from pcnctl.ops.messaging_lift import LIFT, plan_lift
    from pcnctl.state.incidents import Incident

    driver = get_driver(profile)
    state = get_state()
    verdicts = []
    for incident_id in sorted({b.incident for b in blocks}):
        mine = plan_lift([b for b in blocks if b.incident == incident_id])
        inc = Incident.load(state, incident_id)
        with RunContext.create(driver, inc, state, **context_options(driver, quiet)) as ctx:
            verdicts.append(runner.run(LIFT, mine, runner.InContext(ctx)))
    emit([r for v in verdicts for r in v.rows], output, ("school", "method", "result", "detail"))
    for v in verdicts:
        for line in v.notes:
            note(line, quiet)
    worst = runner.worst(verdicts)
    if worst is not None:
        raise runner.failed(worst)


@app.command("unblock", epilog=examples("messaging unblock"))
@handle_errors
def unblock(
    incident: OfIncidentOpt = None,
    school: SchoolsOpt = None,
    all_schools: AllSchoolsOpt = False,
    profile: EntProfileOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Restore exactly what the blocks saved; changes made by hand meanwhile are reported and kept."""
    from pcnctl.ops.messaging_lift import select_blocks
    from pcnctl.state import blocks as registry

    state, ent = get_state(), ent_of(profile)
    blocks = select_blocks(state, ent, incident=incident, school_refs=school or [], all_schools=all_schools)
    if not blocks:
        note("No messaging block in force matches.", quiet)
        return
    note(f"Plan: lift {len(blocks)} block(s) in {len({b.uai for b in blocks})} school(s)", quiet)
    if dry_run:
        keys = {(b.uai, b.incident) for b in blocks}
        rows = [r for r in registry.status_rows(state, ent) if (r["school"], r["incident"]) in keys]
        emit(rows, output, STATUS_COLUMNS)
        note("Dry run: nothing was changed.", quiet)
        return
    _confirm_lift(blocks, yes)
    _unblock(blocks, profile, output, quiet)


@app.command("status", epilog=examples("messaging status"))
@handle_errors
def status(
    all_: Annotated[bool, typer.Option("--all", help="Include lifted blocks.")] = False,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """What is blocked on this ENT, where, by which lever, since when, by whom, in which incident, until
    when."""
    from pcnctl.state import blocks as registry

    rows = registry.status_rows(get_state(), ent_of(profile), include_lifted=all_)
    columns = (*STATUS_COLUMNS, "status") if all_ else STATUS_COLUMNS
    emit(rows, output, columns)
    expired = sum(1 for r in rows if r["expired"] and r["status"] == "active")
    if expired:
        warn(f"{expired} block(s) past their --until are still in force: run 'pcnctl messaging expire'")


@app.command("expire", epilog=examples("messaging expire"))
@handle_errors
def expire(
    profile: EntProfileOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Lift the blocks whose --until has passed (made for cron; silent when there is nothing to do)."""
    from pcnctl.state import blocks as registry

    state, ent = get_state(), ent_of(profile)
    blocks = registry.expired_blocks(state, ent)
    if not blocks:
        note("No expired messaging block.", quiet)
        return
    if dry_run:
        emit([r for r in registry.status_rows(state, ent) if r["expired"]], output, STATUS_COLUMNS)
        return
    _unblock(blocks, profile, output, quiet)


@app.command("verify", epilog=examples("messaging verify"))
@handle_errors
def verify_(
    incident: OfIncidentOpt = None,
    school: SchoolsOpt = None,
    samples: Annotated[
        int, typer.Option("--samples", min=1, max=50, help="Accounts sampled per sampled school.")
    ] = 3,
    sample_schools: Annotated[
        int,
        typer.Option(
            "--sample-schools",
            min=0,
            help="Schools whose accounts are sampled (spread over the list; 0: every school). The cut "
            "groups are re-read in every school.",
        ),
    ] = 3,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Prove the blocks in force work: the cut groups re-read, sampled pairs via /communication/verify, and
    a canary's real send."""
    from pcnctl.cli._common import canary_driver
    from pcnctl.errors import PartialFailureError
    from pcnctl.ops.messaging_verify import verify
    from pcnctl.state import blocks as registry

    state = get_state()
    blocks = registry.active_blocks(state, ent_of(profile))
    if incident:
        blocks = [b for b in blocks if b.incident == incident]
    if school:
        from pcnctl.uai import normalise

        uais = {normalise(s) for s in school}
        blocks = [b for b in blocks if b.uai in uais]
    if not blocks:
        note("No messaging block in force matches.", quiet)
        return
    driver = get_driver(profile)
    result = verify(
        driver,
        state,
        blocks,
        samples=samples,
        sample_schools=sample_schools,
        canary=canary_driver(driver.profile),
        canary_to=driver.profile.canary_to,
    )
    emit([c.to_row() for c in result.checks], output, VERIFY_COLUMNS)
    note(
        f"Verification: {len(result.checks)} check(s) ({result.scope}), block {result.verdict}",
        quiet and result.effective,
    )
    if not result.effective:
        raise PartialFailureError("some checks show the block is not effective")
