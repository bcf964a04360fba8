"""``pcnctl profile``: which ENTs pcnctl knows and how it logs in there (never the secrets)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import OutputOpt, emit, emit_record, handle_errors, note

if TYPE_CHECKING:
    from pcnctl.records import JsonObject
from pcnctl.cli.examples import examples

app = typer.Typer(help="Manage ENT profiles (URL, auth mode, login; never secrets).", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Profile name.")]


@app.command("add", epilog=examples("profile add"))
@handle_errors
def add(
    name: NameArg,
    url: Annotated[str, typer.Option("--url", help="ENT base URL, e.g. https://ent.example.fr")],
    auth: Annotated[str, typer.Option("--auth", help="cookie, oauth-password or oauth-client.")] = "cookie",
    login: Annotated[
        str | None, typer.Option("--login", help="Account login (cookie, oauth-password).")
    ] = None,
    client_id: Annotated[str | None, typer.Option("--client-id", help="OAuth2 client id.")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="OAuth2 scope to ask for.")] = None,
    ca_file: Annotated[
        str | None, typer.Option("--ca-file", help="CA certificate file for a private PKI.")
    ] = None,
    connect_timeout: Annotated[float | None, typer.Option("--connect-timeout", help="Seconds.")] = None,
    read_timeout: Annotated[float | None, typer.Option("--read-timeout", help="Seconds.")] = None,
    mailstore: Annotated[
        str | None, typer.Option("--mailstore", help="Mailstore DSN (read-only SQL).")
    ] = None,
    canary: Annotated[
        str | None, typer.Option("--canary", help="Login of a test account used to prove messaging blocks.")
    ] = None,
    canary_to: Annotated[str | None, typer.Option("--canary-to", help="Login the canary writes to.")] = None,
    approvers: Annotated[
        str | None,
        typer.Option(
            "--approvers",
            help="OpenSSH allowed-signers file (principals: ENT logins): purges and wide runs then need "
            "a second administrator's signature (pcnctl approve).",
        ),
    ] = None,
    trusted_proxies: Annotated[
        int | None,
        typer.Option(
            "--trusted-proxies",
            help="Reverse proxies in front of the ENT that append to X-Forwarded-For (default 1, its web "
            "server): the hunt, senders and doctor take the address the outermost one saw.",
        ),
    ] = None,
    use: Annotated[bool, typer.Option("--use", help="Make it the current profile.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing profile of that name.")] = False,
) -> None:
    """Add a profile. Secrets are not stored here: see 'pcnctl auth login --save' or PCNCTL_PASSWORD."""
    from pathlib import Path

    from pcnctl.config import load_config, make_profile, save_config
    from pcnctl.errors import UsageError

    config = load_config()
    if name in config.profiles and not force:
        raise UsageError(f"profile {name!r} already exists", hint="pass --force to replace it")
    for what, given in (("CA file", ca_file), ("approvers file", approvers)):
        if given and not Path(given).expanduser().is_file():
            raise UsageError(f"{what} {given} does not exist")
    profile = make_profile(
        name,
        url=url,
        auth=auth,
        login=login,
        client_id=client_id,
        scope=scope,
        ca_file=ca_file,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        mailstore=mailstore,
        canary=canary,
        canary_to=canary_to,
        approvers=approvers,
        trusted_proxies=trusted_proxies,
    )
    config.profiles[name] = profile
    if use or config.current is None:
        config.current = name
    save_config(config)
    note(f"Profile {name!r} saved in {config.path}" + (" (current)" if config.current == name else ""))


@app.command("list", epilog=examples("profile list"))
@handle_errors
def list_(output: OutputOpt = "table") -> None:
    """List profiles."""
    from pcnctl.config import load_config

    config = load_config()
    rows = [
        {"name": p.name, "current": p.name == config.current, "url": p.url, "auth": p.auth, "login": p.login}
        for p in config.profiles.values()
    ]
    emit(rows, output, ("name", "current", "url", "auth", "login"))


@app.command("show", epilog=examples("profile show"))
@handle_errors
def show(
    name: Annotated[str | None, typer.Argument(help="Profile name (default: current).")] = None,
    output: OutputOpt = "table",
) -> None:
    """Show one profile's settings and where its secrets would come from."""
    from pcnctl.config import resolve_profile
    from pcnctl.ent import credentials

    profile = resolve_profile(name)
    record: JsonObject = {"name": profile.name, **profile.to_dict()}
    for kind in credentials.needed_kinds(profile):
        found = credentials.lookup(profile, kind)
        record[f"{kind}_source"] = found.source if found else "missing"
    emit_record(record, output)


@app.command("remove", epilog=examples("profile remove"))
@handle_errors
def remove(name: NameArg) -> None:
    """Remove a profile and its keyring entries."""
    from pcnctl.config import load_config, resolve_profile, save_config
    from pcnctl.ent import credentials

    config = load_config()
    profile = resolve_profile(name, config)
    del config.profiles[name]
    if config.current == name:
        config.current = None
    save_config(config)
    removed = credentials.forget(profile)
    note(f"Profile {name!r} removed" + (f" (keyring: {', '.join(removed)} deleted)" if removed else ""))


@app.command("use", epilog=examples("profile use"))
@handle_errors
def use_(name: NameArg) -> None:
    """Make a profile the current one."""
    from pcnctl.config import load_config, resolve_profile, save_config

    config = load_config()
    resolve_profile(name, config)
    config.current = name
    save_config(config)
    note(f"Current profile: {name}")
