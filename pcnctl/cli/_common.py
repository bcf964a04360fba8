"""What every command shares: option aliases, the error handler, the driver factory, output helpers.

Heavy modules (requests, keyring, yaml, tabulate, sqlite3) are imported inside functions only, so
``pcnctl --help`` stays fast; a startup test checks it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from pcnctl.errors import ExitCode, PcnError

if TYPE_CHECKING:
    from pcnctl.config import Config, Profile
    from pcnctl.ent.credentials import Secrets
    from pcnctl.ent.edifice.driver import EdificeDriver
    from pcnctl.env import Environment
    from pcnctl.ops.operation import Confirmation, Verdict
    from pcnctl.ops.runner import Opening
    from pcnctl.ops.timing import Mark
    from pcnctl.records import JsonValue
    from pcnctl.state.incidents import Incident
    from pcnctl.state.store import SharedDatabase, StateStore

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Invocation:
    """One run of the command line: its environment, read once at its start, the secrets it finds or is
    given, and the state store it opened (once)."""

    env: Environment
    secrets: Secrets
    store: StateStore | None = None
    profile: str | None = None  # the pcnctl profile the command was given (-p / --ent), if any
    planned: Mark | None = None  # when the ENT was first reached, logged in: a run's planning starts there

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


_CURRENT: ContextVar[Invocation | None] = ContextVar("pcnctl_invocation", default=None)


def begin(env: Environment) -> Invocation:
    """Start an invocation (the root callback, at every run: tests run many in one process)."""
    from pcnctl.ent.credentials import Secrets

    previous = _CURRENT.get()
    if previous is not None:
        previous.close()
    now = Invocation(env, Secrets(env))
    _CURRENT.set(now)
    return now


def invocation() -> Invocation:
    """The current invocation; outside a command line run (a test calling a helper), one over the process
    environment as it is now."""
    from pcnctl.env import Environment

    return _CURRENT.get() or begin(Environment.read())


def get_state() -> StateStore:
    """The state store of this invocation, opened once: the shared store of the profile in use when it
    names one (``state:``), else the home's own; a 0.1 home is migrated into its own on first use.
    ``PCNCTL_AUDIT_KEY``, when set, signs the audit log (an HMAC per entry); else the key ``profile add
    --audit-key`` kept in the keyring for this home, when the store says there is one."""
    now = invocation()
    if now.store is None:
        from pcnctl.ent import credentials
        from pcnctl.state.migrate import migrate
        from pcnctl.state.store import StateStore

        key = now.env.audit_key
        database = shared_database(state_profile())
        store = now.store = StateStore(now.env.home, audit_key=key, database=database)
        if not key and store.setting(credentials.AUDIT_KEY_SETTING) == "keyring":
            store.audit_key = credentials.load_audit_key(store.home)
            if store.audit_key is None:
                warn(
                    "the audit log is signed with a key kept in the keyring, which is not reachable "
                    "here: set PCNCTL_AUDIT_KEY, or this command's entries go unsigned"
                )
        if store.shared:
            _check_team_key(store)
        elif migrate(store):
            note(f"Imported the incidents of {store.home} into its state store (state.db)")
    return now.store


def state_profile(name: str | None = None) -> Profile | None:
    """The profile whose state store a command uses: the one named (``-p``, ``PCNCTL_PROFILE``), else the
    current one; None when no profile keeps its state out of the home (nothing to choose: the home's).
    With several profiles and none chosen, they must agree on where their state is."""
    from pcnctl.config import load_config, resolve_profile
    from pcnctl.errors import ConfigError

    now = invocation()
    config = load_config(now.env.config)
    if not any(p.state for p in config.profiles.values()):
        return None
    chosen = name or now.profile or now.env.profile
    try:
        return resolve_profile(chosen, config)
    except ConfigError:
        if chosen:
            raise
        places = sorted({p.state or "the home" for p in config.profiles.values()})
        if len(places) == 1:
            return next(iter(config.profiles.values()))
        raise ConfigError(
            f"the profiles keep their state in different stores ({', '.join(places)}) and none is chosen",
            hint="pass -p NAME, set PCNCTL_PROFILE, or run 'pcnctl profile use NAME'",
        ) from None


def shared_database(profile: Profile | None) -> SharedDatabase | None:
    """The shared store a profile names, with its role's password from ``PGPASSWORD`` or the keyring
    (else libpq's ``~/.pgpass``); None for the home's own store."""
    if profile is None or not profile.state:
        return None
    from pcnctl.state.store import SharedDatabase

    found = invocation().secrets.lookup(profile, "state_password")
    return SharedDatabase(profile.state, found.value if found else None)


def _check_team_key(store: StateStore) -> None:
    """On a shared store every writer signs with the team's key or none does: an entry without a MAC
    after signed ones reads as forged. Say so before this command writes unsigned after signed ones."""
    if store.audit_key is not None:
        return
    last = store.rows("SELECT body FROM audit_log WHERE chain = 'shared' ORDER BY seq DESC LIMIT 1")
    if last and '"mac":' in str(last[0]["body"]):
        warn(
            "the shared audit log is signed with the team's key, which this command does not have: set "
            "PCNCTL_AUDIT_KEY (docs/team.md), or the entries it writes read as forged"
        )


def audit_key_source() -> str | None:
    """Where the key that signs this home's audit log comes from (``PCNCTL_AUDIT_KEY``, ``keyring``), or
    None when the entries written here would not be signed. The state store is not opened for this."""
    from pcnctl.ent import credentials

    env = invocation().env
    if env.audit_key:
        return "PCNCTL_AUDIT_KEY"
    return "keyring" if credentials.load_audit_key(env.home) is not None else None


def _profile_names(incomplete: str) -> list[str]:
    """Shell completion of pcnctl profile names, from the config file (read only when completing)."""
    from pcnctl.config import load_config
    from pcnctl.errors import PcnError

    try:
        return [name for name in load_config(invocation().env.config).profiles if name.startswith(incomplete)]
    except PcnError:
        return []


def _chosen_profile(value: str | None) -> str | None:
    """Remember the profile a command was given: its state store is that profile's (get_state)."""
    invocation().profile = value
    return value


ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--ent",
        "--ent-profile",
        "-p",
        help="pcnctl profile (ENT connection) to use (default: the current one).",
        autocompletion=_profile_names,
        callback=_chosen_profile,
    ),
]
# One name for each meaning, on every command: -p / --ent is the pcnctl profile (which ENT, which account),
# given before or after the subcommand; --profile is always an Edifice profile (Student, Teacher...).
EntProfileOpt = ProfileOpt
OutputOpt = Annotated[
    str,
    typer.Option("--output", "-o", help="Output format: table, json, jsonl, csv or markdown."),
]
STEP_COLUMNS = ("step", "op", "status", "summary")  # a playbook's steps, as every playbook command shows them
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only data on stdout; no notes on stderr.")]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        help="Upper bound of parallel calls (default: the operation's own, docs/architecture.md).",
        min=1,
        max=128,
    ),
]


def check_format(fmt: str) -> str:
    from pcnctl.output import FORMATS

    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"{fmt!r} is not a format; choose from {', '.join(FORMATS)}", param_hint="-o"
        )
    return fmt


def handle_errors(fn: F) -> F:
    """Turn pcnctl errors into ``Error:``/``Hint:`` on stderr and the documented exit code.

    A traceback is shown only with ``--debug`` (or ``PCNCTL_DEBUG=1``): locals and frames may hold secrets.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PcnError as exc:
            _traceback()
            _print_error(exc.message, exc.hint)
            raise typer.Exit(int(exc.exit_code)) from None
        except (KeyboardInterrupt, typer.Abort):
            # Ctrl-C anywhere, at a confirmation prompt too (click turns it into Abort there).
            _print_error("interrupted", None)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except BrokenPipeError:
            # The reader (head, less) went away: not an error. Point stdout at /dev/null so the
            # interpreter's final flush does not raise again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(int(ExitCode.OK)) from None
        except (typer.Exit, typer.BadParameter):
            raise
        except Exception as exc:
            _traceback()
            _print_error(
                f"internal error: {type(exc).__name__}: {exc}",
                "this is a bug in pcnctl; rerun with --debug for the traceback and report it",
            )
            raise typer.Exit(int(ExitCode.ERROR)) from None

    return wrapper  # type: ignore[return-value]


def _traceback() -> None:
    """With --debug, the traceback goes to stderr; the exit code stays the documented one."""
    if invocation().env.debug:
        import traceback

        traceback.print_exc(file=sys.stderr)


def _print_error(message: str, hint: str | None) -> None:
    sys.stderr.write(f"Error: {message}\n")
    if hint:
        sys.stderr.write(f"Hint: {hint}\n")


def confirm_action(question: str, *, yes: bool, count: int | None = None) -> None:
    """Go ahead only with --yes, or an answer typed at a terminal; with ``count``, the operator must type it.

    Raises RefusedError (exit 7) otherwise: unattended runs must say --yes explicitly.
    """
    from pcnctl.errors import RefusedError

    if yes:
        return
    if not sys.stdin.isatty():
        raise RefusedError(
            "not confirmed: this run needs --yes when no one is at a terminal",
            hint="check the plan with --dry-run first; nothing was changed",
        )
    if count is not None:
        typed = typer.prompt(f"{question} Type {count} to confirm", err=True)
        if typed.strip() != str(count):
            raise RefusedError("the typed count did not match; nothing was changed")
    elif not typer.confirm(question, err=True):
        raise RefusedError("not confirmed; nothing was changed")


def mfa_prompt(channel: str | None) -> str | None:
    """Ask the operator for the MFA code when a terminal is attached; None otherwise."""
    if not sys.stdin.isatty():
        return None
    return str(typer.prompt(f"MFA code (sent by {channel or 'your second factor'})", err=True))


def check_incident(incident_id: str | None) -> StateStore:
    """The state store, once a named incident is known to exist and be open: a mistyped ``--incident``
    stops here, before any request."""
    from pcnctl.state.incidents import open_incident

    state = get_state()
    if incident_id is not None:
        open_incident(state, incident_id)
    return state


def record_in(incident_id: str | None, operator: str, quiet: bool, *, title: str = "") -> Incident:
    """The incident a run records in: the one named, or a new one, said on stderr either way."""
    from pcnctl.state.incidents import open_incident

    incident, created = open_incident(get_state(), incident_id, title=title, operator=operator)
    if created:
        note(f"Opened incident {incident.id} ({incident.path})", quiet)
    else:
        note(f"Recording in incident {incident.id}", quiet)
    return incident


def ent_of(name: str | None) -> str:
    """The ENT a profile names (its base URL), without logging in: local state is read per ENT."""
    from pcnctl.state.store import ent_key

    return ent_key(get_profile(name).url)


def get_profile(name: str | None) -> Profile:
    """The pcnctl profile asked for: the command's ``-p``, else the one given before the subcommand or in
    ``$PCNCTL_PROFILE`` (the environment read at the start), else the current one."""
    from pcnctl.config import load_config, resolve_profile

    env = invocation().env
    return resolve_profile(name or env.profile, load_config(env.config))


def get_config() -> Config:
    from pcnctl.config import load_config

    return load_config(invocation().env.config)


def open_driver(profile: Profile, *, use_cache: bool = True) -> EdificeDriver:
    from pcnctl.ent.edifice.driver import EdificeDriver
    from pcnctl.ops.timing import Mark

    now = invocation()
    driver = EdificeDriver.open(
        profile, now.secrets, mfa_prompt=mfa_prompt, use_cache=use_cache, on_retry=note
    )
    now.planned = now.planned or Mark.now(driver.http.stats)
    return driver


def get_driver(name: str | None) -> EdificeDriver:
    """Resolve the profile and open an authenticated driver for it."""
    return open_driver(get_profile(name))


def emit(
    rows: Iterable[Mapping[str, JsonValue]], fmt: str, columns: Sequence[str], *, title: str | None = None
) -> int:
    from pcnctl.output import render

    count = render(rows, check_format(fmt), columns, title=title, width=terminal_width())
    if count == 0 and fmt == "table":
        note("no results")
    return count


def terminal_width() -> int | None:
    """The terminal's columns (or ``$COLUMNS``), as read when the command started; None off a terminal."""
    return invocation().env.terminal.columns


def emit_record(record: Mapping[str, JsonValue], fmt: str) -> None:
    from pcnctl.output import render_record

    render_record(record, check_format(fmt))


def note(text: str, quiet: bool = False) -> None:
    if not quiet:
        sys.stderr.write(text + "\n")


def warn(text: str) -> None:
    sys.stderr.write(f"Warning: {text}\n")


def check_writable(path: Path, *, directory: bool = False) -> None:
    """Refuse, before anything is sent, an output path that cannot be written (a report lost after the
    work is done, or renewal codes generated on the ENT and then not saved, cost more than an early error).

    The check writes for real (permissions alone say nothing to root): a new file is created and removed,
    an existing one opened for appending, a new directory's nearest existing parent gets a probe file.
    """
    from pcnctl.errors import UsageError

    target = path
    if directory:
        target = (
            next((p for p in (path, *path.parents) if p.exists()), Path("/")) / f".pcnctl-probe-{os.getpid()}"
        )
    elif path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name")
    existed = target.exists()
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | (0 if existed else os.O_CREAT | os.O_EXCL), 0o600)
        os.close(fd)
        if not existed:
            target.unlink()
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror.lower() if exc.strerror else exc}",
            hint="choose another output path; nothing was done",
        ) from None


def local_operator() -> str:
    """Who opens an incident at this terminal: the local account and the machine (never "unknown")."""
    import getpass
    import socket

    try:
        user = getpass.getuser()  # LOGNAME, USER... then the password database (cron, sudo -u)
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


# -- runs: the door a command opens, and how a run's verdict is told ------------------------------------


def canary_driver(profile: Profile) -> Callable[[], EdificeDriver] | None:
    """How to open a session as the profile's canary account, when one is configured with a password."""
    if not profile.canary:
        return None
    from pcnctl.config import make_profile

    secrets = invocation().secrets
    secret = secrets.lookup(profile, "canary_password")
    if secret is None:
        warn(
            f"canary {profile.canary} configured but PCNCTL_CANARY_PASSWORD is not set: "
            "real-send check skipped"
        )
        return None
    canary = make_profile(
        f"{profile.name}.canary", url=profile.url, login=profile.canary, ca_file=profile.ca_file
    )
    secrets.provide(canary, "password", secret.value)
    return lambda: open_driver(canary, use_cache=False)


def context_options(driver: EdificeDriver, quiet: bool, **options: Any) -> dict[str, Any]:
    """What every run context of a command gets: progress unless quiet, the profile's canary (so a block
    is verified the same way whichever door finishes it), and the command's own options."""
    return {
        "show_progress": not quiet,
        "canary": canary_driver(driver.profile),
        "canary_to": driver.profile.canary_to,
        **{k: v for k, v in options.items() if v is not None},
    }


def command_door(
    state: StateStore,
    incident_id: str | None,
    driver: EdificeDriver,
    *,
    yes: bool,
    quiet: bool,
    title: str = "",
    **options: Any,
) -> Opening:
    """A command's door: the operator confirms (``--yes`` or typed), then the incident is opened (the one
    named, or a new one, said on stderr) and the run context created with its lock."""
    from pcnctl.ops.context import RunContext
    from pcnctl.ops.runner import Opening

    def opening() -> RunContext:
        incident = record_in(incident_id, driver.whoami().label, quiet, title=title)
        return RunContext.create(driver, incident, state, **context_options(driver, quiet, **options))

    def confirm(c: Confirmation) -> None:
        confirm_action(c.question, yes=yes, count=c.count)

    return Opening(confirm, opening, planned=invocation().planned)


def tell(verdict: Verdict, output: str, quiet: bool, *, rows: bool = True, check: bool = True) -> None:
    """A run's verdict as every command tells it: its rows on stdout, its follow-ups and what stays open on
    stderr, its pace, and (``check``) an exit code that is the verdict's: a failure is never exit 0."""
    from pcnctl.ops.runner import failed

    if rows and verdict.rows:
        emit(verdict.rows, output, verdict.columns)
    for line in verdict.notes:
        note(line, quiet)
    for line in verdict.open:
        warn(f"still open: {line}")
    r = verdict.report
    pace = (
        f" in {r.elapsed:.1f} s ({r.calls} calls, peak concurrency {r.peak_concurrency}, {r.throttled} "
        f"throttled, {r.retries} retried)"
        if r is not None
        else ""
    )
    note(f"{verdict.summary}{pace}" + (f"; run {verdict.run}" if verdict.run else ""), quiet and verdict.ok)
    if invocation().env.debug and verdict.run:
        note(f"time: {verdict.timing.text()}")
    if check and not verdict.ok:
        raise failed(verdict)
    if not verdict.ok:
        warn(f"{verdict.summary}" + (f" ({verdict.hint})" if verdict.hint else ""))
