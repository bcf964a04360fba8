"""The lab's conversation module: how a sent message is stored, the mailbox routes a user has, the
cross-mailbox purge (ADMC + MFA, by id), timeline notifications, and the event store.

Storage follows Edifice: one ``conversation.messages`` row per message, one ``conversation.usermessages``
row per mailbox copy, attachments linked per mailbox. Each send also writes a timeline notification per
recipient that keeps the subject and the stripped body (a purge leaves them, as on the platform), and a
``CREATE`` event with the sender's profile, schools, IP and user agent.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from pcnctl.lab.web import HttpError, Request, Response, Router, unauthorized

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

_API = "org.entcore.conversation.controllers.ApiController|"
_EVENTS = "org.entcore.infra.controllers.EventStoreController|listEvents"
_TAGS = re.compile(r"<[^>]+>")
PAGE_LIMIT = 1000


def store_message(
    app: LabApp, sender: Any, body: dict[str, Any], recipients: list[str], headers: dict[str, str]
) -> dict[str, Any]:
    message_id = str(uuid.uuid4())
    now = int(time.time() * 1000)
    store = app.store
    unique = list(dict.fromkeys(recipients))
    names = {
        r["id"]: r["display_name"]
        for r in store.all(
            f"SELECT id, display_name FROM users WHERE id IN ({','.join('?' * len(unique))})", *unique
        )
    }
    display = [[sender["id"], sender["display_name"]]] + [[r, names.get(r, "")] for r in unique]
    subject, text = str(body.get("subject") or ""), str(body.get("body") or "")
    attachments = [a for a in body.get("attachments") or [] if isinstance(a, dict)]
    structures = [
        r["structure_id"]
        for r in store.all("SELECT structure_id FROM user_structures WHERE user_id = ?", sender["id"])
    ]
    with store.transaction() as db:
        db.execute(
            'INSERT INTO conversation.messages(id, subject, body, "from", "fromName", "to", cc, cci,'
            ' "displayNames", state, date, thread_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
            (
                message_id,
                subject,
                text,
                sender["id"],
                sender["display_name"],
                json.dumps(body.get("to") or []),
                json.dumps(body.get("cc") or []),
                json.dumps(body.get("cci") or []),
                json.dumps(display),
                "SENT",
                now,
                message_id,
            ),
        )
        mailboxes = [(sender["id"], "OUTBOX", 0)] + [(r, "INBOX", 1) for r in unique if r != sender["id"]]
        db.executemany(
            "INSERT OR IGNORE INTO conversation.usermessages(user_id, message_id, folder_id, unread)"
            " VALUES (?,?,?,?)",
            [(user, message_id, folder, unread) for user, folder, unread in mailboxes],
        )
        for attachment in attachments:
            attachment_id = str(uuid.uuid4())
            db.execute(
                'INSERT INTO conversation.attachments(id, name, charset, filename, "contentType",'
                ' "contentTransferEncoding", size) VALUES (?,?,?,?,?,?,?)',
                (
                    attachment_id,
                    str(attachment.get("name") or "file"),
                    "UTF-8",
                    str(attachment.get("name") or ""),
                    str(attachment.get("contentType") or "application/octet-stream"),
                    "binary",
                    int(attachment.get("size") or 0),
                ),
            )
            db.executemany(
                "INSERT INTO conversation.usermessagesattachments VALUES (?,?,?)",
                [(user, message_id, attachment_id) for user, _f, _u in mailboxes],
            )
        stripped = _TAGS.sub(" ", text).strip()
        db.execute(
            "INSERT INTO timeline VALUES (?,?,?,?,?,?,?)",
            (
                str(uuid.uuid4()),
                "messagerie.send-message",
                message_id,
                sender["id"],
                json.dumps(unique),
                json.dumps(
                    {"subject": subject, "body": stripped[:500], "pushNotif": {"body": stripped[:140]}}
                ),
                now,
            ),
        )
        ip = (headers.get("x-forwarded-for") or "127.0.0.1").split(",")[0].strip()
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
    return {"id": message_id, "sent": len(unique)}


def _summary(app: LabApp, row: Any) -> dict[str, Any]:
    recipients = json.loads(row["to"] or "[]")
    names = dict(json.loads(row["displayNames"] or "[]"))
    sender = app.store.one("SELECT profile FROM users WHERE id = ?", row["from"])
    has_attachment = (
        app.store.one(
            "SELECT 1 FROM conversation.usermessagesattachments WHERE message_id = ? LIMIT 1", row["id"]
        )
        is not None
    )
    return {
        "id": row["id"],
        "subject": row["subject"],
        "from": {
            "id": row["from"],
            "displayName": row["fromName"],
            "profile": sender["profile"] if sender else None,
        },
        "to": {"users": [{"id": r, "displayName": names.get(r, "")} for r in recipients], "groups": []},
        "cc": {"users": [], "groups": []},
        "cci": {"users": [], "groups": []},
        "state": row["state"],
        "date": row["date"],
        "noReply": False,
        "hasAttachment": has_attachment,
    }


def register(router: Router, app: LabApp) -> None:
    store = app.store

    @router.route("GET", "/conversation/api/folders/:folderId/messages", action=_API + "listMessages")
    def folder_messages(req: Request) -> Response:
        if req.user is None:
            raise HttpError(401, {"error": "invalid.user"})
        folder = req.params["folderId"].upper()
        if folder not in ("INBOX", "OUTBOX", "DRAFT", "TRASH", "SCHEDULE"):
            raise unauthorized()  # SystemOrUserFolderFilter: a folder of the caller's only
        size = min(int(req.arg("page_size", "25") or 25), 25)
        page = max(int(req.arg("page", "0") or 0), 0)
        where, args = ["um.user_id = ?", "um.folder_id = ?"], [req.user["id"], folder]
        if req.arg("unread") == "true":
            where.append("um.unread = 1")
        search = req.arg("search")
        if search:
            if len(search) < 3:
                raise HttpError(400, {"error": "conversation.search.invalid"})
            for word in search.split():
                where.append("(m.subject LIKE ? OR m.body LIKE ?)")
                args += [f"%{word}%", f"%{word}%"]
        total = store.get(
            f"SELECT count(*) n FROM conversation.usermessages um JOIN conversation.messages m"
            f" ON m.id = um.message_id WHERE {' AND '.join(where)}",
            *args,
        )["n"]
        rows = store.all(
            f"SELECT m.*, um.unread FROM conversation.usermessages um JOIN conversation.messages m"
            f" ON m.id = um.message_id WHERE {' AND '.join(where)} ORDER BY m.date DESC LIMIT ? OFFSET ?",
            *args,
            size,
            page * size,
        )
        return Response.json(
            [{**_summary(app, r), "unread": bool(r["unread"]), "count": total} for r in rows]
        )

    @router.route("GET", "/conversation/api/messages/:id", action=_API + "getMessage")
    def get_message(req: Request) -> Response:
        if req.user is None:
            raise HttpError(401, {"error": "invalid.user"})
        row = store.one(
            "SELECT m.*, um.folder_id, um.trashed, um.unread FROM conversation.usermessages um JOIN"
            " conversation.messages m ON m.id = um.message_id WHERE um.user_id = ? AND m.id = ?",
            req.user["id"],
            req.params["id"],
        )
        if row is None:
            raise unauthorized()  # MessageUserFilter: only a message of the caller's mailbox
        return Response.json(
            {
                **_summary(app, row),
                "body": row["body"],
                "folder_id": row["folder_id"],
                "trashed": bool(row["trashed"]),
                "unread": bool(row["unread"]),
            }
        )

    @router.route(
        "POST", "/conversation/api/purge/messages", mfa=True, csrf=False, action=_API + "purgeMessages"
    )
    def purge(req: Request) -> Response:
        app.require_admc(req)  # SuperAdminFilter + MFA, @IgnoreCsrf
        body = req.json()
        ids = body.get("id") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise HttpError(400, {"error": "conversation.purge.invalid"})
        marks = ",".join("?" * len(ids))
        with store.transaction() as db:
            # As the current platform: every mailbox copy goes; the messages rows become orphans.
            db.execute(f"DELETE FROM conversation.usermessagesattachments WHERE message_id IN ({marks})", ids)
            db.execute(f"DELETE FROM conversation.usermessages WHERE message_id IN ({marks})", ids)
        return Response.json({"status": "ok"})

    @router.route("POST", "/timeline/flashmsg/structure/:structureId", mfa=True)
    def flash(req: Request) -> Response:
        sid = req.params["structureId"]
        app.require_structure(req, sid)  # AdmlOfStructure
        body = req.json()
        if not isinstance(body, dict) or not body.get("title") or not isinstance(body.get("contents"), dict):
            raise HttpError(400, {"error": "invalid.flashmsg"})
        store.execute(
            "INSERT INTO flashmsg VALUES (?,?,?,?,?,?,?)",
            str(uuid.uuid4()),
            sid,
            body["title"],
            json.dumps(body["contents"]),
            json.dumps(body.get("profiles") or []),
            req.user["id"] if req.user is not None else None,
            time.time(),
        )
        return Response.json({"id": sid}, 201)

    @router.route("GET", "/infra/v2/event/list/:type/:epoch", action=_EVENTS)
    def events(req: Request) -> Response:
        app.require_admc(req)  # SuperAdminFilter
        if req.params["type"] not in ("events", "traces"):
            raise HttpError(400, {"error": "invalid.type"})
        try:
            start = int(req.params["epoch"])
            duration = int(req.arg("duration", str(24 * 3600 * 1000)) or 0)
        except ValueError:
            raise HttpError(400, {"error": "invalid.epoch"}) from None
        where = ["date >= ?", "date < ?"]
        args: list[Any] = [start, start + duration]
        kinds = [k for k in (req.arg("event-types") or "").split(",") if k]
        if kinds:
            where.append(f"event_type IN ({','.join('?' * len(kinds))})")
            args += kinds
        rows = store.all(
            f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY date, id LIMIT ?",
            *args,
            PAGE_LIMIT + 1,
        )
        more = len(rows) > PAGE_LIMIT
        data = [
            {
                "_id": r["id"],
                "event-type": r["event_type"],
                "module": r["module"],
                "resource-type": r["resource_type"],
                "userId": r["user_id"],
                "profil": r["profil"],
                "structures": json.loads(r["structures"] or "[]"),
                "classes": [],
                "date": r["date"],
                "ip": r["ip"],
                "ua": r["ua"],
                "sessionId": r["session_id"],
            }
            for r in rows[:PAGE_LIMIT]
        ]
        return Response.json(data, headers={"X-HAS-MORE": "true" if more else "false"})
