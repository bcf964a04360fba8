"""The shared state store: a team's PostgreSQL database, for operators on several machines, the cron audit
and any long-running watcher.

Everything lives in the schema ``pcnctl`` (created once by its owner, :func:`init`): the tables of the
embedded store, the audit log's chain (``audit_log``: one row per entry, the entry's JSON line as written)
and the record of the homes moved into it (``imports``). What differs from the embedded store:

* **Who may do what is the database's**: the operators' role may add records and change the few fields
  that change (an incident closed, a block lifted), never remove one; the journal, the snapshots, the
  seals and the audit chain take inserts only (:func:`grants`). The cron audit's role reads everything and
  writes only its own settings (its audit window). Every appended row also says which database role wrote
  it (``written_by``, its default, which neither the operators' roles nor the audit's may set).
* **Seals are appended**, never updated: a record's seal is its newest row.
* **Settings are per database role** (a row policy): the audit's window is the audit's, an operator's is
  the operator's.
* **Locks are advisory locks of the database**: an incident's is held by the session of the run, so a
  process that is killed (or a machine that is cut off, once TCP keepalives give up on it) releases it;
  a write transaction takes one lock for the whole store, as SQLite's ``BEGIN IMMEDIATE`` does.

The password is never in the URL: it comes from ``PGPASSWORD`` or the keyring (given here), or from libpq's
own ``~/.pgpass``. Statements run in autocommit, each its own short transaction, unless a
:meth:`PostgresBackend.transaction` groups them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from pcnctl.config import check_state_url
from pcnctl.errors import ConfigError, RefusedError, TransportError, UsageError
from pcnctl.state.backend import SCHEMA_VERSION, SHARED, WATCH_TABLES, Row, Seal, like_prefix, watch_tables

SCHEMA = "pcnctl"
OPERATORS = "pcnctl_operator"
READERS = "pcnctl_reader"
# Advisory lock keys (two 32-bit integers, a key space of its own): the store's write transactions, and
# one per incident (its id hashed into the second integer).
_TRANSACTIONS = (0x70636E63, 0)
_INCIDENTS = 0x70636E64
# Sessions: find the store's schema, wait at most 30 s for a lock (as the embedded store's busy timeout),
# and have the server probe an idle connection so that a dead client's locks do not outlive it long.
_OPTIONS = (
    f"-c search_path={SCHEMA} -c lock_timeout=30s -c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 "
    "-c tcp_keepalives_count=3"
)

TABLES = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.incidents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    closed_at TEXT,
    profiles TEXT NOT NULL DEFAULT '[]',
    ents TEXT NOT NULL DEFAULT '[]',
    written_by TEXT NOT NULL DEFAULT current_user
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.journal (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident TEXT NOT NULL REFERENCES {SCHEMA}.incidents(id),
    ent TEXT NOT NULL,
    run TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    body TEXT NOT NULL,
    written_by TEXT NOT NULL DEFAULT current_user
);
CREATE INDEX IF NOT EXISTS journal_incident ON {SCHEMA}.journal (incident, seq);
CREATE TABLE IF NOT EXISTS {SCHEMA}.snapshots (
    run TEXT PRIMARY KEY,
    incident TEXT NOT NULL REFERENCES {SCHEMA}.incidents(id),
    ent TEXT NOT NULL,
    body TEXT NOT NULL,
    digest TEXT NOT NULL,
    written_by TEXT NOT NULL DEFAULT current_user
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.blocks (
    id TEXT PRIMARY KEY,
    ent TEXT NOT NULL,
    incident TEXT NOT NULL,
    run TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    written_by TEXT NOT NULL DEFAULT current_user
);
CREATE INDEX IF NOT EXISTS blocks_ent ON {SCHEMA}.blocks (ent, status);
CREATE TABLE IF NOT EXISTS {SCHEMA}.seals (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    count BIGINT NOT NULL,
    head TEXT NOT NULL,
    at TEXT NOT NULL,
    written_by TEXT NOT NULL DEFAULT current_user
);
CREATE INDEX IF NOT EXISTS seals_name ON {SCHEMA}.seals (name, id);
CREATE TABLE IF NOT EXISTS {SCHEMA}.audit_log (
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL CHECK (seq > 0),
    body TEXT NOT NULL,
    written_by TEXT NOT NULL DEFAULT current_user,
    written_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, seq)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.imports (
    source TEXT PRIMARY KEY,
    home TEXT NOT NULL,
    chain TEXT NOT NULL,
    at TEXT NOT NULL,
    summary TEXT NOT NULL,
    written_by TEXT NOT NULL DEFAULT current_user
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.settings (
    role TEXT NOT NULL DEFAULT current_user,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (role, key)
);
ALTER TABLE {SCHEMA}.settings ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS own_settings ON {SCHEMA}.settings;
CREATE POLICY own_settings ON {SCHEMA}.settings USING (role = current_user) WITH CHECK (role = current_user);
INSERT INTO {SCHEMA}.meta VALUES ('schema', '{SCHEMA_VERSION}') ON CONFLICT (key) DO NOTHING;
{watch_tables(SCHEMA + ".")}"""

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grants(operators: str = OPERATORS, readers: str = READERS) -> str:
    """The privileges of the operators' and the audit's roles, as SQL (``state init`` runs it, docs/team.md
    prints it): reading for both; for the operators, inserts everywhere and updates of the fields that
    change; no DELETE for anyone, no UPDATE of the journal, snapshots, seals or audit chain."""
    for role in (operators, readers):
        if not _ROLE.match(role):
            raise UsageError(
                f"{role!r} is not a role name pcnctl grants to",
                hint="use lower-case letters, digits and '_' (the group roles of docs/team.md)",
            )
    s, both = SCHEMA, f"{operators}, {readers}"
    return f"""\
GRANT USAGE ON SCHEMA {s} TO {both};
GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {both};
GRANT INSERT (id, title, opened_at, opened_by, status, closed_at, profiles, ents),
      UPDATE (title, status, closed_at, profiles, ents) ON {s}.incidents TO {operators};
GRANT INSERT (incident, ent, run, kind, at, body) ON {s}.journal TO {operators};
GRANT INSERT (run, incident, ent, body, digest) ON {s}.snapshots TO {operators};
GRANT INSERT (id, ent, incident, run, status, body), UPDATE (status, body) ON {s}.blocks TO {operators};
GRANT INSERT (name, count, head, at) ON {s}.seals TO {operators};
GRANT INSERT (chain, seq, body) ON {s}.audit_log TO {operators};
GRANT INSERT (source, home, chain, at, summary) ON {s}.imports TO {operators};
GRANT INSERT (key, value), UPDATE (value) ON {s}.settings TO {both};
GRANT INSERT, UPDATE ON {", ".join(f"{s}.{t}" for t in WATCH_TABLES)} TO {operators};
"""


def _connect(url: str, password: str | None) -> Any:
    """A session on the store as the URL's role; an unreachable server or a refused login is an error
    that says which (nothing was changed)."""
    try:
        import psycopg
        from psycopg.rows import dict_row
    except ImportError:
        raise ConfigError(
            "a shared state store needs the psycopg driver",
            hint="install it with: pip install 'pcnctl[postgres]'",
        ) from None
    parts = urlsplit(url)
    place = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    extra: dict[str, Any] = {"password": password} if password else {}
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=10,
            row_factory=dict_row,
            application_name=f"pcnctl pid {os.getpid()} on {socket.gethostname()}"[:63],
            options=_OPTIONS,
            **extra,
        )
    except psycopg.OperationalError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if "password" in detail or "authentication" in detail or "does not exist" in detail:
            raise ConfigError(
                f"the shared state store {place} refused the login: {detail}",
                hint="check the role in the profile's --state URL and its password (PGPASSWORD, ~/.pgpass, "
                "or 'pcnctl state login'); nothing was changed",
            ) from None
        raise TransportError(
            f"cannot reach the shared state store {place}: {detail}",
            hint="check the URL and the network; nothing was changed",
        ) from None


def init(url: str, password: str | None, operators: str = OPERATORS, readers: str = READERS) -> None:
    """Create the store's schema and grant the roles their rights, in one transaction (as the database's
    owner; once, and again harmlessly). The roles themselves are created by the DBA (docs/team.md)."""
    sql = grants(operators, readers)
    conn = _connect(check_state_url(url), password)
    try:
        with _errors("create the state store"), conn.transaction():
            conn.execute(TABLES)
            conn.execute(sql)
    finally:
        conn.close()


@contextmanager
def _errors(doing: str) -> Iterator[None]:
    """The database's refusals as pcnctl errors: a right the role lacks is a refusal (exit 7), a lost
    server a transport error (exit 5); nothing of the statement was kept either way."""
    import psycopg

    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        raise RefusedError(
            f"the shared state store refused to {doing}: {_first_line(exc)}",
            hint="this profile's database role may not do that (the audit's role only reads; no role "
            "changes the journal, seals or audit log): see docs/team.md for the grants",
        ) from None
    except psycopg.errors.UndefinedTable as exc:
        raise ConfigError(
            f"the shared state store holds no pcnctl schema ({_first_line(exc)})",
            hint="its owner creates it once: pcnctl state init --to postgresql://OWNER@HOST/DB "
            "(docs/team.md)",
        ) from None
    except psycopg.errors.LockNotAvailable:
        raise RefusedError(
            "the shared state store stayed locked by another pcnctl process for 30 s",
            hint="try again; nothing was changed",
        ) from None
    except psycopg.OperationalError as exc:
        raise TransportError(
            f"lost the shared state store: {_first_line(exc)}",
            hint="what was committed stays; once it is back, resume: pcnctl incident resume ID",
        ) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sql(text: str) -> str:
    """The callers' ``?`` marks as psycopg's ``%s`` (a literal ``%`` doubled first)."""
    return text.replace("%", "%%").replace("?", "%s")


def incident_key(incident: str) -> int:
    """The second integer of an incident's advisory lock: 31 bits of the SHA-256 of its id."""
    return int.from_bytes(hashlib.sha256(incident.encode()).digest()[:4], "big") & 0x7FFFFFFF


class PostgresBackend:
    """One session on the shared store, shared by the threads of one process."""

    kind = SHARED

    def __init__(self, url: str, password: str | None) -> None:
        self.url = check_state_url(url)
        parts = urlsplit(url)
        self.where = url
        self._lock = threading.RLock()
        self._held: set[str] = set()
        self._conn = _connect(url, password)
        try:
            self._check_schema(f"{parts.hostname or 'localhost'}/{parts.path.lstrip('/')}")
        except BaseException:
            self._conn.close()
            raise

    def _check_schema(self, place: str) -> None:
        with _errors(f"read the pcnctl schema of {place}"):
            found = self._conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchall()
        version = int(found[0]["value"]) if found else 0
        if version > SCHEMA_VERSION:
            raise RefusedError(
                f"the shared state store {place} was written by a newer pcnctl (state version {version})",
                hint="upgrade pcnctl; nothing was changed",
            )
        if version < SCHEMA_VERSION:
            raise ConfigError(
                f"the shared state store {place} holds no pcnctl schema",
                hint="its owner creates it once: pcnctl state init --to postgresql://OWNER@HOST/DB",
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, _errors("write"), self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _TRANSACTIONS)
            yield

    def execute(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock, _errors("write"):
            return int(self._conn.execute(_sql(sql), args).rowcount)

    def rows(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        with self._lock, _errors("read"):
            return list(self._conn.execute(_sql(sql), args).fetchall())

    def setting(self, key: str) -> str | None:
        found = self.rows("SELECT value FROM settings WHERE role = current_user AND key = ?", (key,))
        return str(found[0]["value"]) if found else None

    def set_setting(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (role, key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def seal(self, name: str) -> Seal | None:
        found = self.rows(
            "SELECT name, count, head, at FROM seals WHERE name = ? ORDER BY id DESC LIMIT 1", (name,)
        )
        return Seal(**found[0]) if found else None

    def seals(self, prefix: str) -> list[Seal]:
        sql = (
            "SELECT DISTINCT ON (name) name, count, head, at FROM seals WHERE name LIKE ? ESCAPE '\\' "
            "ORDER BY name, id DESC"
        )
        return [Seal(**r) for r in self.rows(sql, (like_prefix(prefix),))]

    def set_seal(self, name: str, count: int, head: str, at: str) -> None:
        self.execute("INSERT INTO seals (name, count, head, at) VALUES (?, ?, ?, ?)", (name, count, head, at))

    @contextmanager
    def lock(self, incident: str) -> Iterator[None]:
        key = (_INCIDENTS, incident_key(incident))
        with self._lock:
            # A session lock is re-entrant: a second hold by this process refuses as another one would.
            mine = incident in self._held
            if mine or not self.rows("SELECT pg_try_advisory_lock(?, ?) AS taken", key)[0]["taken"]:
                holder = "this very process" if mine else self._holder(key)
                raise RefusedError(
                    f"incident {incident} is in use by another pcnctl run ({holder})",
                    hint="wait for it to finish, or resume later: pcnctl incident resume " + incident,
                )
            self._held.add(incident)
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(incident)
                self._unlock(key)

    def _unlock(self, key: tuple[int, int]) -> None:
        """Let the incident go; a session already lost has let it go with it."""
        import psycopg

        with contextlib.suppress(psycopg.Error):
            if not self._conn.closed:
                self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)

    def _holder(self, key: tuple[int, int]) -> str:
        """Who holds an incident's lock, as the server knows it: the role, and the process and machine
        that the holder's session named."""
        found = self.rows(
            "SELECT a.usename AS role, a.application_name AS app FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid::bigint = ? AND l.objid::bigint = ? AND l.objsubid = 2",
            key,
        )
        if not found:
            return "a session that has just ended: try again"
        app = str(found[0]["app"] or "").removeprefix("pcnctl ")
        return f"{app + ', ' if app else ''}database role {found[0]['role']}"
