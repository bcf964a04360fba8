"""The lab's ``/appregistry`` module: applications, roles and the groups holding them.

Each handler names its contract (``tests/contracts/appregistry/*.yaml``). The module's default filter is
AppRegistryFilter (ADMC, or ADML with the structure in its scope); the mass role routes use AdminFilter
(any ADML, any structure) and change the structure **and every structure attached below it**, on their
structure-level profile groups only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pcnctl.lab import graph
from pcnctl.lab.web import HttpError, Module, Request, Response
from pcnctl.records import JsonObject

if TYPE_CHECKING:
    import sqlite3

    from pcnctl.lab.app import LabApp

_REG = "org.entcore.registry.controllers.AppRegistryController|"
ROUTES = Module("appregistry")
# How the platform shows a profile group's name to a French-speaking admin ("<x>-<Profile>").
_PROFILE_NAMES = {
    "Student": "Élèves du groupe {0}.",
    "Teacher": "Enseignants du groupe {0}.",
    "Relative": "Parents du groupe {0}.",
    "Personnel": "Personnels du groupe {0}.",
    "Guest": "Invités du groupe {0}.",
}


def _shown(g: sqlite3.Row) -> str:
    suffix = f"-{g['profile']}"
    if g["profile"] in _PROFILE_NAMES and g["name"].endswith(suffix):
        return _PROFILE_NAMES[g["profile"]].format(g["name"][: -len(suffix)])
    return str(g["name"])


def _scope(app: LabApp, req: Request, structure_id: str | None) -> None:
    """AppRegistryFilter: ADMC, or ADML with the structure in its scope (none given: ADMC only)."""
    app.require_structure(req, structure_id or "")


@ROUTES.route(
    "GET",
    "/appregistry/applications",
    contract="appregistry/applications-get",
    mfa=True,
    action=_REG + "listApplications",
)
def applications(app: LabApp, req: Request) -> Response:
    _scope(app, req, req.arg("structureId"))
    return Response.json(
        [
            {
                "id": a["id"],
                "displayName": a["display_name"],
                "name": a["name"],
                "icon": "conversation-large",
                "isExternal": False,
                "levelsOfEducation": [1, 2],
                "appType": "END_USER",
            }
            for a in app.store.all("SELECT * FROM applications ORDER BY name")
        ]
    )


@ROUTES.route(
    "GET",
    "/appregistry/structure/:structureId/application/:appId/groups/roles",
    contract="appregistry/structure-application-groups-roles-get",
    mfa=True,
    action=_REG + "listApplicationRolesWithGroups",
)
def app_roles(app: LabApp, req: Request) -> Response:
    """The app's roles with the school's groups holding them (structure and class groups)."""
    sid = req.params["structureId"]
    _scope(app, req, sid)
    out: list[JsonObject] = []
    for role in app.store.all("SELECT * FROM roles WHERE app_id = ?", req.params["appId"]):
        groups = app.store.all(
            "SELECT g.* FROM role_groups rg JOIN groups g ON g.id = rg.group_id"
            " WHERE rg.role_id = ? AND g.structure_id = ? ORDER BY g.name",
            role["id"],
            sid,
        )
        out.append(
            {
                "id": role["id"],
                "name": role["name"],
                "distributions": [],
                "appId": role["app_id"],
                "groups": [{"id": g["id"], "name": _shown(g)} for g in groups],
                "transverse": bool(role["transverse"]),
            }
        )
    return Response.json(out)


@ROUTES.route(
    "GET",
    "/appregistry/roles/actions",
    contract="appregistry/roles-actions-get",
    mfa=True,
    action=_REG + "listRolesWithActions",
)
def roles_actions(app: LabApp, req: Request) -> Response:
    _scope(app, req, req.arg("structureId"))
    return Response.json(
        [
            {"id": r["id"], "name": r["name"], "distributions": [], "actions": json.loads(r["actions"])}
            for r in app.store.all("SELECT * FROM roles")
        ]
    )


@ROUTES.route(
    "GET",
    "/appregistry/groups/roles",
    contract="appregistry/groups-roles-get",
    mfa=True,
    action=_REG + "listGroupsWithRoles",
)
def groups_roles(app: LabApp, req: Request) -> Response:
    """Every group of the school, of any kind, with its role ids (ordered by the raw name)."""
    sid = req.arg("structureId")
    _scope(app, req, sid)
    out = []
    for g in app.store.all("SELECT * FROM groups WHERE structure_id = ? ORDER BY name", sid):
        roles = [
            r["role_id"] for r in app.store.all("SELECT role_id FROM role_groups WHERE group_id = ?", g["id"])
        ]
        out.append({"id": g["id"], "name": _shown(g), "groupDisplayName": None, "roles": roles})
    return Response.json(out)


def _mass(app: LabApp, req: Request, grant: bool) -> Response:
    """AdminFilter (no scope check); a JSON body on the DELETE too; empty lists: 400 with no body."""
    app.require_admin(req)
    body = req.json()
    profiles, roles = body.get("profiles"), body.get("roles")
    if not isinstance(profiles, list) or not isinstance(roles, list):
        raise HttpError(500, {"error": "invalid.body"})
    if not profiles or not roles:
        return Response.empty(400)
    with app.store.transaction() as db:
        structures = graph.scope_structures(db, req.params["structureId"])
        groups = db.execute(
            "SELECT id FROM groups WHERE sub_type = 'StructureGroup'"
            f" AND structure_id IN ({','.join('?' * len(structures))})"
            f" AND profile IN ({','.join('?' * len(profiles))})",
            (*structures, *profiles),
        ).fetchall()
        for (gid,) in groups:
            for role in roles:
                if grant:
                    db.execute("INSERT OR IGNORE INTO role_groups VALUES (?,?)", (role, gid))
                else:
                    db.execute("DELETE FROM role_groups WHERE role_id = ? AND group_id = ?", (role, gid))
    return Response.json({})


@ROUTES.route(
    "DELETE",
    "/appregistry/structures/:structureId/roles",
    contract="appregistry/structure-roles-delete",
    mfa=True,
    action=_REG + "unauthorizeProfiles",
)
def mass_unauthorize(app: LabApp, req: Request) -> Response:
    return _mass(app, req, grant=False)


@ROUTES.route(
    "PUT",
    "/appregistry/structures/:structureId/roles",
    contract="appregistry/structure-roles-put",
    mfa=True,
    action=_REG + "authorizeProfiles",
)
def mass_authorize(app: LabApp, req: Request) -> Response:
    return _mass(app, req, grant=True)
