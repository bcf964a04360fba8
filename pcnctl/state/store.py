"""The local state store: one SQLite database (WAL) in ``$PCNCTL_HOME``, keyed by the ENT of each record.

It holds incidents, the journal of every run (plans, items, ends), the snapshots taken before a change,
the messaging blocks in force and the seals of the audit log and the evidence bundles. One database
instead of JSON files spread over the home: a record is committed whole or not at all (a kill -9 mid-write
leaves no torn line), two pcnctl processes serialise on SQLite's own locks, and every query says which ENT
it is about, so a pre-production copy and production sharing one home never see each other's blocks.

The home is created 0700 and the database 0600: it names pupils. Incidents get an exclusive lock file
while a run changes things (:meth:`StateStore.lock`), released by the kernel if the process dies.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcnctl.config import private_dir
from pcnctl.errors import ConfigError, RefusedError

if TYPE_CHECKING:
    from pcnctl.state.auditlog import AuditLog

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    closed_at TEXT,
    profiles TEXT NOT NULL DEFAULT '[]',
    ents TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident TEXT NOT NULL REFERENCES incidents(id),
    ent TEXT NOT NULL,
    run TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_incident ON journal (incident, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    run TEXT PRIMARY KEY,
    incident TEXT NOT NULL REFERENCES incidents(id),
    ent TEXT NOT NULL,
    body TEXT NOT NULL,
    digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks (
    id TEXT PRIMARY KEY,
    ent TEXT NOT NULL,
    incident TEXT NOT NULL,
    run TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_ent ON blocks (ent, status);
CREATE TABLE IF NOT EXISTS seals (
    name TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    head TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def ent_key(url: str) -> str:
    """The key of an ENT: its base URL without a trailing slash (profiles of one ENT share it)."""
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class Seal:
    """The last known state of a sealed record (the audit log, an evidence bundle)."""

    name: str
    count: int
    head: str
    at: str


class StateStore:
    """The connection to the state database, shared by the threads of one process."""

    def __init__(self, home: Path, *, audit_key: bytes | None = None) -> None:
        try:
            self._open(home, audit_key)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the state store in {home}: {exc}",
                hint="check that $PCNCTL_HOME is a writable directory of this user (nothing was changed)",
            ) from None

    def _open(self, home: Path, audit_key: bytes | None) -> None:
        self.home = private_dir(home)
        self.audit_key = audit_key
        self._audit: AuditLog | None = None
        self.path = home / "state.db"
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed record survives the process being killed; a power cut may lose
        # the last ones, which the journal's resume re-reads from the ENT anyway.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            self._db.close()
            raise RefusedError(
                f"{self.path} was written by a newer pcnctl (state version {version})",
                hint="upgrade pcnctl; nothing was changed",
            )
        if version < SCHEMA_VERSION:
            self._db.executescript(_SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                side.chmod(0o600)

    def audit_log(self) -> AuditLog:
        """The home's audit log, sealed in this store (and signed when a key was given); one per store,
        so that what it has read is not read again."""
        if self._audit is None:
            from pcnctl.state.auditlog import AuditLog

            self._audit = AuditLog(self.home / "audit.log", self, self.audit_key)
        return self._audit

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- queries ----------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the database lock is taken at once, not on the first
        write, so two processes never deadlock on an upgrade)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    # -- settings and seals -----------------------------------------------------------------------------

    def setting(self, key: str) -> Any:
        found = self.rows("SELECT value FROM settings WHERE key = ?", key)
        return json.loads(found[0]["value"]) if found else None

    def set_setting(self, key: str, value: Any) -> None:
        self.execute(
            "INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            key,
            json.dumps(value),
        )

    def seal(self, name: str) -> Seal | None:
        found = self.rows("SELECT * FROM seals WHERE name = ?", name)
        return Seal(**dict(found[0])) if found else None

    def seals(self, prefix: str) -> list[Seal]:
        return [Seal(**dict(r)) for r in self.rows("SELECT * FROM seals WHERE name LIKE ?", prefix + "%")]

    def set_seal(self, name: str, count: int, head: str, at: str) -> None:
        self.execute(
            "INSERT INTO seals VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "count = excluded.count, head = excluded.head, at = excluded.at",
            name,
            count,
            head,
            at,
        )

    # -- locks ------------------------------------------------------------------------------------------

    @contextmanager
    def lock(self, incident: str) -> Iterator[None]:
        """Hold the incident while a run changes things: a second run on it refuses at once."""
        path = private_dir(self.home / "locks") / f"{incident}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
                raise RefusedError(
                    f"incident {incident} is in use by another pcnctl run (pid {holder})",
                    hint="wait for it to finish, or resume later: pcnctl incident resume " + incident,
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)
