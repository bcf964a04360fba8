"""``pcnctl messaging``: block and lift messaging with the lever chosen, prove it works, expire it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
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
    record_in,
    warn,
)
from pcnctl.cli.examples import examples
from pcnctl.records import Row

if TYPE_CHECKING:
    from pcnctl.config import Profile
    from pcnctl.ent.edifice.driver import EdificeDriver
    from pcnctl.ops.messaging import BlockPlan, Verification
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


def canary_driver(profile: Profile) -> Callable[[], EdificeDriver] | None:
    """How to open a session as the profile's canary account, when one is configured with a password."""
    if not profile.canary:
        return None
    from pcnctl.cli._common import open_driver
    from pcnctl.config import make_profile
    from pcnctl.ent import credentials

    secret = credentials.lookup(profile, "canary_password")
    if secret is None:
        warn(
            f"canary {profile.canary} configured but PCNCTL_CANARY_PASSWORD is not set: "
            "real-send check skipped"
        )
        return None
    canary = make_profile(
        f"{profile.name}.canary", url=profile.url, login=profile.canary, ca_file=profile.ca_file
    )
    credentials.provide(canary, "password", secret.value)
    return lambda: open_driver(canary, use_cache=False)


def show_verification(result: Verification, output: str | None, quiet: bool) -> None:
    from pcnctl.output import render

    rows = [c.to_row() for c in result.checks]
    if output is None:
        if not quiet:
            render(rows, "table", VERIFY_COLUMNS, stream=sys.stderr)
    else:
        emit(rows, output, VERIFY_COLUMNS)
    note(f"Verification: {len(result.checks)} check(s), block {result.verdict}", quiet and result.effective)


def _confirm(count: int, schools: int, what: str, yes: bool) -> None:
    from pcnctl.cli._common import confirm_action

    if schools > 1:
        confirm_action(f"This will {what} in {schools} schools ({count} accounts).", yes=yes, count=count)
    else:
        confirm_action(f"{what.capitalize()} ({count} accounts)?", yes=yes)


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
    profile: EntProfileOpt = None,
    incident: IncidentOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=128)] = 16,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Stop a profile from sending messages in schools, saving the exact prior state first."""
    from pcnctl.ops import messaging
    from pcnctl.ops.context import RunContext
    from pcnctl.output import render
    from pcnctl.timespec import parse_when

    when = parse_when(until) if until else None
    state = check_incident(incident)
    driver = get_driver(profile)
    p = messaging.plan_block(
        driver,
        user_profile,
        school or [],
        all_schools=all_schools,
        method=method,
        until=when,
        reason=reason,
        max_concurrency=concurrency,
        state=state,
    )
    _show_plan(p, quiet)
    columns = ("school", "name", "profile", "users", "method", "change")
    if dry_run:  # the plan is the data: on stdout in the chosen format, not also as a table on stderr
        emit(p.rows(), output, columns)
        note("Dry run: nothing was changed.", quiet)
        return
    if not quiet:
        render(p.rows(), "table", columns, stream=sys.stderr)
    # A named incident joins the blocks other incidents hold (so that lifting theirs keeps it in force).
    if not p.to_change and not (incident and p.joins(incident)):
        note("Nothing to do: messaging is already blocked there.", quiet)
        return
    _confirm(p.users, len(p.to_change), f"block {p.profile} messaging ({p.method})", yes)
    inc = record_in(incident, driver.whoami().label, quiet)
    with RunContext.create(driver, inc, state, max_concurrency=concurrency, show_progress=not quiet) as ctx:
        run, rows = messaging.execute_block(ctx, p)
        if p.method == "roles" and revoke_sessions:
            note(f"Sessions of {messaging.revoke_sessions(ctx, p)} {p.profile} account(s) revoked", quiet)
        result = (
            None
            if no_verify
            else messaging.verify_run(
                ctx, run, canary=canary_driver(driver.profile), canary_to=driver.profile.canary_to
            )
        )
    emit(rows, output, BLOCK_COLUMNS)
    note(
        f"Snapshot of the prior state sealed in {state.path} (run {run}); lift with "
        f"'pcnctl messaging unblock --incident {inc.id}'",
        quiet,
    )
    _outcome(p, rows, result, inc.id, revoke_sessions, quiet)


def _show_plan(p: BlockPlan, quiet: bool) -> None:
    """The lever and what it does, and the plan's counts (the table follows)."""
    from pcnctl.ops import messaging

    note(f"Lever '{p.method}': {messaging.LEVERS[p.method]}", quiet)
    already = len(p.schools) - len(p.to_change)
    note(
        f"Plan: block {p.profile} messaging in {len(p.to_change)} school(s), {p.users} account(s)"
        + (f"; {already} already blocked" if already else ""),
        quiet,
    )


def _outcome(
    p: BlockPlan, rows: list[Row], result: Verification | None, incident: str, revoked: bool, quiet: bool
) -> None:
    """What the block leaves open (the roles lever's gap), its verification, and a partial failure's exit."""
    from pcnctl.errors import PartialFailureError

    if p.method == "roles":
        warn(
            "the roles lever does not stop a scripted POST /conversation/send, and live sessions keep their "
            "rights until they end"
            + (
                ""
                if revoked
                else "; add --revoke-sessions, or run "
                "'pcnctl sessions revoke --school UAI --profile " + p.profile + "'"
            )
        )
    if result is not None:
        show_verification(result, None, quiet)
        if not result.effective:
            raise PartialFailureError(
                "the block was applied but verification found it is not effective",
                hint="see the checks above; consider --method login",
            )
    failed = [r for r in rows if r["result"] == "failed"]
    if failed:
        raise PartialFailureError(
            f"{len(failed)} school(s) failed", hint=f"resume: pcnctl incident resume {incident}"
        )


def _unblock(blocks: list[Block], profile: str | None, output: str, quiet: bool) -> None:
    from pcnctl.errors import PartialFailureError
    from pcnctl.ops import messaging
    from pcnctl.ops.context import RunContext
    from pcnctl.state.incidents import Incident

    driver = get_driver(profile)
    rows: list[Row] = []
    state = get_state()
    for incident_id in sorted({b.incident for b in blocks}):
        with RunContext.create(driver, Incident.load(state, incident_id), state) as ctx:
            rows += messaging.execute_unblock(ctx, [b for b in blocks if b.incident == incident_id])
    emit(rows, output, ("school", "method", "result", "detail"))
    failed = [r for r in rows if r["result"] == "failed"]
    if failed:
        raise PartialFailureError(f"{len(failed)} block(s) could not be lifted", hint="run the command again")


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
    from pcnctl.ops import messaging
    from pcnctl.state import blocks as registry

    state, ent = get_state(), ent_of(profile)
    blocks = messaging.select_blocks(
        state, ent, incident=incident, school_refs=school or [], all_schools=all_schools
    )
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
    _confirm(len(blocks), len({b.uai for b in blocks}), "lift the messaging blocks", yes)
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
        int, typer.Option("--samples", min=1, max=50, help="Accounts sampled per school.")
    ] = 3,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Prove the blocks in force work: sampled pairs via /communication/verify, and a canary's real send."""
    from pcnctl.errors import PartialFailureError
    from pcnctl.ops import messaging
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
    result = messaging.verify(
        driver,
        state,
        blocks,
        samples=samples,
        canary=canary_driver(driver.profile),
        canary_to=driver.profile.canary_to,
    )
    show_verification(result, output, quiet)
    if not result.effective:
        raise PartialFailureError("some checks show the block is not effective")
