"""The lab's conversation module: the send path, the mailbox routes a user has, the cross-mailbox purge
(ADMC + MFA, by id), the orphan job's route, and the ``CREATE`` event of each send.

The rows are written by :mod:`pcnctl.lab.mail` as the platform's SqlConversationService writes them, the
background jobs (orphan deletion, scheduled delivery) are in :mod:`pcnctl.lab.mailjobs`. A purge removes the
mailbox copies only: the ``messages`` row (subject, body, its text index), the thread, the attachments, any
``originalmessages`` row and the timeline notifications stay, until the orphan job for some of them.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from pcnctl.lab import mail, mailjobs
from pcnctl.lab.mail import Recipients, attach, create_draft, deliver
from pcnctl.lab.web import (
    HttpError,
    Module,
    Request,
    Response,
    require_user,
    require_workflow,
    unauthorized,
)
from pcnctl.records import JsonObject

if TYPE_CHECKING:
    import sqlite3

    from pcnctl.lab.app import LabApp

__all__ = ["ROUTES", "Recipients", "attach", "create_draft", "deliver", "store_message"]

_API = "org.entcore.conversation.controllers.ApiController|"
_CONV = "org.entcore.conversation.controllers.ConversationController|"
_TASK = "org.entcore.conversation.controllers.TaskController|"
RECALL_MINUTES = 60


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


def store_message(app: LabApp, sender: Any, req: Request) -> JsonObject:
    """``POST /conversation/send``: the filter (owner of ``?id=``, holder of ``In-Reply-To``, visibility of
    what the parent does not name), then a reply's parent and thread, the draft created (or the saved one
    overwritten with the request's fields), the send, the event and the notification."""
    body = req.json()
    args = {k: v for k in ("id", "In-Reply-To") if (v := req.arg(k))}
    draft_id, parent_id = args.get("id"), args.get("In-Reply-To")
    now = int(time.time() * 1000)
    with app.store.transaction() as db:
        mail.check_send(db, sender["id"], body if isinstance(body, dict) else {}, args)
        body = mail.check_body(body)
        schedule = str(body.get("scheduleAt") or "") or None
        _parent, thread, names = _reply(db, sender, body, parent_id)
        rec = mail.resolve(db, mail.addressed(body))
        if draft_id:
            mail.update_draft(db, sender, draft_id, body, names, now)
            message_id = draft_id
        else:
            message_id = create_draft(
                db, sender, body, rec, now, parent_id=parent_id, thread_id=thread, names=names
            )
        deliver(db, sender, message_id, rec, schedule)
        _event(db, app, sender, req.headers, now)
        if not schedule:
            mail.notify(app, db, sender, message_id, rec.users)
        subject, text, thread_id = db.execute(
            "SELECT subject, body, thread_id FROM conversation.messages WHERE id = ?", (message_id,)
        ).fetchone()
    # The platform's answer: the row read back by the state change, and who was reached.
    return {
        "update_message_with_state_transition": "",
        "id": message_id,
        "subject": subject,
        "body": text,
        "thread_id": thread_id,
        "inactive": [],
        "undelivered": [],
        "sent": len(rec.users),
        "inactiveCount": 0,
    }


def _reply(
    db: sqlite3.Connection, sender: Any, body: dict[str, Any], parent_id: str | None
) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """A reply's parent as the replier sees it (read, so marked read; a noReply parent is a 403), the
    thread the new message joins (None: its own) and the display names (the parent's people included)."""
    parent = mail.open_parent(db, sender["id"], parent_id) if parent_id else None
    if parent and parent["noReply"]:
        raise HttpError(403, {"error": "conversation.error.reply.not.allowed"})
    groups = {
        r[0] for r in db.execute("SELECT group_id FROM group_members WHERE user_id = ?", (sender["id"],))
    }
    message = {**body, "from": sender["id"]}
    thread = None if mail.new_thread(parent, message, groups) else (parent or {}).get("thread_id")
    shown = [sender["id"], *mail.addressed(body)]
    if parent:
        shown += [parent["from"], *mail.addressed(parent)]
    return parent, thread, mail.display_names(db, shown)


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
    # SqlConversationService.get marks the caller's copy read (and the thread one less unread) in the same
    # transaction, before its SELECT: the answer already says read.
    with app.store.transaction() as db:
        mail.open_parent(db, user["id"], row["id"])
    return Response.json(
        {
            **_summary(app, row),
            "body": "" if row["state"] == "RECALL" else row["body"],
            "folder_id": row["folder_id"],
            "trashed": bool(row["trashed"]),
            "unread": False,
        }
    )


@ROUTES.route("POST", "/conversation/draft", action=_CONV + "createDraft", contract="conversation/draft-post")
def draft(app: LabApp, req: Request) -> Response:
    """A workflow right and nothing else: the recipients are not checked (the send checks them, unless it
    is a reply to this draft, whose people it then does not check at all)."""
    user = require_user(req)
    require_workflow(req, _CONV + "createDraft", app.is_admc(user["id"]))
    body = mail.check_body(req.json())
    parent_id = req.arg("In-Reply-To") or None
    with app.store.transaction() as db:
        _parent, thread, names = _reply(db, user, body, parent_id)
        rec = mail.resolve(db, mail.addressed(body))
        message_id = create_draft(
            db, user, body, rec, int(time.time() * 1000), parent_id=parent_id, thread_id=thread, names=names
        )
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
    """Every mailbox copy of the ids goes (and, with them, the attachment links of those copies). The
    ``messages`` rows, their threads and the copies' ``userthreads``, the attachments, ``originalmessages``
    and the timeline notifications stay: the orphan job removes the rows nobody holds later."""
    app.require_admc(req)  # SuperAdminFilter + MFA, @IgnoreCsrf
    body = req.json()
    ids = body.get("id") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return Response.empty(400)  # refused before any database call, with no body
    marks = ",".join("?" * len(ids))
    with app.store.transaction() as db:
        db.execute(f"DELETE FROM conversation.usermessagesattachments WHERE message_id IN ({marks})", ids)
        db.execute(f"DELETE FROM conversation.usermessages WHERE message_id IN ({marks})", ids)
    return Response.json({"status": "ok"})


@ROUTES.route(
    "POST",
    "/conversation/api/internal/purge/orphans",
    action=_TASK + "deleteOrphans",
    contract="conversation/internal-purge-orphans-post",
)
def purge_orphans(app: LabApp, req: Request) -> Response:
    """The orphan job on demand: a resource route with no filter, so every user session is refused and only
    a client_credentials token whose scope names the action runs it (202 at once; the lab runs the job
    before answering, the platform after)."""
    if req.user is not None:
        raise unauthorized()
    with app.store.transaction() as db:
        mailjobs.delete_orphans(db)
    return Response.empty(202)


_THREADS_OPTIMIZED = (
    'SELECT t.id, t.date, t.subject, t."displayNames", t."to", t."from", t.cc, t.cci,'
    " ut.nb_unread AS unread FROM conversation.userthreads ut LEFT JOIN conversation.threads t"
    " ON ut.thread_id = t.id WHERE ut.user_id = ? ORDER BY t.date DESC LIMIT 10 OFFSET ?"
)
_THREADS = (
    'WITH latest AS (SELECT m.thread_id AS id, m.date, m.subject, m."displayNames", m."to", m."from",'
    ' m.cc, m.cci, m."noReply", row_number() OVER (PARTITION BY m.thread_id ORDER BY m.date DESC) AS n'
    " FROM conversation.usermessages um JOIN conversation.messages m ON um.message_id = m.id"
    " WHERE um.user_id = ? AND m.state = 'SENT' AND um.trashed = 0)"
    ' SELECT l.id, l.date, l.subject, l."displayNames", l."to", l."from", l.cc, l.cci, l."noReply",'
    " (SELECT count(*) FROM conversation.usermessages um JOIN conversation.messages m ON m.id = um.message_id"
    " WHERE um.user_id = ? AND m.thread_id = l.id AND um.trashed = 0 AND um.unread = 1) AS unread"
    " FROM latest l WHERE l.n = 1 ORDER BY l.date DESC LIMIT 10 OFFSET ?"
)


@ROUTES.route(
    "GET",
    "/conversation/threads/list",
    action=_CONV + "listThreads",
    contract="conversation/threads-list-get",
)
def threads(app: LabApp, req: Request) -> Response:
    """The caller's threads, ten a page. With ``optimized-thread-list`` (the knob) they are read from
    ``userthreads`` and ``threads``, which a purge does not touch: a purged message's subject stays listed."""
    user = require_user(req)
    require_workflow(req, _CONV + "listThreads", app.is_admc(user["id"]))
    try:
        page = max(int(req.arg("page", "0") or 0), 0)
    except ValueError:
        page = 0
    if app.knobs.optimized_thread_list:
        rows = app.store.all(_THREADS_OPTIMIZED, user["id"], page * 10)
    else:
        rows = app.store.all(_THREADS, user["id"], user["id"], page * 10)
    out = []
    for r in rows:
        row = dict(r)
        for key in ("to", "cc", "cci", "displayNames"):
            row[key] = json.loads(row[key]) if row.get(key) else None
        if "noReply" in row:
            row["noReply"] = bool(row["noReply"])
        out.append(row)
    return Response.json(out)
