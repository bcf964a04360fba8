"""The lab's SQLite state: directory, sessions, OAuth clients; one connection guarded by one lock.

A single connection keeps the lab simple and deterministic: every request runs its reads and writes under
``Store.lock``, so there is no write contention to reason about. The seeded state is kept in a pristine copy
(``seed.sqlite``) so tests can reset the lab between cases in milliseconds with SQLite's backup API.
"""

from __future__ import annotations

import re
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
-- blocked: NULL until an administrator blocks or unblocks the account (the platform's node property).
-- *_search: the directory's search fields (accents, spaces, hyphens and apostrophes dropped, lower case).
CREATE TABLE IF NOT EXISTS users(
    id TEXT PRIMARY KEY, login TEXT UNIQUE NOT NULL, login_alias TEXT UNIQUE, first_name TEXT,
    last_name TEXT, display_name TEXT NOT NULL, profile TEXT NOT NULL, blocked INTEGER,
    password TEXT, change_pw INTEGER NOT NULL DEFAULT 0, created TEXT, last_login TEXT, email TEXT,
    first_search TEXT, last_search TEXT, display_search TEXT);
CREATE INDEX IF NOT EXISTS users_profile ON users(profile);
CREATE INDEX IF NOT EXISTS users_last_search ON users(last_search, first_search);
CREATE TABLE IF NOT EXISTS user_structures(
    user_id TEXT NOT NULL, structure_id TEXT NOT NULL, PRIMARY KEY(user_id, structure_id));
CREATE INDEX IF NOT EXISTS user_structures_structure ON user_structures(structure_id, user_id);
-- Sub-structures: (structure)-[:HAS_ATTACHMENT]->(parent) on the platform.
CREATE TABLE IF NOT EXISTS structure_parents(
    structure_id TEXT NOT NULL, parent_id TEXT NOT NULL, PRIMARY KEY(structure_id, parent_id));
CREATE TABLE IF NOT EXISTS classes(id TEXT PRIMARY KEY, structure_id TEXT NOT NULL, name TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS classes_structure ON classes(structure_id);
-- A child's relatives: (child)-[:RELATED]->(relative).
CREATE TABLE IF NOT EXISTS related(
    child_id TEXT NOT NULL, relative_id TEXT NOT NULL, PRIMARY KEY(child_id, relative_id));
CREATE INDEX IF NOT EXISTS related_relative ON related(relative_id);
-- Groups as the communication module sees them (docs/edifice-communication.md §1-2):
-- profile: the filter of a profile group (NULL for other kinds); sub_type StructureGroup / ClassGroup;
-- class_id: the class a class-level group depends on; parent_id: the structure group a class group
-- depends on; users_dir: the node's `users` property (NULL when absent); member_in / member_out: whether
-- the members' (User)->(group) / (group)->(User) COMMUNIQUE edges exist (the property and the edges are
-- written by different statements and can disagree); relative_student: relativeCommuniqueStudent.
CREATE TABLE IF NOT EXISTS groups(
    id TEXT PRIMARY KEY, structure_id TEXT NOT NULL, profile TEXT, name TEXT NOT NULL,
    type TEXT NOT NULL DEFAULT 'ProfileGroup', users_dir TEXT, sub_type TEXT, class_id TEXT,
    parent_id TEXT, member_in INTEGER NOT NULL DEFAULT 0, member_out INTEGER NOT NULL DEFAULT 0,
    relative_student TEXT);
CREATE INDEX IF NOT EXISTS groups_parent ON groups(parent_id);
CREATE INDEX IF NOT EXISTS groups_class ON groups(class_id, profile);
CREATE INDEX IF NOT EXISTS groups_profile ON groups(structure_id, profile, sub_type);
-- (User)-[:IN]->(Group).
CREATE TABLE IF NOT EXISTS group_members(
    group_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY(group_id, user_id));
CREATE INDEX IF NOT EXISTS group_members_user ON group_members(user_id, group_id);
-- Group->Group COMMUNIQUE edges; the start group's communiqueWith property is kept equal to them.
CREATE TABLE IF NOT EXISTS communique(
    start_id TEXT NOT NULL, end_id TEXT NOT NULL, PRIMARY KEY(start_id, end_id));
CREATE INDEX IF NOT EXISTS communique_end ON communique(end_id);
-- COMMUNIQUE_DIRECT edges, user to user; source 'MANUAL' for the links users make themselves (the
-- communication module's "discover visible" feature), NULL for those the rules make (child -> relative).
CREATE TABLE IF NOT EXISTS communique_direct(
    start_id TEXT NOT NULL, end_id TEXT NOT NULL, source TEXT, PRIMARY KEY(start_id, end_id));
CREATE INDEX IF NOT EXISTS communique_direct_end ON communique_direct(end_id);
CREATE TABLE IF NOT EXISTS applications(id TEXT PRIMARY KEY, name TEXT NOT NULL, display_name TEXT NOT NULL,
    address TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roles(id TEXT PRIMARY KEY, name TEXT NOT NULL, app_id TEXT NOT NULL,
    actions TEXT NOT NULL, transverse INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS role_groups(role_id TEXT NOT NULL, group_id TEXT NOT NULL,
    PRIMARY KEY(role_id, group_id));
CREATE INDEX IF NOT EXISTS groups_structure ON groups(structure_id);
CREATE TABLE IF NOT EXISTS functions(user_id TEXT NOT NULL, code TEXT NOT NULL, structure_id TEXT);
CREATE INDEX IF NOT EXISTS functions_user ON functions(user_id);
CREATE TABLE IF NOT EXISTS profiles(name TEXT PRIMARY KEY, blocked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS oauth_clients(
    client_id TEXT PRIMARY KEY, secret TEXT NOT NULL, grant_type TEXT NOT NULL, scope TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(
    id TEXT PRIMARY KEY, user_id TEXT, kind TEXT NOT NULL, client_id TEXT, scope TEXT, xsrf TEXT,
    mfa INTEGER NOT NULL DEFAULT 0, mfa_tries INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
    actions TEXT NOT NULL DEFAULT '[]', force_pw INTEGER NOT NULL DEFAULT 0);
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
-- Timeline notifications (Mongo "timeline" on the platform): type and event-type, the resource (a message
-- id), the sender, recipients as [{userId, unread}], params (the subject among them) and pushNotif (the
-- subject and the stripped body): a copy of the text outside the conversation store.
CREATE TABLE IF NOT EXISTS timeline(
    id TEXT PRIMARY KEY, type TEXT NOT NULL, resource TEXT, sender TEXT, recipients TEXT NOT NULL,
    params TEXT NOT NULL, date BIGINT NOT NULL, event_type TEXT, push_notif TEXT);
CREATE INDEX IF NOT EXISTS timeline_resource ON timeline(resource);
-- The event store (Mongo "events"): who did what, when, from where.
CREATE TABLE IF NOT EXISTS events(
    id TEXT PRIMARY KEY, event_type TEXT NOT NULL, module TEXT NOT NULL, resource_type TEXT,
    user_id TEXT, profil TEXT, structures TEXT, date BIGINT NOT NULL, ip TEXT, ua TEXT, session_id TEXT);
CREATE INDEX IF NOT EXISTS events_date ON events(date);
CREATE TABLE IF NOT EXISTS flashmsg(
    id TEXT PRIMARY KEY, structure_id TEXT, title TEXT, contents TEXT, profiles TEXT, owner TEXT,
    created REAL);
"""

# The conversation module's tables as the platform's SQL scripts 001-023 leave them (Edifice
# conversation/backend/src/main/resources/sql): same tables, columns, NULLs, defaults, keys and indexes,
# no extra index. The lab keeps them in their own file attached as schema "conversation", so the same SQL
# reads the lab and a production PostgreSQL. PostgreSQL's full-text column (text_searchable, script 008)
# has a SQLite equivalent here: an FTS5 index over subject and body kept by triggers (messages_fts).
CONVERSATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversation.messages(
    id VARCHAR(36) NOT NULL PRIMARY KEY, parent_id VARCHAR(36) REFERENCES messages(id) ON DELETE SET NULL,
    subject VARCHAR(1024), body TEXT, "from" VARCHAR(36) NOT NULL, "fromName" VARCHAR(255),
    "to" JSONB NOT NULL, "toName" JSONB, cc JSONB, "ccName" JSONB, "displayNames" JSONB,
    state VARCHAR(10) NOT NULL DEFAULT 'DRAFT', date BIGINT NOT NULL,
    language VARCHAR(2) NOT NULL DEFAULT 'fr', text_searchable TEXT, thread_id VARCHAR(36), cci JSONB,
    "cciName" JSONB, content_version INTEGER DEFAULT 0, "noReply" BOOLEAN NOT NULL DEFAULT 0,
    schedule_at TIMESTAMP);
CREATE INDEX IF NOT EXISTS conversation.messages_date_idx ON messages(date);
CREATE INDEX IF NOT EXISTS conversation.idx_parent_id ON messages(parent_id);
CREATE INDEX IF NOT EXISTS conversation.idx_from ON messages("from");
CREATE INDEX IF NOT EXISTS conversation.idx_thread_id ON messages(thread_id);
CREATE TABLE IF NOT EXISTS conversation.attachments(
    id VARCHAR(36) NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, charset VARCHAR(10) NOT NULL,
    filename VARCHAR(255) NOT NULL, "contentType" VARCHAR(255) NOT NULL,
    "contentTransferEncoding" VARCHAR(10) NOT NULL, size BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS conversation.folders(
    id VARCHAR(36) NOT NULL PRIMARY KEY, parent_id VARCHAR(36) REFERENCES folders(id) ON DELETE CASCADE,
    user_id VARCHAR(36) NOT NULL, name VARCHAR(255) NOT NULL, depth INTEGER NOT NULL DEFAULT 1,
    trashed BOOLEAN NOT NULL DEFAULT 0, skip_uniq BOOLEAN DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS conversation.conversation_foldername_parent_uniq_idx
    ON folders(name, user_id, parent_id, skip_uniq) WHERE parent_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS conversation.conversation_foldername_uniq_idx
    ON folders(name, user_id, skip_uniq) WHERE parent_id IS NULL;
CREATE INDEX IF NOT EXISTS conversation.idx_folders_userparent ON folders(user_id, parent_id);
CREATE TABLE IF NOT EXISTS conversation.usermessages(
    user_id VARCHAR(36) NOT NULL, message_id VARCHAR(36) NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    folder_id VARCHAR(36) REFERENCES folders(id) ON DELETE CASCADE, trashed BOOLEAN NOT NULL DEFAULT 0,
    unread BOOLEAN NOT NULL DEFAULT 1, total_quota BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY(user_id, message_id));
CREATE INDEX IF NOT EXISTS conversation.idx_message_id ON usermessages(message_id);
CREATE INDEX IF NOT EXISTS conversation.idx_usermessages_message_id ON usermessages(message_id);
CREATE TABLE IF NOT EXISTS conversation.usermessagesattachments(
    user_id VARCHAR(36) NOT NULL, message_id VARCHAR(36) NOT NULL,
    attachment_id VARCHAR(36) NOT NULL REFERENCES attachments(id) ON DELETE CASCADE,
    PRIMARY KEY(user_id, message_id, attachment_id),
    FOREIGN KEY(user_id, message_id) REFERENCES usermessages(user_id, message_id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS conversation.idx_usermessagesattachments_attachment_id
    ON usermessagesattachments(attachment_id);
CREATE TABLE IF NOT EXISTS conversation.threads(
    id VARCHAR(36) NOT NULL PRIMARY KEY, date BIGINT NOT NULL, subject VARCHAR(1024),
    "from" VARCHAR(36) NOT NULL, "to" JSONB NOT NULL, cc JSONB, cci JSONB, "displayNames" JSONB);
CREATE INDEX IF NOT EXISTS conversation.idx_threads_date ON threads(date);
CREATE TABLE IF NOT EXISTS conversation.userthreads(
    user_id VARCHAR(36) NOT NULL, thread_id VARCHAR(36) NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    nb_unread INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(user_id, thread_id));
CREATE INDEX IF NOT EXISTS conversation.idx_userthreads_thread_id ON userthreads(thread_id);
CREATE TABLE IF NOT EXISTS conversation.originalmessages(
    message_id VARCHAR(36) NOT NULL PRIMARY KEY, body TEXT);
CREATE INDEX IF NOT EXISTS conversation.idx_originalmessages ON originalmessages(message_id);
CREATE TABLE IF NOT EXISTS conversation.scripts(
    filename VARCHAR(255) NOT NULL PRIMARY KEY, passed TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE VIRTUAL TABLE IF NOT EXISTS conversation.messages_fts USING fts5(
    subject, body, content='messages', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS conversation.messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, subject, body) VALUES (new.rowid, new.subject, new.body);
END;
CREATE TRIGGER IF NOT EXISTS conversation.messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, subject, body)
    VALUES ('delete', old.rowid, old.subject, old.body);
END;
CREATE TRIGGER IF NOT EXISTS conversation.messages_fts_update AFTER UPDATE OF subject, body ON messages
BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, subject, body)
    VALUES ('delete', old.rowid, old.subject, old.body);
    INSERT INTO messages_fts(rowid, subject, body) VALUES (new.rowid, new.subject, new.body);
END;
"""
# In copy order (a row's references first); messages_fts follows messages through its triggers.
CONVERSATION_TABLES = (
    "messages",
    "attachments",
    "folders",
    "usermessages",
    "usermessagesattachments",
    "threads",
    "userthreads",
    "originalmessages",
)
SCHEMA_VERSION = "12"
# The communication graph's tables (rebuilt when a stale lab directory is seeded again).
GRAPH_TABLES = (
    "structure_parents",
    "classes",
    "related",
    "groups",
    "group_members",
    "communique",
    "communique_direct",
)
# Tables dropped and recreated when a stale lab directory is seeded again (their columns changed).
REBUILT_TABLES = (*GRAPH_TABLES, "timeline")


class Store:
    """The lab database: ``lab.sqlite`` in the data directory, plus the pristine ``seed.sqlite``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = data_dir / "lab.sqlite"
        self.pristine = data_dir / "seed.sqlite"
        self.conversation_path = data_dir / "conversation.sqlite"
        self.conversation_pristine = data_dir / "seed-conversation.sqlite"
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.execute("ATTACH DATABASE ? AS conversation", (str(self.conversation_path),))
        self.db.executescript(CONVERSATION_SCHEMA)

    def rebuild(self, tables: tuple[str, ...]) -> None:
        """Drop and recreate tables whose columns changed with the schema version (a stale lab directory)."""
        with self.lock:
            for table in tables:
                self.db.execute(f"DROP TABLE IF EXISTS {table}")
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
        self._save(self.pristine, self.conversation_pristine)

    def checkpoint_paths(self, name: str) -> tuple[Path, Path]:
        """Where a named checkpoint is kept (main database, mailstore); the name is checked first."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ValueError(f"a checkpoint name is 1 to 64 letters, digits, '-' or '_' (got {name!r})")
        return self.data_dir / f"checkpoint-{name}.sqlite", self.data_dir / f"checkpoint-{name}-conv.sqlite"

    def save_checkpoint(self, name: str) -> None:
        """Keep the current state under ``name``: a test suite sets up an expensive state once (a wave
        played through the routes) and returns to it with ``reset(name)`` instead of playing it again."""
        self._save(*self.checkpoint_paths(name))

    def _save(self, main: Path, conversation: Path) -> None:
        with self.lock:
            for path in (main, conversation):
                path.unlink(missing_ok=True)
            target = sqlite3.connect(main)
            try:
                self.db.backup(target)
            finally:
                target.close()
            target = sqlite3.connect(conversation)
            try:
                self.db.backup(target, name="conversation")
            finally:
                target.close()

    def reset(self, checkpoint: str | None = None) -> None:
        """Return to the seeded state (sessions, blocks, messages and every change are dropped), or to a
        state saved by :meth:`save_checkpoint`."""
        main, conversation = (
            self.checkpoint_paths(checkpoint) if checkpoint else (self.pristine, self.conversation_pristine)
        )
        if checkpoint and not main.exists():
            raise LookupError(f"no checkpoint {checkpoint!r}")
        with self.lock:
            source = sqlite3.connect(main)
            try:
                source.backup(self.db)
            finally:
                source.close()
            # The backup API writes a target's main schema only: copy the attached one table by table.
            self.db.execute("ATTACH DATABASE ? AS pristine_conversation", (str(conversation),))
            try:
                self.db.execute("BEGIN")
                for table in CONVERSATION_TABLES:
                    self.db.execute(f"DELETE FROM conversation.{table}")
                    self.db.execute(
                        f"INSERT INTO conversation.{table} SELECT * FROM pristine_conversation.{table}"
                    )
                self.db.execute("COMMIT")
            finally:
                self.db.execute("DETACH DATABASE pristine_conversation")
