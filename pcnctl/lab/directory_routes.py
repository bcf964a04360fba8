"""The lab's ``/directory`` module: structures and users, with the rights of the real filters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcnctl.lab.web import HttpError, Request, Response, Router, unauthorized

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

_CTRL = "org.entcore.directory.controllers."


def register(router: Router, app: LabApp) -> None:
    store = app.store

    def user_rows(where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        rows = store.all(
            "SELECT u.*, group_concat(s.id || '|' || s.name, char(31)) AS structs"
            " FROM users u JOIN user_structures us ON us.user_id = u.id"
            " JOIN structures s ON s.id = us.structure_id"
            f" WHERE {where} GROUP BY u.id ORDER BY u.last_name, u.first_name, u.login",
            *args,
        )
        functions: dict[str, list[str]] = {}
        ids = [r["id"] for r in rows]
        if ids:
            for f in store.all(
                f"SELECT user_id, code FROM functions WHERE user_id IN ({','.join('?' * len(ids))})", *ids
            ):
                functions.setdefault(f["user_id"], []).append(f["code"])
        out = []
        for r in rows:
            structures = [
                {"id": s.split("|", 1)[0], "name": s.split("|", 1)[1]}
                for s in (r["structs"] or "").split("\x1f")
                if s
            ]
            out.append(
                {
                    "id": r["id"],
                    "type": r["profile"],
                    "profiles": [r["profile"]],
                    "externalId": f"EXT-{r['id'][:8]}",
                    "login": r["login"],
                    "firstName": r["first_name"],
                    "lastName": r["last_name"],
                    "displayName": r["display_name"],
                    "blocked": bool(r["blocked"]),
                    "creationDate": r["created"],
                    "lastLogin": r["last_login"],
                    "email": r["email"],
                    "source": "AAF",
                    "structures": structures,
                    "functions": sorted(set(functions.get(r["id"], []))),
                }
            )
        return out

    @router.route("GET", "/directory/structure/admin/list")
    def structure_admin_list(req: Request) -> Response:
        scope = app.require_admin(req)
        rows = store.all("SELECT * FROM structures ORDER BY name")
        return Response.json(
            [
                {
                    "id": s["id"],
                    "UAI": s["uai"],
                    "name": s["name"],
                    "externalId": s["external_id"],
                    "levelsOfEducation": [int(s["levels"] or 1)],
                    "hasApp": True,
                    "ignoreMFA": False,
                    "source": "AAF",
                    "parents": [],
                }
                for s in rows
                if scope is None or s["id"] in scope
            ]
        )

    @router.route("GET", "/directory/structures", action=_CTRL + "StructureController|listStructures")
    def structures(req: Request) -> Response:
        app.require_admc(req)  # workflow right structure.list.all, held by ADMC only in the lab
        rows = store.all("SELECT * FROM structures ORDER BY name")
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
                    "academy": s["academy"],
                }
                for s in rows
            ]
        )

    @router.route("GET", "/directory/structure/:id/users", mfa=True)
    def structure_users(req: Request) -> Response:
        sid = req.params["id"]
        if store.one("SELECT 1 FROM structures WHERE id = ?", sid) is None:
            raise unauthorized()
        app.require_structure(req, sid)
        rows = user_rows("u.id IN (SELECT user_id FROM user_structures WHERE structure_id = ?)", (sid,))
        if not app.is_service(req) and req.user is not None and not app.is_admc(req.user["id"]):
            rows = [r for r in rows if "SUPER_ADMIN" not in r["functions"]]  # ADMC hidden from non-ADMC
        return Response.json(rows)

    @router.route("GET", "/directory/user/admin/list", mfa=True)
    def user_admin_list(req: Request) -> Response:
        scope = app.require_admin(req)
        sid = req.arg("structureId")
        where, args = ["1=1"], []
        if sid:
            if scope is not None and sid not in scope:
                raise unauthorized()
            where.append("u.id IN (SELECT user_id FROM user_structures WHERE structure_id = ?)")
            args.append(sid)
        elif scope is not None:
            marks = ",".join("?" * len(scope))
            where.append(f"u.id IN (SELECT user_id FROM user_structures WHERE structure_id IN ({marks}))")
            args.extend(sorted(scope))
        profiles = req.args("profile")
        if profiles:
            where.append(f"u.profile IN ({','.join('?' * len(profiles))})")
            args.extend(profiles)
        term = req.arg("searchTerm")
        if term:
            if len(term) < 3:
                raise HttpError(400, {"error": "search.term.too.short"})
            kind = req.arg("searchType", "displayName")
            column = {
                "email": "u.email",
                "login": "u.login",
                "fullName": "u.first_name || ' ' || u.last_name",
            }.get(kind or "", "u.display_name")
            where.append(f"lower({column}) LIKE lower(?)")
            args.append(f"%{term}%")
        if req.arg("filterActive") == "inactive":
            where.append("u.last_login IS NULL")
        if not sid and scope is None and not profiles and not term:
            raise HttpError(400, {"error": "missing.filter"})  # the real route refuses an unbounded listing
        return Response.json(user_rows(" AND ".join(where), tuple(args)))

    @router.route("GET", "/directory/user/:userId", action=_CTRL + "UserController|get")
    def get_user(req: Request) -> Response:
        uid = req.params["userId"]
        rows = user_rows("u.id = ?", (uid,))
        if not rows:
            raise HttpError(404, {"error": "user.not.found"})
        if not app.is_service(req) and req.user is not None and req.user["id"] != uid:
            scope = app.require_admin(req)
            if scope is not None and not ({s["id"] for s in rows[0]["structures"]} & scope):
                raise unauthorized()
        return Response.json(rows[0])


def register_groups(router: Router, app: LabApp) -> None:
    """``GET /directory/group/admin/list``: the groups of a structure (profile groups here)."""
    store = app.store

    @router.route("GET", "/directory/group/admin/list", mfa=True)
    def group_admin_list(req: Request) -> Response:
        sid = req.arg("structureId")
        if not sid:
            raise HttpError(400, {"error": "missing.structureId"})
        app.require_structure(req, sid)
        kind = req.arg("type")
        rows = store.all(
            "SELECT g.*, (SELECT count(*) FROM users u JOIN user_structures us ON us.user_id = u.id"
            "  WHERE us.structure_id = g.structure_id AND u.profile = g.profile) AS n"
            " FROM groups g WHERE g.structure_id = ? ORDER BY g.name",
            sid,
        )
        return Response.json(
            [
                {
                    "id": g["id"],
                    "name": g["name"],
                    "displayName": g["name"],
                    "type": g["type"],
                    "filter": g["profile"],
                    "subType": "StructureGroup",
                    "nbUsers": g["n"],
                    "internalCommunicationRule": "BOTH" if g["users_dir"] == "BOTH" else "NONE",
                    "structures": [{"id": sid}],
                }
                for g in rows
                if not kind or g["type"] == kind
            ]
        )
