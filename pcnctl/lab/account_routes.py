"""The lab's account routes: block/unblock (dropping sessions), passwords, renewal codes, profile blocks.

Rights as on Edifice (edifice-api.md §5, §2.4): ``PUT /auth/block/:userId`` is ADMC, or ADML of one of the
user's schools, never on an ADMC; ``PUT /auth/users/block`` and the mass renewal route are ADMC in
practice; ``forceChangePassword`` and ``erasePassword`` are AdminFilter routes that do **not** check the
ADML's scope (which is why pcnctl checks it client-side). Blocking drops every session and token at once.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pcnctl.lab.web import HttpError, Request, Response, Router, unauthorized

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

_AUTH = "org.entcore.auth.controllers.AuthController|"
_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def register(router: Router, app: LabApp) -> None:
    store = app.store

    def caller(req: Request) -> str:
        if req.user is not None:
            return str(req.user["login"])
        return f"service:{req.session['client_id'] if req.session is not None else '?'}"

    def user_or_404(user_id: str) -> Any:
        user = store.one("SELECT * FROM users WHERE id = ?", user_id)
        if user is None:
            raise HttpError(404, {"error": "user.not.found"})
        return user

    def require_user_admin(req: Request, user_id: str) -> None:
        """AuthResourcesProvider: ADMC; ADML of one of the user's schools; never an ADML on an ADMC."""
        if app.is_service(req):
            return
        assert req.user is not None
        if app.is_admc(req.user["id"]):
            return
        scope = app.adml_scope(req.user["id"])
        schools = {
            r["structure_id"]
            for r in store.all("SELECT structure_id FROM user_structures WHERE user_id = ?", user_id)
        }
        if not scope or not schools & scope or app.is_admc(user_id):
            raise unauthorized()

    def set_blocked(user_id: str, block: bool, who: str) -> None:
        with store.transaction() as db:
            db.execute("UPDATE users SET blocked = ? WHERE id = ?", (1 if block else 0, user_id))
            if block:  # Edifice drops sessions, OAuth tokens and CAS tickets at once
                db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            db.execute(
                "INSERT INTO account_log(user_id, action, caller, at) VALUES (?,?,?,?)",
                (user_id, "block" if block else "unblock", who, time.time()),
            )

    def block_flag(req: Request) -> bool:
        if not req.body:
            return True
        body = req.json()
        value = body.get("block", True) if isinstance(body, dict) else True
        if not isinstance(value, bool):
            raise HttpError(400, {"error": "invalid.block"})
        return value

    @router.route("PUT", "/auth/block/:userId", action=_AUTH + "blockUser")
    def block_user(req: Request) -> Response:
        user_id = req.params["userId"]
        user_or_404(user_id)
        require_user_admin(req, user_id)
        set_blocked(user_id, block_flag(req), caller(req))
        return Response.empty(200)

    @router.route("PUT", "/auth/users/block", action=_AUTH + "blockUsers")
    def block_users(req: Request) -> Response:
        body = req.json()
        ids = body.get("users") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise HttpError(400, {"error": "invalid.users"})
        if not app.is_service(req):
            app.require_admc(req)  # non-ADMC callers must teach a class holding every user: ADML gets 401
        block = body.get("block", True)
        for user_id in ids:
            if store.one("SELECT 1 FROM users WHERE id = ?", user_id) is not None:
                set_blocked(user_id, bool(block), caller(req))
        return Response.empty(200)

    @router.route("POST", "/auth/forceChangePassword", action=_AUTH + "forceChangePassword")
    def force_change(req: Request) -> Response:
        app.require_admin(req)  # AdminFilter: any ADML, any user (no scope check on the platform)
        user_id = str(req.json().get("userId") or "")
        user_or_404(user_id)
        store.execute("UPDATE users SET change_pw = 1 WHERE id = ?", user_id)
        store.execute(
            "INSERT INTO account_log(user_id, action, caller, at) VALUES (?,?,?,?)",
            user_id,
            "force-change",
            caller(req),
            time.time(),
        )
        return Response.json({})

    @router.route("POST", "/auth/erasePassword", action=_AUTH + "erasePassword")
    def erase(req: Request) -> Response:
        app.require_admin(req)
        user_id = str(req.json().get("userId") or "")
        user_or_404(user_id)
        store.execute("UPDATE users SET password = 'ERASED' WHERE id = ?", user_id)
        store.execute(
            "INSERT INTO account_log(user_id, action, caller, at) VALUES (?,?,?,?)",
            user_id,
            "erase",
            caller(req),
            time.time(),
        )
        return Response.json({"status": "OK", "result": "User's password erased successfully"})

    def new_code(user_id: str, who: str) -> str:
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
        store.execute("INSERT INTO renewal_codes VALUES (?,?,?)", user_id, code, time.time())
        store.execute(
            "INSERT INTO account_log(user_id, action, caller, at) VALUES (?,?,?,?)",
            user_id,
            "renewal-code",
            who,
            time.time(),
        )
        return code

    @router.route("POST", "/auth/generatePasswordRenewalCode", action=_AUTH + "generatePasswordRenewalCode")
    def renewal_code(req: Request) -> Response:
        login = req.form().get("login", "")
        user = store.one("SELECT * FROM users WHERE lower(login) = lower(?)", login)
        if user is None:
            raise HttpError(404, {"error": "user.not.found"})
        require_user_admin(req, user["id"])
        return Response.json({"renewalCode": new_code(user["id"], caller(req))})

    @router.route("POST", "/auth/massGeneratePasswordRenewalCode", action=_AUTH + "massGenerateResetCode")
    def mass_renewal(req: Request) -> Response:
        if not app.is_service(req):
            app.require_admc(req)
        ids = req.json().get("users")
        if not isinstance(ids, list):
            raise HttpError(400, {"error": "invalid.users"})
        now = int(time.time() * 1000)
        out = {}
        for user_id in ids:
            if store.one("SELECT 1 FROM users WHERE id = ?", user_id) is not None:
                out[user_id] = {"code": new_code(user_id, caller(req)), "date": now}
        return Response.json(out)

    @router.route("PUT", "/directory/structure/:id/profile/block", mfa=True)
    def block_profile(req: Request) -> Response:
        sid = req.params["id"]
        if store.one("SELECT 1 FROM structures WHERE id = ?", sid) is None:
            raise unauthorized()
        app.require_structure(req, sid)
        body = req.json()
        profile, block = body.get("profile"), body.get("block", True)
        if not isinstance(profile, str) or not isinstance(block, bool):
            raise HttpError(400, {"error": "invalid.body"})
        caller_is_admc = req.user is not None and app.is_admc(req.user["id"])
        rows = store.all(
            "SELECT u.id FROM users u JOIN user_structures us ON us.user_id = u.id"
            " WHERE us.structure_id = ? AND u.profile = ?",
            sid,
            profile,
        )
        targets = [r["id"] for r in rows if caller_is_admc or not app.is_admc(r["id"])]
        for user_id in targets:
            set_blocked(user_id, block, caller(req))
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert req.user is not None
        store.execute(
            "INSERT INTO block_traces VALUES (?,?,?,?,?,?,?)",
            str(uuid.uuid4()),
            "BLOCK" if block else "UNBLOCK",
            profile,
            sid,
            now,
            req.user["id"],
            req.user["display_name"],
        )
        return Response.empty(204)

    @router.route(
        "GET",
        "/admin/api/block/traces/:structureId",
        mfa=True,
        action="org.entcore.admin.controllers.BlockProfileTraceController|listBlockProfileTraces",
    )
    def traces(req: Request) -> Response:
        app.require_admin(req)  # AdminFilter
        rows = store.all(
            "SELECT * FROM block_traces WHERE structure_id = ? ORDER BY created", req.params["structureId"]
        )
        return Response.json(
            [
                {
                    "_id": r["id"],
                    "action": r["action"],
                    "profile": r["profile"],
                    "structureId": r["structure_id"],
                    "created": r["created"],
                    "modified": r["created"],
                    "owner": {"userId": r["owner_id"], "displayName": r["owner_name"]},
                }
                for r in rows
            ]
        )
