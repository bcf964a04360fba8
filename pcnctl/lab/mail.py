"""How the platform writes a message and what its send filter checks, on the lab's conversation tables.

Read from the conversation module (edificeio/entcore 6.15.4; the contracts ``conversation/send-post``,
``draft-post`` and ``api-purge-messages-post`` cite each line):

* a message is first a **draft**: one ``conversation.messages`` row (state ``DRAFT``; ``thread_id`` its own
  id unless a reply stays in its parent's thread; ``parent_id`` the message answered; ``fromName`` NULL;
  ``displayNames`` as ``id$displayName$groupName$groupDisplayName`` strings, the parent's people included
  for a reply) and the sender's mailbox row; saving a draft checks no visibility at all;
* **sending** moves the state (``SENT``, or ``SCHEDULE`` with ``scheduleAt``) through a function that only
  refuses a message already in that state, marks the sender's copy read, upserts ``threads`` and the
  sender's ``userthreads``, then (not when scheduled) writes one ``usermessages`` row per person reached but
  the sender, their ``userthreads`` and the attachment links of each copy. The people reached are the users
  named in the **request's** ``to``/``cc``/``cci`` and every member of the groups named there, with no
  further check; sending a saved draft (``?id=``) takes its recipients from the request, not from the draft;
* the **send filter** (VisiblesFilter): with ``?id=`` the draft must be the caller's; with ``In-Reply-To``
  alone the caller must hold a copy of the parent (any copy: its own sent message or draft count); then the
  parent's ``from``, ``to`` and ``cc`` (group ids too) are taken out of the ids to check, and every id left
  must be visible to the sender;
* the **timeline notification** (``messagerie.send-message``) of a send keeps the subject and the stripped
  body; the timeline drops a sender's notification when it accepted another one from the same sender less
  than ``antiFloodDelay`` (3 s) before.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pcnctl.lab.web import HttpError, unauthorized

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

_TAGS = re.compile(r"<[^>]*>")
NO_SUBJECT = "(Aucun objet)"  # the module's French "nosubject" text, used when a message has no subject
MESSAGE_KEYS = ("subject", "body", "to", "cc", "cci", "noReply", "scheduleAt")
_ADDRESSED = ("to", "cc", "cci")


@dataclass(frozen=True)
class Recipients:
    """What ``to``/``cc``/``cci`` name, resolved: the users reached and the groups that were addressed."""

    users: list[str]  # every person reached, groups expanded, in order, without duplicates
    groups: dict[str, str]  # group id -> name
    names: dict[str, str]  # user id -> display name


def addressed(body: Mapping[str, Any], keys: Iterable[str] = _ADDRESSED) -> list[str]:
    """The ids a message names in ``keys``, in order, without duplicates."""
    return list(dict.fromkeys(str(x) for key in keys for x in (body.get(key) or [])))


def resolve(db: sqlite3.Connection, ids: list[str]) -> Recipients:
    """Who a message reaches (the platform's findInactives): the users named and every member of the
    groups named, **with no check** (the filter ran before, on the request's ids)."""
    from pcnctl.lab import graph

    users: list[str] = []
    groups: dict[str, str] = {}
    for rid in dict.fromkeys(ids):
        group = db.execute("SELECT id, name FROM groups WHERE id = ?", (rid,)).fetchone()
        if group is None:
            if db.execute("SELECT 1 FROM users WHERE id = ?", (rid,)).fetchone() is not None:
                users.append(rid)
            continue
        groups[rid] = group["name"]
        users += graph.members_of(db, [rid])  # every member, blocked ones included
    unique = list(dict.fromkeys(users))
    names = {
        r["id"]: r["display_name"]
        for r in db.execute(
            f"SELECT id, display_name FROM users WHERE id IN ({','.join('?' * len(unique))})", unique
        )
    }
    return Recipients(unique, groups, names)


def check_body(body: Any) -> dict[str, Any]:
    """The platform inserts every key of the body as a column: an unknown key fails the insert (400)."""
    if not isinstance(body, dict):
        raise HttpError(400, {"error": "ERROR: invalid message"})
    for key in body:
        if key not in MESSAGE_KEYS:
            raise HttpError(400, {"error": f'ERROR: column "{key}" of relation "messages" does not exist'})
    schedule = body.get("scheduleAt")
    if schedule and schedule_time(str(schedule)) is None:
        raise HttpError(
            400, {"error": f'ERROR: invalid input syntax for type timestamp with time zone: "{schedule}"'}
        )
    return body


def schedule_time(value: str) -> float | None:
    """A ``scheduleAt`` as seconds since the epoch, None when it is not an ISO time (the column is a
    ``TIMESTAMP WITH TIME ZONE``: PostgreSQL refuses what it cannot read as a time, and reads one without
    a zone in the server's zone, taken here as UTC)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# -- the send filter (VisiblesFilter) -----------------------------------------------------------------------


def holds_copy(db: sqlite3.Connection, user_id: str, message_id: str, *, own: bool = False) -> bool:
    """Whether the user has a mailbox row for the message (``own``: and sent it, MessageOwnerFilter)."""
    sql = (
        "SELECT 1 FROM conversation.usermessages um JOIN conversation.messages m ON m.id = um.message_id"
        " WHERE um.user_id = ? AND um.message_id = ?" + (' AND m."from" = ?' if own else "")
    )
    args = (user_id, message_id, user_id) if own else (user_id, message_id)
    return db.execute(sql, args).fetchone() is not None


def parent_people(db: sqlite3.Connection, parent_id: str) -> set[str]:
    """The ids a reply does not have to see: the parent's ``from``, ``to`` and ``cc`` (not its ``cci``),
    read from the message itself, whoever holds it."""
    row = db.execute(
        'SELECT "from", "to", cc FROM conversation.messages WHERE id = ?', (parent_id,)
    ).fetchone()
    if row is None:
        return set()
    return {row[0], *json.loads(row[1] or "[]"), *json.loads(row[2] or "[]")}


def check_send(db: sqlite3.Connection, sender: str, body: Mapping[str, Any], args: Mapping[str, str]) -> None:
    """VisiblesFilter for ``POST /conversation/send``: the draft's owner (``id``), the parent's holder
    (``In-Reply-To`` without ``id``), then the visibility of every id the parent does not name.

    Raises:
        HttpError: the platform's 401 page.
    """
    from pcnctl.lab import graph

    draft, parent = args.get("id"), args.get("In-Reply-To")
    if draft and not holds_copy(db, sender, draft, own=True):
        raise unauthorized()
    if not draft and parent and not holds_copy(db, sender, parent):
        raise unauthorized()
    ids = set(addressed(body))
    if parent:
        ids -= parent_people(db, parent)
    if ids - graph.visible(db, sender, sorted(ids)):
        raise unauthorized()


# -- a reply: the parent as the replier sees it, and the thread it goes to --------------------------------


def open_parent(db: sqlite3.Connection, user_id: str, parent_id: str) -> dict[str, Any]:
    """The parent from the replier's mailbox ({} when it holds no copy); reading it marks the copy read
    and takes one off the thread's unread count, as opening a message does."""
    row = db.execute(
        'SELECT m.id, m."from", m."to", m.cc, m.cci, m.thread_id, m."noReply", um.unread'
        " FROM conversation.usermessages um JOIN conversation.messages m ON m.id = um.message_id"
        " WHERE um.user_id = ? AND m.id = ?",
        (user_id, parent_id),
    ).fetchone()
    if row is None:
        return {}
    if row["unread"]:
        db.execute(
            "UPDATE conversation.userthreads SET nb_unread = nb_unread - 1"
            " WHERE user_id = ? AND thread_id = ? AND nb_unread > 0",
            (user_id, row["thread_id"]),
        )
    db.execute(
        "UPDATE conversation.usermessages SET unread = 0 WHERE user_id = ? AND message_id = ?",
        (user_id, parent_id),
    )
    return {
        "id": row["id"],
        "from": row["from"],
        "to": json.loads(row["to"] or "[]"),
        "cc": json.loads(row["cc"] or "[]"),
        "cci": json.loads(row["cci"] or "[]"),
        "thread_id": row["thread_id"],
        "noReply": bool(row["noReply"]),
    }


def _people(message: Mapping[str, Any]) -> set[str | None]:
    return {*(str(x) for k in ("to", "cc") for x in message.get(k) or []), message.get("from")}


def new_thread(parent: Mapping[str, Any] | None, message: Mapping[str, Any], groups: set[str]) -> bool:
    """Whether a reply starts a thread of its own: not when it has the parent's public people (``from``,
    ``to``, ``cc``), nor when the only change is the replier, reached through a group the parent named."""
    if parent is None:
        return True
    back, new = _people(parent), _people(message)
    back_cci, new_cci = set(parent.get("cci") or []), set(message.get("cci") or [])
    added, removed = new - back, back - new
    if not added and not removed:
        return False
    return not (
        bool(groups & back) and not removed and new_cci == back_cci and added == {message.get("from")}
    )


# -- the rows -----------------------------------------------------------------------------------------------


def display_names(db: sqlite3.Connection, ids: Iterable[str]) -> list[str]:
    """``displayNames``: ``id$displayName$name$groupDisplayName`` for every user or group named (blank
    parts a space), as the platform's query over its Visible nodes returns them."""
    out = []
    for rid in dict.fromkeys(ids):
        user = db.execute("SELECT display_name FROM users WHERE id = ?", (rid,)).fetchone()
        if user is not None:
            out.append(f"{rid}${user[0] or ' '}$ $ ")
            continue
        group = db.execute("SELECT name FROM groups WHERE id = ?", (rid,)).fetchone()
        if group is not None:
            out.append(f"{rid}$ ${group[0]}$ ")
    return out


def _named(sender: Any, body: Mapping[str, Any], rec: Recipients) -> list[str]:
    """The display names of a message whose directory is not at hand (the recipients' names known)."""
    out = [f"{sender['id']}${sender['display_name']}$ $ "]
    for rid in addressed(body):
        group = rec.groups.get(rid)
        out.append(f"{rid}$ ${group}$ " if group else f"{rid}${rec.names.get(rid) or ' '}$ $ ")
    return list(dict.fromkeys(out))


def create_draft(
    db: sqlite3.Connection,
    sender: Any,
    body: Mapping[str, Any],
    rec: Recipients,
    now: int,
    *,
    parent_id: str | None = None,
    thread_id: str | None = None,
    names: list[str] | None = None,
) -> str:
    """A ``DRAFT`` row and the sender's copy; a reply keeps its parent and may join its thread. ``to`` is
    NOT NULL in the table: a body without it fails the insert."""
    if body.get("to") is None:
        raise HttpError(400, {"error": 'ERROR: null value in column "to" violates not-null constraint'})
    message_id = str(uuid.uuid4())
    db.execute(
        'INSERT INTO conversation.messages(id, parent_id, subject, body, "from", "to", cc, cci,'
        ' "displayNames", state, date, thread_id, "noReply") VALUES (?,?,?,?,?,?,?,?,?,\'DRAFT\',?,?,?)',
        (
            message_id,
            parent_id,
            str(body.get("subject") or ""),
            str(body.get("body") or ""),
            sender["id"],
            json.dumps([str(x) for x in body.get("to") or []]),
            json.dumps([str(x) for x in body.get("cc") or []]),
            json.dumps([str(x) for x in body.get("cci") or []]),
            json.dumps(names if names is not None else _named(sender, body, rec)),
            now,
            thread_id or message_id,
            1 if body.get("noReply") else 0,
        ),
    )
    db.execute(
        "INSERT INTO conversation.usermessages(user_id, message_id) VALUES (?,?)", (sender["id"], message_id)
    )
    return message_id


def update_draft(
    db: sqlite3.Connection, sender: Any, draft_id: str, body: Mapping[str, Any], names: list[str], now: int
) -> None:
    """Sending a saved draft first writes the request's fields over it (only while it is a draft)."""
    sets, values = ['"from" = ?', '"displayNames" = ?', "date = ?"], [sender["id"], json.dumps(names), now]
    for key in ("subject", "body", "to", "cc", "cci", "noReply"):
        if key in body:
            value = body[key]
            sets.append(f'"{key}" = ?')
            values.append(json.dumps([str(x) for x in value or []]) if key in _ADDRESSED else value)
    db.execute(
        f"UPDATE conversation.messages SET {', '.join(sets)} WHERE id = ? AND state = 'DRAFT'",
        (*values, draft_id),
    )


def attach(
    db: sqlite3.Connection, user_id: str, message_id: str, name: str, content_type: str, size: int
) -> str:
    """An attachment uploaded to a draft (``POST /conversation/message/:id/attachment``): linked to the
    uploader's copy; the send links it to every recipient's."""
    attachment_id = str(uuid.uuid4())
    db.execute(
        'INSERT INTO conversation.attachments(id, name, charset, filename, "contentType",'
        ' "contentTransferEncoding", size) VALUES (?,?,?,?,?,?,?)',
        (attachment_id, name, "UTF-8", name, content_type, "binary", size),
    )
    db.execute(
        "INSERT INTO conversation.usermessagesattachments VALUES (?,?,?)",
        (user_id, message_id, attachment_id),
    )
    return attachment_id


def transition(db: sqlite3.Connection, message_id: str, state: str) -> None:
    """``update_message_with_state_transition``: any state but the target one moves to it; a message
    already in that state is refused (a second send of the same draft)."""
    changed = db.execute(
        "UPDATE conversation.messages SET state = ? WHERE id = ? AND state <> ?", (state, message_id, state)
    ).rowcount
    if changed != 1:
        raise HttpError(400, {"error": f"ERROR: Concurrency error: state mismatch for message {message_id}"})


_UPSERT_THREAD = (
    "INSERT INTO conversation.userthreads(user_id, thread_id, nb_unread) VALUES (?,?,?)"
    " ON CONFLICT(user_id, thread_id) DO UPDATE SET nb_unread = nb_unread + 1"
)


def deliver(
    db: sqlite3.Connection, sender: Any, message_id: str, rec: Recipients, schedule: str | None
) -> None:
    """Send a draft: state, the sender's copy read, the thread, one copy per recipient (unless scheduled)."""
    me = sender["id"]
    transition(db, message_id, "SCHEDULE" if schedule else "SENT")
    db.execute(
        "UPDATE conversation.usermessages SET unread = ? WHERE user_id = ? AND message_id = ?",
        (1 if me in rec.users else 0, me, message_id),
    )
    db.execute(
        'INSERT INTO conversation.threads(id, date, subject, "from", "to", cc, cci, "displayNames")'
        ' SELECT thread_id, date, subject, "from", "to", cc, cci, "displayNames" FROM conversation.messages'
        " WHERE id = ? ON CONFLICT(id) DO UPDATE SET date = excluded.date, subject = excluded.subject,"
        ' "from" = excluded."from", "to" = excluded."to", cc = excluded.cc, cci = excluded.cci,'
        ' "displayNames" = excluded."displayNames"',
        (message_id,),
    )
    thread = db.execute("SELECT thread_id FROM conversation.messages WHERE id = ?", (message_id,)).fetchone()
    db.execute(_UPSERT_THREAD, (me, thread[0], 0))
    if schedule:
        db.execute("UPDATE conversation.messages SET schedule_at = ? WHERE id = ?", (schedule, message_id))
        return
    copies(db, me, message_id, thread[0], [u for u in rec.users if u != me])


def copies(db: sqlite3.Connection, me: str, message_id: str, thread: str, others: list[str]) -> None:
    """One copy per recipient, as the platform writes them: the message counted in their quota at the
    size of the sender's attachments, the thread unread, the attachments linked to each copy. A person who
    already holds a copy makes the whole send fail (the table's key), as on the platform."""
    quota = db.execute(
        "SELECT coalesce(sum(a.size), 0) FROM conversation.usermessagesattachments uma JOIN"
        " conversation.attachments a ON a.id = uma.attachment_id"
        " WHERE uma.user_id = ? AND uma.message_id = ?",
        (me, message_id),
    ).fetchone()[0]
    attachments = [
        r[0]
        for r in db.execute(
            "SELECT attachment_id FROM conversation.usermessagesattachments"
            " WHERE user_id = ? AND message_id = ?",
            (me, message_id),
        )
    ]
    try:
        db.executemany(
            "INSERT INTO conversation.usermessages(user_id, message_id, total_quota) VALUES (?,?,?)",
            [(u, message_id, quota) for u in others],
        )
    except sqlite3.IntegrityError:
        raise HttpError(
            400, {"error": 'ERROR: duplicate key value violates unique constraint "usermessages_pkey"'}
        ) from None
    db.executemany(_UPSERT_THREAD, [(u, thread, 1) for u in others])
    db.executemany(
        "INSERT INTO conversation.usermessagesattachments VALUES (?,?,?)",
        [(u, message_id, a) for u in others for a in attachments],
    )


# -- the timeline notification ------------------------------------------------------------------------------


def notify(app: LabApp, db: sqlite3.Connection, sender: Any, message_id: str, reached: list[str]) -> bool:
    """The send's ``messagerie.send-message`` notification to everyone reached but the sender, unless the
    timeline's anti-flood drops it (it accepted one from this sender less than ``anti_flood_ms`` ago).
    Returns whether it was stored."""
    now = int(time.time() * 1000)
    last = app.anti_flood.get(sender["id"])
    if last is not None and now <= last + app.knobs.anti_flood_ms:
        return False
    app.anti_flood[sender["id"]] = now
    subject, text = db.execute(
        "SELECT subject, body FROM conversation.messages WHERE id = ?", (message_id,)
    ).fetchone()
    subject = subject or NO_SUBJECT
    stripped = _TAGS.sub("", (text or "").strip())
    name = sender["display_name"]
    uri = f"/conversation/conversation#/read-mail/{message_id}"
    params = {
        "uri": f"/userbook/annuaire#{sender['id']}#{sender['profile']}",
        "username": name,
        "subject": subject,
        "messageUri": uri,
        "resourceUri": uri,
    }
    db.execute(
        "INSERT INTO timeline(id, type, event_type, resource, sender, recipients, params, push_notif, date)"
        " VALUES (?,?,?,?,?,?,?,?,?)",
        (
            str(uuid.uuid4()),
            "MESSAGERIE",
            "SEND-MESSAGE",
            message_id,
            sender["id"],
            json.dumps([{"userId": u, "unread": 1} for u in reached if u != sender["id"]]),
            json.dumps(params, ensure_ascii=False),
            json.dumps({"title": name, "body": f"{subject}\n{stripped}"}, ensure_ascii=False),
            now,
        ),
    )
    return True
