"""A PostgreSQL copy of the lab's conversation tables, with Edifice's column types (JSONB recipients,
BIGINT epoch-ms dates), so the production mailstore path is exercised on a real server by the tests and
the benchmarks. Edifice's own schema: conversation/backend/src/main/resources/sql/001-conversation-schema.sql.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS conversation;
CREATE TABLE IF NOT EXISTS conversation.messages (
    id VARCHAR(36) PRIMARY KEY, parent_id VARCHAR(36), subject VARCHAR(255), body TEXT,
    "from" VARCHAR(36), "fromName" VARCHAR(5000), "to" JSONB, cc JSONB, cci JSONB, "toName" JSONB,
    "ccName" JSONB, "cciName" JSONB, "displayNames" JSONB, state VARCHAR(10), date BIGINT,
    thread_id VARCHAR(36));
CREATE INDEX IF NOT EXISTS messages_date ON conversation.messages (date);
CREATE INDEX IF NOT EXISTS messages_from ON conversation.messages ("from");
CREATE TABLE IF NOT EXISTS conversation.usermessages (
    user_id VARCHAR(36) NOT NULL,
    message_id VARCHAR(36) NOT NULL REFERENCES conversation.messages ON DELETE CASCADE,
    folder_id VARCHAR(36), trashed BOOLEAN DEFAULT FALSE, unread BOOLEAN DEFAULT TRUE,
    total_quota BIGINT DEFAULT 0, PRIMARY KEY (user_id, message_id));
CREATE INDEX IF NOT EXISTS usermessages_message ON conversation.usermessages (message_id);
CREATE TABLE IF NOT EXISTS conversation.attachments (
    id VARCHAR(36) PRIMARY KEY, name VARCHAR(255), charset VARCHAR(36), filename VARCHAR(255),
    "contentType" VARCHAR(255), "contentTransferEncoding" VARCHAR(255), size BIGINT);
CREATE TABLE IF NOT EXISTS conversation.usermessagesattachments (
    user_id VARCHAR(36) NOT NULL, message_id VARCHAR(36) NOT NULL, attachment_id VARCHAR(36) NOT NULL);
CREATE INDEX IF NOT EXISTS uma_message ON conversation.usermessagesattachments (message_id);
"""
JSON_COLUMNS = {"to", "cc", "cci", "toName", "ccName", "cciName", "displayNames"}
TABLES = ("messages", "usermessages", "attachments", "usermessagesattachments")


def copy_from_sqlite(sqlite_path: Path, conn: Any) -> dict[str, int]:
    """Replace the PostgreSQL tables' content with the lab's; returns rows copied per table."""
    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    counts = {}
    try:
        with conn.cursor() as cur:
            cur.execute(SCHEMA)
            cur.execute("TRUNCATE " + ", ".join(f"conversation.{t}" for t in TABLES))
            for table in TABLES:
                rows = src.execute(f"SELECT * FROM {table}")
                columns = [d[0] for d in rows.description]
                quoted = ", ".join(f'"{c}"' for c in columns)
                with cur.copy(f"COPY conversation.{table} ({quoted}) FROM STDIN") as copy:
                    n = 0
                    for row in rows:
                        copy.write_row([_value(c, v) for c, v in zip(columns, row, strict=True)])
                        n += 1
                counts[table] = n
        conn.commit()
    finally:
        src.close()
    return counts


def _value(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and isinstance(value, str):
        return json.dumps(json.loads(value))
    if column in ("trashed", "unread") and value is not None:
        return bool(value)
    return value
