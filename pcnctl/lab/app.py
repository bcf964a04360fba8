"""The lab application: the security gate, the overload knobs, and the routes of each Edifice module."""

from __future__ import annotations

import json
import math
import random
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from pcnctl.lab import account_routes, auth_routes, conversation_routes, directory_routes, messaging_routes
from pcnctl.lab.store import Store
from pcnctl.lab.web import (
    WRITE_METHODS,
    HttpError,
    Request,
    Response,
    Router,
    login_redirect,
    mfa_redirect,
    unauthorized,
)


@dataclass
class Knobs:
    """Overload and fault injection, settable at start and at run time (``POST /__lab/knobs``)."""

    latency_ms: float = 0.0
    capacity: float = 0.0  # requests per second; 0 = unlimited
    fail_rate: float = 0.0  # fraction of API requests answered 500
    sessions_limit: int = 0  # live sessions; 0 = unlimited (above it logins get 509 quota_overflow)
    fail_match: str = ""  # requests whose path contains this always get 500 (targeted faults for tests)


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
        self.counters: dict[str, int] = {"requests": 0, "throttled": 0, "faults": 0}
        self.router = Router()
        auth_routes.register(self.router, self)
        directory_routes.register(self.router, self)
        directory_routes.register_groups(self.router, self)
        account_routes.register(self.router, self)
        messaging_routes.register(self.router, self)
        conversation_routes.register(self.router, self)

    # -- dispatch ------------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        try:
            if req.path.startswith("/__lab/"):
                return self._control(req)
            self.counters["requests"] += 1
            if self.knobs.latency_ms > 0:
                time.sleep(self.knobs.latency_ms / 1000)
            wait = self.gate.take(self.knobs.capacity)
            if wait > 0:
                self.counters["throttled"] += 1
                raise HttpError(
                    429, {"error": "too.many.requests"}, {"Retry-After": str(max(1, math.ceil(wait)))}
                )
            targeted = bool(self.knobs.fail_match) and self.knobs.fail_match in req.path
            if targeted or (self.knobs.fail_rate > 0 and self.faults.random() < self.knobs.fail_rate):
                self.counters["faults"] += 1
                raise HttpError(500, {"error": "lab.injected.fault"})
            return self._dispatch(req)
        except HttpError as exc:
            return exc.response()

    def _dispatch(self, req: Request) -> Response:
        route, params, _known = self.router.match(req.method, req.path)
        if route is None:
            raise HttpError(404, {"error": "not.found"})
        req.params = params
        if route.access == "public":
            self._load_session(req, required=False)
            return route.handler(req)
        bearer = self._load_session(req, required=True)
        if isinstance(bearer, Response):
            return bearer
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
            if module not in (session["scope"] or "").split():
                raise unauthorized()
        if (
            route.mfa
            and session["kind"] == "cookie"
            and not session["mfa"]
            and self.is_admin(session["user_id"])
        ):
            return mfa_redirect(req)
        csrf_needed = session["kind"] == "cookie" and req.method in WRITE_METHODS and route.csrf
        if csrf_needed and (not session["xsrf"] or req.headers.get("x-xsrf-token") != session["xsrf"]):
            raise HttpError(403, {"error": "csrf"})
        return route.handler(req)

    def _load_session(self, req: Request, *, required: bool) -> Response | None:
        auth = req.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else req.arg("access_token")
        if token:
            row = self.store.one("SELECT * FROM sessions WHERE id = ? AND kind = 'token'", token)
            if row is None:
                if required:
                    raise HttpError(
                        401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                    )
                return None
        else:
            sid = req.cookies.get("oneSessionId")
            row = (
                self.store.one("SELECT * FROM sessions WHERE id = ? AND kind = 'cookie'", sid)
                if sid
                else None
            )
            if row is None:
                return login_redirect(req) if required else None
        req.session = row
        if row["user_id"] is not None:
            req.user = self.store.one("SELECT * FROM users WHERE id = ?", row["user_id"])
            if req.user is None or req.user["blocked"]:
                req.session = req.user = None
                if required:
                    return login_redirect(req) if not token else self._invalid_token()
        return None

    @staticmethod
    def _invalid_token() -> Response:
        return HttpError(
            401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ).response()

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

    def new_session(
        self, user_id: str | None, kind: str, client_id: str | None = None, scope: str | None = None
    ) -> str:
        limit = self.knobs.sessions_limit
        if limit and self.store.get("SELECT count(*) n FROM sessions")["n"] >= limit:
            raise HttpError(509, {"error": "quota_overflow"})
        sid = secrets.token_urlsafe(24)
        xsrf = secrets.token_urlsafe(16) if kind == "cookie" else None
        # Workflow rights are computed once, at login, and cached in the session (as AuthManager does).
        actions = json.dumps(messaging_routes.session_actions(self, user_id)) if user_id else "[]"
        self.store.execute(
            "INSERT INTO sessions(id, user_id, kind, client_id, scope, xsrf, created, actions)"
            " VALUES (?,?,?,?,?,?,?,?)",
            sid,
            user_id,
            kind,
            client_id,
            scope,
            xsrf,
            time.time(),
            actions,
        )
        return sid

    # -- control (tests, drills, benchmarks) ----------------------------------------------------------

    def _control(self, req: Request) -> Response:
        if not secrets.compare_digest(req.headers.get("x-lab-control", ""), self.control_token):
            raise HttpError(403, {"error": "lab.control.token"})
        if req.path == "/__lab/reset" and req.method == "POST":
            self.store.reset()
            self.knobs = Knobs()
            self.counters = dict.fromkeys(self.counters, 0)
            return Response.json({"status": "reset"})
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

    def describe(self) -> dict[str, Any]:
        return {"knobs": asdict(self.knobs)}
