"""The lab's Messagerie entry points: the app page (a workflow right) and the send route (no right).

The communication graph and its routes are in :mod:`pcnctl.lab.communication_routes` and
:mod:`pcnctl.lab.graph`, the roles in :mod:`pcnctl.lab.appregistry_routes`. Kept from Edifice:

* ``POST /conversation/send`` needs no workflow right: it checks only that every recipient is visible to
  the sender (VisiblesFilter), computed live from the graph at each request (``graph.visible``), except
  the people of the message a reply answers (``In-Reply-To``), which it does not check at all.
* Removing the Messagerie role hides the app and its workflow routes for **new** sessions; sessions keep
  the ``authorizedActions`` cached at login, and a scripted send still works.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pcnctl.lab import conversation_routes, graph
from pcnctl.lab.web import Module, Request, Response, require_user, unauthorized

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

_CONV = "org.entcore.conversation.controllers.ConversationController|"


def user_groups(app: LabApp, user_id: str) -> list[Any]:
    """The groups the user is a member of (``IN``)."""
    return app.store.all(
        "SELECT g.* FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE gm.user_id = ?", user_id
    )


def visible(app: LabApp, sender: str, recipient: str) -> bool:
    """Can ``sender`` write to ``recipient`` (a user or a group) through the communication graph?"""
    with app.store.lock:
        return recipient in graph.visible(app.store.db, sender, [recipient])


def session_actions(app: LabApp, user_id: str) -> list[str]:
    """The workflow actions a new session gets, from the roles of the user's groups (cached at login)."""
    rows = app.store.all(
        "SELECT DISTINCT r.actions FROM roles r JOIN role_groups rg ON rg.role_id = r.id"
        " JOIN group_members gm ON gm.group_id = rg.group_id WHERE gm.user_id = ?",
        user_id,
    )
    return sorted({a[0] for r in rows for a in json.loads(r["actions"])})


ROUTES = Module("messagerie")


@ROUTES.route("GET", "/conversation/conversation", contract="conversation/view-get")
def conversation_app(app: LabApp, req: Request) -> Response:
    """The Messagerie app page: a workflow route, checked against the session's cached actions."""
    assert req.session is not None and req.user is not None
    if not app.is_admc(req.user["id"]) and _CONV + "view" not in json.loads(req.session["actions"]):
        raise unauthorized()
    return Response.html("<html><body><h1>Messagerie</h1></body></html>")


@ROUTES.route("POST", "/conversation/send", contract="conversation/send-post", action=_CONV + "send")
def send(app: LabApp, req: Request) -> Response:
    """No workflow right: VisiblesFilter only (a reply's parent people need not be visible)."""
    user = require_user(req)
    return Response.json(conversation_routes.store_message(app, user, req))
