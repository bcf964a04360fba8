"""``pcnctl watch``: follow an ENT every few seconds, page the on-call team, run a pre-approved response."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    EntProfileOpt,
    OutputOpt,
    QuietOpt,
    emit,
    emit_record,
    get_config,
    get_driver,
    get_profile,
    get_state,
    handle_errors,
    invocation,
    local_operator,
    note,
    warn,
)
from pcnctl.cli.examples import examples

if TYPE_CHECKING:
    from pcnctl.config import Profile
    from pcnctl.watch.paging import Channels
    from pcnctl.watch.policy import Policy
    from pcnctl.watch.watcher import CycleReport, WatchSettings

app = typer.Typer(
    help="The watcher: follow the ENT, page the on-call team, run a pre-approved response.",
    no_args_is_help=True,
)
policy_app = typer.Typer(
    help="Response policies: write, sign (two administrators), check.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")

# Secrets of the channels (pcnctl.ent.credentials.ENV_VARS): the environment first (systemd's
# EnvironmentFile), then the keyring.
CHANNEL_SECRETS = ("smtp-password", "webhook-url")


def _secret(profile: Profile, kind: str) -> str | None:
    found = invocation().secrets.lookup(profile, kind)
    return found.value if found else None


def channels_of(profile: Profile) -> Channels:
    """The profile's on-call channels with their secrets, read here at the edge."""
    from pcnctl.errors import ConfigError
    from pcnctl.watch.paging import Channels, Smtp

    webhook = _secret(profile, "webhook-url") if profile.page_webhook else None
    if profile.page_webhook and not webhook:
        raise ConfigError(
            f"profile {profile.name!r} pages a webhook but its URL is not set",
            hint="set PCNCTL_WEBHOOK_URL (the service's environment file), or run: pcnctl watch secret "
            "webhook-url",
        )
    smtp = Smtp.parse(profile.smtp) if profile.smtp else None
    password = _secret(profile, "smtp-password") if smtp is not None and smtp.user else None
    if smtp is not None and smtp.user and not password:
        raise ConfigError(
            f"profile {profile.name!r} logs in to {smtp.host} as {smtp.user} but has no SMTP password",
            hint="set PCNCTL_SMTP_PASSWORD, or: pcnctl watch secret smtp-password",
        )
    to = tuple(a.strip() for a in (profile.page_to or "").split(",") if a.strip())
    return Channels(to, profile.page_from or "", smtp, password, webhook)


def _policy(profile: Profile, login: str) -> tuple[Policy | None, list[str], str]:
    """The profile's policy when it lets the watcher act, else why not (said in every page)."""
    from pcnctl.errors import PcnError
    from pcnctl.watch import policy as core

    if not profile.policy:
        return None, [], ""
    try:
        found = core.load(Path(profile.policy))
        signers = core.check(found, profile.url, profile.approvers, login, datetime.now(UTC))
    except PcnError as exc:
        warn(f"the response policy will not be run: {exc.message}")
        return (
            None,
            [],
            f"la politique de réponse n'est pas utilisable ({exc.message}) : un opérateur doit agir",
        )
    return found, signers, ""


def _settings(interval: float) -> tuple[WatchSettings, tuple[tuple[str, str], ...]]:
    from pcnctl.reports.audit.checks import DEFAULT_WATCHLIST, load_watchlist
    from pcnctl.watch.detectors import Settings
    from pcnctl.watch.watcher import WatchSettings

    audit = get_config().audit
    keys = ("mass_messages", "mass_recipients", "mass_rate", "similarity")
    detectors = Settings(**{k: audit[k] for k in keys if k in audit})
    patterns = load_watchlist(Path(audit["watchlist"])) if audit.get("watchlist") else DEFAULT_WATCHLIST
    return WatchSettings(interval_s=interval, detectors=detectors), patterns


@app.command("run", epilog=examples("watch run"))
@handle_errors
def run(
    profile: EntProfileOpt = None,
    interval: Annotated[
        float,
        typer.Option("--interval", min=1.0, max=300.0, help="Seconds between two looks at a healthy ENT."),
    ] = 5.0,
    cycles: Annotated[
        int | None, typer.Option("--cycles", min=1, help="Stop after this many cycles (tests, a first try).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="First start on this ENT only: read from this time (default: a minute ago)."
        ),
    ] = None,
    playbook: Annotated[
        Path, typer.Option("--playbook", help="The playbook the pages tell the operator to run.")
    ] = Path("playbooks/bomb-threat-wave.yaml"),
    second_look: Annotated[
        float,
        typer.Option(
            "--second-look",
            min=0,
            help="Seconds after its start when the pre-approved response runs once more (its hunt then sees "
            "the logins made meanwhile); 0: never.",
        ),
    ] = 30.0,
    quiet: QuietOpt = False,
) -> None:
    """Follow the ENT every few seconds until stopped: detect, page, respond within a signed policy.

    One watcher per ENT (a second one exits 7). Stop it with Ctrl-C or SIGTERM (systemd): the cycle ends, the
    heartbeat says stopped. See docs/watch.md.
    """
    from dataclasses import replace

    from pcnctl.forensics.mailstore import open_mailstore
    from pcnctl.timespec import parse_when
    from pcnctl.watch.watcher import Watcher

    chosen = get_profile(profile)
    settings, patterns = _settings(interval)
    if since is not None:
        start = parse_when(since, future=False)
        back = int((datetime.now(UTC) - start).total_seconds() * 1000)
        settings = replace(settings, look_back_ms=max(back, 0))
    settings = replace(settings, second_look_ms=int(second_look * 1000) or None)
    channels = channels_of(chosen)
    if not channels.names:
        warn(
            f"profile {chosen.name!r} names no on-call channel (--page-to and --smtp, --page-webhook): "
            "nobody is paged"
        )
    state = get_state()
    driver = get_driver(chosen.name)
    found, signers, problem = _policy(chosen, driver.whoami().login or chosen.login or "")
    store = open_mailstore(chosen) if chosen.mailstore else None
    watcher = Watcher(
        driver,
        store,
        state,
        patterns,
        channels,
        settings,
        found,
        signers,
        problem,
        str(playbook),
        holder=f"{local_operator()} pid {os.getpid()}",
    )
    note(f"Watching {chosen.url} every {interval:g} s ({', '.join(channels.names) or 'no channel'})", quiet)
    import signal

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # systemd's SIGTERM ends the cycle as Ctrl-C does: journalled, resumable

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        watcher.run(cycles, on_cycle=lambda r: _tell(r, quiet))
    except KeyboardInterrupt:
        note("Watcher stopped.", quiet)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if store is not None:
            store.close()


def _tell(report: CycleReport, quiet: bool) -> None:
    if report.detections or report.response or report.status != "ok":
        found = ", ".join(sorted({d.kind for d in report.detections})) or "nothing new"
        what = f"cycle {report.cycle}: {found}; {len(report.pages)} page(s) sent; {report.status}"
        if report.incident:
            what += f"; incident {report.incident}"
        if report.response is not None:
            what += f"; response {report.response.response.status}"
        note(what)
    else:
        note(
            f"cycle {report.cycle}: {report.events} event(s), {report.messages} message(s), nothing found",
            quiet,
        )


@app.command("status", epilog=examples("watch status"))
@handle_errors
def status(profile: EntProfileOpt = None, output: OutputOpt = "table") -> None:
    """The watcher's heartbeat, its responses and its pages on the profile's ENT (no ENT call)."""
    import time

    from pcnctl.state.store import ent_key
    from pcnctl.watch.state import WatchState, heartbeat

    chosen = get_profile(profile)
    state = get_state()
    ent = ent_key(chosen.url)
    beat = heartbeat(state, ent)
    now = int(time.time() * 1000)
    watch = WatchState(state, ent)
    record: dict[str, str | int | float | bool | None] = {
        "ent": ent,
        "watcher": beat.holder if beat else None,
        "status": beat.status if beat else "never ran",
        "last_beat": beat.beat_at if beat else None,
        "age_s": round(beat.age_s(now), 1) if beat else None,
        "stale": beat.stale(now) if beat else None,
        "cycles": beat.cycle if beat else 0,
        "responses": "; ".join(f"{r.incident}: {r.status}" for r in watch.responses()) or "none",
        "pages_sent": sum(1 for p in watch.pages() if p.status == "sent"),
        "pages_pending": sum(1 for p in watch.pages() if p.status != "sent"),
    }
    emit_record(record, output)


@app.command("confirm", epilog=examples("watch confirm"))
@handle_errors
def confirm(
    incident: Annotated[str, typer.Argument(help="The incident of the watcher's response.")],
    profile: EntProfileOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Keep what the watcher's pre-approved response blocked past its expiry (an operator's decision)."""
    from pcnctl.state.store import ent_key
    from pcnctl.watch.response import confirm as core
    from pcnctl.watch.state import WatchState

    chosen = get_profile(profile)
    state = get_state()
    kept = core(WatchState(state, ent_key(chosen.url)), incident, local_operator())
    state.audit_log().append(
        actor=local_operator(),
        auth="local",
        profile=chosen.name,
        url=chosen.url,
        incident=incident,
        run="",
        action="watch:confirm",
        target=incident,
        result="confirmed",
    )
    note(f"Incident {incident}: the response's blocks are kept (confirmed by {kept.confirmed_by}).", quiet)


@app.command("secret", epilog=examples("watch secret"))
@handle_errors
def secret(
    kind: Annotated[str, typer.Argument(help="smtp-password or webhook-url.", show_default=False)],
    profile: EntProfileOpt = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read it from standard input.")] = False,
) -> None:
    """Keep the SMTP password or the webhook URL in the keyring (never in a file; or set the variable)."""
    import sys

    from pcnctl.ent import credentials
    from pcnctl.errors import ConfigError, UsageError

    if kind not in CHANNEL_SECRETS:
        raise UsageError(f"{kind!r}: choose smtp-password or webhook-url")
    chosen = get_profile(profile)
    if not credentials.keyring_available():
        variable = credentials.ENV_VARS[kind]
        raise ConfigError("this machine has no keyring", hint=f"set {variable} in the environment")
    value = sys.stdin.readline().strip() if stdin else typer.prompt(kind, hide_input=True)
    if not value:
        raise UsageError(f"an empty {kind} was given: nothing was kept")
    import keyring

    keyring.set_password("pcnctl", f"{chosen.name}:{kind}", value)
    note(f"{kind} kept in the keyring for profile {chosen.name!r}")


@policy_app.command("new", epilog=examples("watch policy new"))
@handle_errors
def policy_new(
    out: Annotated[Path, typer.Option("--out", help="The policy file to write.")],
    playbook: Annotated[Path, typer.Option("--playbook", help="The reviewed playbook the watcher may run.")],
    accounts: Annotated[int, typer.Option("--accounts", min=0, help="Most accounts it may block.")],
    schools: Annotated[
        int, typer.Option("--schools", min=0, help="Most schools whose pupils' messaging it may cut.")
    ],
    messages: Annotated[int, typer.Option("--messages", min=0, help="Most messages it may purge.")] = 5000,
    expire_hours: Annotated[
        float, typer.Option("--expire-hours", help="Hours before its blocks are lifted unless confirmed.")
    ] = 8.0,
    valid_until: Annotated[
        str, typer.Option("--valid-until", help="When the policy stops being valid.")
    ] = "30d",
    trigger: Annotated[
        list[str] | None, typer.Option("--trigger", help="Detection kind that starts it (repeat).")
    ] = None,
    input_: Annotated[
        list[str] | None, typer.Option("--input", help="Playbook input NAME=VALUE (repeat).")
    ] = None,
    profile: EntProfileOpt = None,
) -> None:
    """Write a response policy for the profile's ENT; two administrators then sign it."""
    from pcnctl.errors import UsageError
    from pcnctl.files import write_private
    from pcnctl.timespec import parse_when
    from pcnctl.watch import policy as core

    chosen = get_profile(profile)
    if out.exists():
        raise UsageError(f"{out} exists: a signed policy is never rewritten", hint="write a new file")
    if not playbook.is_file():
        raise UsageError(f"no playbook at {playbook}")
    inputs = dict(i.split("=", 1) for i in (input_ or []) if "=" in i)
    if len(inputs) != len(input_ or []):
        raise UsageError("--input takes NAME=VALUE")
    limits = core.Limits(accounts, schools, messages, expire_hours)
    text = core.render(
        chosen.url,
        playbook.resolve(),
        limits,
        parse_when(valid_until),
        trigger or ("watchlist", "template"),
        dict(inputs),
    )
    write_private(out, text)
    core.load(out)  # what was written reads back, or the options were wrong
    note(
        f"Policy written to {out}: two administrators sign it with 'pcnctl watch policy sign {out} --key KEY'"
    )


@policy_app.command("sign", epilog=examples("watch policy sign"))
@handle_errors
def policy_sign(
    file: Annotated[Path, typer.Argument(help="The policy file.", show_default=False)],
    key: Annotated[Path, typer.Option("--key", help="Your SSH private key.")] = Path("~/.ssh/id_ed25519"),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Sign without showing and asking.")] = False,
) -> None:
    """Sign a response policy with your SSH key (its bytes: the ENT, the playbook, the limits)."""
    from pcnctl.cli._common import confirm_action
    from pcnctl.watch import policy as core

    found = core.load(file)
    typer.echo(found.raw.decode("utf-8"), err=True)
    confirm_action(
        f"Let the watcher run {found.playbook.name} on {found.ent} unattended, within these limits?", yes=yes
    )
    note(f"Signed: {core.sign(file, key.expanduser())}")


@policy_app.command("check", epilog=examples("watch policy check"))
@handle_errors
def policy_check(
    file: Annotated[Path | None, typer.Argument(help="The policy (default: the profile's).")] = None,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Check a policy as the watcher will: its ENT, validity, playbook digest, two signers (exit 7 if not)."""
    from pcnctl.errors import UsageError
    from pcnctl.watch import policy as core

    chosen = get_profile(profile)
    path = file or (Path(chosen.policy) if chosen.policy else None)
    if path is None:
        raise UsageError(
            f"profile {chosen.name!r} has no policy", hint="give the file, or profile add --policy"
        )
    found = core.load(path)
    signers = core.check(found, chosen.url, chosen.approvers, chosen.login or "", datetime.now(UTC))
    limits = found.limits
    rows: list[dict[str, str | int | float | bool | None]] = [
        {
            "policy": str(path),
            "ent": found.ent,
            "playbook": str(found.playbook),
            "signed_by": ", ".join(signers),
            "accounts": limits.accounts,
            "schools": limits.schools,
            "messages": limits.messages,
            "expire_hours": limits.expire_hours,
            "valid_until": found.valid_until.isoformat(),
            "triggers": ", ".join(found.triggers),
        }
    ]
    emit(rows, output, tuple(rows[0]))
