"""``pcnctl profile``: which ENTs pcnctl knows and how it logs in there (never the secrets)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    OutputOpt,
    audit_key_source,
    emit,
    emit_record,
    get_config,
    get_profile,
    get_state,
    handle_errors,
    invocation,
    note,
)

if TYPE_CHECKING:
    from pcnctl.config import Profile
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
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            help="Keep incidents, journals, blocks and the audit log in a team's PostgreSQL database "
            "(postgresql://ROLE@HOST/DB, no password: PGPASSWORD, ~/.pgpass or 'pcnctl state login'), "
            "shared with the other operators and the cron audit (default: the home's SQLite; docs/team.md).",
        ),
    ] = None,
    page_to: Annotated[
        str | None,
        typer.Option("--page-to", help="On-call e-mail addresses the watcher pages (comma-separated)."),
    ] = None,
    page_from: Annotated[str | None, typer.Option("--page-from", help="Sender address of the pages.")] = None,
    smtp: Annotated[
        str | None,
        typer.Option(
            "--smtp",
            help="SMTP server of the pages: smtp://[user@]host[:port], smtps://... or smtp+starttls://... "
            "(the password from PCNCTL_SMTP_PASSWORD or the keyring).",
        ),
    ] = None,
    page_webhook: Annotated[
        bool,
        typer.Option(
            "--page-webhook",
            help='Also page a chat webhook ({"text": ...}); its URL from PCNCTL_WEBHOOK_URL or the keyring.',
        ),
    ] = False,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy", help="Signed response policy the watcher may run unattended (docs/watch.md)."
        ),
    ] = None,
    use: Annotated[bool, typer.Option("--use", help="Make it the current profile.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing profile of that name.")] = False,
    audit_key: Annotated[
        bool,
        typer.Option(
            "--audit-key",
            help="Sign this home's audit log with a new random key kept in the keyring (never in the "
            "config file), unless it is signed already.",
        ),
    ] = False,
) -> None:
    """Add a profile. Secrets are not stored here: see 'pcnctl auth login --save' or PCNCTL_PASSWORD."""
    from pathlib import Path

    from pcnctl.config import make_profile, save_config
    from pcnctl.ent import credentials
    from pcnctl.errors import ConfigError, UsageError

    config = get_config()
    if name in config.profiles and not force:
        raise UsageError(f"profile {name!r} already exists", hint="pass --force to replace it")
    if audit_key and state:
        raise UsageError(
            "--audit-key keeps a key for this home, but a shared state store's audit log is signed with the "
            "team's key (nothing was changed)",
            hint="drop --audit-key and give every operator and the cron audit the same PCNCTL_AUDIT_KEY, "
            "from the team's vault (docs/team.md)",
        )
    if audit_key and not audit_key_source() and not credentials.keyring_available():
        raise ConfigError(
            "this machine has no keyring to keep an audit key in (nothing was changed)",
            hint="drop --audit-key and set PCNCTL_AUDIT_KEY in the environment of every pcnctl command, "
            "from a secret kept outside the home (a systemd credential, a vault)",
        )
    for what, given in (("CA file", ca_file), ("approvers file", approvers), ("response policy", policy)):
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
        state=state,
        page_to=page_to,
        page_from=page_from,
        smtp=smtp,
        page_webhook=page_webhook or None,
        policy=policy,
    )
    previous = config.profiles.get(name)
    config.profiles[name] = profile
    if use or config.current is None:
        config.current = name
    save_config(config)
    note(f"Profile {name!r} saved in {config.path}" + (" (current)" if config.current == name else ""))
    if previous is not None:
        _forget_replaced(previous, profile)
    if profile.state:
        note(
            f"Its state is kept in the shared store {profile.state}: its audit log is signed only when "
            "every operator and the cron audit have the team's PCNCTL_AUDIT_KEY (docs/team.md)"
        )
        return
    _offer_audit_key(name, audit_key)


def _offer_audit_key(name: str, wanted: bool) -> None:
    """Sign the home's audit log when asked to, or say that it is not signed and how to sign it: without a
    key, entries forged with a recomputed chain are caught only by the seal in the state store."""
    from pcnctl.ent import credentials

    source = audit_key_source()
    if source is not None:
        if wanted:
            note(f"The audit log is signed already (key from {source}); nothing was changed")
        return
    if not wanted:
        note(
            f"The audit log in {invocation().env.home} is not signed: add --audit-key to keep a signing key "
            "in the keyring (never in the config file), or set PCNCTL_AUDIT_KEY"
        )
        return
    invocation().profile = name  # the home's store, which this profile uses
    state = get_state()
    credentials.create_audit_key(state.home)
    state.set_setting(credentials.AUDIT_KEY_SETTING, "keyring")
    note(
        f"Audit key created for {state.home}: kept in the keyring (service pcnctl), never in the config "
        "file; the audit log's next entries are signed with it"
    )


def _forget_replaced(previous: Profile, profile: Profile) -> None:
    """A replaced profile's cached session is dropped (it was opened for the old settings), and so are its
    stored secrets when the profile now names another ENT, account or mode: they were that account's."""
    from pcnctl.config import replaced_account
    from pcnctl.ent import credentials

    invocation().secrets.drop_session(previous)
    if replaced_account(previous, profile):
        removed = credentials.forget(previous, ("password", "client_secret"))
        if removed:
            note(f"Keyring: {', '.join(removed)} of the previous account deleted")


@app.command("list", epilog=examples("profile list"))
@handle_errors
def list_(output: OutputOpt = "table") -> None:
    """List profiles."""

    config = get_config()
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
    from pcnctl.ent import credentials

    profile = get_profile(name)
    record: JsonObject = {"name": profile.name, **profile.to_dict()}
    for kind in credentials.needed_kinds(profile):
        found = invocation().secrets.lookup(profile, kind)
        record[f"{kind}_source"] = found.source if found else "missing"
    if profile.state:
        found = invocation().secrets.lookup(profile, "state_password")
        record["state_password_source"] = found.source if found else "~/.pgpass or none"
    emit_record(record, output)


@app.command("remove", epilog=examples("profile remove"))
@handle_errors
def remove(name: NameArg) -> None:
    """Remove a profile and its keyring entries."""
    from pcnctl.config import resolve_profile, save_config
    from pcnctl.ent import credentials

    config = get_config()
    profile = resolve_profile(name or invocation().env.profile, config)
    del config.profiles[name]
    if config.current == name:
        config.current = None
    save_config(config)
    removed = credentials.forget(profile)
    invocation().secrets.drop_session(profile)
    note(f"Profile {name!r} removed" + (f" (keyring: {', '.join(removed)} deleted)" if removed else ""))


@app.command("use", epilog=examples("profile use"))
@handle_errors
def use_(name: NameArg) -> None:
    """Make a profile the current one."""
    from pcnctl.config import resolve_profile, save_config

    config = get_config()
    resolve_profile(name or invocation().env.profile, config)
    config.current = name
    save_config(config)
    note(f"Current profile: {name}")
