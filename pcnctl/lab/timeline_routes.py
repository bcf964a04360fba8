"""The lab's ``/timeline`` module: flash messages, the banners pcnctl shows in schools during an incident
(``tests/contracts/timeline/flashmsg-structure.yaml``)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from pcnctl.lab.web import HttpError, Module, Request, Response

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

ROUTES = Module("timeline")
_FIELDS = frozenset(
    {
        "title",
        "contents",
        "startDate",
        "endDate",
        "profiles",
        "color",
        "customColor",
        "structureId",
        "signature",
        "signatureColor",
        "userPositions",
    }
)
_REQUIRED = ("title", "contents", "startDate", "endDate", "profiles")


def _check(body: Any) -> dict[str, Any]:
    """The platform validates the body against a JSON schema: no unknown field, a colour, the dates."""
    if not isinstance(body, dict):
        raise HttpError(400, {"error": "object expected"})
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise HttpError(400, {"error": f"object instance has properties which are not allowed: {unknown}"})
    missing = [k for k in _REQUIRED if k not in body]
    if missing or not (body.get("color") or body.get("customColor")):
        raise HttpError(400, {"error": f"object has missing required properties: {missing or ['color']}"})
    if not isinstance(body["contents"], dict) or not isinstance(body["profiles"], list):
        raise HttpError(400, {"error": "contents must be an object and profiles a list"})
    return body


@ROUTES.route(
    "POST", "/timeline/flashmsg/structure/:structureId", contract="timeline/flashmsg-structure", mfa=True
)
def flash(app: LabApp, req: Request) -> Response:
    sid = req.params["structureId"]
    app.require_structure(req, sid)  # AdmlOfStructure
    body = _check(req.json())
    with app.store.transaction() as db:
        cursor = db.execute(
            "INSERT INTO flashmsg(id, structure_id, title, contents, profiles, owner, created)"
            " VALUES ((SELECT count(*) + 1 FROM flashmsg), ?, ?, ?, ?, ?, ?)",
            (
                sid,
                body["title"],
                json.dumps(body["contents"]),
                json.dumps(body["profiles"]),
                req.user["id"] if req.user is not None else None,
                time.time(),
            ),
        )
        new_id = int(cursor.lastrowid or 0)
    return Response.json({"id": new_id})
