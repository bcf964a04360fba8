"""What a database gives the state store (:mod:`pcnctl.state.store`): the rows, seals and schema version
both backends share (:mod:`pcnctl.state.sqlite`, :mod:`pcnctl.state.postgres`), and the protocol each
implements, so neither backend imports the store that opens it."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

SCHEMA_VERSION = 1
EMBEDDED = "sqlite"
SHARED = "postgresql"
# The embedded store's setting that says its records were moved to a shared store (``state migrate``):
# the home is not written again, so that no operator keeps a second copy of the team's incidents.
MOVED = "moved-to"

Row = Mapping[str, Any]  # a database row by column name (the callers know each table's columns)


@dataclass(frozen=True, slots=True)
class Seal:
    """The last known state of a sealed record (the audit log, an evidence bundle)."""

    name: str
    count: int
    head: str
    at: str


class Backend(Protocol):
    """What a database gives the store: its transactions, queries, locks, seals and settings."""

    kind: str
    where: str  # what to tell an operator: the file, or the database URL (no password)

    def transaction(self) -> AbstractContextManager[None]: ...

    def execute(self, sql: str, args: tuple[Any, ...]) -> int: ...

    def rows(self, sql: str, args: tuple[Any, ...]) -> list[Row]: ...

    def lock(self, incident: str) -> AbstractContextManager[None]: ...

    def seal(self, name: str) -> Seal | None: ...

    def seals(self, prefix: str) -> list[Seal]: ...

    def set_seal(self, name: str, count: int, head: str, at: str) -> None: ...

    def setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching names that start with ``prefix`` exactly (``ESCAPE '\\'``)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# The watcher's tables (pcnctl.watch.state), in SQL both databases read: its cursors, heartbeat, detections,
# page outbox and responses. ``prefix``: the shared store's schema and a dot.
WATCH_TABLES = ("watch_cursors", "watch_heartbeats", "watch_detections", "watch_pages", "watch_responses")


def watch_tables(prefix: str = "") -> str:
    """The DDL of the watcher's tables (idempotent: ``IF NOT EXISTS``)."""
    return f"""
CREATE TABLE IF NOT EXISTS {prefix}watch_cursors (
    ent TEXT NOT NULL, name TEXT NOT NULL, position BIGINT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (ent, name)
);
CREATE TABLE IF NOT EXISTS {prefix}watch_heartbeats (
    ent TEXT PRIMARY KEY, holder TEXT NOT NULL, started_at TEXT NOT NULL, beat_at TEXT NOT NULL,
    beat_ms BIGINT NOT NULL, cycle BIGINT NOT NULL, interval_s DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {prefix}watch_detections (
    ent TEXT NOT NULL, key TEXT NOT NULL, incident TEXT NOT NULL, kind TEXT NOT NULL,
    first_ms BIGINT NOT NULL, last_ms BIGINT NOT NULL, body TEXT NOT NULL, paged BIGINT NOT NULL,
    PRIMARY KEY (ent, key, incident)
);
CREATE TABLE IF NOT EXISTS {prefix}watch_pages (
    id TEXT PRIMARY KEY, ent TEXT NOT NULL, incident TEXT NOT NULL, channel TEXT NOT NULL,
    subject TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, attempts BIGINT NOT NULL,
    created_ms BIGINT NOT NULL, sent_ms BIGINT, error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {prefix}watch_responses (
    ent TEXT NOT NULL, incident TEXT NOT NULL, policy TEXT NOT NULL, status TEXT NOT NULL,
    started_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, detail TEXT NOT NULL,
    confirmed_by TEXT NOT NULL, passes BIGINT NOT NULL, PRIMARY KEY (ent, incident)
);
"""
