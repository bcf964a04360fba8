"""The mailstore: read-only SQL on Edifice's conversation tables, in PostgreSQL or (the lab) SQLite.

The same queries run on both: tables are addressed as ``conversation.messages`` etc. (a schema in
PostgreSQL, an attached database in SQLite), dates are epoch milliseconds, recipients JSON. The time window
and the sender filter run in the database; rows stream (a server-side cursor in PostgreSQL, SQLite's lazy
cursor) so memory stays flat however large the mailstore. Messages whose every mailbox copy was purged
(orphans awaiting the platform's clean-up job) are not returned.

DSNs: ``sqlite:////ABSOLUTE/PATH/conversation.sqlite`` (``sqlite:///relative/path``) or
``postgresql://user@host:port/db`` (the password from ``PGPASSWORD`` or ``~/.pgpass``, as psql does, never
in the DSN stored in a profile).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pcnctl.errors import ConfigError, TransportError, UsageError

_COLUMNS = (
    'm.id, m.subject, m.body, m."from", m."fromName", m."to", m.cc, m.cci, m.date, m.state, '
    "EXISTS (SELECT 1 FROM conversation.usermessagesattachments a WHERE a.message_id = m.id)"
)


@dataclass
class StoredMessage:
    id: str
    subject: str
    body: str
    sender: str
    sender_name: str
    to: list[str]
    cc: list[str]
    cci: list[str]
    date: int
    state: str
    has_attachment: bool
    mailboxes: list[tuple[str, str]] = field(default_factory=list)  # (user id, folder)

    @property
    def recipients(self) -> list[str]:
        return list(dict.fromkeys(self.to + self.cc + self.cci))


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


class Mailstore:
    """A read-only connection to the conversation tables."""

    def __init__(self, dsn: str) -> None:
        self.dsn = validate_dsn(dsn)
        parts = urlsplit(dsn)
        self.kind = "sqlite" if parts.scheme == "sqlite" else "postgresql"
        self.mark = "?" if self.kind == "sqlite" else "%s"
        if self.kind == "sqlite":
            # As SQLAlchemy writes them: sqlite:///relative.db, sqlite:////absolute/path.db
            path = Path(parts.path[1:])
            if not path.is_file():
                raise ConfigError(
                    f"mailstore {path} does not exist", hint="check the profile's --mailstore DSN"
                )
            self.db: Any = sqlite3.connect(":memory:", check_same_thread=False, uri=True)
            try:
                # Read-only: the mailstore is evidence; pcnctl never writes it.
                self.db.execute("ATTACH DATABASE ? AS conversation", (f"{path.resolve().as_uri()}?mode=ro",))
                self.db.execute("SELECT 1 FROM conversation.messages LIMIT 1")
            except sqlite3.Error as exc:
                raise ConfigError(f"mailstore {path} is not a conversation database: {exc}") from None
        else:
            try:
                import psycopg
            except ImportError:
                raise ConfigError(
                    "the PostgreSQL mailstore needs the psycopg driver",
                    hint="install it with: pip install 'pcnctl[postgres]'",
                ) from None
            try:
                self.db = psycopg.connect(dsn, connect_timeout=10, autocommit=False)
                self.db.read_only = True
            except psycopg.OperationalError as exc:
                raise TransportError(
                    f"cannot reach the mailstore {parts.hostname or 'localhost'}:{parts.port or 5432}: "
                    f"{str(exc).strip().splitlines()[0]}",
                    hint="check the DSN, the network and the database rights (read-only access is enough)",
                ) from None

    def close(self) -> None:
        self.db.close()

    def _cursor(self, streaming: bool = False) -> Any:
        if self.kind == "postgresql" and streaming:
            cursor = self.db.cursor(name="pcnctl_search")
            cursor.itersize = 2000
            return cursor
        return self.db.cursor()

    def _sql(self, text: str) -> str:
        return text.replace("?", self.mark)

    def iter_messages(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        senders: Sequence[str] | None = None,
    ) -> Iterator[StoredMessage]:
        """Messages in the window (and from those senders), oldest first, streamed."""
        where = ["EXISTS (SELECT 1 FROM conversation.usermessages um WHERE um.message_id = m.id)"]
        args: list[Any] = []
        if since_ms is not None:
            where.append("m.date >= ?")
            args.append(since_ms)
        if until_ms is not None:
            where.append("m.date < ?")
            args.append(until_ms)
        if senders is not None:
            if not senders:
                return
            where.append(f'm."from" IN ({",".join("?" * len(senders))})')
            args.extend(senders)
        sql = f"SELECT {_COLUMNS} FROM conversation.messages m WHERE {' AND '.join(where)}"
        sql += " ORDER BY m.date, m.id"
        cursor = self._cursor(streaming=True)
        try:
            cursor.execute(self._sql(sql), args)
            for row in cursor:
                yield self._message(row)
        except Exception as exc:
            self._raise(exc)
        finally:
            cursor.close()

    def _raise(self, exc: Exception) -> None:
        if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg"):
            raise TransportError(
                f"mailstore query failed: {str(exc).strip().splitlines()[0]}",
                hint="check that the conversation tables exist and are readable",
            ) from None
        raise exc

    @staticmethod
    def _message(row: Sequence[Any]) -> StoredMessage:
        return StoredMessage(
            id=str(row[0]),
            subject=row[1] or "",
            body=row[2] or "",
            sender=str(row[3] or ""),
            sender_name=row[4] or "",
            to=_json_list(row[5]),
            cc=_json_list(row[6]),
            cci=_json_list(row[7]),
            date=int(row[8] or 0),
            state=row[9] or "",
            has_attachment=bool(row[10]),
        )

    def get(self, message_id: str) -> StoredMessage | None:
        cursor = self._cursor()
        try:
            cursor.execute(
                self._sql(f"SELECT {_COLUMNS} FROM conversation.messages m WHERE m.id = ?"), [message_id]
            )
            row = cursor.fetchone()
        except Exception as exc:
            self._raise(exc)
            return None
        finally:
            cursor.close()
        if row is None:
            return None
        message = self._message(row)
        message.mailboxes = self.mailboxes([message_id]).get(message_id, [])
        return message

    def mailboxes(self, ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Mailbox copies still present: message id -> [(user id, folder)]."""
        out: dict[str, list[tuple[str, str]]] = {}
        cursor = self._cursor()
        try:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                cursor.execute(
                    self._sql(
                        "SELECT message_id, user_id, folder_id FROM conversation.usermessages"
                        f" WHERE message_id IN ({','.join('?' * len(chunk))}) ORDER BY message_id, user_id"
                    ),
                    chunk,
                )
                for message_id, user_id, folder in cursor.fetchall():
                    out.setdefault(str(message_id), []).append((str(user_id), str(folder or "")))
        except Exception as exc:
            self._raise(exc)
        finally:
            cursor.close()
        return out

    def attachments(self, message_id: str) -> list[dict[str, Any]]:
        cursor = self._cursor()
        try:
            cursor.execute(
                self._sql(
                    'SELECT DISTINCT a.id, a.name, a.filename, a."contentType", a.size FROM'
                    " conversation.attachments a JOIN conversation.usermessagesattachments uma ON"
                    " uma.attachment_id = a.id WHERE uma.message_id = ?"
                ),
                [message_id],
            )
            return [
                {"id": r[0], "name": r[1], "filename": r[2], "contentType": r[3], "size": r[4]}
                for r in cursor.fetchall()
            ]
        except Exception as exc:
            self._raise(exc)
            return []
        finally:
            cursor.close()
