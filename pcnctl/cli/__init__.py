"""The pcnctl command line: a thin Typer layer. Each command parses, calls one core function, renders."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from pcnctl import __version__
from pcnctl.cli import (
    accounts,
    audit,
    auth,
    directory,
    doctor,
    incident,
    lab,
    messages,
    messaging,
    playbook,
    profile,
    rollback,
)
from pcnctl.cli._common import State
from pcnctl.cli.examples import examples

app = typer.Typer(
    name="pcnctl",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pcnctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show debug logs and tracebacks (env PCNCTL_DEBUG=1).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    ent: Annotated[
        str | None,
        typer.Option(
            "--ent", "-p", help="pcnctl profile for the command (as -p after it; env PCNCTL_PROFILE)."
        ),
    ] = None,
) -> None:
    """pcnctl: incident response for Edifice ENTs (Paris Classe Numérique and others).

    Exit codes: 0 ok, 1 internal error, 2 bad input, 3 config/auth, 4 refused by the ENT, 5 ENT unavailable,
    6 partial failure, 7 refused by a safety rule, 8 playbook, 10/11 audit findings, 130 interrupted.
    """
    if ent:
        # Given before the subcommand: its own -p option reads the same variable as its default.
        os.environ["PCNCTL_PROFILE"] = ent
    if debug:
        State.debug = True
    if State.debug:
        import logging  # only with --debug: it costs start-up time every other run

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")


app.add_typer(profile.app, name="profile")
app.add_typer(auth.app, name="auth")
app.command("doctor", epilog=examples("doctor"))(doctor.doctor)
app.add_typer(directory.schools_app, name="schools")
app.add_typer(directory.users_app, name="users")
app.add_typer(accounts.app, name="accounts")
app.add_typer(accounts.sessions_app, name="sessions")
app.add_typer(messaging.app, name="messaging")
app.add_typer(messages.app, name="messages")
app.command("senders", epilog=examples("senders"))(messages.senders)
directory.schools_app.command("export", epilog=examples("schools export"))(messages.export_affected)
app.add_typer(playbook.app, name="playbook")
app.add_typer(incident.app, name="incident")
app.command("rollback", epilog=examples("rollback"))(rollback.rollback)
app.add_typer(incident.audit_app, name="audit")
incident.audit_app.command("run", epilog=examples("audit run"))(audit.run)
app.add_typer(lab.app, name="lab")


@app.command("completion", epilog=examples("completion"))
def completion(
    shell: Annotated[str, typer.Argument(help="bash, zsh or fish.", show_default=False)],
) -> None:
    """Print the shell completion script of pcnctl (commands, options, profile names)."""
    from typer._completion_shared import get_completion_script

    if shell not in ("bash", "zsh", "fish"):
        raise typer.BadParameter(f"{shell!r}: choose bash, zsh or fish", param_hint="SHELL")
    typer.echo(get_completion_script(prog_name="pcnctl", complete_var=COMPLETE_VAR, shell=shell))


COMPLETE_VAR = "_PCNCTL_COMPLETE"


def main() -> None:
    """Console-script entry point."""
    if COMPLETE_VAR in os.environ:  # the shell asks for completions: only then load that machinery
        from typer._completion_classes import completion_init

        completion_init()
    try:
        app(prog_name="pcnctl")  # also under python -m pcnctl, where argv[0] is __main__.py
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted\n")
        sys.exit(130)
