"""The pcnctl command line: a thin Typer layer. Each command parses, calls one core function, renders."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer

from pcnctl import __version__
from pcnctl.cli import (
    accounts,
    approve,
    audit,
    auth,
    directory,
    doctor,
    hunt,
    incident,
    lab,
    messages,
    messaging,
    playbook,
    profile,
    rollback,
    state,
    watch,
)
from pcnctl.cli._common import begin
from pcnctl.cli.examples import examples
from pcnctl.help import HELP


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pcnctl {__version__}")
        raise typer.Exit()


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
    from pcnctl.env import Environment

    # Read once per invocation (the tests run many in one process): the flags, else the variables.
    env = begin(Environment.read(profile=ent, debug=debug)).env
    if env.debug:
        import logging  # only with --debug: it costs start-up time every other run

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")


COMPLETE_VAR = "_PCNCTL_COMPLETE"


def completion(
    shell: Annotated[str, typer.Argument(help="bash, zsh or fish.", show_default=False)],
) -> None:
    """Print the shell completion script of pcnctl (commands, options, profile names)."""
    from typer._completion_shared import get_completion_script

    if shell not in ("bash", "zsh", "fish"):
        raise typer.BadParameter(f"{shell!r}: choose bash, zsh or fish", param_hint="SHELL")
    typer.echo(get_completion_script(prog_name="pcnctl", complete_var=COMPLETE_VAR, shell=shell))


# The command groups and the top-level commands, in the order --help lists them.
directory.schools_app.command("export", epilog=examples("schools export"))(messages.export_affected)
incident.audit_app.command("run", epilog=examples("audit run"))(audit.run)
GROUPS: dict[str, typer.Typer] = {
    "profile": profile.app,
    "auth": auth.app,
    "schools": directory.schools_app,
    "users": directory.users_app,
    "accounts": accounts.app,
    "sessions": accounts.sessions_app,
    "messaging": messaging.app,
    "messages": messages.app,
    "playbook": playbook.app,
    "incident": incident.app,
    "audit": incident.audit_app,
    "state": state.app,
    "watch": watch.app,
    "lab": lab.app,
}
COMMANDS: dict[str, Callable[..., Any]] = {
    "doctor": doctor.doctor,
    "senders": messages.senders,
    "hunt": hunt.hunt,
    "rollback": rollback.rollback,
    "approve": approve.approve,
    "completion": completion,
}
ORDER = (
    "profile",
    "auth",
    "doctor",
    "schools",
    "users",
    "accounts",
    "sessions",
    "messaging",
    "messages",
    "senders",
    "hunt",
    "playbook",
    "incident",
    "rollback",
    "approve",
    "audit",
    "state",
    "watch",
    "lab",
    "completion",
)


def build(only: str | None = None) -> typer.Typer:
    """The command line; with ``only``, just that group or command (the others as names and help).

    Typer reads the signature of every command it registers, which costs about a millisecond each: a run of
    one command (or --help) need not pay for the fifty.
    """
    cli = typer.Typer(
        name="pcnctl",
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": list(HELP)},
    )
    cli.callback()(root)
    for name in ORDER:
        wanted = only is None or only == name
        if name in GROUPS:
            group = GROUPS[name]
            # A group not asked for is listed by the top-level --help with its help, and built when asked.
            cli.add_typer(group if wanted else typer.Typer(help=group.info.help), name=name)
        elif wanted:
            cli.command(name, epilog=examples(name))(COMMANDS[name])
        else:
            cli.command(name, help=(COMMANDS[name].__doc__ or "").split("\n")[0])(_placeholder)
    return cli


def _placeholder() -> None:  # never runs: main() builds the command it is asked for
    raise typer.Exit(1)


def __getattr__(name: str) -> typer.Typer:
    """``pcnctl.cli.app``: the whole command line, built on first use (tests, documentation); ``main()``
    builds only what it runs."""
    if name == "app":
        return build()
    raise AttributeError(name)


def _asked(argv: list[str]) -> str | None:
    """The group or command named on the command line, past the top-level options."""
    words = iter(argv)
    for word in words:
        if word in ("-p", "--ent"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _completing(environ: Mapping[str, str]) -> list[str]:
    """The words a shell asking for completions has typed in full after ``pcnctl`` (bash passes them in
    ``COMP_WORDS`` up to ``COMP_CWORD``; zsh and fish in ``_TYPER_COMPLETE_ARGS``, the last one being typed
    unless the line ends with a space)."""
    import shlex

    try:
        if environ.get(COMPLETE_VAR, "").endswith("bash"):
            words = shlex.split(environ["COMP_WORDS"])
            return words[1 : int(environ.get("COMP_CWORD", len(words)))]
        line = environ.get("_TYPER_COMPLETE_ARGS", "")
        words = shlex.split(line)[1:]
    except ValueError:  # an open quote: build everything rather than guess
        return []
    return words if line.endswith(" ") else words[:-1]


def main() -> None:
    """Console-script entry point."""
    completing = COMPLETE_VAR in os.environ
    asked = _asked(_completing(os.environ) if completing else sys.argv[1:])
    # What to build: the group or command asked for; for the top-level help (or an unknown name, which click
    # reports), or a shell completing the first word, the groups' names and help only.
    only = asked if asked in ORDER else ""
    if completing:  # the shell asks for completions: only then load that machinery
        from typer._completion_classes import completion_init

        completion_init()
    try:
        build(only)(prog_name="pcnctl")  # also under python -m pcnctl, where argv[0] is __main__.py
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted\n")
        sys.exit(130)
