"""The lab's account routes: block/unblock (dropping sessions), passwords, renewal codes, profile blocks.

Each handler names its contract (``tests/contracts/auth/*.yaml``, ``directory/profile-block``,
``admin/block-traces``). Rights as on Edifice: ``PUT /auth/block/:userId`` is ADMC, or ADML of one of the
user's schools, never on an ADMC; ``PUT /auth/users/block`` and the mass renewal route are ADMC in
practice; ``forceChangePassword`` and ``erasePassword`` are AdminFilter routes that do **not** check the
ADML's scope (which is why pcnctl checks it client-side). Unknown ids are answered as the platform does:
400 for a block, 200 for the password routes, a code anyway from the mass renewal route.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
import uuid
from typing import TYPE_CHECKING

from pcnctl.lab.web import HttpError, Module, Request, Response, require_user, unauthorized

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

ROUTES = Module("accounts")
_AUTH = "org.entcore.auth.controllers.AuthController|"
_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _caller(req: Request) -> str:
    if req.user is not None:
        return str(req.user["login"])
    return f"service:{req.session['client_id'] if req.session is not None else '?'}"


def _require_user_admin(app: LabApp, req: Request, user_id: str) -> None:
    """AuthResourcesProvider: ADMC; ADML of one of the user's schools; never an ADML on an ADMC."""
    if app.is_service(req):
        return
    assert req.user is not None
    if app.is_admc(req.user["id"]):
        return
    scope = app.adml_scope(req.user["id"])
    schools = {
        r["structure_id"]
        for r in app.store.all("SELECT structure_id FROM user_structures WHERE user_id = ?", user_id)
    }
    if not scope or not schools & scope or app.is_admc(user_id):
        raise unauthorized()


def _log(db: sqlite3.Connection, user_id: str, action: str, who: str) -> None:
    db.execute(
        "INSERT INTO account_log(user_id, action, caller, at) VALUES (?,?,?,?)",
        (user_id, action, who, time.time()),
    )


def _set_blocked(app: LabApp, user_id: str, block: bool, who: str, *, drop_sessions: bool = True) -> None:
    """Set the account's own flag; the platform's block routes then drop the user's sessions, tokens and
    CAS tickets, on a block **and on an unblock** alike (the drop follows the write whatever its value)."""
    with app.store.transaction() as db:
        db.execute("UPDATE users SET blocked = ? WHERE id = ?", (1 if block else 0, user_id))
        if drop_sessions:
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        _log(db, user_id, "block" if block else "unblock", who)


def _block_flag(req: Request) -> bool:
    if not req.body:
        return True
    body = req.json()
    value = body.get("block", True) if isinstance(body, dict) else True
    if not isinstance(value, bool):
        raise HttpError(400, {"error": "invalid.block"})
    return value


def _exists(app: LabApp, user_id: str) -> bool:
    return app.store.one("SELECT 1 FROM users WHERE id = ?", user_id) is not None


# -- blocks -----------------------------------------------------------------------------------------------


@ROUTES.route("PUT", "/auth/block/:userId", contract="auth/block-user", action=_AUTH + "blockUser")
def block_user(app: LabApp, req: Request) -> Response:
    user_id = req.params["userId"]
    if not _exists(app, user_id):
        return Response.empty(400)
    _require_user_admin(app, req, user_id)
    _set_blocked(app, user_id, _block_flag(req), _caller(req))
    return Response.empty(200)


@ROUTES.route("PUT", "/auth/users/block", contract="auth/users-block", action=_AUTH + "blockUsers")
def block_users(app: LabApp, req: Request) -> Response:
    """Block many; with an unknown id among them the known ones are blocked but keep their sessions."""
    body = req.json()
    ids = body.get("users") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise unauthorized()
    if not app.is_service(req):
        app.require_admc(req)  # non-ADMC callers must teach a class holding every user: ADML gets 401
    block = bool(body.get("block", True))
    known = [i for i in ids if _exists(app, i)]
    complete = len(known) == len(ids)
    for user_id in known:
        _set_blocked(app, user_id, block, _caller(req), drop_sessions=complete)
    return Response.empty(200 if complete else 400)


@ROUTES.route("PUT", "/directory/structure/:id/profile/block", contract="directory/profile-block", mfa=True)
def block_profile(app: LabApp, req: Request) -> Response:
    """A blanket write: every member of the school's profile group gets ``blocked = block``, with no memory
    of who was blocked one by one before or during the block; every one of them loses its sessions (on an
    unblock too); then the BLOCK or UNBLOCK trace."""
    sid = req.params["id"]
    if app.store.one("SELECT 1 FROM structures WHERE id = ?", sid) is None:
        raise unauthorized()
    app.require_structure(req, sid)
    body = req.json()
    profile, block = body.get("profile"), body.get("block", True)
    if not isinstance(profile, str) or not isinstance(block, bool):
        raise HttpError(400, {"error": "invalid.body"})
    user = require_user(req)
    for user_id in profile_members(app, sid, profile, app.is_admc(user["id"])):
        _set_blocked(app, user_id, block, _caller(req))
    app.store.execute(
        "INSERT INTO block_traces VALUES (?,?,?,?,?,?,?)",
        str(uuid.uuid4()),
        "BLOCK" if block else "UNBLOCK",
        profile,
        sid,
        str(int(time.time() * 1000)),
        user["id"],
        user["display_name"],
    )
    return Response.empty(204)


def profile_members(app: LabApp, structure_id: str, profile: str, caller_is_admc: bool) -> list[str]:
    """The members of the groups that depend on the school itself (its structure groups, not its classes')
    whose name ends with ``profile`` (a suffix match, as the platform's query does); ADMC accounts are left
    out for a caller who is not one."""
    rows = app.store.all(
        "SELECT DISTINCT gm.user_id FROM groups g JOIN group_members gm ON gm.group_id = g.id"
        " WHERE g.structure_id = ? AND g.type = 'ProfileGroup' AND g.sub_type = 'StructureGroup'"
        " AND (? = '' OR substr(g.name, -length(?)) = ?) ORDER BY gm.user_id",
        structure_id,
        profile,
        profile,
        profile,
    )
    return [r["user_id"] for r in rows if caller_is_admc or not app.is_admc(r["user_id"])]


@ROUTES.route(
    "GET",
    "/admin/api/block/traces/:structureId",
    contract="admin/block-traces",
    mfa=True,
    action="org.entcore.admin.controllers.BlockProfileTraceController|listBlockProfileTraces",
)
def traces(app: LabApp, req: Request) -> Response:
    """Profile-block traces, dates as MongoDB gives them: ``{"$date": epoch ms}``."""
    app.require_admin(req)  # AdminFilter
    rows = app.store.all(
        "SELECT * FROM block_traces WHERE structure_id = ? ORDER BY rowid", req.params["structureId"]
    )
    return Response.json(
        [
            {
                "_id": r["id"],
                "action": r["action"],
                "profile": r["profile"],
                "structureId": r["structure_id"],
                "created": {"$date": int(r["created"])},
                "modified": {"$date": int(r["created"])},
                "owner": {"userId": r["owner_id"], "displayName": r["owner_name"]},
            }
            for r in rows
        ]
    )


# -- passwords --------------------------------------------------------------------------------------------


def _user_id(req: Request) -> str:
    user_id = str(req.json().get("userId") or "").strip()
    if not user_id:
        raise HttpError(400)
    return user_id


@ROUTES.route(
    "POST",
    "/auth/forceChangePassword",
    contract="auth/force-change-password",
    action=_AUTH + "forceChangePassword",
)
def force_change(app: LabApp, req: Request) -> Response:
    app.require_admin(req)  # AdminFilter: any ADML, any user (no scope check on the platform)
    user_id = _user_id(req)
    if _exists(app, user_id):
        with app.store.transaction() as db:
            db.execute("UPDATE users SET change_pw = 1 WHERE id = ?", (user_id,))
            _log(db, user_id, "force-change", _caller(req))
    return Response.json({})


@ROUTES.route("POST", "/auth/erasePassword", contract="auth/erase-password", action=_AUTH + "erasePassword")
def erase(app: LabApp, req: Request) -> Response:
    app.require_admin(req)
    user_id = _user_id(req)
    if not _exists(app, user_id):
        return Response.json({"status": "OK", "result": "Failed to erase user's password: user not found"})
    with app.store.transaction() as db:
        db.execute("UPDATE users SET password = 'ERASED' WHERE id = ?", (user_id,))
        _log(db, user_id, "erase", _caller(req))
    return Response.json({"status": "OK", "result": "User's password erased successfully"})


# -- renewal codes ----------------------------------------------------------------------------------------


def _new_code(app: LabApp, user_id: str, who: str) -> str:
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    with app.store.transaction() as db:
        db.execute("DELETE FROM renewal_codes WHERE user_id = ?", (user_id,))  # a new code replaces the last
        db.execute("INSERT INTO renewal_codes VALUES (?,?,?)", (user_id, code, time.time()))
        _log(db, user_id, "renewal-code", who)
    return code


@ROUTES.route(
    "POST",
    "/auth/generatePasswordRenewalCode",
    contract="auth/renewal-code",
    action=_AUTH + "generatePasswordRenewalCode",
)
def renewal_code(app: LabApp, req: Request) -> Response:
    """A code for the account whose original login is exactly ``login`` (no alias, case-sensitive)."""
    login = req.form().get("login", "")
    if not login:
        raise HttpError(400, {"error": "login required"})
    user = app.store.one("SELECT * FROM users WHERE login = ?", login)
    if user is None:
        return Response(500, b"", {"Content-Type": "application/json"})
    _require_user_admin(app, req, user["id"])
    return Response.json({"renewalCode": _new_code(app, user["id"], _caller(req))})


@ROUTES.route(
    "POST",
    "/auth/massGeneratePasswordRenewalCode",
    contract="auth/mass-renewal-code",
    action=_AUTH + "massGeneratePasswordRenewalCode",
)
def mass_renewal(app: LabApp, req: Request) -> Response:
    """A code per id sent; an unknown id gets one too (stored nowhere), as on the platform."""
    if not app.is_service(req):
        app.require_admc(req)
    ids = req.json().get("users")
    if not isinstance(ids, list):
        raise HttpError(400, {"error": "invalid.users"})
    now = int(time.time() * 1000)
    out = {}
    for user_id in ids:
        if _exists(app, user_id):
            out[user_id] = {"code": _new_code(app, user_id, _caller(req)), "date": now}
        else:
            out[user_id] = {"code": "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8)), "date": now}
    return Response.json(out)
