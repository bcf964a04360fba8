"""The platform's conversation schema on a real PostgreSQL server, and a copy of the lab's rows into it.

:data:`SCHEMA` builds what the conversation module's SQL scripts 001 to 023 leave behind (Edifice
``conversation/backend/src/main/resources/sql``), written here from their effect rather than replayed:

* the tables with their final columns (``body`` nullable since 005, ``fromName`` 255 characters since 007,
  ``language``/``text_searchable`` from 008, ``thread_id`` 010, ``cci``/``cciName`` 013, folder
  ``skip_uniq`` 014, ``threads``/``userthreads`` 016, ``originalmessages``/``content_version`` 019,
  ``noReply`` 021, ``schedule_at`` 023), keys, foreign keys and defaults;
* only the platform's indexes (GIN on ``to``, ``cc``, ``displayNames`` and ``text_searchable``; B-trees on
  ``date``, ``from``, ``parent_id``, ``thread_id``, ``usermessages.message_id`` twice (009 and 020 use two
  names), and the folder, thread and attachment ones). There is no index by message id on
  ``usermessagesattachments``: its key starts with ``user_id``;
* the text search configurations ``conversation.fr`` and ``fr`` (french with ``unaccent`` then
  ``french_stem``), and the trigger that fills ``text_searchable`` (subject weight A, the body without its
  tags and the display names without their ids weight B); the orphan-deletion triggers of 002 were
  dropped by 006, so purged messages stay as orphans;
* the ``apps`` role with its grants (018, 019), and the state-transition function of 022.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from pcnctl.lab.store import CONVERSATION_TABLES

SCHEMA = r"""
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE SCHEMA IF NOT EXISTS conversation;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'apps') THEN CREATE ROLE apps; END IF;
END $$;
DROP TEXT SEARCH CONFIGURATION IF EXISTS conversation.fr CASCADE;
CREATE TEXT SEARCH CONFIGURATION conversation.fr (COPY = french);
ALTER TEXT SEARCH CONFIGURATION conversation.fr
    ALTER MAPPING FOR hword, hword_part, word WITH unaccent, french_stem;
DROP TEXT SEARCH CONFIGURATION IF EXISTS public.fr CASCADE;
CREATE TEXT SEARCH CONFIGURATION public.fr (COPY = french);
ALTER TEXT SEARCH CONFIGURATION public.fr
    ALTER MAPPING FOR hword, hword_part, word WITH unaccent, french_stem;

CREATE TABLE conversation.messages (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    parent_id VARCHAR(36) REFERENCES conversation.messages ON DELETE SET NULL,
    subject VARCHAR(1024),
    body TEXT,
    "from" VARCHAR(36) NOT NULL,
    "fromName" VARCHAR(255),
    "to" JSONB NOT NULL,
    "toName" JSONB,
    cc JSONB,
    "ccName" JSONB,
    "displayNames" JSONB,
    state VARCHAR(10) NOT NULL DEFAULT 'DRAFT',
    date BIGINT NOT NULL,
    language VARCHAR(2) NOT NULL DEFAULT 'fr',
    text_searchable TSVECTOR,
    thread_id VARCHAR(36),
    cci JSONB,
    "cciName" JSONB,
    content_version INTEGER DEFAULT 0,
    "noReply" BOOLEAN NOT NULL DEFAULT FALSE,
    schedule_at TIMESTAMP WITH TIME ZONE
);
CREATE TABLE conversation.attachments (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    charset VARCHAR(10) NOT NULL,
    filename VARCHAR(255) NOT NULL,
    "contentType" VARCHAR(255) NOT NULL,
    "contentTransferEncoding" VARCHAR(10) NOT NULL,
    size BIGINT NOT NULL
);
CREATE TABLE conversation.folders (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    parent_id VARCHAR(36) REFERENCES conversation.folders ON DELETE CASCADE,
    user_id VARCHAR(36) NOT NULL,
    name VARCHAR(255) NOT NULL,
    depth INTEGER NOT NULL DEFAULT 1,
    trashed BOOLEAN NOT NULL DEFAULT FALSE,
    skip_uniq BOOLEAN DEFAULT FALSE
);
CREATE TABLE conversation.usermessages (
    user_id VARCHAR(36) NOT NULL,
    message_id VARCHAR(36) NOT NULL REFERENCES conversation.messages ON DELETE CASCADE,
    folder_id VARCHAR(36) REFERENCES conversation.folders ON DELETE CASCADE,
    trashed BOOLEAN NOT NULL DEFAULT FALSE,
    unread BOOLEAN NOT NULL DEFAULT TRUE,
    total_quota BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, message_id)
);
CREATE TABLE conversation.usermessagesattachments (
    user_id VARCHAR(36) NOT NULL,
    message_id VARCHAR(36) NOT NULL,
    attachment_id VARCHAR(36) NOT NULL REFERENCES conversation.attachments ON DELETE CASCADE,
    PRIMARY KEY (user_id, message_id, attachment_id),
    FOREIGN KEY (user_id, message_id) REFERENCES conversation.usermessages ON DELETE CASCADE
);
CREATE TABLE conversation.scripts (
    filename VARCHAR(255) NOT NULL PRIMARY KEY,
    passed TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE TABLE conversation.threads (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    date BIGINT NOT NULL,
    subject VARCHAR(1024),
    "from" VARCHAR(36) NOT NULL,
    "to" JSONB NOT NULL,
    cc JSONB,
    cci JSONB,
    "displayNames" JSONB
);
CREATE TABLE conversation.userthreads (
    user_id VARCHAR(36) NOT NULL,
    thread_id VARCHAR(36) NOT NULL REFERENCES conversation.threads (id) ON DELETE CASCADE,
    nb_unread INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, thread_id)
);
CREATE TABLE conversation.originalmessages (message_id VARCHAR(36) NOT NULL PRIMARY KEY, body TEXT);

CREATE INDEX idx_message_to ON conversation.messages USING GIN ("to");
CREATE INDEX idx_message_cc ON conversation.messages USING GIN (cc);
CREATE INDEX idx_message_dname ON conversation.messages USING GIN ("displayNames");
CREATE INDEX messages_date_idx ON conversation.messages (date);
CREATE INDEX idx_message_textsearch ON conversation.messages USING GIN (text_searchable);
CREATE INDEX idx_message_id ON conversation.usermessages (message_id);
CREATE INDEX idx_parent_id ON conversation.messages (parent_id);
CREATE INDEX idx_from ON conversation.messages ("from");
CREATE INDEX idx_thread_id ON conversation.messages (thread_id);
CREATE UNIQUE INDEX conversation_foldername_parent_uniq_idx
    ON conversation.folders (name, user_id, parent_id, skip_uniq) WHERE parent_id IS NOT NULL;
CREATE UNIQUE INDEX conversation_foldername_uniq_idx
    ON conversation.folders (name, user_id, skip_uniq) WHERE parent_id IS NULL;
CREATE INDEX idx_folders_userparent ON conversation.folders (user_id, parent_id);
CREATE INDEX idx_originalmessages ON conversation.originalmessages (message_id);
CREATE INDEX idx_usermessagesattachments_attachment_id
    ON conversation.usermessagesattachments (attachment_id);
CREATE INDEX idx_usermessages_message_id ON conversation.usermessages (message_id);
CREATE INDEX idx_userthreads_thread_id ON conversation.userthreads (thread_id);
CREATE INDEX idx_threads_date ON conversation.threads (date);

CREATE FUNCTION conversation.text_searchable_trigger() RETURNS trigger AS $$
BEGIN
    NEW.text_searchable :=
        setweight(to_tsvector(NEW.language::regconfig, coalesce(NEW.subject, '')), 'A')
        || setweight(to_tsvector(NEW.language::regconfig,
                                 coalesce(regexp_replace(NEW.body, '<[^>]*>', ' ', 'g'), '')), 'B')
        || setweight(to_tsvector(NEW.language::regconfig,
            coalesce(regexp_replace(NEW."displayNames"::TEXT, '"[a-z0-9-]{17,36}', ' ', 'g'), '')), 'B');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER tsvector_update_trigger BEFORE INSERT OR UPDATE ON conversation.messages
    FOR EACH ROW EXECUTE PROCEDURE conversation.text_searchable_trigger();

CREATE FUNCTION conversation.last_agg(anyelement, anyelement) RETURNS anyelement
    LANGUAGE SQL IMMUTABLE STRICT AS $$ SELECT $2; $$;
CREATE AGGREGATE conversation.last (
    sfunc = conversation.last_agg, basetype = anyelement, stype = anyelement);
CREATE OR REPLACE FUNCTION update_message_with_state_transition(p_id text, p_new_state text)
RETURNS void AS $$
BEGIN
    UPDATE conversation.messages SET state = p_new_state WHERE id = p_id AND state <> p_new_state;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'state transition refused for message %', p_id;
    END IF;
END;
$$ LANGUAGE plpgsql;

GRANT USAGE ON SCHEMA conversation TO apps;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA conversation TO apps;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA conversation TO apps;
"""
DROP = "DROP SCHEMA IF EXISTS conversation CASCADE;"
JSON_COLUMNS = {"to", "cc", "cci", "toName", "ccName", "cciName", "displayNames"}
BOOL_COLUMNS = {"trashed", "unread", "noReply", "skip_uniq"}


def create_schema(conn: Any) -> None:
    """Drop and rebuild the conversation schema (a test or benchmark database, never a real one)."""
    with conn.cursor() as cur:
        cur.execute(DROP)
        cur.execute(SCHEMA)
    conn.commit()


def copy_from_sqlite(sqlite_path: Path, conn: Any) -> dict[str, int]:
    """Rebuild the schema and copy the lab's conversation rows into it; returns rows copied per table.

    ``text_searchable`` is left to the platform's trigger (the COPY fires it), as on a real server.
    """
    create_schema(conn)
    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    counts = {}
    try:
        with conn.cursor() as cur:
            for table in CONVERSATION_TABLES:  # in copy order: a row's references first
                rows = src.execute(f"SELECT * FROM {table}")
                columns = [d[0] for d in rows.description if d[0] != "text_searchable"]
                quoted = ", ".join(f'"{c}"' for c in columns)
                with cur.copy(f"COPY conversation.{table} ({quoted}) FROM STDIN") as copy:
                    n = 0
                    for row in src.execute(f"SELECT {quoted} FROM {table}"):
                        copy.write_row([_value(c, v) for c, v in zip(columns, row, strict=True)])
                        n += 1
                counts[table] = n
            cur.execute("ANALYZE")
        conn.commit()
    finally:
        src.close()
    return counts


def _value(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and isinstance(value, str):
        return json.dumps(json.loads(value))
    if column in BOOL_COLUMNS and value is not None:
        return bool(value)
    return value
