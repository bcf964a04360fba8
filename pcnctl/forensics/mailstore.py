"""The mailstore: read-only SQL on Edifice's conversation tables, in PostgreSQL or (the lab) SQLite.

What the platform's schema means (conversation SQL scripts 001-023 and the send code):

* ``to``/``cc``/``cci`` hold the ids the sender **addressed**: users and groups. Who **received** a message
  is its mailbox copies (``usermessages``), one per person, the sender's own copy included. Recipients are
  read from the copies, for the candidates only, in batches.
* ``state`` is ``DRAFT``, ``SENT``, ``SCHEDULE`` (only the sender's copy until the date, when the
  recipients' copies are written) or ``RECALL`` (the copies stay); scans return ``SENT`` and ``RECALL``
  unless asked otherwise, and the searches of a response (``SEARCHED``) add ``SCHEDULE``: a threat
  scheduled for tomorrow is part of today's wave.
* ``folder_id`` is NULL for the system folders (it references ``conversation.folders``): the folder of a
  copy follows from the state, the trash flag and whether it is the sender's.
* ``fromName`` is NULL on the send path: names come from the directory.

Where the work is done: the time window, senders, states and the attachment test run in SQL; a text
prefilter (:class:`Prefilter`) runs on the platform's full-text index (``text_searchable``, configuration
``conversation.fr``) in PostgreSQL and on the lab's FTS5 table in SQLite; callers confirm exactly. The
attachment test reaches ``usermessagesattachments`` through each copy's key, the only index the platform
gives that table. Rows stream; PostgreSQL runs in autocommit on a read-only session, so no transaction
stays open between statements, and a scan interrupted (Ctrl-C, an error) is cancelled on the server.

DSNs: ``sqlite:////ABSOLUTE/PATH/conversation.sqlite`` (``sqlite:///relative/path``) or
``postgresql://user@host:port/db`` (the password from ``PGPASSWORD`` or ``~/.pgpass``, as psql does, never
in the DSN stored in a profile).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pcnctl.errors import ConfigError, TransportError, UsageError
from pcnctl.records import JsonObject

if TYPE_CHECKING:
    from pcnctl.config import Profile

STATES = ("DRAFT", "SENT", "RECALL", "SCHEDULE")
DELIVERED = ("SENT", "RECALL")
SEARCHED = ("SENT", "RECALL", "SCHEDULE")  # what a response searches, evidences and purges by default
CHUNK = 500
TS_CONFIG = "conversation.fr"
# Recipients as text: a scan decodes them only for the messages that pass the exact filters.
_COLUMNS = (
    'm.id, m.subject, m.body, m."from", m."fromName", CAST(m."to" AS TEXT), CAST(m.cc AS TEXT),'
    ' CAST(m.cci AS TEXT), m.date, m.state, m.thread_id, CAST(m."displayNames" AS TEXT)'
)
# Through each copy's key (user_id, message_id): usermessagesattachments has no index by message alone.
_HAS_ATTACHMENT = (
    "EXISTS (SELECT 1 FROM conversation.usermessages ua JOIN conversation.usermessagesattachments uma"
    " ON uma.user_id = ua.user_id AND uma.message_id = ua.message_id WHERE ua.message_id = m.id)"
)
# The text --regex is matched on: the subject, a newline, the body with tags and entities replaced by spaces.
_VISIBLE = (
    "(coalesce(m.subject, '') || E'\\n' || regexp_replace(regexp_replace(coalesce(m.body, ''),"
    " '<[^>]+>', ' ', 'g'), '&([a-z]+|#[0-9]+|#x[0-9a-f]+);', ' ', 'gi'))"
)
# The same text before tags and entities are replaced: cheap to search, and it holds every run of
# non-space characters the visible text holds (each tag or entity becomes one space there).
_RAW = "(coalesce(m.subject, '') || E'\\n' || coalesce(m.body, ''))"
_HAS_COPY = "EXISTS (SELECT 1 FROM conversation.usermessages um WHERE um.message_id = m.id)"


@dataclass(frozen=True)
class Mailbox:
    """One mailbox copy: whose it is and which folder it shows in."""

    user: str
    folder: str  # INBOX, OUTBOX, DRAFT, SCHEDULE, TRASH, or a user folder's id
    own: bool = False  # the sender's copy


@dataclass
class StoredMessage:
    id: str
    subject: str
    body: str
    sender: str
    sender_name: str  # fromName when the platform wrote one; the directory fills it otherwise
    date: int
    state: str
    thread_id: str = ""
    stored: tuple[Any, Any, Any, Any] = (None, None, None, None)  # to, cc, cci, displayNames as stored
    has_attachment: bool | None = None  # known once the copies are read
    mailboxes: list[Mailbox] = field(default_factory=list)

    @cached_property
    def to(self) -> list[str]:
        return _json_list(self.stored[0])

    @cached_property
    def cc(self) -> list[str]:
        return _json_list(self.stored[1])

    @cached_property
    def cci(self) -> list[str]:
        return _json_list(self.stored[2])

    @cached_property
    def group_names(self) -> dict[str, str]:
        """Addressed group id -> name."""
        return _groups(self.stored[3])

    @property
    def addressed(self) -> list[str]:
        """The ids the sender typed (users and groups)."""
        return list(dict.fromkeys(self.to + self.cc + self.cci))

    @property
    def recipients(self) -> list[str]:
        """The people who received it: copies but the sender's (unless the sender addressed themself)."""
        own = self.sender in self.addressed
        return [b.user for b in self.mailboxes if b.user != self.sender or own]

    @property
    def groups(self) -> list[str]:
        return [g for g in self.addressed if g in self.group_names]

    @property
    def recalled(self) -> bool:
        return self.state == "RECALL"

    @property
    def notified(self) -> int:
        """Timeline notifications the send wrote: one per recipient but the sender (none for drafts)."""
        if self.state not in DELIVERED:
            return 0
        return len([b for b in self.mailboxes if not b.own])


@dataclass(frozen=True)
class Prefilter:
    """Words a candidate must hold, for the full-text index: all of ``all_of``, one of ``any_of``.

    Words are folded (lower case, no accents, letters only). The store drops what its index cannot test
    (stop words), so the prefilter only ever widens; the caller's exact filter decides.
    """

    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    fts: tuple[tuple[str, bool], ...] = ()  # SQLite's FTS5 also takes these (term, prefix?), all of them
    at_least: int = 1  # how many of ``any_of`` a candidate holds (1 or 2)
    regex: str | None = None  # PostgreSQL only: a pattern (``~*``) matching at least what --regex matches

    def alternatives(self) -> list[tuple[str, ...]]:
        """``any_of`` as alternatives of words all present: single words, or every pair."""
        if self.at_least >= 2:
            return list(itertools.combinations(self.any_of, 2))
        return [(w,) for w in self.any_of]

    def __bool__(self) -> bool:
        return bool(self.all_of or self.any_of or self.fts or self.regex)


@dataclass(frozen=True)
class Scan:
    """What the database filters: window, senders, states, attachments, words."""

    since_ms: int | None = None
    until_ms: int | None = None
    senders: Sequence[str] | None = None
    states: Sequence[str] = DELIVERED
    has_attachment: bool | None = None
    words: Prefilter = Prefilter()


def _json_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        return []
    return [str(v) for v in data] if isinstance(data, list) else []


def _groups(display_names: Any) -> dict[str, str]:
    """Group ids and names from ``displayNames`` (``id$displayName$groupName$groupDisplayName``)."""
    out: dict[str, str] = {}
    for item in _json_list(display_names):
        parts = [*item.split("$"), "", "", ""]
        if parts[2].strip():
            out[parts[0]] = parts[2].strip()
    return out


def literal_runs(pattern: str) -> list[str]:
    """Texts every match of ``pattern`` holds: its top-level literal runs, cut at whitespace.

    Only the top level is read (a group, class, repeat or alternative ends a run; an alternative at the
    top gives none). Cut at whitespace, a run holds wherever the visible text matches, since the visible
    text only turns each tag or entity of the stored text into one space.
    """
    from re import _constants as c  # type: ignore[attr-defined]
    from re import _parser  # type: ignore[attr-defined]

    try:
        parsed = _parser.parse(pattern)
    except re.error:
        return []
    runs, run = [], ""
    for op, arg in [*parsed, (None, None)]:
        if op is c.LITERAL:
            run += chr(arg)
            continue
        runs += run.split()
        run = ""
    return list(dict.fromkeys(r for r in runs if len(r) >= 2))


def _regex_filter(pattern: str, args: list[Any]) -> str:
    """``~*`` on the visible text, tried only where the stored text holds the pattern's literal runs
    (``ILIKE``, about three times cheaper than stripping the tags; CASE keeps that order)."""
    runs = literal_runs(pattern)
    args += ["%" + r.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for r in runs]
    args.append(pattern)
    if not runs:
        return f"{_VISIBLE} ~* ?"
    return f"CASE WHEN {' AND '.join(f'{_RAW} ILIKE ?' for _ in runs)} THEN {_VISIBLE} ~* ? ELSE false END"


def validate_dsn(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme == "sqlite":
        if not parts.path or parts.netloc:
            raise UsageError(
                f"{dsn!r} is not a SQLite DSN", hint="use sqlite:////ABSOLUTE/PATH/conversation.sqlite"
            )
        return dsn
    if parts.scheme in ("postgresql", "postgres"):
        if parts.password:
            raise UsageError(
                "the mailstore DSN must not carry a password",
                hint="use PGPASSWORD or ~/.pgpass, as psql does",
            )
        return dsn
    raise UsageError(
        f"{dsn!r} is not a mailstore DSN", hint="use sqlite:///PATH or postgresql://user@host/db"
    )


def folder_of(user: str, folder_id: Any, trashed: Any, sender: str, state: str) -> str:
    """The folder a copy shows in: a user folder's id, else the system folder its state implies."""
    if folder_id:
        return str(folder_id)
    if trashed:
        return "TRASH"
    if user == sender:
        return state if state in ("DRAFT", "SCHEDULE") else "OUTBOX"
    return "INBOX"


class Mailstore:
    """A read-only connection to the conversation tables."""

    def __init__(self, dsn: str) -> None:
        self.dsn = validate_dsn(dsn)
        parts = urlsplit(dsn)
        self.kind = "sqlite" if parts.scheme == "sqlite" else "postgresql"
        self.mark = "?" if self.kind == "sqlite" else "%s"
        self._scan_db: Any = None
        self.db: Any = self._open_sqlite(Path(parts.path[1:])) if self.kind == "sqlite" else self._open_pg()

    @staticmethod
    def _open_sqlite(path: Path) -> sqlite3.Connection:
        # As SQLAlchemy writes them: sqlite:///relative.db, sqlite:////absolute/path.db
        if not path.is_file():
            raise ConfigError(f"mailstore {path} does not exist", hint="check the profile's --mailstore DSN")
        db = sqlite3.connect(":memory:", check_same_thread=False, uri=True)
        try:
            # Read-only: the mailstore is evidence; pcnctl never writes it.
            db.execute("ATTACH DATABASE ? AS conversation", (f"{path.resolve().as_uri()}?mode=ro",))
            db.execute("SELECT 1 FROM conversation.messages LIMIT 1")
        except sqlite3.Error as exc:
            raise ConfigError(f"mailstore {path} is not a conversation database: {exc}") from None
        return db

    def _open_pg(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise ConfigError(
                "the PostgreSQL mailstore needs the psycopg driver",
                hint="install it with: pip install 'pcnctl[postgres]'",
            ) from None
        parts = urlsplit(self.dsn)
        try:
            # Autocommit: each statement is its own short transaction, so a purge that waits on the API
            # never holds one open (idle_in_transaction_session_timeout); the session is read-only.
            conn = psycopg.connect(self.dsn, connect_timeout=10, autocommit=True, application_name="pcnctl")
            conn.execute("SET default_transaction_read_only = on")
            # Scans stream through indexes: compiling them (JIT, PostgreSQL 11+) costs more than it saves
            # (a second of a 10-million-message --like).
            conn.execute(
                "SELECT set_config('jit', 'off', false) WHERE current_setting('jit', true) IS NOT NULL"
            )
            return conn
        except psycopg.OperationalError as exc:
            raise TransportError(
                f"cannot reach the mailstore {parts.hostname or 'localhost'}:{parts.port or 5432}: "
                f"{str(exc).strip().splitlines()[0]}",
                hint="check the DSN, the network and the database rights (read-only access is enough)",
            ) from None

    def close(self) -> None:
        for db in (self._scan_db, self.db):
            if db is not None:
                db.close()

    def _sql(self, text: str) -> str:
        return text.replace("?", self.mark)

    def _raise(self, exc: Exception) -> None:
        if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg"):
            raise TransportError(
                f"mailstore query failed: {str(exc).strip().splitlines()[0]}",
                hint="check that the conversation tables exist and are readable",
            ) from None
        raise exc

    def query(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """Rows of a read-only query written with ``?`` marks (each dialect gets its own), for the readers
        of the conversation tables beside the scans (what a purge leaves: :mod:`pcnctl.forensics.residue`)."""
        return self._rows(sql, args)

    def _rows(self, sql: str, args: Sequence[Any]) -> list[Any]:
        try:
            cursor = self.db.cursor()
            try:
                cursor.execute(self._sql(sql), list(args))
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except Exception as exc:
            self._raise(exc)
            return []

    # -- scans --------------------------------------------------------------------------------------------

    def _where(self, scan: Scan) -> tuple[list[str], list[Any]]:
        states = [s for s in scan.states if s in STATES]
        where = [f"m.state IN ({','.join('?' * len(states))})", _HAS_COPY]
        args: list[Any] = list(states)
        if scan.since_ms is not None:
            where.append("m.date >= ?")
            args.append(scan.since_ms)
        if scan.until_ms is not None:
            where.append("m.date < ?")
            args.append(scan.until_ms)
        if scan.senders is not None:
            where.append(f'm."from" IN ({",".join("?" * len(scan.senders))})')
            args.extend(scan.senders)
        if scan.has_attachment is not None:
            where.append(_HAS_ATTACHMENT if scan.has_attachment else f"NOT {_HAS_ATTACHMENT}")
        return where, args

    def iter_messages(self, scan: Scan = Scan()) -> Iterator[StoredMessage]:
        """Messages passing the scan's database filters, oldest first, streamed (no copies read yet)."""
        if (scan.senders is not None and not scan.senders) or not [s for s in scan.states if s in STATES]:
            return
        where, args = self._where(scan)
        source = "conversation.messages m"
        if scan.words:
            text = self._text_filter(scan.words)
            if text is not None:
                if self.kind == "sqlite":
                    source += " JOIN conversation.messages_fts f ON f.rowid = m.rowid"
                    where.append("f.messages_fts MATCH ?")
                else:
                    where.append(f"m.text_searchable @@ to_tsquery('{TS_CONFIG}', ?)")
                args.append(text)
            if scan.words.regex and self.kind == "postgresql":
                where.append(_regex_filter(scan.words.regex, args))
        sql = f"SELECT {_COLUMNS} FROM {source} WHERE {' AND '.join(where)} ORDER BY m.date, m.id"
        if self.kind == "sqlite":
            yield from self._stream_sqlite(sql, args)
        else:
            yield from self._stream_pg(sql, args)

    def _stream_sqlite(self, sql: str, args: list[Any]) -> Iterator[StoredMessage]:
        cursor = self.db.cursor()
        try:
            cursor.execute(sql, args)
            for row in cursor:
                yield self._message(row)
        except sqlite3.Error as exc:
            self._raise(exc)
        finally:
            cursor.close()

    def _stream_pg(self, sql: str, args: list[Any]) -> Iterator[StoredMessage]:
        """Rows in chunks over a second connection (the first stays free for lookups between chunks).

        Leaving early (Ctrl-C, an error, a consumer that stops) cancels the query on the server.
        """
        if self._scan_db is None:
            self._scan_db = self._open_pg()
        cursor = self._scan_db.cursor()
        try:
            for row in cursor.stream(self._sql(sql), args, size=2000):
                yield self._message(row)
        except Exception as exc:
            self._raise(exc)
        finally:
            self._cancel_if_busy()
            cursor.close()

    def _cancel_if_busy(self) -> None:
        import psycopg

        conn = self._scan_db
        if (
            conn is not None
            and not conn.closed
            and conn.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE
        ):
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=5.0)
            conn.close()  # its state is unknown after a cancel: the next scan opens a fresh one
            self._scan_db = None

    def _text_filter(self, words: Prefilter) -> str | None:
        """The prefilter in the index's own language, or None when the index cannot narrow it."""
        if self.kind == "sqlite":
            terms = [f'"{w}"' for w in words.all_of]
            terms += [f'"{t}"*' if prefix else f'"{t}"' for t, prefix in words.fts]
            parts = list(dict.fromkeys(terms))
            if words.any_of:
                either = [" AND ".join(f'"{w}"' for w in alt) for alt in words.alternatives()]
                parts.append("(" + " OR ".join(f"({e})" for e in either) + ")")
            return " AND ".join(parts) or None
        # The words themselves, not their lexemes: to_tsquery stems them exactly as the trigger stemmed
        # the messages. A stop word is not indexed: it cannot narrow anything, so it is left out.
        lexemes = self.lexemes([*words.all_of, *words.any_of])
        parts = [w for w in words.all_of if lexemes.get(w)]
        if words.any_of and all(lexemes.get(w) for w in words.any_of):
            either = [" & ".join(alt) for alt in words.alternatives()]
            parts.append("(" + " | ".join(f"({e})" for e in either) + ")")
        return " & ".join(parts) or None

    def lexemes(self, words: Sequence[str]) -> dict[str, str]:
        """What the full-text index stores for each word ('' for a stop word it does not index)."""
        if self.kind == "sqlite":
            return {w: w for w in words}
        rows = self._rows(
            f"SELECT w, array_to_string(tsvector_to_array(to_tsvector('{TS_CONFIG}', w)), ' ')"
            " FROM unnest(?::text[]) w",
            [list(dict.fromkeys(words))],
        )
        return {str(w): str(lex or "") if " " not in str(lex or "") else "" for w, lex in rows}

    def word_frequencies(self, words: Sequence[str]) -> dict[str, float]:
        """The share of messages holding each word, as the planner's statistics know it (0 when rare).

        PostgreSQL keeps the most common lexemes of ``text_searchable`` in ``pg_stats``; a word not among
        them is rarer than all of them; a stop word, which the index does not hold, gets -1. SQLite counts
        them in the FTS5 index itself (``fts5vocab``).
        """
        if self.kind == "sqlite":
            self.db.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.messages_vocab"
                " USING fts5vocab(conversation, messages_fts, row)"
            )
            total = max(int(self._rows("SELECT count(*) FROM conversation.messages", [])[0][0]), 1)
            marks = ",".join("?" * len(words))
            found = dict(
                self._rows(f"SELECT term, doc FROM temp.messages_vocab WHERE term IN ({marks})", words)
            )
            return {w: found.get(w, 0) / total for w in words}
        lexemes = self.lexemes(words)
        rows = self._rows(
            "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats"
            " WHERE schemaname = 'conversation' AND tablename = 'messages' AND attname = 'text_searchable'",
            [],
        )
        common: dict[str, float] = {}
        if rows and rows[0][0]:
            common = dict(zip(rows[0][0], rows[0][1], strict=False))
        return {w: float(common.get(lexemes[w], 0.0)) if lexemes.get(w) else -1.0 for w in words}

    # -- copies, single messages, attachments ---------------------------------------------------------------

    def with_copies(self, messages: Iterable[StoredMessage]) -> Iterator[StoredMessage]:
        """The messages again, their copies and attachment flag read in batches (the candidates only)."""
        batch: list[StoredMessage] = []
        for message in messages:
            batch.append(message)
            if len(batch) >= CHUNK:
                yield from self._fill(batch)
                batch = []
        if batch:
            yield from self._fill(batch)

    def _fill(self, batch: list[StoredMessage]) -> list[StoredMessage]:
        by_id = {m.id: m for m in batch}
        copies = self.mailboxes(list(by_id), {m.id: (m.sender, m.state) for m in batch})
        flags = self.attachment_flags(list(by_id))
        for m in batch:
            m.mailboxes = copies.get(m.id, [])
            m.has_attachment = m.id in flags
        return batch

    def mailboxes(
        self, ids: Sequence[str], known: dict[str, tuple[str, str]] | None = None
    ) -> dict[str, list[Mailbox]]:
        """Mailbox copies still present: message id -> copies, each with the folder it shows in."""
        out: dict[str, list[Mailbox]] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = list(ids[start : start + CHUNK])
            rows = self._rows(
                'SELECT um.message_id, um.user_id, um.folder_id, um.trashed, m."from", m.state'
                " FROM conversation.usermessages um JOIN conversation.messages m ON m.id = um.message_id"
                f" WHERE um.message_id IN ({','.join('?' * len(chunk))}) ORDER BY um.message_id, um.user_id",
                chunk,
            )
            for message_id, user_id, folder, trashed, sender, state in rows:
                sender, state = (known or {}).get(str(message_id), (str(sender), str(state)))
                out.setdefault(str(message_id), []).append(
                    Mailbox(
                        str(user_id),
                        folder_of(str(user_id), folder, trashed, sender, state),
                        str(user_id) == sender,
                    )
                )
        return out

    def attachment_flags(self, ids: Sequence[str]) -> set[str]:
        """Which of these messages have an attachment (through their copies' keys)."""
        found: set[str] = set()
        for start in range(0, len(ids), CHUNK):
            chunk = list(ids[start : start + CHUNK])
            rows = self._rows(
                "SELECT DISTINCT um.message_id FROM conversation.usermessages um JOIN"
                " conversation.usermessagesattachments uma ON uma.user_id = um.user_id"
                f" AND uma.message_id = um.message_id WHERE um.message_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update(str(r[0]) for r in rows)
        return found

    @staticmethod
    def _message(row: Sequence[Any]) -> StoredMessage:
        return StoredMessage(
            id=str(row[0]),
            subject=row[1] or "",
            body=row[2] or "",
            sender=str(row[3] or ""),
            sender_name=row[4] or "",
            date=int(row[8] or 0),
            state=row[9] or "",
            thread_id=str(row[10] or ""),
            stored=(row[5], row[6], row[7], row[11]),
        )

    def get(self, message_id: str) -> StoredMessage | None:
        """One message with its copies, whatever its state (orphans whose copies were all purged: None)."""
        rows = self._rows(f"SELECT {_COLUMNS} FROM conversation.messages m WHERE m.id = ?", [message_id])
        if not rows:
            return None
        message = self._fill([self._message(rows[0])])[0]
        return message if message.mailboxes else None

    def attachments(self, message_id: str) -> list[JsonObject]:
        rows = self._rows(
            'SELECT DISTINCT a.id, a.name, a.filename, a."contentType", a.size'
            " FROM conversation.usermessages um"
            " JOIN conversation.usermessagesattachments uma ON uma.user_id = um.user_id"
            " AND uma.message_id = um.message_id JOIN conversation.attachments a ON a.id = uma.attachment_id"
            " WHERE um.message_id = ? ORDER BY a.id",
            [message_id],
        )
        return [{"id": r[0], "name": r[1], "filename": r[2], "contentType": r[3], "size": r[4]} for r in rows]


def open_mailstore(profile: Profile, dsn: str | None = None) -> Mailstore:
    """The one way pcnctl opens a mailstore: the DSN given (a command's --mailstore), else the profile's."""
    target = dsn or profile.mailstore
    if not target:
        raise ConfigError(
            f"profile {profile.name!r} has no mailstore: Edifice has no cross-mailbox search route",
            hint="give read-only SQL access to the conversation tables: pcnctl profile add ... "
            "--mailstore DSN (or --mailstore here)",
        )
    return Mailstore(target)


def optional_mailstore(profile: Profile, dsn: str | None = None) -> Mailstore | None:
    """The mailstore when the profile (or the command) names one, else None: for what only gains from it."""
    return open_mailstore(profile, dsn) if (dsn or profile.mailstore) else None
