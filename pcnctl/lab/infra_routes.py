"""The lab's ``/infra`` module: the event store (``tests/contracts/infra/event-list.yaml``).

An event's ``ip`` is served as it was written: the raw ``X-Forwarded-For`` of the request (a comma list
behind several proxies), or the peer's address without one (``LabApp.event_ip``).

Events are read by time window, one page at a time: a page holds at most ``PAGE_LIMIT`` events and the
``X-HAS-MORE`` header says the caller must ask again from the last event's date (the platform has no skip).
``event-types`` is a repeated parameter, one type per value, as the platform reads it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pcnctl.lab.web import HttpError, Module, Request, Response
from pcnctl.records import JsonObject

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

ROUTES = Module("infra")
PAGE_LIMIT = 1000  # the platform's events-batch-size is 50,000; smaller here so tests exercise paging
_ACTION = "org.entcore.infra.controllers.EventStoreController|listEventsPartial"


@ROUTES.route(
    "GET", "/infra/v2/event/list/:type/:epoch", contract="infra/event-list", action=_ACTION, csrf=False
)
def events(app: LabApp, req: Request) -> Response:
    app.require_admc(req)  # SuperAdminFilter
    if req.params["type"] not in ("events", "traces"):
        raise HttpError(400, {"error": "invalid.type"})
    try:
        start = int(req.params["epoch"])
        duration = int(req.arg("duration", str(24 * 3600 * 1000)) or 0)
    except ValueError:
        raise HttpError(400, {"error": "invalid.input.format"}) from None
    if app.knobs.event_store != "mongodb":
        # The route reads MongoDB's collection only (infra Starter builds a MongoDbEventStore for it): a
        # deployment whose events go to another store answers an empty page, with no error.
        return Response.json([], headers={"X-HAS-MORE": "false"})
    where = ["date >= ?", "date < ?"]
    args: list[Any] = [start, start + duration]
    kinds = req.args("event-types")
    if kinds:
        where.append(f"event_type IN ({','.join('?' * len(kinds))})")
        args += kinds
    order = "ORDER BY date, id" if req.arg("sorted") == "true" else "ORDER BY rowid"
    rows = app.store.all(
        f"SELECT * FROM events WHERE {' AND '.join(where)} {order} LIMIT ?", *args, PAGE_LIMIT + 1
    )
    more = len(rows) > PAGE_LIMIT
    return Response.json(
        [_event(r) for r in rows[:PAGE_LIMIT]], headers={"X-HAS-MORE": "true" if more else "false"}
    )


def _event(r: Any) -> JsonObject:
    """One event as the platform's generic event store writes it (no login, no session id)."""
    out: JsonObject = {
        "_id": r["id"],
        "event-type": r["event_type"],
        "module": r["module"],
        "date": r["date"],
        "userId": r["user_id"],
        "profil": r["profil"],
        "structures": json.loads(r["structures"] or "[]"),
        "classes": [],
    }
    if r["resource_type"]:
        out["resource-type"] = r["resource_type"]
    if r["ip"] is not None:
        out.update(
            {
                "ua": r["ua"] or "",
                "osName": "Unknown",
                "osVersion": "Unknown",
                "deviceType": "Unknown",
                "deviceName": "Unknown",
                "ip": r["ip"],
            }
        )
    return out
