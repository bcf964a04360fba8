"""The lab's ``/auth`` module: login form, OAuth2 token endpoint, userinfo, MFA code flow, logout."""

from __future__ import annotations

import base64
import html
import secrets
from typing import TYPE_CHECKING, Any

from pcnctl.lab.seed import hash_password
from pcnctl.lab.web import HttpError, Request, Response, Router, unauthorized

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

LOGIN_PAGE = """<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Connexion</title></head>
<body><h1>ENT lab</h1>{error}<form method="post" action="/auth/login">
<input name="email" placeholder="Identifiant"><input name="password" type="password">
<input type="hidden" name="callBack" value="{callback}"><button>Se connecter</button></form></body></html>"""


def _page(error_key: str | None = None, callback: str = "/") -> Response:
    error = f'<p class="error" data-key="{error_key}">{error_key}</p>' if error_key else ""
    return Response.html(LOGIN_PAGE.format(error=error, callback=html.escape(callback)))


def register(router: Router, app: LabApp) -> None:
    store = app.store

    def check_password(login: str, password: str) -> tuple[Any, str | None]:
        """The user row and the Edifice error key (None when the login may proceed)."""
        user = store.one("SELECT * FROM users WHERE lower(login) = lower(?)", login or "")
        if user is None:
            return None, "auth.error.authenticationFailed"
        stored = user["password"]
        expected_default = store.meta("user_password")
        if stored is None:
            ok = secrets.compare_digest(password or "", expected_default or "")
        elif stored == "ERASED":
            ok = False
        else:
            ok = secrets.compare_digest(hash_password(password or ""), stored)
        if not ok:
            code = store.one(
                "SELECT rowid FROM renewal_codes WHERE user_id = ? AND code = ?", user["id"], password or ""
            )
            if code is None:
                return user, "auth.error.authenticationFailed"
            store.execute("DELETE FROM renewal_codes WHERE rowid = ?", code["rowid"])  # one-time
        if user["blocked"]:
            return user, "auth.error.blockedUser"
        profile = store.one("SELECT blocked FROM profiles WHERE name = ?", user["profile"])
        if profile is not None and profile["blocked"]:
            return user, "auth.error.blockedProfileType"
        return user, None

    @router.route("GET", "/auth/login", access="public")
    def login_page(req: Request) -> Response:
        return _page(callback=req.arg("callback", "/") or "/")

    @router.route("POST", "/auth/login", access="public", csrf=False)
    def login(req: Request) -> Response:
        form = req.form()
        user, error = check_password(form.get("email", ""), form.get("password", ""))
        if error:
            return _page(error, form.get("callBack", "/"))
        sid = app.new_session(user["id"], "cookie")
        xsrf = store.get("SELECT xsrf FROM sessions WHERE id = ?", sid)["xsrf"]
        store.execute(
            "UPDATE users SET last_login = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?", user["id"]
        )
        callback = form.get("callBack") or "/"
        if not callback.startswith("/"):
            callback = "/"
        response = Response.redirect(callback)
        response.cookies = [
            f"oneSessionId={sid}; Path=/; HttpOnly",
            "authenticated=true; Path=/",
            f"XSRF-TOKEN={xsrf}; Path=/",
        ]
        return response

    @router.route("GET", "/auth/logout", access="public")
    def logout(req: Request) -> Response:
        if req.session is not None and req.session["kind"] == "cookie":
            store.execute("DELETE FROM sessions WHERE id = ?", req.session["id"])
        response = Response.redirect("/auth/login")
        response.cookies = ["oneSessionId=; Path=/; Max-Age=0", "authenticated=; Path=/; Max-Age=0"]
        return response

    @router.route("POST", "/auth/oauth2/token", access="public", csrf=False)
    def token(req: Request) -> Response:
        form = req.form()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = req.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                raise HttpError(401, {"error": "invalid_client"}) from None
        client = store.one("SELECT * FROM oauth_clients WHERE client_id = ?", client_id or "")
        grant = form.get("grant_type", "")
        if (
            client is None
            or not secrets.compare_digest(client["secret"], secret or "")
            or client["grant_type"] != grant
        ):
            raise HttpError(401, {"error": "invalid_client"})
        requested = (form.get("scope") or client["scope"]).split()
        if not set(requested) <= set(client["scope"].split()):
            raise HttpError(400, {"error": "invalid_scope"})
        scope = " ".join(requested)
        if grant == "password":
            user, error = check_password(form.get("username", ""), form.get("password", ""))
            if error:
                kind = "invalid_grant" if error == "auth.error.authenticationFailed" else "access_denied"
                raise HttpError(400, {"error": kind, "error_description": error})
            token_id = app.new_session(user["id"], "token", client["client_id"], scope)
        elif grant == "client_credentials":
            token_id = app.new_session(None, "token", client["client_id"], scope)
        else:
            raise HttpError(400, {"error": "unsupported_grant_type"})
        return Response.json(
            {"access_token": token_id, "token_type": "Bearer", "expires_in": 3600, "scope": scope}
        )

    @router.route(
        "GET", "/auth/oauth2/userinfo", action="org.entcore.auth.controllers.AuthController|userInfo"
    )
    def userinfo(req: Request) -> Response:
        if req.user is None:
            raise HttpError(401, {"error": "invalid.user"})
        user = req.user
        structures = store.all(
            "SELECT s.id, s.name, s.uai FROM user_structures us JOIN structures s ON s.id = us.structure_id"
            " WHERE us.user_id = ?",
            user["id"],
        )
        functions: dict[str, Any] = {}
        if app.is_admc(user["id"]):
            functions["SUPER_ADMIN"] = {"code": "SUPER_ADMIN", "scope": None}
        scope = sorted(app.adml_scope(user["id"]))
        if scope:
            functions["ADMIN_LOCAL"] = {"code": "ADMIN_LOCAL", "scope": scope}
        return Response.json(
            {
                "userId": user["id"],
                "login": user["login"],
                "username": user["display_name"],
                "firstName": user["first_name"],
                "lastName": user["last_name"],
                "type": user["profile"],
                "structures": [s["id"] for s in structures],
                "structureNames": [s["name"] for s in structures],
                "uai": [s["uai"] for s in structures],
                "functions": functions,
                "forceChangePassword": bool(user["change_pw"]),
            }
        )

    @router.route("GET", "/auth/user/mfa/code")
    def mfa_start(req: Request) -> Response:
        if req.user is None or req.session is None:
            raise HttpError(401, {"error": "invalid.user"})
        store.execute("UPDATE sessions SET mfa_tries = 0 WHERE id = ?", req.session["id"])
        return Response.json({"type": "email", "waitInSeconds": 0, "state": "pending"})

    @router.route("POST", "/auth/user/mfa/code")
    def mfa_check(req: Request) -> Response:
        if req.user is None:
            raise HttpError(401, {"error": "invalid.user"})
        body = req.json()
        assert req.session is not None
        session = store.get("SELECT * FROM sessions WHERE id = ?", req.session["id"])
        tries_left = 3 - session["mfa_tries"]
        if tries_left <= 0:
            return Response.json({"state": "outdated", "tries": 0, "ttl": 0})
        if secrets.compare_digest(str(body.get("key", "")), store.meta("mfa_code") or ""):
            store.execute("UPDATE sessions SET mfa = 1 WHERE id = ?", req.session["id"])
            return Response.json({"state": "valid", "tries": tries_left, "ttl": 600})
        store.execute("UPDATE sessions SET mfa_tries = mfa_tries + 1 WHERE id = ?", req.session["id"])
        return Response.json({"state": "pending", "tries": tries_left - 1, "ttl": 600})

    @router.route("GET", "/auth/validate-mfa", access="public")
    def validate_mfa_page(req: Request) -> Response:
        return Response.html("<html><body><h1>Validation MFA</h1></body></html>")

    @router.route("GET", "/", access="public")
    def root(req: Request) -> Response:
        if req.session is None:
            return Response.redirect("/auth/login")
        raise unauthorized()
