"""The lab's HTTP plumbing: requests, responses, the route table and the security gate.

Security follows Edifice (edifice-api.md §0): no session means a redirect to the login page (cookie) or a
401 ``invalid_token`` (bearer); a denied action is a 401 HTML page; admin routes marked MFA redirect a
cookie session that has not passed MFA to ``/auth/validate-mfa``; cookie writes need ``X-XSRF-TOKEN``
equal to the ``XSRF-TOKEN`` cookie; client_credentials tokens pass only routes whose action name their
scope lists, and routes that need a user answer them 401 ``invalid.user``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote

WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    session: sqlite3.Row | None = None
    user: sqlite3.Row | None = None

    @property
    def cookies(self) -> dict[str, str]:
        jar = SimpleCookie()
        try:
            jar.load(self.headers.get("cookie", ""))
        except Exception:
            return {}
        return {k: v.value for k, v in jar.items()}

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def json(self) -> Any:
        if not self.body:
            raise HttpError(400, {"error": "body.missing"})
        try:
            return json.loads(self.body)
        except ValueError:
            raise HttpError(400, {"error": "body.invalid.json"}) from None

    def form(self) -> dict[str, str]:
        parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[str] = field(default_factory=list)
    dropped: bool = False  # the server closes the connection without answering (a lost answer)

    @classmethod
    def lost(cls) -> Response:
        return cls(0, b"", {}, [], True)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(data, ensure_ascii=False).encode()
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), {"Content-Type": "text/html; charset=utf-8"})

    @classmethod
    def redirect(cls, location: str) -> Response:
        return cls(302, b"", {"Location": location})

    @classmethod
    def empty(cls, status: int = 200) -> Response:
        return cls(status, b"", {})


class HttpError(Exception):
    """Raised by handlers to answer with an error status."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> Response:
        if self.status == 401 and self.body is None:
            return Response.html("<html><body><h1>401 Unauthorized</h1></body></html>", 401)
        return Response.json(
            self.body if self.body is not None else {"error": str(self.status)}, self.status, self.headers
        )


def require_user(req: Request) -> sqlite3.Row:
    """The session's user; a token without one (client_credentials) gets the platform's 401 invalid.user."""
    if req.user is None:
        raise HttpError(401, {"error": "invalid.user"})
    return req.user


def unauthorized() -> HttpError:
    """Edifice's ActionFilter denial: a 401 HTML page."""
    return HttpError(401)


def require_workflow(req: Request, action: str, is_admc: bool) -> None:
    """A WORKFLOW route for a user's session: ``Controller|method`` must be among the rights cached in the
    session at login (an ADMC passes without); client_credentials tokens were checked on their scope."""
    if req.session is None or req.session["user_id"] is None or is_admc:
        return
    if action not in json.loads(req.session["actions"] or "[]"):
        raise unauthorized()


Handler = Callable[[Request], Response]
AppHandler = Callable[[Any, Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    access: str  # public | session | user
    mfa: bool
    action: str | None  # "Controller|method" matched against client_credentials scopes
    csrf: bool
    path: str = ""
    contract: str | None = None  # tests/contracts/NAME.yaml: what the platform answers on this route


@dataclass(frozen=True)
class RouteSpec:
    """One route of a platform module, declared next to its handler ``(app, request) -> response``."""

    method: str
    path: str
    handler: AppHandler
    contract: str
    access: str = "session"
    mfa: bool = False
    action: str | None = None
    csrf: bool = True


class Module:
    """The routes of one platform module (``/directory``, ``/auth``...), as a table built at import.

    Handlers are plain functions of the application and the request, so each one can be read, and tested,
    on its own; :meth:`Router.mount` binds them to one running lab.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.specs: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        contract: str,
        access: str = "session",
        mfa: bool = False,
        action: str | None = None,
        csrf: bool = True,
    ) -> Callable[[AppHandler], AppHandler]:
        def register(fn: AppHandler) -> AppHandler:
            self.specs.append(RouteSpec(method, path, fn, contract, access, mfa, action, csrf))
            return fn

        return register


class Router:
    """The route table of a running lab: every platform module's routes, mounted with :meth:`mount`."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def mount(self, module: Module, app: Any) -> None:
        """Serve every route of ``module`` with ``app`` bound as the handlers' first argument."""
        for spec in module.specs:

            def bound(req: Request, fn: AppHandler = spec.handler) -> Response:
                return fn(app, req)

            self.routes.append(
                Route(
                    spec.method,
                    _pattern(spec.path),
                    bound,
                    spec.access,
                    spec.mfa,
                    spec.action,
                    spec.csrf,
                    spec.path,
                    spec.contract,
                )
            )

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """The route for method+path, its params, and whether the path exists under another method."""
        path_known = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m:
                path_known = True
                if route.method == method:
                    return route, m.groupdict(), True
        return None, {}, path_known


def _pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r":(\w+)", r"(?P<\1>[^/]+)", path) + "$")


def origin(req: Request) -> str:
    """The scheme and host the client used, for the absolute URLs the platform redirects to."""
    return f"http://{req.headers.get('host', '127.0.0.1')}"


def login_redirect(req: Request, login_uri: str = "") -> Response:
    """No session: the login page (an absolute URL, the callback too), or the configured ``loginUri``."""
    if login_uri:
        return Response.redirect(login_uri)
    callback = quote(origin(req) + req.path, safe="")
    return Response.redirect(f"{origin(req)}/auth/login?callback={callback}")


def mfa_redirect(req: Request) -> Response:
    redirect = quote(origin(req) + req.path, safe="")
    return Response.redirect(f"{origin(req)}/auth/validate-mfa?force=true&redirect={redirect}")
