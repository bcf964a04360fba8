"""The state store: incidents, the journal of every run, snapshots, messaging blocks, seals, settings and
(on a shared store) the audit log's chain, keyed by the ENT of each record.

Two backends give one API (:class:`StateStore`):

* **embedded** (the default): one SQLite database (WAL) in ``$PCNCTL_HOME``, for one operator's home
  (:mod:`pcnctl.state.sqlite`);
* **shared**: a PostgreSQL database that a team's operators on several machines, the cron audit and any
  watcher use together, chosen per profile (``profile add ... --state postgresql://...``;
  :mod:`pcnctl.state.postgres`).

One database instead of files spread over the home: a record is committed whole or not at all (a kill -9
mid-write leaves no torn line), writers serialise on the database's own locks, and every query says which
ENT it is about, so a pre-production copy and production sharing one store never see each other's blocks.
Callers write their SQL with ``?`` marks; each backend gives them its own dialect's marks.

Incidents get an exclusive lock while a run changes things (:meth:`StateStore.lock`): a lock file in the
home for the embedded store, an advisory lock of the database for the shared one; either is released when
the process holding it dies. The home is created 0700 and the embedded database 0600: they name pupils.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcnctl.errors import ConfigError
from pcnctl.files import private_dir
from pcnctl.state.backend import SHARED, Backend, Row, Seal

if TYPE_CHECKING:
    from pcnctl.state.auditlog import AuditLog


def ent_key(url: str) -> str:
    """The key of an ENT: its base URL without a trailing slash (profiles of one ENT share it)."""
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class SharedDatabase:
    """Where a shared store is: its URL (never with a password) and the password given apart, if any
    (from ``PGPASSWORD`` or the keyring; libpq also reads ``~/.pgpass`` itself)."""

    url: str
    password: str | None = None

    def __repr__(self) -> str:
        return f"SharedDatabase(url={self.url!r})"


class StateStore:
    """The connection to the state database, shared by the threads of one process.

    ``database`` None opens the embedded store of ``home``; a :class:`SharedDatabase` opens the team's.
    The home stays the place of the files an operator opens (evidence, exports, renewal codes) and of the
    embedded audit log; ``moved_ok`` opens an embedded store whose records were moved (to say where)."""

    def __init__(
        self,
        home: Path,
        *,
        audit_key: bytes | None = None,
        database: SharedDatabase | None = None,
        moved_ok: bool = False,
    ) -> None:
        try:
            self.home = private_dir(home)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the state store in {home}: {exc}",
                hint="check that $PCNCTL_HOME is a writable directory of this user (nothing was changed)",
            ) from None
        self.path = home / "state.db"  # the embedded database (a shared store's home may hold one too)
        self.audit_key = audit_key
        self._audit: AuditLog | None = None
        self._db: Backend
        if database is None:
            from pcnctl.state.sqlite import SqliteBackend

            self._db = SqliteBackend(self.path, moved_ok=moved_ok)
        else:
            from pcnctl.state.postgres import PostgresBackend

            self._db = PostgresBackend(database.url, database.password)

    @property
    def kind(self) -> str:
        """``sqlite`` (embedded) or ``postgresql`` (shared)."""
        return self._db.kind

    @property
    def shared(self) -> bool:
        """Whether the store is a team's database: the audit log's chain then lives in it too."""
        return self._db.kind == SHARED

    @property
    def role(self) -> str | None:
        """The database role this session acts as on a shared store; None for the home's own."""
        return str(self.rows("SELECT current_user AS role")[0]["role"]) if self.shared else None

    @property
    def where(self) -> str:
        """The database file, or the shared database's URL (never its password)."""
        return self._db.where

    def audit_log(self) -> AuditLog:
        """The audit log, sealed in this store (and signed when a key was given): the home's file for the
        embedded store, the database's chain for a shared one. One per store, so that what it has read is
        not read again."""
        if self._audit is None:
            from pcnctl.state.auditlog import SHARED_CHAIN, AuditLog

            chain = SHARED_CHAIN if self.shared else None
            self._audit = AuditLog(self.home / "audit.log", self, self.audit_key, chain=chain)
        return self._audit

    def close(self) -> None:
        self._db.close()

    # -- queries ----------------------------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction, taken at once: two writers (two threads, processes or machines) never
        interleave inside one, and it commits whole or not at all."""
        return self._db.transaction()

    def execute(self, sql: str, *args: Any) -> int:
        """Run one statement written with ``?`` marks; returns how many rows it changed."""
        return self._db.execute(sql, args)

    def rows(self, sql: str, *args: Any) -> list[Row]:
        """The rows of one query written with ``?`` marks, each by column name."""
        return self._db.rows(sql, args)

    # -- settings and seals -----------------------------------------------------------------------------

    def setting(self, key: str) -> Any:
        """A setting (JSON). On a shared store each database role has its own: the audit's window is the
        audit role's, an operator's key setting is that operator's."""
        found = self._db.setting(key)
        return json.loads(found) if found is not None else None

    def set_setting(self, key: str, value: Any) -> None:
        self._db.set_setting(key, json.dumps(value))

    def seal(self, name: str) -> Seal | None:
        return self._db.seal(name)

    def seals(self, prefix: str) -> list[Seal]:
        """The seals whose name starts with ``prefix`` (taken literally: ``_`` and ``%`` are no wildcards)."""
        return self._db.seals(prefix)

    def set_seal(self, name: str, count: int, head: str, at: str) -> None:
        self._db.set_seal(name, count, head, at)

    # -- locks ------------------------------------------------------------------------------------------

    def lock(self, incident: str) -> AbstractContextManager[None]:
        """Hold the incident while a run changes things: a second run on it, here or on another machine
        sharing the store, refuses at once."""
        return self._db.lock(incident)


def counts(state: StateStore) -> Iterator[tuple[str, int]]:
    """How many records each table of the store holds (``pcnctl state show``)."""
    for table in ("incidents", "journal", "snapshots", "blocks"):
        yield table, int(state.rows(f"SELECT count(*) AS n FROM {table}")[0]["n"])
    active = state.rows("SELECT count(*) AS n FROM blocks WHERE status = 'active'")
    yield "blocks_active", int(active[0]["n"])
