"""The lab's ``/directory`` module: structures, users and groups, in the platform's shapes and rights.

Each handler names its contract (``tests/contracts/directory/*.yaml``), which says what the platform answers
and where in its source that was read. The shapes differ per route on purpose: the platform's queries
differ (see :mod:`pcnctl.ent.edifice.shapes`).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from pcnctl.lab import graph
from pcnctl.lab.seed import search_field
from pcnctl.lab.web import HttpError, Module, Request, Response, unauthorized
from pcnctl.records import JsonObject

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

_CTRL = "org.entcore.directory.controllers."
ROUTES = Module("directory")


# -- reading the lab's tables --------------------------------------------------------------------------


def _users(app: LabApp, where: str, args: tuple[Any, ...], order: str) -> list[sqlite3.Row]:
    return app.store.all(f"SELECT u.* FROM users u WHERE {where} ORDER BY {order}", *args)


def _structures_of(app: LabApp, ids: list[str]) -> dict[str, list[sqlite3.Row]]:
    out: dict[str, list[sqlite3.Row]] = {i: [] for i in ids}
    for chunk in _chunks(ids):
        for row in app.store.all(
            "SELECT us.user_id, s.* FROM user_structures us JOIN structures s ON s.id = us.structure_id"
            f" WHERE us.user_id IN ({','.join('?' * len(chunk))}) ORDER BY s.name",
            *chunk,
        ):
            out[row["user_id"]].append(row)
    return out


def _functions_of(app: LabApp, ids: list[str]) -> dict[str, list[list[Any]]]:
    """``[code, scope]`` pairs per user, scope the structure ids of an ADML (the platform's HAS_FUNCTION)."""
    scopes: dict[str, dict[str, list[str]]] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for f in app.store.all(
            f"SELECT user_id, code, structure_id FROM functions WHERE user_id IN ({marks})", *chunk
        ):
            held = scopes.setdefault(f["user_id"], {}).setdefault(f["code"], [])
            if f["structure_id"]:
                held.append(f["structure_id"])
    return {
        uid: [[code, sorted(scope) or None] for code, scope in sorted(held.items())]
        for uid, held in scopes.items()
    }


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _blocked(row: sqlite3.Row) -> bool | None:
    """The node's ``blocked`` property: absent (null) until an administrator set it."""
    return None if row["blocked"] is None else bool(row["blocked"])


def _external_id(row: sqlite3.Row) -> str:
    return f"EXT-{row['id'][:8]}"


def _hide_admc(app: LabApp, req: Request) -> bool:
    """Non-ADMC callers do not see ADMC accounts in listings (the platform's EXCLUDE_ADMC filter)."""
    return not app.is_service(req) and req.user is not None and not app.is_admc(req.user["id"])


def _parents(app: LabApp) -> dict[str, list[dict[str, str]]]:
    """Each structure's parent structures (``HAS_ATTACHMENT``), as ``{id, name}``."""
    parents: dict[str, list[dict[str, str]]] = {}
    for r in app.store.all(
        "SELECT p.structure_id, s.id, s.name FROM structure_parents p JOIN structures s ON s.id = p.parent_id"
    ):
        parents.setdefault(r["structure_id"], []).append({"id": r["id"], "name": r["name"]})
    return parents


# -- structures ---------------------------------------------------------------------------------------


@ROUTES.route("GET", "/directory/structure/admin/list", contract="directory/structure-admin-list")
def structure_admin_list(app: LabApp, req: Request) -> Response:
    """The structures an admin manages (an ADML with an empty scope would get them all)."""
    scope = app.require_admin(req)
    rows = app.store.all("SELECT * FROM structures ORDER BY name")
    parents = _parents(app)
    return Response.json(
        [
            {
                "id": s["id"],
                "UAI": s["uai"],
                "name": s["name"],
                "externalId": s["external_id"],
                "timetable": None,
                "punctualTimetable": None,
                "hasApp": True,
                "ignoreMFA": False,
                "levelsOfEducation": [int(s["levels"] or 1)],
                "distributions": [],
                "manualName": False,
                "feederName": s["name"],
                "source": "AAF",
                "exports": None,
                "parents": parents.get(s["id"]),
            }
            for s in rows
            if not scope or s["id"] in scope
        ]
    )


@ROUTES.route(
    "GET",
    "/directory/structures",
    contract="directory/structures",
    action=_CTRL + "StructureController|listStructures",
)
def structures(app: LabApp, req: Request) -> Response:
    app.require_admc(req)  # workflow right structure.list.all, held by ADMC only in the lab
    rows = app.store.all("SELECT * FROM structures ORDER BY name")
    return Response.json(
        [
            {
                "id": s["id"],
                "externalId": s["external_id"],
                "name": s["name"],
                "UAI": s["uai"],
                "address": None,
                "zipCode": s["zip_code"],
                "city": s["city"],
                "phone": None,
                "academy": s["academy"],
            }
            for s in rows
        ]
    )


@ROUTES.route("GET", "/directory/structure/:id/users", contract="directory/structure-users", mfa=True)
def structure_users(app: LabApp, req: Request) -> Response:
    """Every user of a structure; ``login`` is the original login here, never the alias."""
    sid = req.params["id"]
    if app.store.one("SELECT 1 FROM structures WHERE id = ?", sid) is None:
        raise unauthorized()
    app.require_structure(req, sid)
    rows = _users(
        app,
        "u.id IN (SELECT user_id FROM user_structures WHERE structure_id = ?)",
        (sid,),
        "u.last_name, u.first_name",
    )
    ids = [r["id"] for r in rows]
    schools, functions = _structures_of(app, ids), _functions_of(app, ids)
    if _hide_admc(app, req):
        rows = [r for r in rows if not any(f[0] == "SUPER_ADMIN" for f in functions.get(r["id"], []))]
    return Response.json(
        [
            {
                "id": r["id"],
                "type": r["profile"],
                "code": None,
                "login": r["login"],
                "firstName": r["first_name"],
                "lastName": r["last_name"],
                "displayName": r["display_name"],
                "source": "AAF",
                "deleteDate": None,
                "disappearanceDate": None,
                "blocked": _blocked(r),
                "creationDate": r["created"],
                "removedFromStructures": None,
                "aafFunctions": [],
                "classes": [],
                "functionalGroups": [],
                "manualGroups": [],
                "functions": functions.get(r["id"], []),
                "duplicates": [],
                "structures": [
                    {"id": s["id"], "name": s["name"], "externalId": s["external_id"]}
                    for s in schools[r["id"]]
                ],
                "userPositions": [],
            }
            for r in rows
        ]
    )


# -- users --------------------------------------------------------------------------------------------


def _admin_list_filter(app: LabApp, req: Request) -> tuple[list[str], list[Any]]:
    """The WHERE clauses of the admin list: whose users (a class, else a structure, else a group, else every
    user attached to a structure), profiles, the name/e-mail search, activity, and the ADML's scope, which
    the platform applies only when no ``groupId`` is given (whatever else is)."""
    scope = app.require_admin(req)
    term = req.arg("searchTerm")
    if term is not None and len(term.strip()) < 3:
        raise unauthorized()  # the platform answers a short term with its 401 page
    where: list[str] = [_whose(req)]
    args: list[Any] = [v for v in (req.arg("classId"), req.arg("structureId"), req.arg("groupId")) if v][:1]
    if scope is not None and not req.arg("groupId"):
        marks = ",".join("?" * len(scope))
        where.append(f"u.id IN (SELECT user_id FROM user_structures WHERE structure_id IN ({marks}))")
        args.extend(sorted(scope))
    profiles = req.args("profile")
    if profiles:
        where.append(f"u.profile IN ({','.join('?' * len(profiles))})")
        args.extend(profiles)
    clause = _search_clause(req)
    if clause is not None:
        where.append(clause[0])
        args.extend(clause[1])
    if req.arg("filterActive") == "inactive":
        where.append("u.last_login IS NULL")
    return where, args


def _whose(req: Request) -> str:
    """Whose users the list starts from: ``classId`` wins over ``structureId``, which wins over
    ``groupId``; with none, every user attached to a structure (WB-2077)."""
    if req.arg("classId"):
        return (
            "u.id IN (SELECT gm.user_id FROM group_members gm JOIN groups g ON g.id = gm.group_id"
            " WHERE g.class_id = ? AND g.type = 'ProfileGroup')"
        )
    if req.arg("structureId"):
        # Outside an ADML's scope the query still runs, restricted to its schools: an empty list.
        return "u.id IN (SELECT user_id FROM user_structures WHERE structure_id = ?)"
    if req.arg("groupId"):
        return "u.id IN (SELECT user_id FROM group_members WHERE group_id = ?)"
    return "EXISTS (SELECT 1 FROM user_structures a WHERE a.user_id = u.id)"


def _search_clause(req: Request) -> tuple[str, list[str]] | None:
    """The platform's transversal search: firstName/lastName prefixes, or searchType email/displayName.

    Any other searchType (``login`` included) means no filter at all, as on the platform.
    """
    first, last = req.arg("firstName"), req.arg("lastName")
    if first or last:
        parts, args = [], []
        # A prefix as a range, so that the index on the search field serves it (STARTS WITH on the platform).
        for column, value in (("u.last_search", last), ("u.first_search", first)):
            if value:
                parts.append(f"{column} >= ? AND {column} < ? || char(1114111)")
                args += [_term(value)] * 2
        return " AND ".join(parts), args
    term, kind = req.arg("searchTerm"), req.arg("searchType")
    if not term:
        return None
    if kind == "email":
        return "lower(replace(coalesce(u.email, ''), ' ', '')) LIKE '%' || ? || '%'", [
            term.lower().replace(" ", "")
        ]
    if kind in ("displayName", "undefined"):
        return "u.display_search LIKE '%' || ? || '%'", [_term(term)]
    return None


def _term(text: str) -> str:
    """A search term as the platform normalises it: accents and non-word characters dropped."""
    return "".join(c for c in search_field(text) if c.isalnum())


@ROUTES.route("GET", "/directory/user/admin/list", contract="directory/user-admin-list", mfa=True)
def user_admin_list(app: LabApp, req: Request) -> Response:
    """Users matching the filters; without structureId an ADMC gets every user of the platform."""
    where, args = _admin_list_filter(app, req)
    rows = _users(app, " AND ".join(where), tuple(args), "u.profile DESC, u.display_name")
    ids = [r["id"] for r in rows]
    schools, functions, classes = _structures_of(app, ids), _functions_of(app, ids), _classes_of(app, ids)
    parents = _parents_of(app, ids)
    if _hide_admc(app, req) and not req.arg("groupId"):
        rows = [r for r in rows if not any(f[0] == "SUPER_ADMIN" for f in functions.get(r["id"], []))]
    return Response.json(
        [
            {
                **_admin_row(r, schools[r["id"]], functions.get(r["id"]), classes.get(r["id"], [])),
                "parents": parents.get(r["id"], []),
            }
            for r in rows
        ]
    )


def _parents_of(app: LabApp, ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """Each user's relatives as the list's ``parents`` gives them: ``u-[:RELATED]->(parent)`` as
    ``{id, firstName, lastName}``, ``[]`` for none (directory ``DefaultUserService.java:835``, ``:853``)."""
    out: dict[str, list[dict[str, str]]] = {}
    for chunk in _chunks(ids):
        for row in app.store.all(
            "SELECT r.child_id, u.id, u.first_name, u.last_name FROM related r JOIN users u"
            f" ON u.id = r.relative_id WHERE r.child_id IN ({','.join('?' * len(chunk))})"
            " ORDER BY u.last_name, u.first_name, u.id",
            *chunk,
        ):
            out.setdefault(row["child_id"], []).append(
                {"id": row["id"], "firstName": row["first_name"], "lastName": row["last_name"]}
            )
    return out


def _classes_of(app: LabApp, ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """Each user's classes: those of the class profile groups the user is in, in the user's schools."""
    out: dict[str, list[dict[str, str]]] = {}
    for chunk in _chunks(ids):
        for row in app.store.all(
            "SELECT DISTINCT gm.user_id, c.id, c.name FROM group_members gm"
            " JOIN groups g ON g.id = gm.group_id JOIN classes c ON c.id = g.class_id"
            " JOIN user_structures us ON us.user_id = gm.user_id AND us.structure_id = c.structure_id"
            " WHERE g.type = 'ProfileGroup'"
            f" AND gm.user_id IN ({','.join('?' * len(chunk))}) ORDER BY c.name, c.id",
            *chunk,
        ):
            out.setdefault(row["user_id"], []).append({"id": row["id"], "name": row["name"]})
    return out


def _admin_row(
    r: sqlite3.Row, schools: list[sqlite3.Row], functions: list[Any] | None, classes: list[dict[str, str]]
) -> JsonObject:
    """One row as the platform's query returns it: an aggregate over no class is ``[{id: null, name:
    null}]``; ``allClassesSubject`` is a teacher's subjects (none in the lab), anyone else's classes."""
    empty: list[dict[str, Any]] = [{"id": None, "name": None}]
    subjects = (
        [{"name": None}]
        if r["profile"] == "Teacher" or not classes
        else [{"name": c["name"]} for c in classes]
    )
    return {
        "id": r["id"],
        "type": r["profile"],
        "externalId": _external_id(r),
        "code": None,
        "login": r["login_alias"] or r["login"],
        "originalLogin": r["login"],
        "firstName": r["first_name"],
        "lastName": r["last_name"],
        "displayName": r["display_name"],
        "source": "AAF",
        "attachmentId": None,
        "birthDate": None,
        "blocked": _blocked(r),
        "creationDate": r["created"],
        "lastLogin": r["last_login"],
        "email": r["email"],
        "phone": None,
        "mobile": None,
        "zipCode": None,
        "address": None,
        "city": None,
        "country": None,
        "aafFunctions": [],
        "structures": [{"id": s["id"], "name": s["name"]} for s in schools],
        "allClasses": classes or empty,
        "functions": functions or [[None, None]],
        "parents": [],
        "children": [],
        "parent1ExternalId": None,
        "parent2ExternalId": None,
        "hasClass": bool(classes),
        "chamiloProfile": "PROFS" if r["profile"] == "Teacher" else "ELEVES",
        "allClassesSubject": subjects,
        "birthYear": None,
        "safeAddress": None,
    }


@ROUTES.route(
    "GET", "/directory/user/:userId", contract="directory/user-get", action=_CTRL + "UserController|get"
)
def get_user(app: LabApp, req: Request) -> Response:
    """The user node merged with its schools (``structureNodes``); ``type`` is the profile list."""
    uid = req.params["userId"]
    row = app.store.one("SELECT * FROM users WHERE id = ?", uid)
    if row is None:
        raise HttpError(404, {"error": "not.found"})
    schools = _structures_of(app, [uid])[uid]
    if not app.is_service(req) and req.user is not None and req.user["id"] != uid:
        scope = app.require_admin(req)
        if scope is not None and not ({s["id"] for s in schools} & scope):
            raise unauthorized()
    node: JsonObject = {
        "id": row["id"],
        "externalId": _external_id(row),
        "login": row["login"],
        "firstName": row["first_name"],
        "lastName": row["last_name"],
        "displayName": row["display_name"],
        "profiles": [row["profile"]],
        "structures": [s["external_id"] for s in schools],
        "source": "AAF",
        "created": row["created"],
        "lastLogin": row["last_login"],
        "email": row["email"],
    }
    if row["login_alias"]:
        node["loginAlias"] = row["login_alias"]
    if row["blocked"] is not None:
        node["blocked"] = bool(row["blocked"])
    functions = _functions_of(app, [uid]).get(uid) or [[None, None]]
    node.update(
        {
            "type": [row["profile"]],
            "structureNodes": [_structure_node(s) for s in schools],
            "functions": functions,
            "children": [{"id": None, "displayName": None, "externalId": None}],
            "parents": [{"id": None, "displayName": None, "externalId": None}],
            "functionalGroups": [{"id": None, "name": None}],
            "administrativeStructures": [{"id": None}],
            "subjectCodes": [],
            "userPositions": [],
            "hasTotp": False,
        }
    )
    return Response.json(node)


def _structure_node(s: sqlite3.Row) -> JsonObject:
    return {
        "id": s["id"],
        "externalId": s["external_id"],
        "name": s["name"],
        "UAI": s["uai"],
        "zipCode": s["zip_code"],
        "city": s["city"],
        "academy": s["academy"],
        "source": "AAF",
    }


# -- groups -------------------------------------------------------------------------------------------


_GROUP_TYPES = frozenset(
    {
        "ProfileGroup",
        "FunctionalGroup",
        "ManualGroup",
        "CommunityGroup",
        "DeleteGroup",
        "HTGroup",
        "DirectionGroup",
    }
)


@ROUTES.route("GET", "/directory/group/admin/list", contract="directory/group-admin-list", mfa=True)
def group_admin_list(app: LabApp, req: Request) -> Response:
    """The groups of a structure (profile groups here), or of the whole platform without structureId."""
    sid = req.arg("structureId")
    kind = req.arg("type")
    if kind and kind not in _GROUP_TYPES:
        raise HttpError(400, {"error": "invalid.group.type"})
    if sid:
        app.require_structure(req, sid)
    elif app.require_admin(req) is not None:
        raise HttpError(400, {"error": "forbidden"})
    rows = app.store.all(
        "SELECT g.*, s.name AS structure_name, c.name AS class_name,"
        " (SELECT count(*) FROM group_members gm WHERE gm.group_id = g.id) AS n"
        " FROM groups g JOIN structures s ON s.id = g.structure_id LEFT JOIN classes c ON c.id = g.class_id"
        f" WHERE {'g.structure_id = ?' if sid else '1=1'} ORDER BY g.name",
        *([sid] if sid else []),
    )
    return Response.json(
        [
            {
                "id": g["id"],
                "name": g["name"],
                "displayName": None,
                "filter": graph.group_filter(g),
                "labels": ["Group", g["type"], "Visible"],
                "type": g["type"],
                "internalCommunicationRule": g["users_dir"],
                "nbUsers": g["n"],
                "classes": [{"id": g["class_id"], "name": g["class_name"]}] if g["class_id"] else None,
                "structures": [{"id": g["structure_id"], "name": g["structure_name"]}],
                "subType": g["sub_type"],
                "createdAt": None,
                "createdByName": None,
                "modifiedAt": None,
                "modifiedByName": None,
                "lockDelete": None,
                "lockCompose": None,
            }
            for g in rows
            if not kind or g["type"] == kind
        ]
    )
