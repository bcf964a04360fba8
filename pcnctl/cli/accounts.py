"""``pcnctl accounts`` and ``pcnctl sessions``: cut compromised accounts, safely and in bulk."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    ConcurrencyOpt,
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
    tell,
    terminal_width,
)
from pcnctl.cli.examples import examples

if TYPE_CHECKING:
    from pcnctl.ops.accounts import Plan
    from pcnctl.ops.operation import Verdict
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
BatchOpt = Annotated[
    int,
    typer.Option(
        "--batch-size",
        help="ADMC: accounts per PUT /auth/users/block call; 0 = one call each.",
        min=0,
        max=500,
    ),
]

PLAN_COLUMNS = ("school", "profile", "to_change", "already")


def show_plan(summary: str, rows: list[Row], columns: tuple[str, ...], quiet: bool) -> None:
    """The plan on stderr before the confirmation: its summary line and its table."""
    from pcnctl.output import render

    if quiet:
        return
    sys.stderr.write(summary + "\n")
    render(rows, "table", columns, stream=sys.stderr, width=terminal_width())


def run_op(
    op_name: str,
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
    concurrency: int | None,
    output: str,
    quiet: bool,
    batch_size: int = 50,
    all_profiles: bool = False,
) -> Verdict | None:
    """The shared flow of the account commands: resolve, scope and plan here; cap, confirmation, run and
    verdict in the one sequence (pcnctl.ops.runner). None when only the plan was shown."""
    from pcnctl.cli._common import command_door
    from pcnctl.ops import accounts, runner

    _check_selection(school, user_profiles, all_profiles)
    state = check_incident(incident_id)
    driver = get_driver(ent_profile)
    op = accounts.OPERATIONS[op_name]
    p = accounts.prepare(
        driver,
        op_name,
        targets or [],
        params,
        from_file=from_file,
        school=school,
        profiles=user_profiles or [],
        max_concurrency=concurrency or 16,
        progress=not quiet,
    )
    if dry_run:
        _dry_run(p, op.cap.default if cap is None else cap, output, quiet)
        return None
    show_plan(p.summary(), p.rows(), PLAN_COLUMNS, quiet)
    door = command_door(
        state, incident_id, driver, yes=yes, quiet=quiet, max_concurrency=concurrency, batch_size=batch_size
    )
    verdict = runner.run(op, p, door, cap=cap)
    if verdict.status == "nothing":
        note("Nothing to do: every account is already in the wanted state.", quiet)
        verdict.rows = [accounts.result_row(u, "already", "already in the wanted state") for u in p.already]
        verdict.columns = accounts.RESULT_COLUMNS
    return verdict


def finish(verdict: Verdict | None, output: str, quiet: bool) -> None:
    """Per-account results and the summary; a partial failure exits 6 with the file to retry."""
    if verdict is None:
        return
    tell(verdict, output, quiet)
    if verdict.ok and verdict.run:
        note(f"Incident journal: run {verdict.run}", quiet)


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


def _dry_run(p: Plan, limit: int | None, output: str, quiet: bool) -> None:
    """The plan is the data: on stdout in the chosen format (not also as a table on stderr), with the cap
    the real run would meet."""
    note(p.summary(), quiet)
    emit(p.rows(), output, PLAN_COLUMNS)
    if limit is not None and len(p.to_change) > limit:
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
    concurrency: ConcurrencyOpt = None,
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
    concurrency: ConcurrencyOpt = None,
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
    concurrency: ConcurrencyOpt = None,
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
    concurrency: ConcurrencyOpt = None,
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
    concurrency: ConcurrencyOpt = None,
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
    codes = _codes(result)
    if codes:
        codes_file = Path(result.files["codes"])
        note(f"Renewal codes written to {codes_file} (0600): hand them over securely", quiet)
        if out is not None:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as dst, codes_file.open("rb") as src:
                shutil.copyfileobj(src, dst)
            note(f"Codes also written to {out} (0600)", quiet)
    hidden = "(in the codes file)"
    result.rows = [{**r, "code": codes.get(str(r["id"]), "") if stdout else hidden} for r in result.rows]
    result.columns = (*result.columns, "code")
    finish(result, output, quiet)


def _codes(verdict: Verdict) -> dict[str, str]:
    """The codes a run generated, read back from its 0600 file (they are never in the journal)."""
    import csv

    path = verdict.files.get("codes")
    if not path:
        return {}
    with Path(path).open(encoding="utf-8", newline="") as fh:
        return {row["id"]: row["code"] for row in csv.DictReader(fh)}


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
    from pcnctl.cli._common import command_door
    from pcnctl.ops import profile_block, runner

    state = check_incident(incident)
    driver = get_driver(profile)
    p = profile_block.plan_profile_block(driver, school, user_profile, not unblock)
    op = profile_block.OPERATIONS[profile_block.LIFT if unblock else profile_block.BLOCK]
    note(op.summary(p), quiet)
    if dry_run:
        emit(p.rows(), output, op.columns)
        note("Dry run: nothing was changed.", quiet)
        return
    verdict = runner.run(op, p, command_door(state, incident, driver, yes=yes, quiet=quiet))
    tell(verdict, output, quiet)


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
    from pcnctl.cli._playbooks import execute, load_valid, show_plan
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
    execute(playbook, inputs, incident, profile, None, True, output, quiet)
