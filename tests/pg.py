"""The real PostgreSQL server the mailstore and shared-state tests use (see pcnctl.lab.pgserver), one per
test session (``postgres``, shared through conftest.py), and a team's database on it.

Without PostgreSQL these tests are skipped, unless ``PCNCTL_REQUIRE_POSTGRES=1`` (set by .ci/run), where its
absence is an error: CI must exercise the production path.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pcnctl.lab.pgserver import MissingPostgres, Postgres
from pcnctl.lab.pgserver import start as start_server

# The roles of docs/team.md: the schema's owner, the two group roles, two operators and the cron audit.
TEAM_ROLES = (
    "CREATE ROLE pcnctl_owner LOGIN",
    "CREATE ROLE pcnctl_operator NOLOGIN",
    "CREATE ROLE pcnctl_reader NOLOGIN",
    "CREATE ROLE marie LOGIN IN ROLE pcnctl_operator",
    "CREATE ROLE paul LOGIN IN ROLE pcnctl_operator",
    "CREATE ROLE pcnctl_audit LOGIN IN ROLE pcnctl_reader",
)


def start(root: Path) -> Postgres:
    try:
        return start_server(root)
    except MissingPostgres as exc:
        if os.environ.get("PCNCTL_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"{exc} (CI installs them)")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One server for the whole session: each test that needs a clean database creates its own."""
    root = Path(tempfile.mkdtemp(prefix="pcnctl-pg-"))
    server = start(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class TeamDatabase:
    """A database of the session's server made for one test, with the team's roles (docs/team.md)."""

    server: Postgres
    name: str

    def url(self, role: str) -> str:
        """The URL a profile's ``--state`` gives for ``role`` (the server trusts its Unix socket)."""
        return f"postgresql://{role}@/{self.name}?host={self.server.socket_dir}&port={self.server.port}"

    def superuser(self) -> Any:
        """A session as the server's superuser: what a DBA (or an intruder with its rights) can do."""
        import psycopg

        return psycopg.connect(self.server.dsn(self.name), autocommit=True)

    def rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the store as the superuser (assertions on what pcnctl wrote)."""
        with self.superuser() as conn:
            return list(conn.execute(query, args).fetchall())

    def run(self, query: str, *args: Any) -> None:
        """Change the store as the superuser (tampering, which no pcnctl role is granted)."""
        with self.superuser() as conn:
            conn.execute(query, args)


def team_database(server: Postgres) -> TeamDatabase:
    """A new database owned by ``pcnctl_owner`` (its roles created on first use: they are the cluster's)."""
    import psycopg

    name = f"team_{secrets.token_hex(4)}"
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'pcnctl_owner'").fetchall():
            for statement in TEAM_ROLES:
                conn.execute(statement)
        conn.execute(f"CREATE DATABASE {name} OWNER pcnctl_owner")
    return TeamDatabase(server, name)
