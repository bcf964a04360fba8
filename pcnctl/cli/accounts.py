"""``pcnctl accounts`` and ``pcnctl sessions``: cut compromised accounts, safely and in bulk."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    EntProfileOpt,
    OutputOpt,
    QuietOpt,
    check_incident,
    check_writable,
    confirm_action,
    emit,
    get_driver,
    handle_errors,
    note,
    record_in,
)
from pcnctl.cli.examples import examples

if TYPE_CHECKING:
    from pcnctl.ops.accounts import OpResult, Plan
    from pcnctl.records import Row
    from pcnctl.state.journal import RunParams

app = typer.Typer(
    help="Block, unblock, reset compromised accounts (plan, caps, journal, audit).", no_args_is_help=True
)
sessions_app = typer.Typer(help="End the sessions of accounts.", no_args_is_help=True)

TargetsArg = Annotated[list[str] | None, typer.Argument(help="User ids or logins.", show_default=False)]
FromFileOpt = Annotated[
    Path | None, typer.Option("--from-file", help="CSV with an id or login column, or one per line.")
]
SchoolOpt = Annotated[str | None, typer.Option("--school", help="Select the accounts of this school (UAI).")]
UserProfileOpt = Annotated[
    list[str] | None,
    typer.Option("--profile", help="With --school: Student, Teacher, Personnel, Relative, Guest."),
]
IncidentOpt = Annotated[
    str | None,
    typer.Option("--incident", help="An existing incident to record in (default: open a new one)."),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan and stop; change nothing.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Act without asking (unattended runs).")]
MaxOpt = Annotated[
    int | None, typer.Option("--max", help="Raise the cap on accounts changed in one run.", min=1)
]
AllProfilesOpt = Annotated[
    bool,
    typer.Option(
        "--all-profiles", help="With --school and no --profile: every profile (staff, parents too)."
    ),
]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", help="Upper bound of parallel calls.", min=1, max=128)
]
BatchOpt = Annotated[
    int,
    typer.Option(
        "--batch-size",
        help="ADMC: accounts per PUT /auth/users/block call; 0 = one call each.",
        min=0,
        max=500,
    ),
]

RESULT_COLUMNS = ("id", "login", "displayName", "profile", "schools", "result", "detail")
PLAN_COLUMNS = ("school", "profile", "to_change", "already")


def show_plan(p: Plan, quiet: bool) -> None:
    from pcnctl.output import render

    if quiet:
        return
    sys.stderr.write(p.summary() + "\n")
    render(p.rows(), "table", PLAN_COLUMNS, stream=sys.stderr)


def confirm(p: Plan, yes: bool) -> None:
    """--yes, or a typed answer at a terminal; wide plans make the operator type the count."""
    from pcnctl.ops.accounts import VERBS

    n, verb = len(p.to_change), VERBS[p.op]
    if p.wide:
        confirm_action(f"This will {verb} {n} accounts in {len(p.schools)} schools.", yes=yes, count=n)
    else:
        confirm_action(f"{verb.capitalize()} {n} account(s)?", yes=yes)


def finish(
    result: OpResult | None,
    output: str,
    quiet: bool,
    *,
    rows: list[Row] | None = None,
    columns: tuple[str, ...] = RESULT_COLUMNS,
) -> None:
    """Print per-account results and the summary; a partial failure exits 6 with the file to retry."""
    from pcnctl.errors import PartialFailureError

    if result is None:
        return
    emit(rows if rows is not None else result.rows, output, columns)
    r = result.report
    counts = ", ".join(f"{n} {k}" for k, n in sorted(result.counts().items()))
    note(
        f"{result.op}: {counts} in {r.elapsed:.1f} s ({r.calls} calls, peak concurrency "
        f"{r.peak_concurrency}, {r.throttled} throttled, {r.retries} retried); run {result.run}",
        quiet,
    )
    if result.failed:
        raise PartialFailureError(
            f"{result.failed} account(s) failed",
            hint=f"the failures are in {result.failures_file}; retry them with "
            f"--from-file {result.failures_file}",
        )


def run_op(
    op: str,
    params: RunParams,
    *,
    targets: list[str] | None,
    from_file: Path | None,
    school: str | None,
    user_profiles: list[str] | None,
    ent_profile: str | None,
    incident_id: str | None,
    dry_run: bool,
    yes: bool,
    cap: int | None,
    concurrency: int,
    output: str,
    quiet: bool,
    batch_size: int = 50,
    all_profiles: bool = False,
) -> OpResult | None:
    """The shared flow: resolve, scope, plan, cap, confirm, run in an incident. None when nothing ran."""
    from pcnctl.ops import accounts
    from pcnctl.ops.context import RunContext

    _check_selection(school, user_profiles, all_profiles)
    state = check_incident(incident_id)
    driver = get_driver(ent_profile)
    p = accounts.prepare(
        driver,
        op,
        targets or [],
        params,
        from_file=from_file,
        school=school,
        profiles=user_profiles or [],
        max_concurrency=concurrency,
        progress=not quiet,
    )
    if dry_run:
        _dry_run(p, cap, output, quiet)
        return None
    show_plan(p, quiet)
    accounts.check_cap(p, cap)
    if not p.to_change:
        note("Nothing to do: every account is already in the wanted state.", quiet)
        emit(
            [accounts.result_row(u, "already", "already in the wanted state") for u in p.already],
            output,
            RESULT_COLUMNS,
        )
        return None
    confirm(p, yes)
    ident = driver.whoami()
    incident = record_in(incident_id, ident.label, quiet)
    options = {"max_concurrency": concurrency, "show_progress": not quiet, "batch_size": batch_size}
    with RunContext.create(driver, incident, state, **options) as ctx:
        result = accounts.execute(ctx, p)
    note(f"Incident {incident.id}: journal in {state.path}", quiet)
    return result


def _check_selection(school: str | None, user_profiles: list[str] | None, all_profiles: bool) -> None:
    """A school-wide selection says which profiles: every account of a school is never taken by default."""
    from pcnctl.errors import UsageError

    if school and not user_profiles and not all_profiles:
        raise UsageError(
            f"--school {school} without --profile would take every account of the school: teachers, staff "
            "and parents too",
            hint="say which: --profile Student (repeatable), or --all-profiles if that is really meant",
        )
    if all_profiles and user_profiles:
        raise UsageError("--all-profiles and --profile exclude each other")


def _dry_run(p: Plan, cap: int | None, output: str, quiet: bool) -> None:
    """The plan is the data: on stdout in the chosen format (not also as a table on stderr), with the cap
    the real run would meet."""
    from pcnctl.ops import accounts

    note(p.summary(), quiet)
    emit(p.rows(), output, PLAN_COLUMNS)
    limit = accounts.DEFAULT_CAPS[p.op] if cap is None else cap
    if len(p.to_change) > limit:
        note(f"Note: above the cap of {limit}; the real run needs --max {len(p.to_change)}", quiet)
    note("Dry run: nothing was changed.", quiet)


@app.command("block", epilog=examples("accounts block"))
@handle_errors
def block(
    targets: TargetsArg = None,
    from_file: FromFileOpt = None,
    school: SchoolOpt = None,
    user_profile: UserProfileOpt = None,
    all_profiles: AllProfilesOpt = False,
    profile: EntProfileOpt = None,
    incident: IncidentOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    max_: MaxOpt = None,
    concurrency: ConcurrencyOpt = 32,
    batch_size: BatchOpt = 50,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Block accounts: their logins are refused and every session and token ends at once."""
    result = run_op(
        "accounts.block",
        {},
        targets=targets,
        from_file=from_file,
        school=school,
        user_profiles=user_profile,
        all_profiles=all_profiles,
        ent_profile=profile,
        incident_id=incident,
        dry_run=dry_run,
        yes=yes,
        cap=max_,
        concurrency=concurrency,
        output=output,
        quiet=quiet,
        batch_size=batch_size,
    )
    finish(result, output, quiet)


@app.command("unblock", epilog=examples("accounts unblock"))
@handle_errors
def unblock(
    targets: TargetsArg = None,
    from_file: FromFileOpt = None,
    school: SchoolOpt = None,
    user_profile: UserProfileOpt = None,
    all_profiles: AllProfilesOpt = False,
    profile: EntProfileOpt = None,
    incident: IncidentOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    max_: MaxOpt = None,
    concurrency: ConcurrencyOpt = 32,
    batch_size: BatchOpt = 50,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Unblock accounts so they can log in again."""
    result = run_op(
        "accounts.unblock",
        {},
        targets=targets,
        from_file=from_file,
        school=school,
        user_profiles=user_profile,
        all_profiles=all_profiles,
        ent_profile=profile,
        incident_id=incident,
        dry_run=dry_run,
        yes=yes,
        cap=max_,
        concurrency=concurrency,
        output=output,
        quiet=quiet,
        batch_size=batch_size,
    )
    finish(result, output, quiet)


@sessions_app.command("revoke", epilog=examples("sessions revoke"))
@handle_errors
def revoke(
    targets: TargetsArg = None,
    from_file: FromFileOpt = None,
    school: SchoolOpt = None,
    user_profile: UserProfileOpt = None,
    all_profiles: AllProfilesOpt = False,
    profile: EntProfileOpt = None,
    incident: IncidentOpt = None,
    keep_blocked: Annotated[bool, typer.Option("--keep-blocked", help="Leave the accounts blocked.")] = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    max_: MaxOpt = None,
    concurrency: ConcurrencyOpt = 32,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """End every session of the accounts.

    Edifice has no logout without block: this blocks each account (which drops its sessions, tokens and CAS
    tickets) then unblocks it, unless --keep-blocked. Accounts already blocked have no session and are left
    blocked.
    """
    note(
        "Edifice cannot end sessions without a block: each account is blocked"
        + (" (and stays blocked)." if keep_blocked else ", then unblocked."),
        quiet,
    )
    result = run_op(
        "sessions.revoke",
        {"keep_blocked": keep_blocked},
        targets=targets,
        from_file=from_file,
        school=school,
        user_profiles=user_profile,
        all_profiles=all_profiles,
        ent_profile=profile,
        incident_id=incident,
        dry_run=dry_run,
        yes=yes,
        cap=max_,
        concurrency=concurrency,
        output=output,
        quiet=quiet,
    )
    finish(result, output, quiet)


@app.command("reset-password", epilog=examples("accounts reset-password"))
@handle_errors
def reset_password(
    targets: TargetsArg = None,
    from_file: FromFileOpt = None,
    school: SchoolOpt = None,
    user_profile: UserProfileOpt = None,
    all_profiles: AllProfilesOpt = False,
    profile: EntProfileOpt = None,
    incident: IncidentOpt = None,
    mode: Annotated[
        str, typer.Option("--mode", help="force-change (next login) or erase (no password).")
    ] = "force-change",
    no_revoke: Annotated[bool, typer.Option("--no-revoke", help="Do not end live sessions first.")] = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    max_: MaxOpt = None,
    concurrency: ConcurrencyOpt = 32,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Reset passwords (force a change at next login, or erase them).

    Neither route ends live sessions on Edifice, so the sessions are revoked first (block, reset, unblock)
    unless --no-revoke; accounts already blocked stay blocked.
    """
    from pcnctl.errors import UsageError

    if mode not in ("force-change", "erase"):
        raise UsageError(f"--mode must be force-change or erase, not {mode!r}")
    result = run_op(
        "accounts.reset-password",
        {"mode": mode, "revoke": not no_revoke},
        targets=targets,
        from_file=from_file,
        school=school,
        user_profiles=user_profile,
        all_profiles=all_profiles,
        ent_profile=profile,
        incident_id=incident,
        dry_run=dry_run,
        yes=yes,
        cap=max_,
        concurrency=concurrency,
        output=output,
        quiet=quiet,
    )
    finish(result, output, quiet)


@app.command("renewal-codes", epilog=examples("accounts renewal-codes"))
@handle_errors
def renewal_codes(
    targets: TargetsArg = None,
    from_file: FromFileOpt = None,
    school: SchoolOpt = None,
    user_profile: UserProfileOpt = None,
    all_profiles: AllProfilesOpt = False,
    profile: EntProfileOpt = None,
    incident: IncidentOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also copy the codes to this file (created 0600).")
    ] = None,
    stdout: Annotated[
        bool, typer.Option("--stdout", help="Also print the codes on standard output (never by default).")
    ] = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    max_: MaxOpt = None,
    concurrency: ConcurrencyOpt = 8,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Generate one-time password renewal codes to hand to the legitimate users.

    Codes are secrets: they go to a 0600 file in the incident (and --out), never to the journal or the audit
    log, and on standard output only with --stdout (so never into a cron log by accident).
    """
    import os
    import shutil

    from pcnctl.errors import UsageError

    if out is not None and out.exists():
        raise UsageError(f"{out} exists; codes are never written over an existing file")
    if out is not None:
        check_writable(out)  # before the codes exist on the ENT
    result = run_op(
        "accounts.renewal-codes",
        {},
        targets=targets,
        from_file=from_file,
        school=school,
        user_profiles=user_profile,
        all_profiles=all_profiles,
        ent_profile=profile,
        incident_id=incident,
        dry_run=dry_run,
        yes=yes,
        cap=max_,
        concurrency=concurrency,
        output=output,
        quiet=quiet,
    )
    if result is None:
        return
    if result.codes_file is not None:
        note(f"Renewal codes written to {result.codes_file} (0600): hand them over securely", quiet)
        if out is not None:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as dst, result.codes_file.open("rb") as src:
                shutil.copyfileobj(src, dst)
            note(f"Codes also written to {out} (0600)", quiet)
    reveal = stdout
    rows: list[Row] = [
        {**r.to_row(), "code": result.codes.get(r.user.id, "") if reveal else "(in the codes file)"}
        for r in result.results
    ]
    finish(result, output, quiet, rows=rows, columns=(*RESULT_COLUMNS, "code"))


@app.command("block-profile", epilog=examples("accounts block-profile"))
@handle_errors
def block_profile(
    school: Annotated[list[str], typer.Option("--school", help="UAI (repeatable).")],
    user_profile: Annotated[
        str, typer.Option("--profile", help="Student, Teacher, Personnel, Relative, Guest.")
    ],
    unblock: Annotated[
        bool, typer.Option("--unblock", help="Lift the block (accounts blocked before stay).")
    ] = False,
    profile: EntProfileOpt = None,
    incident: IncidentOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Block (or unblock) the logins of a whole profile in schools; sessions are dropped.

    Uses PUT /directory/structure/:id/profile/block. The accounts of the profile that were already blocked
    are recorded first, and stay blocked when the block is lifted in the same incident.
    """
    from pcnctl.ops import accounts
    from pcnctl.ops.context import RunContext

    state = check_incident(incident)
    driver = get_driver(profile)
    p = accounts.plan_profile_block(driver, school, user_profile, not unblock)
    rows = p.rows()
    total = p.changes
    verb = "block" if p.block else "unblock"
    note(f"Plan: {verb} the {p.profile} profile in {len(rows)} school(s): {total} account(s) change", quiet)
    if dry_run:
        emit(rows, output, ("school", "name", "profile", "accounts", "already"))
        note("Dry run: nothing was changed.", quiet)
        return
    confirm_action(
        f"This will {verb} {total} {p.profile} accounts in {len(rows)} schools.", yes=yes, count=total
    )
    inc = record_in(incident, driver.whoami().label, quiet)
    with RunContext.create(driver, inc, state) as ctx:
        run = accounts.execute_profile_block(ctx, p)
    emit(rows, output, ("school", "name", "profile", "accounts", "already"))
    note(f"{verb} {p.profile}: done in {len(rows)} school(s); incident {inc.id}, run {run}", quiet)


@app.command("block-traces", epilog=examples("accounts block-traces"))
@handle_errors
def block_traces(
    school: Annotated[str, typer.Option("--school", help="UAI.")],
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """The ENT's own traces of profile blocks in a school (who blocked or unblocked what, when)."""
    from pcnctl.ent import directory

    driver = get_driver(profile)
    s = directory.resolve_school(driver, school)
    rows = [
        {"created": t.created, "action": t.action, "profile": t.profile, "school": s.uai, "by": t.by}
        for t in driver.block_traces(s.id)
    ]
    emit(rows, output, ("created", "action", "profile", "school", "by"))


@app.command("quarantine", epilog=examples("accounts quarantine"))
@handle_errors
def quarantine(
    account: Annotated[str, typer.Argument(help="Login or id of the hijacked account.", show_default=False)],
    since: Annotated[str, typer.Option("--since", help="How far back to look for what it sent.")] = "7d",
    reset_mode: Annotated[
        str, typer.Option("--reset-mode", help="erase (until the renewal code is used) or force-change.")
    ] = "erase",
    profile: EntProfileOpt = None,
    incident: IncidentOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """One hijacked account, end to end: block it (its sessions end), list who received what it sent,
    purge that and the sends it scheduled after preserving them as evidence, reset its password, a
    renewal code for its owner.

    It runs playbooks/compromised-account.yaml in an incident: each step journalled, resumable
    ('pcnctl playbook resume ID'), run again safely (what is done is found done), undone by
    'pcnctl rollback ID' where it can be (the block; purges and resets are listed as irreversible).
    """
    from pcnctl.cli.playbook import _execute, load_valid, show_plan
    from pcnctl.errors import UsageError
    from pcnctl.playbooks import SHIPPED, runner
    from pcnctl.timespec import parse_when

    if reset_mode not in ("erase", "force-change"):
        raise UsageError(f"--reset-mode {reset_mode!r}: erase or force-change")
    parse_when(since, future=False)  # a bad window stops here, before any request
    check_incident(incident)
    playbook = load_valid(SHIPPED / "compromised-account.yaml")
    inputs = runner.coerce_inputs(playbook, {"account": account, "since": since, "reset_mode": reset_mode})
    if dry_run:
        show_plan(playbook, inputs, profile, output)
        note("Dry run: nothing was changed.", quiet)
        return
    confirm_action(
        f"Quarantine {account}: block it, purge what it sent since {since} (evidence first), "
        "reset its password.",
        yes=yes,
    )
    _execute(playbook, inputs, incident, profile, None, True, output, quiet)
