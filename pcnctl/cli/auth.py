"""``pcnctl auth``: log in (with MFA), show the session, log out."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    OutputOpt,
    ProfileOpt,
    emit_record,
    get_profile,
    handle_errors,
    invocation,
    note,
    open_driver,
)
from pcnctl.cli.examples import examples

if TYPE_CHECKING:
    from pcnctl.records import JsonObject

app = typer.Typer(help="Log in to the ENT, show the session, log out.", no_args_is_help=True)


@app.command("login", epilog=examples("auth login"))
@handle_errors
def login(
    profile: ProfileOpt = None,
    save: Annotated[bool, typer.Option("--save", help="Store the typed secret(s) in the keyring.")] = False,
    secret_stdin: Annotated[
        bool, typer.Option("--secret-stdin", help="Read the password (or client secret) from standard input.")
    ] = False,
    output: OutputOpt = "table",
) -> None:
    """Log in, pass MFA if asked, show who the session is, and cache the session for the next commands.

    The only command that caches a session (keyring, else the kernel keyring; never a file): the others
    reuse it while the ENT names the same user, else log in with the secret. Secrets come from
    PCNCTL_PASSWORD / PCNCTL_CLIENT_SECRET, the keyring, standard input (--secret-stdin) or a hidden
    prompt; never from a command-line value.
    """
    from pcnctl.ent import credentials

    prof = get_profile(profile)
    secrets = invocation().secrets
    kinds = credentials.needed_kinds(prof)
    if save and not credentials.keyring_available():
        from pcnctl.errors import ConfigError

        raise ConfigError(
            "this machine has no keyring to save the secret in (nothing was asked or sent)",
            hint="log in without --save: the session is cached in memory for the shift when the kernel "
            "keyring is there; for cron, set the secret in the job's environment",
        )
    if secret_stdin:
        value = sys.stdin.readline().rstrip("\n")
        if not value:
            from pcnctl.errors import UsageError

            raise UsageError("--secret-stdin given but standard input was empty")
        secrets.provide(prof, kinds[0], value)
    for kind in kinds:
        found = secrets.lookup(prof, kind)
        if found is None and sys.stdin.isatty():
            label = "Password" if kind == "password" else "OAuth2 client secret"
            value = typer.prompt(
                f"{label} for {prof.login or prof.client_id} on {prof.url}", hide_input=True, err=True
            )
            secrets.provide(prof, kind, value)
            found = secrets.lookup(prof, kind)
        if save and found is not None and found.source == "prompt":
            credentials.store(prof, kind, found.value)
            note(f"{kind} saved in the keyring")
    secrets.drop_session(prof)
    driver = open_driver(prof, use_cache=False)  # a new session, opened with the secret just given
    ident = driver.whoami()
    driver.pass_second_factor()  # now, so that the cached session needs no code for the rest of the shift
    where = {
        "keyring": "; session cached in the keyring",
        "kernel": "; session cached in the kernel keyring (memory only) for "
        f"{credentials.SESSION_TTL_S // 3600} h",
    }
    if driver.auth.remember(driver.http, ident.user_id):
        cached = where[secrets.session_store()]
    elif not credentials.cacheable(prof):
        cached = "; a service token is not cached (each command asks for its own)"
    else:
        cached = "; session not cached (no keyring)"
    note(f"Logged in to {prof.url} as {ident.label}{cached}")
    emit_record(ident.to_row(), output)


@app.command("status", epilog=examples("auth status"))
@handle_errors
def status(profile: ProfileOpt = None, output: OutputOpt = "table") -> None:
    """Show the profile, where its secrets come from, and whether the session works."""
    from pcnctl.ent import credentials
    from pcnctl.errors import PcnError

    prof = get_profile(profile)
    secrets = invocation().secrets
    record: JsonObject = {"profile": prof.name, "url": prof.url, "auth": prof.auth}
    for kind in credentials.needed_kinds(prof):
        found = secrets.lookup(prof, kind)
        record[f"{kind}_source"] = found.source if found else "missing"
    record["cached_session"] = secrets.load_session(prof) is not None
    try:
        ident = open_driver(prof).whoami()
        record.update({"session": "valid", **{f"identity_{k}": v for k, v in ident.to_row().items()}})
    except PcnError as exc:
        record.update({"session": "unavailable", "reason": exc.message})
        emit_record(record, output)
        raise
    emit_record(record, output)


@app.command("logout", epilog=examples("auth logout"))
@handle_errors
def logout(
    profile: ProfileOpt = None,
    forget: Annotated[
        bool, typer.Option("--forget", help="Also delete the stored secrets from the keyring.")
    ] = False,
) -> None:
    """Close the cached session on the ENT and forget it."""
    from pcnctl.ent import credentials
    from pcnctl.ent.edifice.auth import EdificeAuth
    from pcnctl.ent.edifice.driver import EdificeDriver

    prof = get_profile(profile)
    http = EdificeDriver.client(prof)
    auth = EdificeAuth(prof, invocation().secrets)
    http.authenticator = auth
    if auth.resume(http):  # only a session the ENT still names as this profile's user is closed there
        auth.logout(http)
        note(f"Session closed on {prof.url}")
    else:
        note("No cached session")
    if forget:
        removed = credentials.forget(prof, ("password", "client_secret"))
        note(f"Keyring entries deleted: {', '.join(removed) or 'none'}")
