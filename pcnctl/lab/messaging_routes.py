"""The lab's messaging levers: the communication graph, the app registry, and the send route.

Semantics kept from Edifice (edifice-api.md §2):

* ``POST /conversation/send`` needs no workflow right: it checks only that every recipient is visible to
  the sender through COMMUNIQUE edges (VisiblesFilter). A sender reaches a recipient when one of the
  sender's groups lets its members write (``users`` BOTH or INCOMING) and either is the recipient's group
  (with a self edge) or has an edge to it, and that group lets its members be reached (BOTH or OUTGOING).
* Removing the Messagerie role hides the app and its workflow routes for **new** sessions; sessions keep
  the ``authorizedActions`` cached at login, and a scripted send still works.
* ``DELETE /appregistry/structures/:structureId/roles`` takes a JSON body on a DELETE and does not check
  the ADML's scope (AdminFilter).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pcnctl.lab import conversation_routes
from pcnctl.lab.web import HttpError, Request, Response, Router, unauthorized

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

_COMM = "org.entcore.communication.controllers.CommunicationController|"
_REG = "org.entcore.registry.controllers.AppRegistryController|"
_CONV = "org.entcore.conversation.controllers.ConversationController|"
SENDERS = ("BOTH", "INCOMING")
RECEIVERS = ("BOTH", "OUTGOING")


def user_groups(app: LabApp, user_id: str) -> list[Any]:
    return app.store.all(
        "SELECT g.* FROM groups g JOIN user_structures us ON us.structure_id = g.structure_id"
        " JOIN users u ON u.id = us.user_id WHERE u.id = ? AND g.profile = u.profile",
        user_id,
    )


def visible(app: LabApp, sender: str, recipient: str) -> bool:
    """Can ``sender`` write to ``recipient`` through the communication graph?"""
    sending = [g["id"] for g in user_groups(app, sender) if g["users_dir"] in SENDERS]
    receiving = [g["id"] for g in user_groups(app, recipient) if g["users_dir"] in RECEIVERS]
    if not sending or not receiving:
        return False
    marks_s, marks_r = ",".join("?" * len(sending)), ",".join("?" * len(receiving))
    row = app.store.one(
        f"SELECT 1 FROM communique WHERE start_id IN ({marks_s}) AND end_id IN ({marks_r}) LIMIT 1",
        *sending,
        *receiving,
    )
    return row is not None


def session_actions(app: LabApp, user_id: str) -> list[str]:
    """The workflow actions a new session gets, from the roles of the user's groups (cached at login)."""
    rows = app.store.all(
        "SELECT DISTINCT r.actions FROM roles r JOIN role_groups rg ON rg.role_id = r.id WHERE rg.group_id IN"
        " (SELECT g.id FROM groups g JOIN user_structures us ON us.structure_id = g.structure_id"
        "  JOIN users u ON u.id = us.user_id WHERE u.id = ? AND g.profile = u.profile)",
        user_id,
    )
    return sorted({a[0] for r in rows for a in json.loads(r["actions"])})


def register(router: Router, app: LabApp) -> None:
    store = app.store

    def group_or_401(group_id: str) -> Any:
        group = store.one("SELECT * FROM groups WHERE id = ?", group_id)
        if group is None:
            raise HttpError(404, {"error": "group.not.found"})
        return group

    def communication_filter(req: Request, *group_ids: str) -> None:
        """CommunicationFilter: ADMC, or ADML whose scope holds the structures of the groups."""
        for group_id in group_ids:
            app.require_structure(req, group_or_401(group_id)["structure_id"])

    def group_json(g: Any) -> dict[str, Any]:
        return {
            "id": g["id"],
            "name": g["name"],
            "type": g["type"],
            "filter": g["profile"],
            "structures": [{"id": g["structure_id"]}],
        }

    # -- communication --------------------------------------------------------------------------------

    @router.route("GET", "/communication/group/:groupId", mfa=True, action=_COMM + "getGroup")
    def get_group(req: Request) -> Response:
        g = group_or_401(req.params["groupId"])
        communication_filter(req, g["id"])
        peers = [r["end_id"] for r in store.all("SELECT end_id FROM communique WHERE start_id = ?", g["id"])]
        return Response.json({**group_json(g), "users": g["users_dir"], "communiqueWith": peers})

    @router.route("GET", "/communication/group/:groupId/outgoing", action=_COMM + "getOutgoingRelations")
    def outgoing(req: Request) -> Response:  # no @SecuredAction on the platform: any session
        rows = store.all(
            "SELECT g.* FROM communique c JOIN groups g ON g.id = c.end_id WHERE c.start_id = ?"
            " ORDER BY g.name",
            req.params["groupId"],
        )
        return Response.json([group_json(g) for g in rows])

    @router.route("GET", "/communication/group/:groupId/incoming", action=_COMM + "getIncomingRelations")
    def incoming(req: Request) -> Response:
        rows = store.all(
            "SELECT g.* FROM communique c JOIN groups g ON g.id = c.start_id WHERE c.end_id = ?"
            " ORDER BY g.name",
            req.params["groupId"],
        )
        return Response.json([group_json(g) for g in rows])

    @router.route(
        "DELETE", "/communication/group/:groupId/users", mfa=True, action=_COMM + "removeLinkWithUsers"
    )
    def remove_users_link(req: Request) -> Response:
        g = group_or_401(req.params["groupId"])
        communication_filter(req, g["id"])
        nxt = {"BOTH": "OUTGOING", "INCOMING": "NONE"}.get(g["users_dir"])
        if nxt is None:
            raise HttpError(409, {"error": "IMPOSSIBLE_TO_CHANGE_DIRECTION"})
        store.execute("UPDATE groups SET users_dir = ? WHERE id = ?", nxt, g["id"])
        return Response.json({"users": nxt})

    @router.route("POST", "/communication/group/:groupId/users", mfa=True, action=_COMM + "addLinkWithUsers")
    def add_users_link(req: Request) -> Response:
        g = group_or_401(req.params["groupId"])
        communication_filter(req, g["id"])
        store.execute("UPDATE groups SET users_dir = 'BOTH' WHERE id = ?", g["id"])
        return Response.json({"users": "BOTH"})

    @router.route(
        "DELETE",
        "/communication/group/:startGroupId/relations/:endGroupId",
        mfa=True,
        action=_COMM + "removeRelations",
    )
    def remove_relation(req: Request) -> Response:
        start, end = group_or_401(req.params["startGroupId"]), group_or_401(req.params["endGroupId"])
        communication_filter(req, start["id"], end["id"])
        store.execute("DELETE FROM communique WHERE start_id = ? AND end_id = ?", start["id"], end["id"])
        return Response.json({"sender": start["users_dir"], "receiver": end["users_dir"]})

    @router.route("POST", "/communication/v2/group/:startGroupId/communique/:endGroupId", mfa=True)
    def add_relation(req: Request) -> Response:
        app.require_admin(req)  # AdminFilter
        start, end = group_or_401(req.params["startGroupId"]), group_or_401(req.params["endGroupId"])
        store.execute("INSERT OR IGNORE INTO communique VALUES (?,?)", start["id"], end["id"])
        return Response.json({})

    @router.route("GET", "/communication/verify/:from/:to", action=_COMM + "verify")
    def verify(req: Request) -> Response:
        app.require_admc(req)  # CommunicationFilter with no group parameter: ADMC only in practice
        for uid in (req.params["from"], req.params["to"]):
            if store.one("SELECT 1 FROM users WHERE id = ?", uid) is None:
                raise HttpError(404, {"error": "user.not.found"})
        return Response.json({"canCommunicate": visible(app, req.params["from"], req.params["to"])})

    # -- app registry ---------------------------------------------------------------------------------

    def registry_scope(req: Request) -> str:
        """AppRegistryFilter: ADMC, or ADML with ?structureId= in its scope."""
        sid = req.arg("structureId") or ""
        app.require_structure(req, sid)
        return sid

    @router.route("GET", "/appregistry/applications", mfa=True, action=_REG + "listApplications")
    def applications(req: Request) -> Response:
        registry_scope(req)
        rows = store.all("SELECT * FROM applications ORDER BY name")
        return Response.json(
            [
                {
                    "id": a["id"],
                    "name": a["name"],
                    "displayName": a["display_name"],
                    "address": a["address"],
                    "isExternal": False,
                    "appType": "END_USER",
                }
                for a in rows
            ]
        )

    @router.route(
        "GET",
        "/appregistry/structure/:structureId/application/:appId/groups/roles",
        mfa=True,
        action=_REG + "listApplicationRolesWithGroups",
    )
    def app_roles(req: Request) -> Response:
        sid = req.params["structureId"]
        app.require_structure(req, sid)
        out = []
        for role in store.all("SELECT * FROM roles WHERE app_id = ?", req.params["appId"]):
            groups = store.all(
                "SELECT g.id, g.name FROM role_groups rg JOIN groups g ON g.id = rg.group_id"
                " WHERE rg.role_id = ? AND g.structure_id = ? ORDER BY g.name",
                role["id"],
                sid,
            )
            out.append(
                {
                    "id": role["id"],
                    "name": role["name"],
                    "appId": role["app_id"],
                    "distributions": [],
                    "transverse": bool(role["transverse"]),
                    "groups": [{"id": g["id"], "name": g["name"]} for g in groups],
                }
            )
        return Response.json(out)

    @router.route("GET", "/appregistry/roles/actions", mfa=True, action=_REG + "listRolesWithActions")
    def roles_actions(req: Request) -> Response:
        registry_scope(req)
        return Response.json(
            [
                {"id": r["id"], "name": r["name"], "distributions": [], "actions": json.loads(r["actions"])}
                for r in store.all("SELECT * FROM roles")
            ]
        )

    @router.route("GET", "/appregistry/groups/roles", mfa=True, action=_REG + "listGroupsWithRoles")
    def groups_roles(req: Request) -> Response:
        sid = registry_scope(req)
        out = []
        for g in store.all("SELECT * FROM groups WHERE structure_id = ? ORDER BY name", sid):
            roles = [
                r["role_id"] for r in store.all("SELECT role_id FROM role_groups WHERE group_id = ?", g["id"])
            ]
            out.append({"id": g["id"], "name": g["name"], "groupDisplayName": g["name"], "roles": roles})
        return Response.json(out)

    def mass_roles(req: Request, grant: bool) -> Response:
        app.require_admin(req)  # AdminFilter: no check of the ADML's scope on the platform
        body = req.json()  # a JSON body, on a DELETE too
        profiles, roles = body.get("profiles"), body.get("roles")
        if not isinstance(profiles, list) or not isinstance(roles, list):
            raise HttpError(400, {"error": "invalid.body"})
        groups = (
            store.all(
                "SELECT id FROM groups WHERE structure_id = ? AND profile IN "
                f"({','.join('?' * len(profiles))})",
                req.params["structureId"],
                *profiles,
            )
            if profiles
            else []
        )
        with store.transaction() as db:
            for g in groups:
                for role in roles:
                    if grant:
                        db.execute("INSERT OR IGNORE INTO role_groups VALUES (?,?)", (role, g["id"]))
                    else:
                        db.execute(
                            "DELETE FROM role_groups WHERE role_id = ? AND group_id = ?", (role, g["id"])
                        )
        return Response.json({})

    @router.route(
        "DELETE", "/appregistry/structures/:structureId/roles", mfa=True, action=_REG + "massUnauthorize"
    )
    def mass_unauthorize(req: Request) -> Response:
        return mass_roles(req, grant=False)

    @router.route(
        "PUT", "/appregistry/structures/:structureId/roles", mfa=True, action=_REG + "massAuthorize"
    )
    def mass_authorize(req: Request) -> Response:
        return mass_roles(req, grant=True)

    # -- conversation ---------------------------------------------------------------------------------

    @router.route("GET", "/conversation/conversation")
    def conversation_app(req: Request) -> Response:
        """The Messagerie app page: a workflow route, checked against the session's cached actions."""
        assert req.session is not None and req.user is not None
        if not app.is_admc(req.user["id"]) and _CONV + "view" not in json.loads(req.session["actions"]):
            raise unauthorized()
        return Response.html("<html><body><h1>Messagerie</h1></body></html>")

    @router.route("POST", "/conversation/send", action=_CONV + "send")
    def send(req: Request) -> Response:
        if req.user is None:
            raise HttpError(401, {"error": "invalid.user"})
        body = req.json()
        draft = req.arg("id")  # sending a saved draft: its recipients are the draft's
        if draft:
            row = store.one('SELECT "to", cc, cci FROM conversation.messages WHERE id = ?', draft)
            body = {**body, **{k: json.loads(row[k] or "[]") for k in ("to", "cc", "cci")}} if row else body
        recipients = [str(x) for key in ("to", "cc", "cci") for x in (body.get(key) or [])]
        if not recipients:
            raise HttpError(400, {"error": "conversation.send.error.norecipient"})
        # VisiblesFilter: every user or group named must be visible to the sender (checked when resolved).
        return Response.json(
            conversation_routes.store_message(app, req.user, body, recipients, req.headers, draft or None)
        )
