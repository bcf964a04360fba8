"""The lab application: the security gate, the overload knobs, and the routes of each Edifice module."""

from __future__ import annotations

import json
import math
import random
import secrets
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from urllib.parse import quote

from pcnctl.lab import (
    account_routes,
    appregistry_routes,
    auth_routes,
    communication_routes,
    conversation_routes,
    directory_routes,
    infra_routes,
    mailjobs,
    messaging_routes,
    timeline_routes,
)
from pcnctl.lab.store import Store
from pcnctl.lab.web import (
    WRITE_METHODS,
    HttpError,
    Request,
    Response,
    Router,
    login_redirect,
    mfa_redirect,
    origin,
    unauthorized,
)
from pcnctl.records import JsonObject

# The routes a session that must change its password may still call (the platform's allow-list).
_CHANGE_PW_ALLOWED = frozenset(
    {"/auth/oauth2/userinfo", "/auth/user/requirements", "/theme", "/userbook/preference/language"}
)
# The address of every TCP peer of the lab, which listens on loopback only.
LOOPBACK_PEER = "127.0.0.1"
# Modules whose configuration leaves the anti-CSRF filter off (no csrf-token key in their template).
_NO_CSRF_MODULES = frozenset({"admin", "timeline"})


@dataclass
class Knobs:
    """Overload and fault injection, settable at start and at run time (``POST /__lab/knobs``)."""

    latency_ms: float = 0.0
    capacity: float = 0.0  # requests per second; 0 = unlimited
    fail_rate: float = 0.0  # fraction of API requests answered 500
    # Live sessions; 0 = unlimited. At the limit the login page is the "too many" page and the token
    # endpoint answers 509 quota_overflow (the cookie form itself does not check it, as on the platform).
    sessions_limit: int = 0
    # Requests whose path, or "METHOD path", contains this always get 500 (targeted faults for tests).
    fail_match: str = ""
    fail_count: int = -1  # with fail_match: -1 = every match fails; N = only the next N (a transient fault)
    # The status of those targeted faults (429: a refusal that did nothing; 0: the connection is dropped
    # before the request is acted on, as a reset would).
    fail_status: int = 500
    # The platform's loginUri: where an expired session is sent (an SSO portal); empty = /auth/login.
    login_uri: str = ""
    # Writes (PUT, POST, DELETE) that take effect but whose answer is lost: the connection drops.
    lose_rate: float = 0.0
    # Until this UNIX time every API request has its connection dropped unanswered (an outage).
    outage_until: float = 0.0
    # Where the platform writes its events: "mongodb" (what the event route reads), or another store
    # ("postgresql": the events are written there and the route answers an empty list).
    event_store: str = "mongodb"
    # The timeline's antiFloodDelay: a sender's notification within this many ms of its last one is dropped.
    anti_flood_ms: float = 3000.0
    # The conversation module's optimized-thread-list setting (off in its deployment template).
    optimized_thread_list: bool = False
    # The platform release the lab answers as, where an answer changed with it (GET /communication/visible).
    release: str = "6.15.4"


class RateGate:
    """A token bucket: ``capacity`` requests per second with a one-second burst."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens = 0.0
        self.stamp = time.monotonic()

    def take(self, capacity: float) -> float:
        """0 when the request may pass, else the seconds until a token is free."""
        if capacity <= 0:
            return 0.0
        with self.lock:
            now = time.monotonic()
            self.tokens = min(capacity, self.tokens + (now - self.stamp) * capacity)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / capacity


class LabApp:
    def __init__(self, store: Store, knobs: Knobs | None = None, control_token: str | None = None) -> None:
        self.store = store
        self.knobs = knobs or Knobs()
        self.control_token = control_token or secrets.token_urlsafe(18)
        self.gate = RateGate()
        self.faults = random.Random(0)
        self.counters: dict[str, int] = {"requests": 0, "throttled": 0, "faults": 0, "lost": 0, "dropped": 0}
        self.anti_flood: dict[str, int] = {}  # sender -> when the timeline last accepted its notification
        self.clock = mailjobs.Clock()  # the conversation module's jobs: when the lab last looked
        self.router = Router()
        self.router.mount(auth_routes.ROUTES, self)
        self.router.mount(directory_routes.ROUTES, self)
        self.router.mount(account_routes.ROUTES, self)
        self.router.mount(infra_routes.ROUTES, self)
        self.router.mount(timeline_routes.ROUTES, self)
        self.router.mount(communication_routes.ROUTES, self)
        self.router.mount(appregistry_routes.ROUTES, self)
        self.router.mount(messaging_routes.ROUTES, self)
        self.router.mount(conversation_routes.ROUTES, self)

    # -- dispatch ------------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        try:
            if req.path.startswith("/__lab/"):
                return self._control(req)
            self.counters["requests"] += 1
            if self.knobs.outage_until > time.time():
                self.counters["dropped"] += 1
                return Response.lost()
            if self.knobs.latency_ms > 0:
                time.sleep(self.knobs.latency_ms / 1000)
            wait = self.gate.take(self.knobs.capacity)
            if wait > 0:
                self.counters["throttled"] += 1
                raise HttpError(
                    429, {"error": "too.many.requests"}, {"Retry-After": str(max(1, math.ceil(wait)))}
                )
            targeted = bool(self.knobs.fail_match) and self.knobs.fail_match in f"{req.method} {req.path}"
            if targeted and self.knobs.fail_count >= 0:
                targeted = self.knobs.fail_count > 0
                self.knobs.fail_count -= int(targeted)
            if targeted or (self.knobs.fail_rate > 0 and self.faults.random() < self.knobs.fail_rate):
                self.counters["faults"] += 1
                if targeted and self.knobs.fail_status == 0:
                    return Response.lost()
                raise HttpError(self.knobs.fail_status if targeted else 500, {"error": "lab.injected.fault"})
            response = self._dispatch(req)
            if (
                req.method != "GET"
                and self.knobs.lose_rate > 0
                and self.faults.random() < self.knobs.lose_rate
            ):
                self.counters["lost"] += 1
                return Response.lost()  # the write happened; its answer never arrives
            return response
        except HttpError as exc:
            return exc.response()

    def _dispatch(self, req: Request) -> Response:
        mailjobs.tick(self)  # scheduled messages that are due, the nightly orphan job
        route, params, _known = self.router.match(req.method, req.path)
        if route is None:
            raise HttpError(404, {"error": "not.found"})
        req.params = params
        if route.access == "public":
            self._load_session(req, required=False)
            return route.handler(req)
        missing = self._load_session(req, required=True)
        if missing is not None:
            return missing
        session = req.session
        assert session is not None
        if session["user_id"] is None:
            # client_credentials: the action must be listed in the token's scope; no rights filter, no MFA.
            # Handlers that need a user then answer 401 invalid.user themselves, as Edifice does.
            if route.action is None or route.action not in (session["scope"] or ""):
                raise unauthorized()
            return route.handler(req)
        if session["kind"] == "token":
            module = req.path.strip("/").split("/")[0]
            scopes = (session["scope"] or "").split()
            userinfo = req.path == "/auth/oauth2/userinfo" and "userinfo" in scopes
            if module not in scopes and not userinfo:
                return login_redirect(req, self.knobs.login_uri)  # the platform treats it as no session
        if session["force_pw"] and req.path not in _CHANGE_PW_ALLOWED:
            # A session opened after a forced password change reaches nothing but a few routes.
            return Response.redirect(
                f"{origin(req)}/auth/reset/forceChangePassword?callback={quote(req.path, safe='')}"
            )
        if route.mfa and not session["mfa"] and self.is_admin(session["user_id"]):
            return mfa_redirect(req)  # cookie sessions and user tokens alike
        module = req.path.strip("/").split("/")[0]
        csrf_needed = (
            session["kind"] == "cookie"
            and req.method in WRITE_METHODS
            and route.csrf
            and module not in _NO_CSRF_MODULES
        )
        if csrf_needed and (not session["xsrf"] or req.headers.get("x-xsrf-token") != session["xsrf"]):
            raise HttpError(403, {"error": "invalid.xsrf.token"})
        return route.handler(req)

    def _load_session(self, req: Request, *, required: bool) -> Response | None:
        auth = req.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else req.arg("access_token")
        if token:
            row = self.store.one("SELECT * FROM sessions WHERE id = ? AND kind = 'token'", token)
            if row is None:
                # An unknown or expired token is no session: the platform redirects to its login page.
                return login_redirect(req, self.knobs.login_uri) if required else None
        else:
            sid = req.cookies.get("oneSessionId")
            row = (
                self.store.one("SELECT * FROM sessions WHERE id = ? AND kind = 'cookie'", sid)
                if sid
                else None
            )
            if row is None:
                return login_redirect(req, self.knobs.login_uri) if required else None
        req.session = row
        if row["user_id"] is not None:
            req.user = self.store.one("SELECT * FROM users WHERE id = ?", row["user_id"])
            if req.user is None or req.user["blocked"]:
                req.session = req.user = None
                if required:
                    return login_redirect(req, self.knobs.login_uri)
        return None

    # -- rights helpers (Edifice filters) ------------------------------------------------------------

    def is_admc(self, user_id: str) -> bool:
        return (
            self.store.one("SELECT 1 FROM functions WHERE user_id = ? AND code = 'SUPER_ADMIN'", user_id)
            is not None
        )

    def adml_scope(self, user_id: str) -> set[str]:
        rows = self.store.all(
            "SELECT structure_id FROM functions WHERE user_id = ? AND code = 'ADMIN_LOCAL'", user_id
        )
        return {r["structure_id"] for r in rows}

    def is_admin(self, user_id: str) -> bool:
        return self.store.one("SELECT 1 FROM functions WHERE user_id = ?", user_id) is not None

    def is_service(self, req: Request) -> bool:
        return req.session is not None and req.session["user_id"] is None

    def require_admin(self, req: Request) -> set[str] | None:
        """AdminFilter: ADMC (returns None = everything) or ADML (returns its scope); else 401."""
        if self.is_service(req):
            return None
        assert req.user is not None
        if self.is_admc(req.user["id"]):
            return None
        scope = self.adml_scope(req.user["id"])
        if not scope:
            raise unauthorized()
        return scope

    def require_structure(self, req: Request, structure_id: str) -> None:
        """AdminStructureFilter / AdmlOfStructure: ADMC, or ADML whose scope holds the structure."""
        scope = self.require_admin(req)
        if scope is not None and structure_id not in scope:
            raise unauthorized()

    def require_admc(self, req: Request) -> None:
        """SuperAdminFilter."""
        if self.is_service(req):
            return
        assert req.user is not None
        if not self.is_admc(req.user["id"]):
            raise unauthorized()

    def over_session_limit(self) -> bool:
        """The platform's sessions-limit: at the knob's count, its login page and token endpoint refuse."""
        limit = self.knobs.sessions_limit
        return bool(limit) and self.store.get("SELECT count(*) n FROM sessions")["n"] >= limit

    def new_session(
        self,
        user_id: str | None,
        kind: str,
        client_id: str | None = None,
        scope: str | None = None,
    ) -> str:
        sid = secrets.token_urlsafe(24)
        xsrf = secrets.token_urlsafe(16) if kind == "cookie" else None
        # Workflow rights are computed once, at login, and cached in the session (as AuthManager does).
        actions = json.dumps(messaging_routes.session_actions(self, user_id)) if user_id else "[]"
        self.store.execute(
            "INSERT INTO sessions(id, user_id, kind, client_id, scope, xsrf, created, actions, force_pw)"
            " VALUES (?,?,?,?,?,?,?,?,"
            " coalesce((SELECT change_pw FROM users WHERE id = ?), 0))",
            sid,
            user_id,
            kind,
            client_id,
            scope,
            xsrf,
            time.time(),
            actions,
            user_id,
        )
        return sid

    @staticmethod
    def event_ip(headers: dict[str, str]) -> str:
        """An event's ``ip`` as the platform's ``Renders.getIp`` gives it: the ``X-Forwarded-For`` header as
        it stands whenever it is not empty (a comma list, one hop per proxy), else the TCP peer's address
        (the lab listens on loopback only). Nothing is split or trimmed: the event store writes it as is."""
        return headers.get("x-forwarded-for") or LOOPBACK_PEER

    def record_login(self, req: Request, user: sqlite3.Row, client_id: str | None = None) -> None:
        """The auth module's ``LOGIN`` event: who, from which address and user agent."""
        structures = [
            r["structure_id"]
            for r in self.store.all("SELECT structure_id FROM user_structures WHERE user_id = ?", user["id"])
        ]
        self.store.execute(
            "INSERT INTO events(id, event_type, module, resource_type, user_id, profil, structures, date, ip,"
            " ua, session_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            str(uuid.uuid4()),
            "LOGIN",
            client_id or "Auth",  # a token login is recorded under the OAuth2 client's name
            None,
            user["id"],
            user["profile"],
            json.dumps(structures),
            int(time.time() * 1000),
            self.event_ip(req.headers),
            req.headers.get("user-agent", ""),
            None,
        )

    # -- control (tests, drills, benchmarks) ----------------------------------------------------------

    def _control(self, req: Request) -> Response:
        if not secrets.compare_digest(req.headers.get("x-lab-control", ""), self.control_token):
            raise HttpError(403, {"error": "lab.control.token"})
        if req.path == "/__lab/reset" and req.method == "POST":
            checkpoint = (req.json() if req.body else {}).get("checkpoint")
            try:
                self.store.reset(checkpoint)
            except (ValueError, LookupError) as exc:
                raise HttpError(400, {"error": str(exc)}) from None
            self.knobs = Knobs()
            self.counters = dict.fromkeys(self.counters, 0)
            self.anti_flood.clear()
            return Response.json({"status": "reset"})
        if req.path.startswith("/__lab/jobs/") and req.method == "POST":
            return Response.json(mailjobs.control(self, req.path, req.json() if req.body else {}))
        if req.path == "/__lab/checkpoint" and req.method == "POST":
            try:
                self.store.save_checkpoint(str(req.json().get("name", "")))
            except ValueError as exc:
                raise HttpError(400, {"error": str(exc)}) from None
            return Response.json({"status": "saved"})
        if req.path == "/__lab/knobs" and req.method == "POST":
            values = req.json()
            for key, value in values.items():
                if not hasattr(self.knobs, key):
                    raise HttpError(400, {"error": f"unknown knob {key}"})
                setattr(self.knobs, key, type(getattr(self.knobs, key))(value))
            return Response.json(asdict(self.knobs))
        if req.path == "/__lab/state" and req.method == "GET":
            return Response.json({"knobs": asdict(self.knobs), "counters": self.counters})
        raise HttpError(404, {"error": "not.found"})

    def describe(self) -> JsonObject:
        return {"knobs": asdict(self.knobs)}
