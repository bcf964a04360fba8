"""The lab's ``/communication`` module: the platform's routes over the graph of :mod:`pcnctl.lab.graph`.

Each handler names its contract (``tests/contracts/communication/*.yaml``). The default filter of the
module is CommunicationFilter: ADMC, or ADML whose scope holds the structure every named group depends on
(a class group through its class); an ADML on an unknown group is refused like one outside its scope.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from pcnctl.lab import graph
from pcnctl.lab.web import HttpError, Module, Request, Response, require_workflow, unauthorized
from pcnctl.records import JsonObject

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

_COMM = "org.entcore.communication.controllers.CommunicationController|"
ROUTES = Module("communication")
DIRECTIONS = ("INCOMING", "OUTGOING", "BOTH", "NONE")


def _group(app: LabApp, group_id: str) -> sqlite3.Row | None:
    return app.store.one("SELECT * FROM groups WHERE id = ?", group_id)


def _filter(app: LabApp, req: Request, *group_ids: str) -> list[sqlite3.Row | None]:
    """CommunicationFilter over the groups named; returns them (None for an unknown one, ADMC only)."""
    scope = app.require_admin(req)
    rows = [_group(app, gid) for gid in group_ids]
    if scope is not None and any(g is None or g["structure_id"] not in scope for g in rows):
        raise unauthorized()
    return rows


def _node(app: LabApp, g: sqlite3.Row, *, peers_as_ids: bool) -> JsonObject:
    """A group node's properties as Neo4j returns them: absent properties are left out."""
    n = app.store.get("SELECT count(*) n FROM group_members WHERE group_id = ?", g["id"])["n"]
    node: JsonObject = {"id": g["id"], "name": g["name"], "displayNameSearchField": g["name"].lower()}
    if graph.group_filter(g):
        node["filter"] = graph.group_filter(g)
    if g["users_dir"] is not None:
        node["users"] = g["users_dir"]
    if g["relative_student"] is not None:
        node["relativeCommuniqueStudent"] = g["relative_student"]
    node["nbUsers"] = n
    if peers_as_ids:
        node["communiqueWith"] = _peers(app, g["id"])
    return node


def _peers(app: LabApp, group_id: str) -> list[str]:
    return [
        r["end_id"]
        for r in app.store.all("SELECT end_id FROM communique WHERE start_id = ? ORDER BY end_id", group_id)
    ]


@ROUTES.route(
    "GET",
    "/communication/group/:groupId",
    contract="communication/group-get",
    mfa=True,
    action=_COMM + "getGroup",
)
def get_group(app: LabApp, req: Request) -> Response:
    (g,) = _filter(app, req, req.params["groupId"])
    if g is None:
        return Response.empty(404)
    peers = [_group(app, pid) for pid in _peers(app, g["id"])]
    body = _node(app, g, peers_as_ids=False)
    body["communiqueWith"] = [_node(app, p, peers_as_ids=True) for p in peers if p is not None]
    return Response.json(body)


def _relation_row(app: LabApp, g: sqlite3.Row) -> JsonObject:
    """A row of ``.../outgoing`` and ``.../incoming``."""
    structure = app.store.get("SELECT id, name FROM structures WHERE id = ?", g["structure_id"])
    klass = (
        app.store.one("SELECT id, name FROM classes WHERE id = ?", g["class_id"]) if g["class_id"] else None
    )
    return {
        "id": g["id"],
        "name": g["name"],
        "filter": graph.group_filter(g),
        "displayName": None,
        "internalCommunicationRule": g["users_dir"],
        "type": g["type"],
        "classes": [{"id": klass["id"], "name": klass["name"]}] if klass else None,
        "structures": [{"id": structure["id"], "name": structure["name"]}],
        "subType": g["sub_type"],
    }


@ROUTES.route(
    "GET",
    "/communication/group/:groupId/outgoing",
    contract="communication/group-outgoing-get",
    access="public",
    action=_COMM + "getOutgoingRelations",
)
def outgoing(app: LabApp, req: Request) -> Response:
    """No @SecuredAction on the platform: served outside the security chain, with or without a session."""
    rows = app.store.all(
        "SELECT g.* FROM communique c JOIN groups g ON g.id = c.end_id WHERE c.start_id = ? ORDER BY g.name",
        req.params["groupId"],
    )
    return Response.json([_relation_row(app, g) for g in rows])


@ROUTES.route(
    "GET",
    "/communication/group/:groupId/incoming",
    contract="communication/group-incoming-get",
    access="public",
    action=_COMM + "getIncomingRelations",
)
def incoming(app: LabApp, req: Request) -> Response:
    rows = app.store.all(
        "SELECT g.* FROM communique c JOIN groups g ON g.id = c.start_id WHERE c.end_id = ? ORDER BY g.name",
        req.params["groupId"],
    )
    return Response.json([_relation_row(app, g) for g in rows])


@ROUTES.route(
    "DELETE",
    "/communication/group/:groupId/users",
    contract="communication/group-users-delete",
    mfa=True,
    action=_COMM + "removeLinkWithUsers",
)
def remove_users_link(app: LabApp, req: Request) -> Response:
    """The server picks the side from the group's relations; 409 when it both sends and receives."""
    (g,) = _filter(app, req, req.params["groupId"])
    if g is None:
        raise HttpError(500, {"error": "group not found"})  # the platform never answers this case at all
    with app.store.transaction() as db:
        possible, users = graph.safely_remove_link_with_users(db, g["id"])
    if not possible:
        raise HttpError(409, {"error": "impossible to change direction"})
    return Response.json({"users": users})


@ROUTES.route(
    "POST",
    "/communication/group/:groupId/users",
    contract="communication/group-users-post",
    mfa=True,
    action=_COMM + "addLinkWithUsers",
)
def add_users_link(app: LabApp, req: Request) -> Response:
    (g,) = _filter(app, req, req.params["groupId"])
    if g is not None:
        with app.store.transaction() as db:
            graph.add_link_with_users(db, g["id"], "BOTH")
    return Response.json({"users": "BOTH"})


def _direction(req: Request) -> str:
    direction = (req.arg("direction") or "BOTH").upper()
    if direction not in DIRECTIONS:
        raise HttpError(400, {"error": f"No enum constant Direction.{direction}"})
    return direction


@ROUTES.route(
    "POST",
    "/communication/group/:groupId",
    contract="communication/group-direction-post",
    mfa=True,
    action=_COMM + "addLinkWithUsers",
)
def set_users_link(app: LabApp, req: Request) -> Response:
    """Deprecated: sets ``users`` to the direction given and creates that side's edges, nothing else."""
    (g,) = _filter(app, req, req.params["groupId"])
    direction = _direction(req)
    if g is None:
        return Response.json({"number": 0})
    with app.store.transaction() as db:
        number = graph.add_link_with_users(db, g["id"], direction)
    return Response.json({"number": number})


@ROUTES.route(
    "DELETE",
    "/communication/group/:startGroupId/relations/:endGroupId",
    contract="communication/group-relations-delete",
    mfa=True,
    action=_COMM + "removeRelations",
)
def remove_relation(app: LabApp, req: Request) -> Response:
    """The edge goes, then a side's members' link may go; a group without ``users`` fails afterwards."""
    start, end = _filter(app, req, req.params["startGroupId"], req.params["endGroupId"])
    if start is None or end is None:
        raise HttpError(400, {"error": "java.lang.NullPointerException: Name is null"})
    failed = False
    with app.store.transaction() as db:
        try:
            answer = graph.remove_relation(db, start["id"], end["id"])
        except graph.NoUsersProperty:
            failed = True  # committed: the platform's edge removal is already done when it fails
    if failed:
        raise HttpError(400, {"error": "java.lang.NullPointerException: Name is null"})
    return Response.json(answer)


@ROUTES.route(
    "POST",
    "/communication/v2/group/:startGroupId/communique/:endGroupId",
    contract="communication/group-communique-v2-post",
    mfa=True,
    action=_COMM + "addLinkCheckOnly",
)
def add_relation_v2(app: LabApp, req: Request) -> Response:
    """AdminFilter: any ADML, whatever the groups' schools. Raises the groups' directions as needed."""
    app.require_admin(req)
    start, end = _group(app, req.params["startGroupId"]), _group(app, req.params["endGroupId"])
    if start is None or end is None:
        raise HttpError(500, {"error": "group.not.found"})
    with app.store.transaction() as db:
        changed = graph.add_relation_v2(db, start["id"], end["id"])
    return Response.json(changed or {"ok": "no direction to change"})


@ROUTES.route(
    "POST",
    "/communication/group/:startGroupId/communique/:endGroupId",
    contract="communication/group-communique-post",
    mfa=True,
    action=_COMM + "addLink",
)
def add_relation(app: LabApp, req: Request) -> Response:
    """Deprecated v1: the edge and the id only, no direction change."""
    start, end = _filter(app, req, req.params["startGroupId"], req.params["endGroupId"])
    if start is None or end is None:
        return Response.json({"number": 0})
    app.store.execute("INSERT OR IGNORE INTO communique VALUES (?,?)", start["id"], end["id"])
    return Response.json({"number": 1})


@ROUTES.route(
    "POST",
    "/communication/relative/:groupId",
    contract="communication/relative-post",
    mfa=True,
    action=_COMM + "addLinkBetweenRelativeAndStudent",
)
def add_relative_links(app: LabApp, req: Request) -> Response:
    (g,) = _filter(app, req, req.params["groupId"])
    direction = _direction(req)
    if g is None:
        return Response.json({"number": 0})
    with app.store.transaction() as db:
        number = graph.relative_links(db, g["id"], direction)
    return Response.json({"number": number})


@ROUTES.route(
    "DELETE",
    "/communication/relative/:groupId",
    contract="communication/relative-delete",
    mfa=True,
    action=_COMM + "removeLinkBetweenRelativeAndStudent",
)
def remove_relative_links(app: LabApp, req: Request) -> Response:
    (g,) = _filter(app, req, req.params["groupId"])
    direction = _direction(req)
    if g is None:
        return Response.json({"number": 0})
    with app.store.transaction() as db:
        number = graph.remove_relative_links(db, g["id"], direction)
    return Response.json({"number": number})


@ROUTES.route(
    "GET",
    "/communication/verify/:from/:to",
    contract="communication/verify-get",
    mfa=True,
    action=_COMM + "verify",
)
def verify(app: LabApp, req: Request) -> Response:
    """CommunicationFilter with no group parameter: an ADML has nothing to be checked against (401)."""
    if app.require_admin(req) is not None:
        raise unauthorized()
    with app.store.lock:
        can = graph.verify(app.store.db, req.params["from"], req.params["to"])
    return Response.json({"canCommunicate": can})


@ROUTES.route(
    "GET",
    "/communication/visible/:userId",
    contract="communication/visible-get",
    action=_COMM + "visibleUsers",
)
def visible_users(app: LabApp, req: Request) -> Response:
    """WORKFLOW ``communication.visible.user`` (an ADMC passes). On 6.10.0 and later the handler fails
    before any query without ``schoolId`` (500, no body); with ``schoolId`` the query names variables only
    the other branch defines, so Neo4j refuses it (400) on every release since 5.3.0. Before 6.10.0,
    without ``schoolId``: what the user sees through the property-based query (no own BOTH groups, not
    the user itself), as rows of the platform's default return."""
    if req.user is not None:
        require_workflow(req, _COMM + "visibleUsers", app.is_admc(req.user["id"]))
    if req.arg("schoolId"):
        raise HttpError(400, {"error": "Variable `g` not defined"})
    if _release(app.knobs.release) >= (6, 10, 0):
        return Response.empty(500)
    types = set(req.args("expectedType"))
    with app.store.lock:
        group_ids, user_ids = graph.visible_list(app.store.db, req.params["userId"])
    rows = [_visible_group(app, gid) for gid in group_ids] if not types or types & _GROUP_LABELS else []
    if not types or "User" in types:
        rows += [_visible_user(app, uid) for uid in user_ids]
    rows.sort(key=lambda r: (r["name"] is None, r["name"] or "", r["username"] is None, r["username"] or ""))
    return Response.json(rows)


_GROUP_LABELS = {"Group", "ProfileGroup", "FunctionalGroup", "ManualGroup", "HTGroup"}


def _release(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(".")[:3])
    except ValueError:
        raise HttpError(500, {"error": f"lab knob release {text!r} is not a version"}) from None


def _visible_group(app: LabApp, group_id: str) -> JsonObject:
    g = app.store.get("SELECT * FROM groups WHERE id = ?", group_id)
    return {
        "id": g["id"],
        "name": g["name"],
        "login": None,
        "username": None,
        "type": g["profile"],
        "positionIds": [],
        "positionNames": [],
        "lastName": None,
        "firstName": None,
        "profiles": None,
    }


def _visible_user(app: LabApp, user_id: str) -> JsonObject:
    u = app.store.get("SELECT * FROM users WHERE id = ?", user_id)
    return {
        "id": u["id"],
        "name": None,
        "login": u["login"],
        "username": u["display_name"],
        "type": u["profile"],
        "positionIds": [],
        "positionNames": [],
        "lastName": u["last_name"],
        "firstName": u["first_name"],
        "profiles": [u["profile"]],
    }


@ROUTES.route(
    "GET",
    "/communication/rules",
    contract="communication/rules-get",
    mfa=True,
    action=_COMM + "getDefaultCommunicationRules",
)
def rules(app: LabApp, req: Request) -> Response:
    """The configured rules: the reference set (the lycées' variant is a per-school choice of the lab)."""
    app.require_admin(req)
    return Response.json(graph.REFERENCE_RULES)
