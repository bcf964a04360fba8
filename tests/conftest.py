"""Shared fixtures: one lab ENT per test session (a real subprocess over real HTTP), reset between tests.

Tests run the CLI in-process with Typer's CliRunner, as a user types it, against that lab. Nothing mocks
HTTP or the database; only the environment (config path, secrets) is set per test.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends.null import Keyring as NullKeyring
from typer.testing import CliRunner

from pcnctl.cli import app
from pcnctl.lab.process import LabProcess
from tests.pg import postgres  # noqa: F401  (the session's PostgreSQL server, for every module)

T = TypeVar("T")


class Lab(LabProcess):
    """A running lab, with the helpers the tests use on top of its control endpoints."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        super().__init__(data_dir, *args, environ=os.environ)
        self.replayed: dict[str, Any] = {}  # replay() key -> what its first run returned

    @property
    def password(self) -> str:
        return str(self.info["accounts"]["user_password"])

    @property
    def mfa_code(self) -> str:
        return str(self.info["mfa_code"])

    def reset(self) -> None:
        self.control("/__lab/reset")

    def replay(self, key: str, make: Callable[[], T]) -> T:
        """The lab as ``make`` leaves a freshly reset lab, and what ``make`` returned. The first call runs
        it and saves the lab's databases as a checkpoint; later calls in the session restore that copy
        instead (a wave through the real routes costs seconds, a restore a tenth of that). ``make`` must
        depend on nothing but ``key`` and the reset lab: its result is replayed, not recomputed."""
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        if key in self.replayed:
            self.control("/__lab/reset", {"checkpoint": name})
        else:
            self.reset()
            self.replayed[key] = make()
            self.control("/__lab/checkpoint", {"name": name})
        return copy.deepcopy(self.replayed[key])

    def knobs(self, **values: Any) -> None:
        self.control("/__lab/knobs", values)

    def counters(self) -> dict[str, int]:
        return dict(self.control("/__lab/state")["counters"])

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the lab's database directly (assertions on its state; the lab stays the writer)."""
        import sqlite3

        db = sqlite3.connect(self.data_dir / "lab.sqlite", timeout=10)
        try:
            db.execute("ATTACH DATABASE ? AS conversation", (str(self.data_dir / "conversation.sqlite"),))
            return db.execute(query, args).fetchall()
        finally:
            db.close()

    def write_sql(self, query: str, *args: Any) -> None:
        """Set up a lab state that no route creates yet (e.g. a blocked profile); reset() undoes it."""
        import sqlite3

        db = sqlite3.connect(self.data_dir / "lab.sqlite", timeout=10)
        try:
            db.execute(query, args)
            db.commit()
        finally:
            db.close()


def played_wave(lab: Lab, **params: Any) -> dict[str, Any]:
    """``attack.run(lab.data_dir, **params)`` on the reset lab, played once per session and then restored
    (``Lab.replay``): the same seed plays the same wave, so the tests that share it see the same one."""
    from pcnctl.lab import attack

    key = "wave " + json.dumps(params, sort_keys=True)
    return lab.replay(key, lambda: attack.run(lab.data_dir, **params))


def start_lab(data_dir: Path, *extra: str) -> Lab:
    return Lab(data_dir, *extra)


def stop_lab(lab: Lab) -> int:
    return lab.stop()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = start_lab(tmp_path_factory.mktemp("lab"), "--seed", "small", "--random-seed", "1")
    yield lab
    assert stop_lab(lab) == 0, "the lab must stop cleanly on SIGTERM"
    assert not (lab.data_dir / "lab.json").exists()


@pytest.fixture
def lab(lab_server: Lab) -> Lab:
    lab_server.reset()
    return lab_server


class MemoryKeyring(KeyringBackend):
    """A keyring held in memory, standing in for a desktop keyring in tests."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if (service, username) not in self.entries:
            raise PasswordDeleteError(username)
        del self.entries[(service, username)]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets its own config and state dir, no secrets or width in the environment, no keyring."""
    for name in list(os.environ):
        if name.startswith("PCNCTL_"):
            monkeypatch.delenv(name)
    # Output width follows COLUMNS when set (a developer's shell, a pytest-xdist worker's 80): tests that
    # check a width set it themselves, the others see the width of output off a terminal.
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setenv("PCNCTL_CONFIG", str(tmp_path / "config" / "config.yaml"))
    monkeypatch.setenv("PCNCTL_HOME", str(tmp_path / "state"))
    # The kernel keyring is shared by every process of the user: tests opt in to it one by one.
    monkeypatch.setenv("PCNCTL_NO_KERNEL_KEYRING", "1")
    previous = keyring.get_keyring()
    keyring.set_keyring(NullKeyring())
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs ``pcnctl ARGS`` in-process, as a user types it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runner = CliRunner()
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Run:
        result = self.runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)
        return Run(result.exit_code, result.stdout, result.stderr)

    def setenv(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)

    def open_incidents(self, *ids: str) -> None:
        """Open the incidents a test records in (a command never opens one from a mistyped id)."""
        for incident in ids:
            result = self(
                "incident", "open", "--id", incident, env={"PCNCTL_PASSWORD": "", "PCNCTL_CLIENT_SECRET": ""}
            )
            assert result.exit_code == 0, result.stderr


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(monkeypatch)


@pytest.fixture
def admc(lab: Lab, cli: Cli) -> Cli:
    """A CLI with the profile ``lab`` (the lab's ADMC, cookie auth) current and its secrets in the env."""
    result = cli("profile", "add", "lab", "--url", lab.url, "--login", lab.info["accounts"]["admc"]["login"])
    assert result.exit_code == 0, result.stderr
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    return cli


def add_token_profile(cli: Cli, lab: Lab, name: str = "tok", *options: str, login: str = "admc.pcn") -> None:
    """An oauth-password profile on the lab's password client, with its secrets (and MFA code) in the env."""
    client = lab.info["oauth"]["password_client"]
    made = cli("profile", "add", name, "--url", lab.url, "--auth", "oauth-password", "--login", login,
               "--client-id", client["client_id"], *options)  # fmt: skip
    assert made.exit_code == 0, made.stderr
    cli.setenv(
        PCNCTL_PASSWORD=lab.password,
        PCNCTL_CLIENT_SECRET=client["client_secret"],
        PCNCTL_MFA_CODE=lab.mfa_code,
    )


@pytest.fixture
def adml(lab: Lab, cli: Cli) -> Cli:
    """A CLI acting as the lab's first ADML (two schools)."""
    login = lab.info["accounts"]["adml"][0]["login"]
    result = cli("profile", "add", "adml", "--url", lab.url, "--login", login)
    assert result.exit_code == 0, result.stderr
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    return cli


def driver_for(name: str) -> Any:
    """A driver for the pcnctl profile ``name`` of the test's config, in an environment read now (as a
    new command would read it)."""
    from pcnctl.cli._common import begin, get_driver
    from pcnctl.env import Environment

    begin(Environment.read())
    return get_driver(name)
