"""``pcnctl state``: which state store a profile uses, a team's shared store, and moving a home into it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    EntProfileOpt,
    OutputOpt,
    confirm_action,
    emit_record,
    get_profile,
    handle_errors,
    invocation,
    local_operator,
    note,
    shared_database,
    state_profile,
)
from pcnctl.cli.examples import examples

if TYPE_CHECKING:
    from pcnctl.config import Profile
    from pcnctl.records import JsonObject
    from pcnctl.state.store import SharedDatabase, StateStore

app = typer.Typer(
    help="The state store: which one a profile uses, a team's shared store, moving a home into it.",
    no_args_is_help=True,
)
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--to", help="The shared store: postgresql://ROLE@HOST/DB (default: the profile's --state)."
    ),
]


@app.command("show", epilog=examples("state show"))
@handle_errors
def show(profile: EntProfileOpt = None, output: OutputOpt = "table") -> None:
    """Say which state store a profile uses (the home's SQLite or a shared PostgreSQL) and what it holds."""
    from pcnctl.state.store import StateStore, counts

    chosen = state_profile(profile)
    store = StateStore(invocation().env.home, database=shared_database(chosen), moved_ok=True)
    try:
        record: JsonObject = {
            "profile": chosen.name if chosen else _named(profile),
            "backend": store.kind,
            "where": store.where,
            "role": store.role,
        }
        record.update(counts(store))
        record.update(_audit_counts(store))
        record["moved_to"] = store.setting("moved-to") if not store.shared else None
    finally:
        store.close()
    emit_record(record, output)


def _named(profile: str | None) -> str | None:
    """The profile a command would use, for display only (none configured is no error here)."""
    from pcnctl.errors import PcnError

    try:
        return get_profile(profile).name
    except PcnError:
        return None


def _audit_counts(store: StateStore) -> dict[str, int]:
    """The audit log's entries: the home's file, or the shared chain and the chains moved into it."""
    if not store.shared:
        return {"audit_entries": len(store.audit_log().entries()), "imported_entries": 0}
    rows = store.rows(
        "SELECT count(*) FILTER (WHERE chain = 'shared') AS shared, count(*) AS total FROM audit_log"
    )
    return {
        "audit_entries": int(rows[0]["shared"]),
        "imported_entries": int(rows[0]["total"] - rows[0]["shared"]),
    }


@app.command("migrate", epilog=examples("state migrate"))
@handle_errors
def migrate(
    to: UrlOpt = None,
    profile: EntProfileOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    output: OutputOpt = "table",
) -> None:
    """Move this home's incidents, journal, snapshots, blocks, seals and audit log into a shared store.

    Once, in one transaction: refused when the shared store already holds records of these incidents, when
    the home's audit log does not verify, or when the home was moved already. The home's own store is
    then not written again: give the profile its --state.
    """
    from pcnctl.state import transfer
    from pcnctl.state.migrate import migrate as import_legacy
    from pcnctl.state.store import StateStore, counts

    chosen = state_profile(profile) if to is None else _profile_or_none(profile)
    database = _target(to, chosen)
    source = StateStore(invocation().env.home, moved_ok=True)
    try:
        import_legacy(source)  # a 0.1 home becomes a store first
        target = StateStore(invocation().env.home, database=database, audit_key=_audit_key())
        try:
            held = dict(counts(source))
            confirm_action(
                f"Move {held['incidents']} incident(s), {held['journal']} journal record(s) and the audit "
                f"log of {source.home} into {database.url}? This home's store is not written again.",
                yes=yes,
            )
            moved = transfer.move(source, target, f"{local_operator()}:{source.home}")
            target.audit_log().append(
                actor=local_operator(),
                action="state:migrate",
                target=moved.chain,
                result=f"moved {moved.incidents} incident(s) and {moved.audit_entries} audit entries",
                detail=str(source.home),
            )
        finally:
            target.close()
    finally:
        source.close()
    emit_record(dict(moved.to_row()), output)
    if chosen is None or chosen.state != database.url:
        note(
            "Now give the profiles their shared store: "
            f"pcnctl profile add NAME ... --state {database.url} --force"
        )


def _profile_or_none(name: str | None) -> Profile | None:
    """The profile given with --to, if one is given or current: its keyring entry may hold the password."""
    from pcnctl.errors import ConfigError

    try:
        return get_profile(name)
    except ConfigError:
        if name:
            raise
        return None


def _target(to: str | None, profile: Profile | None) -> SharedDatabase:
    """The shared store to move into: --to, else the profile's --state; its password as the profile's."""
    from pcnctl.config import check_state_url
    from pcnctl.errors import UsageError
    from pcnctl.state.store import SharedDatabase

    url = to or (profile.state if profile else None)
    if not url:
        raise UsageError(
            "no shared store to move into",
            hint="give --to postgresql://ROLE@HOST/DB, or a profile with --state (nothing was changed)",
        )
    check_state_url(url)
    known = shared_database(profile) if profile is not None and profile.state else None
    return SharedDatabase(url, known.password if known else None)


def _audit_key() -> bytes | None:
    return invocation().env.audit_key


@app.command("init", epilog=examples("state init"))
@handle_errors
def init(
    to: Annotated[str, typer.Option("--to", help="The database, as its owner: postgresql://OWNER@HOST/DB.")],
    operators: Annotated[
        str, typer.Option("--operators", help="The group role of the operators (docs/team.md).")
    ] = "pcnctl_operator",
    readers: Annotated[
        str, typer.Option("--readers", help="The group role of the cron audit (read-only).")
    ] = "pcnctl_reader",
    sql: Annotated[bool, typer.Option("--sql", help="Print the SQL instead of running it.")] = False,
) -> None:
    """Create a shared store's schema and grant its roles their rights (as the database's owner), once.

    The roles themselves (one per operator, one for the cron audit) are created by the DBA: see
    docs/team.md. The owner's password comes from PGPASSWORD or ~/.pgpass.
    """
    from pcnctl.state import postgres

    if sql:
        sys.stdout.write(postgres.TABLES.lstrip() + postgres.grants(operators, readers))
        return
    postgres.init(to, None, operators, readers)
    note(f"The pcnctl schema is ready in {to}: {operators} may add records, {readers} only read")


@app.command("login", epilog=examples("state login"))
@handle_errors
def login(
    profile: EntProfileOpt = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Check the profile's shared store with its role's password, and keep that password in the keyring.

    For people at a terminal; cron and systemd give PGPASSWORD (or ~/.pgpass) instead.
    """
    from pcnctl.ent import credentials
    from pcnctl.errors import ConfigError, UsageError
    from pcnctl.state.store import SharedDatabase, StateStore

    chosen = state_profile(profile)
    if chosen is None or not chosen.state:
        raise UsageError(
            "this profile keeps its state in the home (no --state): there is no password to keep",
            hint="give a profile with a shared store: -p NAME",
        )
    if not credentials.keyring_available():
        raise ConfigError(
            "this machine has no keyring to keep the password in (nothing was asked)",
            hint="set PGPASSWORD in the environment of the command, or use ~/.pgpass (0600)",
        )
    if password_stdin:
        secret = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        secret = str(
            typer.prompt(f"Password of the state store role ({chosen.state})", hide_input=True, err=True)
        )
    else:
        raise UsageError("no terminal to ask the password at", hint="pass --password-stdin")
    StateStore(
        invocation().env.home, database=SharedDatabase(chosen.state, secret)
    ).close()  # refused: nothing kept
    credentials.store(chosen, "state_password", secret)
    note(f"The password of {chosen.state} is kept in the keyring (service pcnctl) for profile {chosen.name}")
