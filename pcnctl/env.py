"""Everything pcnctl takes from the process it runs in, read once at the edge and passed down.

The command line builds one :class:`Environment` when it starts (the drill and the benchmarks build their
own); the core never reads ``os.environ``. What it holds: where the config file and the home are, which
pcnctl profile is asked for, whether to debug, the secrets given by variable (for cron and CI), whether
sessions may be cached and where, and what the terminal can show.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

# The variables that carry secrets: read once here, never logged, never written anywhere.
SECRET_VARS = ("PCNCTL_PASSWORD", "PCNCTL_CLIENT_SECRET", "PCNCTL_CANARY_PASSWORD", "PCNCTL_AUDIT_KEY",
               "PCNCTL_MFA_CODE", "PGPASSWORD", "PCNCTL_SMTP_PASSWORD", "PCNCTL_WEBHOOK_URL")  # fmt: skip


@dataclass(frozen=True)
class Terminal:
    """What the streams are: whether a person can answer, and how wide and colourful output may be."""

    interactive: bool = False  # stdin is a terminal: prompts and typed confirmations are possible
    stdout_tty: bool = False
    stderr_tty: bool = False
    columns: int | None = None  # $COLUMNS, else the terminal's width; None off a terminal
    color: bool = False  # a terminal, and NO_COLOR unset

    @classmethod
    def of(cls, environ: Mapping[str, str], stdin: IO[str], stdout: IO[str], stderr: IO[str]) -> Terminal:
        import shutil

        def tty(stream: IO[str]) -> bool:
            try:
                return stream.isatty()
            except (AttributeError, ValueError):
                return False

        given = environ.get("COLUMNS", "")
        columns = int(given) if given.isdigit() else None
        if columns is None and (tty(stdout) or tty(stderr)):
            columns = shutil.get_terminal_size((80, 24)).columns
        color = tty(stderr) and "NO_COLOR" not in environ and environ.get("TERM") != "dumb"
        return cls(tty(stdin), tty(stdout), tty(stderr), columns, color)


@dataclass(frozen=True)
class Environment:
    """One invocation's settings from its surroundings (see the module docstring)."""

    config: Path
    home: Path
    profile: str | None = None
    debug: bool = False
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    session_cache: bool = True  # PCNCTL_NO_SESSION_CACHE unset
    kernel_keyring: bool = True  # PCNCTL_NO_KERNEL_KEYRING unset
    terminal: Terminal = field(default_factory=Terminal)

    def secret(self, name: str) -> str | None:
        value = self.secrets.get(name)
        return value or None

    @property
    def audit_key(self) -> bytes | None:
        key = self.secret("PCNCTL_AUDIT_KEY")
        return key.encode() if key else None

    @property
    def mfa_code(self) -> str | None:
        return self.secret("PCNCTL_MFA_CODE")

    def with_profile(self, name: str | None) -> Environment:
        """The same environment, asking for another pcnctl profile (a subcommand's ``-p``)."""
        return replace(self, profile=name or self.profile)

    @classmethod
    def read(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        profile: str | None = None,
        debug: bool = False,
        streams: tuple[IO[str], IO[str], IO[str]] | None = None,
    ) -> Environment:
        """Read the process environment once (only the command line's start, a drill, a benchmark)."""
        env = os.environ if environ is None else environ
        stdin, stdout, stderr = streams or (sys.stdin, sys.stdout, sys.stderr)
        return cls(
            config=config_path(env),
            home=state_dir(env),
            profile=profile or env.get("PCNCTL_PROFILE") or None,
            debug=debug or bool(env.get("PCNCTL_DEBUG")),
            secrets={k: env[k] for k in SECRET_VARS if env.get(k)},
            session_cache=not env.get("PCNCTL_NO_SESSION_CACHE"),
            kernel_keyring=not env.get("PCNCTL_NO_KERNEL_KEYRING"),
            terminal=Terminal.of(env, stdin, stdout, stderr),
        )


def config_path(environ: Mapping[str, str]) -> Path:
    """Where the config file lives: ``$PCNCTL_CONFIG``, else the XDG config dir."""
    explicit = environ.get("PCNCTL_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pcnctl" / "config.yaml"


def state_dir(environ: Mapping[str, str]) -> Path:
    """Where incidents, journals and the audit log live: ``$PCNCTL_HOME``, else the XDG state dir."""
    explicit = environ.get("PCNCTL_HOME")
    if explicit:
        return Path(explicit).expanduser()
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pcnctl"


def child_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a lab or a wave runs in: the caller's, without pcnctl's own variables (its secrets
    and its home are the operator's, not the lab's)."""
    return {k: v for k, v in environ.items() if not k.startswith("PCNCTL_")}


def pcnctl_command(*args: str) -> list[str]:
    """The installed pcnctl as a child process, whatever the working directory: ``-P`` keeps a folder named
    ``pcnctl`` in it from shadowing the package."""
    return [sys.executable, "-P", "-m", "pcnctl", *args]
