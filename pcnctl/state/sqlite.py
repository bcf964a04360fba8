"""The embedded state store: one SQLite database (WAL) in the home, ``$PCNCTL_HOME/state.db`` (0600).

Two pcnctl processes of the home serialise on SQLite's own locks; a write transaction is ``BEGIN
IMMEDIATE`` (the database lock taken at once, not on the first write, so two processes never deadlock on
an upgrade). An incident's lock is an exclusive ``flock`` on ``locks/<ID>.lock`` in the home, released by
the kernel if the process dies: right on one machine, which is all an embedded store serves.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pcnctl.errors import ConfigError, RefusedError
from pcnctl.files import private_dir
from pcnctl.state.backend import EMBEDDED, MOVED, SCHEMA_VERSION, Row, Seal, like_prefix, watch_tables

SCHEMA = """
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


class SqliteBackend:
    """The home's database file, opened once per process and shared by its threads."""

    kind = EMBEDDED

    def __init__(self, path: Path, *, moved_ok: bool = False) -> None:
        self.path = path
        self.where = str(path)
        try:
            self._open()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the state store in {path.parent}: {exc}",
                hint="check that $PCNCTL_HOME is a writable directory of this user (nothing was changed)",
            ) from None
        moved = None if moved_ok else self.setting(MOVED)
        if moved is not None:
            self.close()
            raise ConfigError(
                f"the records of {path} were moved to the shared state store {json.loads(moved)}",
                hint="use that store: give the profile its --state (pcnctl profile add NAME ... --state URL "
                "--force); nothing was changed here",
            )

    def _open(self) -> None:
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
            self._db.executescript(SCHEMA + watch_tables() + f"PRAGMA user_version={SCHEMA_VERSION};")
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                side.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def execute(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def rows(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args)]

    def setting(self, key: str) -> str | None:
        found = self.rows("SELECT value FROM settings WHERE key = ?", (key,))
        return str(found[0]["value"]) if found else None

    def set_setting(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def seal(self, name: str) -> Seal | None:
        found = self.rows("SELECT name, count, head, at FROM seals WHERE name = ?", (name,))
        return Seal(**found[0]) if found else None

    def seals(self, prefix: str) -> list[Seal]:
        sql = "SELECT name, count, head, at FROM seals WHERE name LIKE ? ESCAPE '\\' ORDER BY name"
        return [Seal(**r) for r in self.rows(sql, (like_prefix(prefix),))]

    def set_seal(self, name: str, count: int, head: str, at: str) -> None:
        self.execute(
            "INSERT INTO seals VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "count = excluded.count, head = excluded.head, at = excluded.at",
            (name, count, head, at),
        )

    @contextmanager
    def lock(self, incident: str) -> Iterator[None]:
        path = private_dir(self.path.parent / "locks") / f"{incident}.lock"
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
