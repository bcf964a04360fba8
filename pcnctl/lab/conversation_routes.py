"""The lab's conversation module: how a message is written, the mailbox routes a user has, the
cross-mailbox purge (ADMC + MFA, by id), timeline notifications, and the event store.

Rows are written as the platform's send code writes them (SqlConversationService):

* a message is first a **draft**: one ``conversation.messages`` row (state ``DRAFT``, its own id as
  ``thread_id``, ``fromName`` left NULL, ``displayNames`` as ``id$displayName$groupName$groupDisplayName``
  strings) and the sender's mailbox row; attachments are linked to the sender's copy;
* **sending** moves the state to ``SENT`` (or ``SCHEDULE`` when ``scheduleAt`` is given: then nobody else
  gets a copy yet), marks the sender's copy read, upserts ``threads``/``userthreads``, and writes one
  ``usermessages`` row per recipient (``to``/``cc``/``cci`` hold user **and group** ids; a group stands for
  its members) with a NULL ``folder_id`` (system folders are not rows of ``conversation.folders``), and
  the attachment links of each copy;
* a **recall** sets the state to ``RECALL``; the copies stay.

Each send (not a scheduled one) also writes one timeline notification whose recipients are the people
reached but the sender, keeping the subject and the stripped body (a purge leaves it, as on the
platform), and a ``CREATE`` event with the sender's profile, schools, IP and user agent.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pcnctl.lab.web import HttpError, Module, Request, Response, require_user, unauthorized
from pcnctl.records import JsonObject

if TYPE_CHECKING:
    import sqlite3

    from pcnctl.lab.app import LabApp

_API = "org.entcore.conversation.controllers.ApiController|"
_CONV = "org.entcore.conversation.controllers.ConversationController|"
_TAGS = re.compile(r"<[^>]+>")
RECALL_MINUTES = 60


@dataclass(frozen=True)
class Recipients:
    """What ``to``/``cc``/``cci`` name, resolved: the users reached and the groups that were addressed."""

    users: list[str]  # every person reached, groups expanded, in order, without duplicates
    groups: dict[str, str]  # group id -> name
    names: dict[str, str]  # user id -> display name


def resolve_recipients(app: LabApp, sender: str, ids: list[str]) -> Recipients:
    """Users and groups of a send, each checked visible to the sender (VisiblesFilter), groups expanded.

    Raises:
        HttpError: 401 when one id is neither a user nor a group the sender may write to.
    """
    from pcnctl.lab import graph

    store = app.store
    users: list[str] = []
    groups: dict[str, str] = {}
    wanted = list(dict.fromkeys(ids))
    with store.lock:
        allowed = graph.visible(store.db, sender, wanted)
    for rid in wanted:
        if rid not in allowed:
            raise unauthorized()
        group = store.one("SELECT id, name FROM groups WHERE id = ?", rid)
        if group is None:
            users.append(rid)
            continue
        groups[rid] = group["name"]
        with store.lock:
            users += graph.members_of(store.db, [rid])  # every member, as the platform resolves them
    unique = list(dict.fromkeys(users))
    names = {
        r["id"]: r["display_name"]
        for r in store.all(
            f"SELECT id, display_name FROM users WHERE id IN ({','.join('?' * len(unique))})", *unique
        )
    }
    return Recipients(unique, groups, names)


def _display_names(sender: Any, rec: Recipients, addressed: list[str]) -> list[str]:
    """The platform's ``displayNames`` for the sender and the ids addressed (not the groups' members):
    ``id$displayName$groupName$groupDisplayName``, blank parts a space."""
    out = [f"{sender['id']}${sender['display_name']}$ $ "]
    for rid in addressed:
        group = rec.groups.get(rid)
        out.append(f"{rid}$ ${group}$ " if group else f"{rid}${rec.names.get(rid) or ' '}$ $ ")
    return list(dict.fromkeys(out))


def create_draft(db: sqlite3.Connection, sender: Any, body: dict[str, Any], rec: Recipients, now: int) -> str:
    """A ``DRAFT`` row and the sender's copy, with the draft's attachments linked to that copy."""
    message_id = str(uuid.uuid4())
    addressed = list(dict.fromkeys(str(x) for key in ("to", "cc", "cci") for x in body.get(key) or []))
    db.execute(
        'INSERT INTO conversation.messages(id, subject, body, "from", "to", cc, cci, "displayNames", state,'
        " date, thread_id) VALUES (?,?,?,?,?,?,?,?,'DRAFT',?,?)",
        (
            message_id,
            str(body.get("subject") or ""),
            str(body.get("body") or ""),
            sender["id"],
            json.dumps([str(x) for x in body.get("to") or []]),
            json.dumps([str(x) for x in body.get("cc") or []]),
            json.dumps([str(x) for x in body.get("cci") or []]),
            json.dumps(_display_names(sender, rec, addressed)),
            now,
            message_id,
        ),
    )
    db.execute(
        "INSERT INTO conversation.usermessages(user_id, message_id) VALUES (?,?)", (sender["id"], message_id)
    )
    return message_id


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


MESSAGE_KEYS = ("subject", "body", "to", "cc", "cci", "noReply", "scheduleAt")


def check_body(body: Any) -> dict[str, Any]:
    """The platform inserts every key of the body as a column: an unknown key fails the insert (400)."""
    if not isinstance(body, dict):
        raise HttpError(400, {"error": "ERROR: invalid message"})
    for key in body:
        if key not in MESSAGE_KEYS:
            raise HttpError(400, {"error": f'ERROR: column "{key}" of relation "messages" does not exist'})
    return body


def deliver(
    db: sqlite3.Connection, sender: Any, message_id: str, rec: Recipients, schedule: str | None
) -> None:
    """Send a draft: state, the sender's copy read, the thread, one copy per recipient (unless scheduled)."""
    me = sender["id"]
    state = "SCHEDULE" if schedule else "SENT"
    if (
        db.execute(
            "UPDATE conversation.messages SET state = ? WHERE id = ? AND state = 'DRAFT'", (state, message_id)
        ).rowcount
        != 1
    ):
        raise HttpError(400, {"error": "conversation.send.error"})
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
    thread = db.execute("SELECT thread_id FROM conversation.messages WHERE id = ?", (message_id,)).fetchone()[
        0
    ]
    db.execute(_UPSERT_THREAD, (me, thread, 0))
    if schedule:
        db.execute("UPDATE conversation.messages SET schedule_at = ? WHERE id = ?", (schedule, message_id))
        return
    _copies(db, me, message_id, thread, [u for u in rec.users if u != me])


_UPSERT_THREAD = (
    "INSERT INTO conversation.userthreads(user_id, thread_id, nb_unread) VALUES (?,?,?)"
    " ON CONFLICT(user_id, thread_id) DO UPDATE SET nb_unread = nb_unread + 1"
)


def _copies(db: sqlite3.Connection, me: str, message_id: str, thread: str, others: list[str]) -> None:
    """One copy per recipient, as the platform writes them: the message counted in their quota at the
    size of the sender's attachments, the thread unread, the attachments linked to each copy."""
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
    db.executemany(
        "INSERT INTO conversation.usermessages(user_id, message_id, total_quota) VALUES (?,?,?)",
        [(u, message_id, quota) for u in others],
    )
    db.executemany(_UPSERT_THREAD, [(u, thread, 1) for u in others])
    db.executemany(
        "INSERT INTO conversation.usermessagesattachments VALUES (?,?,?)",
        [(u, message_id, a) for u in others for a in attachments],
    )


def _notify(db: sqlite3.Connection, sender: Any, message_id: str, rec: Recipients, now: int) -> None:
    """The timeline notification of a send: the people reached but the sender, with the text."""
    subject, text = db.execute(
        "SELECT subject, body FROM conversation.messages WHERE id = ?", (message_id,)
    ).fetchone()
    stripped = _TAGS.sub(" ", text or "").strip()
    db.execute(
        "INSERT INTO timeline VALUES (?,?,?,?,?,?,?)",
        (
            str(uuid.uuid4()),
            "messagerie.send-message",
            message_id,
            sender["id"],
            json.dumps([u for u in rec.users if u != sender["id"]]),
            json.dumps({"subject": subject, "body": stripped[:500], "pushNotif": {"body": stripped[:140]}}),
            now,
        ),
    )


def _event(db: sqlite3.Connection, app: LabApp, sender: Any, headers: dict[str, str], now: int) -> None:
    structures = [
        r["structure_id"]
        for r in app.store.all("SELECT structure_id FROM user_structures WHERE user_id = ?", sender["id"])
    ]
    ip = app.event_ip(headers)  # the raw X-Forwarded-For, as the platform's event store writes it
    db.execute(
        "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            str(uuid.uuid4()),
            "CREATE",
            "Conversation",
            "message",
            sender["id"],
            sender["profile"],
            json.dumps(structures),
            now,
            ip,
            headers.get("user-agent", ""),
            None,
        ),
    )


def store_message(
    app: LabApp,
    sender: Any,
    body: dict[str, Any],
    recipients: list[str],
    headers: dict[str, str],
    draft_id: str | None = None,
) -> JsonObject:
    """``POST /conversation/send``: a new draft sent at once, or the sender's draft ``draft_id``."""
    check_body(body)
    rec = resolve_recipients(app, sender["id"], recipients)
    schedule = str(body.get("scheduleAt") or "") or None
    now = int(time.time() * 1000)
    with app.store.transaction() as db:
        if draft_id is None:
            message_id = create_draft(db, sender, body, rec, now)
        else:
            row = db.execute(
                "SELECT 1 FROM conversation.messages WHERE id = ? AND \"from\" = ? AND state = 'DRAFT'",
                (draft_id, sender["id"]),
            ).fetchone()
            if row is None:
                raise unauthorized()
            message_id = draft_id
        deliver(db, sender, message_id, rec, schedule)
        if not schedule:
            _notify(db, sender, message_id, rec, now)
        _event(db, app, sender, headers, now)
        subject, text, thread = db.execute(
            "SELECT subject, body, thread_id FROM conversation.messages WHERE id = ?", (message_id,)
        ).fetchone()
    # The platform's answer: the row read back by the state change, and who was reached.
    return {
        "update_message_with_state_transition": "",
        "id": message_id,
        "subject": subject,
        "body": text,
        "thread_id": thread,
        "inactive": [],
        "undelivered": [],
        "sent": len(rec.users),
        "inactiveCount": 0,
    }


def _people(row: Any, column: str, users: set[str]) -> dict[str, list[dict[str, str]]]:
    """A recipients field as the platform's API shows it: users and groups, with display names."""
    names: dict[str, tuple[str, str]] = {}
    for item in json.loads(row["displayNames"] or "[]"):
        parts = [*str(item).split("$"), "", "", ""][:4]
        names[parts[0]] = (parts[1].strip(), parts[2].strip())
    out: dict[str, list[dict[str, str]]] = {"users": [], "groups": []}
    for rid in json.loads(row[column] or "[]"):
        display, group = names.get(rid, ("", ""))
        if group or (rid not in users and not display):
            out["groups"].append({"id": rid, "displayName": group})
        else:
            out["users"].append({"id": rid, "displayName": display})
    return out


def _summary(app: LabApp, row: Any) -> JsonObject:
    sender = app.store.one("SELECT profile, display_name FROM users WHERE id = ?", row["from"])
    copies = {
        r["user_id"]
        for r in app.store.all(
            "SELECT user_id FROM conversation.usermessages WHERE message_id = ?", row["id"]
        )
    }
    has_attachment = (
        app.store.one(
            "SELECT 1 FROM conversation.usermessagesattachments WHERE user_id = ? AND message_id = ? LIMIT 1",
            row["from"],
            row["id"],
        )
        is not None
    )
    return {
        "id": row["id"],
        "subject": row["subject"],
        "from": {
            "id": row["from"],
            "displayName": row["fromName"] or (sender["display_name"] if sender else None),
            "profile": sender["profile"] if sender else None,
        },
        "to": _people(row, "to", copies),
        "cc": _people(row, "cc", copies),
        "cci": _people(row, "cci", copies),
        "state": row["state"],
        "date": row["date"],
        "noReply": bool(row["noReply"]),
        "hasAttachment": has_attachment,
    }


# The system folders are not rows of conversation.folders: a copy's folder_id is NULL and the folder
# follows from the state and from who sent it.
_FOLDERS = {
    "INBOX": "um.folder_id IS NULL AND um.trashed = 0 AND m.state IN ('SENT','RECALL')"
    ' AND (m."from" <> um.user_id OR um.unread = 1)',
    "OUTBOX": "um.folder_id IS NULL AND um.trashed = 0 AND m.state IN ('SENT','RECALL')"
    ' AND m."from" = um.user_id',
    "DRAFT": "um.trashed = 0 AND m.state = 'DRAFT' AND m.\"from\" = um.user_id",
    "SCHEDULE": "um.trashed = 0 AND m.state = 'SCHEDULE' AND m.\"from\" = um.user_id",
    "TRASH": "um.trashed = 1",
}


ROUTES = Module("conversation")


@ROUTES.route(
    "GET",
    "/conversation/api/folders/:folderId/messages",
    action=_API + "listMessages",
    contract="conversation/api-folder-messages-get",
)
def folder_messages(app: LabApp, req: Request) -> Response:
    user = require_user(req)
    folder = req.params["folderId"].upper()
    if folder not in _FOLDERS:
        raise unauthorized()  # SystemOrUserFolderFilter: a folder of the caller's only
    size = min(int(req.arg("page_size", "25") or 25), 25)
    page = max(int(req.arg("page", "0") or 0), 0)
    where, args = ["um.user_id = ?", _FOLDERS[folder]], [user["id"]]
    if req.arg("unread") == "true":
        where.append("um.unread = 1")
    search = req.arg("search")
    if search:
        if len(search) < 3:
            raise HttpError(400, {"error": "conversation.search.invalid"})
        for word in search.split():
            where.append("(m.subject LIKE ? OR m.body LIKE ?)")
            args += [f"%{word}%", f"%{word}%"]
    total = app.store.get(
        f"SELECT count(*) n FROM conversation.usermessages um JOIN conversation.messages m"
        f" ON m.id = um.message_id WHERE {' AND '.join(where)}",
        *args,
    )["n"]
    rows = app.store.all(
        f"SELECT m.*, um.unread FROM conversation.usermessages um JOIN conversation.messages m"
        f" ON m.id = um.message_id WHERE {' AND '.join(where)} ORDER BY m.date DESC LIMIT ? OFFSET ?",
        *args,
        size,
        page * size,
    )
    return Response.json([{**_summary(app, r), "unread": bool(r["unread"]), "count": total} for r in rows])


@ROUTES.route(
    "GET",
    "/conversation/api/messages/:id",
    action=_API + "getMessage",
    contract="conversation/api-message-get",
)
def get_message(app: LabApp, req: Request) -> Response:
    user = require_user(req)
    row = app.store.one(
        "SELECT m.*, um.folder_id, um.trashed, um.unread FROM conversation.usermessages um JOIN"
        " conversation.messages m ON m.id = um.message_id WHERE um.user_id = ? AND m.id = ?",
        user["id"],
        req.params["id"],
    )
    if row is None:
        raise unauthorized()  # MessageUserFilter: only a message of the caller's mailbox
    return Response.json(
        {
            **_summary(app, row),
            "body": "" if row["state"] == "RECALL" else row["body"],
            "folder_id": row["folder_id"],
            "trashed": bool(row["trashed"]),
            "unread": bool(row["unread"]),
        }
    )


@ROUTES.route("POST", "/conversation/draft", action=_CONV + "createDraft", contract="conversation/draft-post")
def draft(app: LabApp, req: Request) -> Response:
    user = require_user(req)
    body = check_body(req.json())
    ids = [str(x) for key in ("to", "cc", "cci") for x in (body.get(key) or [])]
    rec = resolve_recipients(app, user["id"], ids)
    with app.store.transaction() as db:
        message_id = create_draft(db, user, body, rec, int(time.time() * 1000))
    return Response.json({"id": message_id}, 201)


@ROUTES.route(
    "POST",
    "/conversation/message/:id/attachment",
    action=_CONV + "postAttachment",
    contract="conversation/attachment-post",
)
def upload(app: LabApp, req: Request) -> Response:
    """The file is the raw body (the platform takes a multipart upload); its name in ``?name=``."""
    user = require_user(req)
    if (
        app.store.one(
            "SELECT 1 FROM conversation.usermessages WHERE user_id = ? AND message_id = ?",
            user["id"],
            req.params["id"],
        )
        is None
    ):
        raise unauthorized()  # MessageUserFilter
    content_type = req.headers.get("content-type") or "application/octet-stream"
    with app.store.transaction() as db:
        attachment_id = attach(
            db, user["id"], req.params["id"], req.arg("name") or "file", content_type, len(req.body)
        )
    return Response.json({"id": attachment_id})


@ROUTES.route(
    "POST",
    "/conversation/api/messages/:id/recall",
    action=_API + "recallMessage",
    contract="conversation/recall-post",
)
def recall(app: LabApp, req: Request) -> Response:
    user = require_user(req)
    since = int(time.time() * 1000) - RECALL_MINUTES * 60 * 1000
    changed = app.store.execute(
        "UPDATE conversation.messages SET state = 'RECALL' WHERE id = ? AND state = 'SENT' AND date >= ?"
        ' AND "from" = ?',
        req.params["id"],
        since,
        user["id"],
    )
    if changed != 1:
        raise HttpError(400, {"error": "conversation.error.recall.mail"})
    return Response.empty(204)


@ROUTES.route(
    "POST",
    "/conversation/api/purge/messages",
    mfa=True,
    csrf=False,
    action=_API + "purgeMessages",
    contract="conversation/api-purge-messages-post",
)
def purge(app: LabApp, req: Request) -> Response:
    app.require_admc(req)  # SuperAdminFilter + MFA, @IgnoreCsrf
    body = req.json()
    ids = body.get("id") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise HttpError(400, {"error": "conversation.purge.invalid"})
    marks = ",".join("?" * len(ids))
    with app.store.transaction() as db:
        # As the current platform: every mailbox copy goes; the messages rows become orphans.
        db.execute(f"DELETE FROM conversation.usermessagesattachments WHERE message_id IN ({marks})", ids)
        db.execute(f"DELETE FROM conversation.usermessages WHERE message_id IN ({marks})", ids)
    return Response.json({"status": "ok"})
