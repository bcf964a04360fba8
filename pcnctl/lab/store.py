"""The lab's SQLite state: directory, sessions, OAuth clients; one connection guarded by one lock.

A single connection keeps the lab simple and deterministic: every request runs its reads and writes under
``Store.lock``, so there is no write contention to reason about. The seeded state is kept in a pristine copy
(``seed.sqlite``) so tests can reset the lab between cases in milliseconds with SQLite's backup API.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS structures(
    id TEXT PRIMARY KEY, uai TEXT UNIQUE NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    city TEXT, zip_code TEXT, academy TEXT, external_id TEXT, levels TEXT);
CREATE TABLE IF NOT EXISTS users(
    id TEXT PRIMARY KEY, login TEXT UNIQUE NOT NULL, first_name TEXT, last_name TEXT,
    display_name TEXT NOT NULL, profile TEXT NOT NULL, blocked INTEGER NOT NULL DEFAULT 0,
    password TEXT, change_pw INTEGER NOT NULL DEFAULT 0, created TEXT, last_login TEXT, email TEXT);
CREATE INDEX IF NOT EXISTS users_profile ON users(profile);
CREATE TABLE IF NOT EXISTS user_structures(
    user_id TEXT NOT NULL, structure_id TEXT NOT NULL, PRIMARY KEY(user_id, structure_id));
CREATE INDEX IF NOT EXISTS user_structures_structure ON user_structures(structure_id, user_id);
CREATE TABLE IF NOT EXISTS groups(
    id TEXT PRIMARY KEY, structure_id TEXT NOT NULL, profile TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL DEFAULT 'ProfileGroup');
CREATE INDEX IF NOT EXISTS groups_structure ON groups(structure_id);
CREATE TABLE IF NOT EXISTS functions(user_id TEXT NOT NULL, code TEXT NOT NULL, structure_id TEXT);
CREATE INDEX IF NOT EXISTS functions_user ON functions(user_id);
CREATE TABLE IF NOT EXISTS profiles(name TEXT PRIMARY KEY, blocked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS oauth_clients(
    client_id TEXT PRIMARY KEY, secret TEXT NOT NULL, grant_type TEXT NOT NULL, scope TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(
    id TEXT PRIMARY KEY, user_id TEXT, kind TEXT NOT NULL, client_id TEXT, scope TEXT, xsrf TEXT,
    mfa INTEGER NOT NULL DEFAULT 0, mfa_tries INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id);
CREATE TABLE IF NOT EXISTS renewal_codes(user_id TEXT NOT NULL, code TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS block_traces(
    id TEXT PRIMARY KEY, action TEXT NOT NULL, profile TEXT NOT NULL, structure_id TEXT NOT NULL,
    created TEXT NOT NULL, owner_id TEXT, owner_name TEXT);
-- Every account-state change the lab applied, for tests and drills: who, what, when, by whom.
CREATE TABLE IF NOT EXISTS account_log(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, action TEXT NOT NULL,
    caller TEXT, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS account_log_user ON account_log(user_id);
"""


class Store:
    """The lab database: ``lab.sqlite`` in the data directory, plus the pristine ``seed.sqlite``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = data_dir / "lab.sqlite"
        self.pristine = data_dir / "seed.sqlite"
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with self.lock:
            row: sqlite3.Row | None = self.db.execute(sql, args).fetchone()
            return row

    def get(self, sql: str, *args: Any) -> sqlite3.Row:
        """Like :meth:`one` for a row that must exist (an aggregate, a row just written)."""
        row = self.one(sql, *args)
        if row is None:
            raise LookupError(sql)
        return row

    def all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def execute(self, sql: str, *args: Any) -> int:
        with self.lock:
            return self.db.execute(sql, args).rowcount

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", key)
        return row["value"] if row else default

    def snapshot_pristine(self) -> None:
        """Keep the current state as the one :meth:`reset` returns to."""
        with self.lock:
            self.pristine.unlink(missing_ok=True)
            target = sqlite3.connect(self.pristine)
            try:
                self.db.backup(target)
            finally:
                target.close()

    def reset(self) -> None:
        """Return to the seeded state (sessions, blocks and every change are dropped)."""
        with self.lock:
            source = sqlite3.connect(self.pristine)
            try:
                source.backup(self.db)
            finally:
                source.close()
