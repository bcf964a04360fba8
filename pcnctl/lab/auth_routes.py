"""The lab's ``/auth`` module: login form, OAuth2 token endpoint, userinfo, MFA code flow, logout.

Each handler names its contract (``tests/contracts/auth/*.yaml``). What a client sees is the platform's:
a refused login re-renders the page with the **translated** message, the token endpoint answers with the
OAuth2 error codes Edifice uses, and userinfo has the versions of the platform's adapters.
"""

from __future__ import annotations

import base64
import html
import secrets
import sqlite3
from typing import TYPE_CHECKING

from pcnctl.lab.seed import hash_password
from pcnctl.lab.web import HttpError, Module, Request, Response, unauthorized
from pcnctl.records import JsonObject

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

ROUTES = Module("auth")
_AUTH = "org.entcore.auth.controllers.AuthController|"

LOGIN_PAGE = """<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Connexion</title></head>
<body class="login" ng-controller="LoginController" ng-init='error = "{error}"; callBack = "{callback}"; \
mainPage = ""'><h1>ENT lab</h1><form method="post" action="/auth/login">
<input name="email" placeholder="Identifiant"><input name="password" type="password">
<input type="hidden" name="callBack" value="{callback}"><button>Se connecter</button></form></body></html>"""

# The platform's French translations of the refusals (auth i18n fr.json), as the login page shows them.
MESSAGES_FR = {
    "auth.error.authenticationFailed": "L'identifiant ou le mot de passe est incorrect.",
    "auth.error.blockedUser": "L'administrateur de votre établissement a bloqué votre accès à votre réseau "
    "éducatif. Veuillez le contacter.",
    "auth.error.blockedProfileType": "L'accès à votre réseau éducatif est temporairement bloqué pour votre "
    "profil d'utilisateur.",
}

# userinfo version 1.0 renames the profiles (the platform's UserInfoAdapterV1_0Json).
_V1_TYPES = {
    "Teacher": "ENSEIGNANT",
    "Student": "ELEVE",
    "Relative": "PERSRELELEVE",
    "Personnel": "PERSEDUCNAT",
}
# What version 1.0 removes when the caller is an OAuth2 client (a bearer token).
_V1_CLIENT_DROPS = (
    "functions",
    "groupsIds",
    "structures",
    "apps",
    "authorizedActions",
    "children",
    "federated",
)


# The page the platform shows instead of the login form when it holds more sessions than its limit.
TOO_LOAD_PAGE = """<!doctype html><html><head><title>ENT</title></head><body><div id="fr">
<h2>Vous êtes très nombreux aujourd’hui.</h2><p>Merci d’attendre 3 minutes avant d’essayer à nouveau.</p>
</div><img src="/auth/public/img/tooload.svg"></body></html>"""


def _page(error_key: str | None = None, callback: str = "/") -> Response:
    """The login page; a refusal is its translated text in an attribute, escaped as the template does."""
    error = html.escape(MESSAGES_FR.get(error_key, error_key), quote=True) if error_key else ""
    return Response.html(LOGIN_PAGE.format(error=error, callback=html.escape(callback)))


def check_password(app: LabApp, login: str, password: str) -> tuple[sqlite3.Row | None, str | None]:
    """The user row and the platform's error key (None when the login may proceed)."""
    store = app.store
    user = store.one("SELECT * FROM users WHERE login = ?", login or "") or store.one(
        "SELECT * FROM users WHERE login_alias = ?", login or ""
    )
    if user is None:
        return None, "auth.error.authenticationFailed"
    # The platform checks the blocks before the password: a blocked account is told so even when the
    # password is wrong.
    profile = store.one("SELECT blocked FROM profiles WHERE name = ?", user["profile"])
    if profile is not None and profile["blocked"]:
        return user, "auth.error.blockedProfileType"
    if user["blocked"]:
        return user, "auth.error.blockedUser"
    stored = user["password"]
    if stored is None:
        ok = secrets.compare_digest(password or "", store.meta("user_password") or "")
    elif stored == "ERASED":
        ok = False
    else:
        ok = secrets.compare_digest(hash_password(password or ""), stored)
    if not ok:
        code = store.one(
            "SELECT 1 FROM renewal_codes WHERE user_id = ? AND code = ?", user["id"], password or ""
        )
        return user, ("auth.error.password.reset" if code else "auth.error.authenticationFailed")
    return user, None


# -- cookie login ---------------------------------------------------------------------------------------


@ROUTES.route("GET", "/auth/login", contract="auth/login-get", access="public")
def login_page(app: LabApp, req: Request) -> Response:
    """The login form, or the "too many of you today" page above the platform's session limit."""
    if app.over_session_limit():
        return Response.html(TOO_LOAD_PAGE)
    return _page(callback=req.arg("callback", "/") or "/")


@ROUTES.route("POST", "/auth/login", contract="auth/login-post", access="public", csrf=False)
def login(app: LabApp, req: Request) -> Response:
    """302 with the session cookies, or the login page again (200) with the translated refusal.

    A renewal code typed as the password leads to the reset page instead; the session limit is not
    checked here (only the login page and the token endpoint look at it)."""
    form = req.form()
    login_name, password = form.get("email", ""), form.get("password", "")
    user, error = check_password(app, login_name, password)
    if error == "auth.error.password.reset":
        return Response.redirect(f"/auth/reset/{password}?login={login_name}")
    if error or user is None:
        return _page(error, form.get("callBack", "/"))
    sid = app.new_session(user["id"], "cookie")
    xsrf = app.store.get("SELECT xsrf FROM sessions WHERE id = ?", sid)["xsrf"]
    app.store.execute(
        "UPDATE users SET last_login = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?", user["id"]
    )
    app.record_login(req, user)
    callback = form.get("callBack") or "/"
    response = Response.redirect(callback if callback.startswith("/") else "/")
    response.cookies = [
        f"oneSessionId={sid}; Path=/; HttpOnly",
        "authenticated=true; Path=/",
        f"XSRF-TOKEN={xsrf}; Path=/",
    ]
    return response


@ROUTES.route("GET", "/auth/logout", contract="auth/logout", access="public")
def logout(app: LabApp, req: Request) -> Response:
    if req.session is not None and req.session["kind"] == "cookie":
        app.store.execute("DELETE FROM sessions WHERE id = ?", req.session["id"])
    response = Response.redirect("/auth/login")
    response.cookies = ["oneSessionId=; Path=/; Max-Age=0", "authenticated=; Path=/; Max-Age=0"]
    return response


# -- OAuth2 ---------------------------------------------------------------------------------------------


def _client(app: LabApp, req: Request, form: dict[str, str]) -> sqlite3.Row:
    client_id, secret = form.get("client_id"), form.get("client_secret")
    basic = req.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        except ValueError:
            raise HttpError(401, {"error": "invalid_client"}) from None
    client = app.store.one("SELECT * FROM oauth_clients WHERE client_id = ?", client_id or "")
    grant = form.get("grant_type", "")
    if (
        client is None
        or not secrets.compare_digest(client["secret"], secret or "")
        or client["grant_type"] != grant
    ):
        raise HttpError(401, {"error": "invalid_client"})
    return client


@ROUTES.route("POST", "/auth/oauth2/token", contract="auth/oauth2-token", access="public", csrf=False)
def token(app: LabApp, req: Request) -> Response:
    """Password and client_credentials grants; refusals as the platform's OAuth2 server words them.

    Without a ``scope`` parameter the token gets no scope at all (and every module then refuses it);
    above the session limit the answer is 509 whatever the grant's outcome."""
    form = req.form()
    grant = form.get("grant_type", "")
    if not grant:
        raise HttpError(400, {"error": "invalid_request", "error_description": "'grant_type' not found"})
    if grant not in ("password", "client_credentials"):
        raise HttpError(400, {"error": "unsupported_grant_type"})
    client = _client(app, req, form)
    if app.over_session_limit():
        raise HttpError(509, {"error": "quota_overflow"})
    requested = (form.get("scope") or "").split()
    if not set(requested) <= set(client["scope"].split()):
        raise HttpError(401, {"error": "invalid_grant"})
    scope = " ".join(requested)
    if grant == "password":
        user, error = check_password(app, form.get("username", ""), form.get("password", ""))
        if error or user is None:
            status = 403 if error == "auth.error.password.reset" else 401
            raise HttpError(status, {"error": "access_denied", "error_description": error})
        token_id = app.new_session(user["id"], "token", client["client_id"], scope)
        app.record_login(req, user, client["client_id"])
    else:
        token_id = app.new_session(None, "token", client["client_id"], scope)
    granted: JsonObject = {
        "token_type": "Bearer",
        "access_token": token_id,
        "refresh_token": secrets.token_hex(16),
        "expires_in": 3600,
    }
    if scope:
        granted["scope"] = scope
    return Response.json(granted)


@ROUTES.route(
    "GET", "/auth/oauth2/userinfo", contract="auth/oauth2-userinfo", action=_AUTH + "userInfo", csrf=False
)
def userinfo(app: LabApp, req: Request) -> Response:
    """The session as JSON, through the adapter the ``version`` parameter (or Accept header) picks."""
    if req.user is None:
        raise unauthorized()
    info = _session_info(app, req.user)
    version = _accept_version(req) or req.arg("version", "") or ""
    if version in ("2.0", "v2.0"):
        return Response.json(info)
    # Version 1.0, the default: French profile codes; an OAuth2 client loses functions and structures.
    info["type"] = _V1_TYPES.get(str(info["type"]), "")
    info.pop("realClassesNames", None)
    client_id = req.session["client_id"] if req.session is not None else None
    if client_id:
        names = info.pop("structureNames", [])
        info.pop("classNames", None)
        if isinstance(names, list) and names:  # the session's structure names, a list of texts
            info["schoolName"] = names[0]
        for key in _V1_CLIENT_DROPS:
            info.pop(key, None)
    return Response.json(info)


def _accept_version(req: Request) -> str | None:
    accept = req.headers.get("accept", "")
    for part in accept.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "version" and value:
            return value
    return None


def _session_info(app: LabApp, user: sqlite3.Row) -> JsonObject:
    """What the platform keeps in a session (UserUtils' session map), for the lab's tables."""
    structures = app.store.all(
        "SELECT s.id, s.name, s.uai, s.external_id FROM user_structures us"
        " JOIN structures s ON s.id = us.structure_id WHERE us.user_id = ? ORDER BY s.name",
        user["id"],
    )
    functions: JsonObject = {}
    if app.is_admc(user["id"]):
        functions["SUPER_ADMIN"] = {"code": "SUPER_ADMIN", "scope": None, "structureExternalIds": None}
    scope = sorted(app.adml_scope(user["id"]))
    if scope:
        external = {s["id"]: s["external_id"] for s in structures}
        functions["ADMIN_LOCAL"] = {
            "code": "ADMIN_LOCAL",
            "scope": scope,
            "structureExternalIds": [external.get(i, i) for i in scope],
        }
    return {
        "userId": user["id"],
        "externalId": f"EXT-{user['id'][:8]}",
        "login": user["login"],
        "username": user["display_name"],
        "firstName": user["first_name"],
        "lastName": user["last_name"],
        "birthDate": None,
        "type": user["profile"],
        "level": "",
        "structures": [s["id"] for s in structures],
        "structureNames": [s["name"] for s in structures],
        "uai": [s["uai"] for s in structures],
        "classes": [],
        "classNames": [],
        "realClassesNames": [],
        "groupsIds": [],
        "apps": [],
        "authorizedActions": [],
        "children": {},
        "functions": functions,
        "federated": None,
        "hasApp": True,
        "forceChangePassword": bool(user["change_pw"]) or None,
        "needRevalidateTerms": False,
    }


# -- MFA ------------------------------------------------------------------------------------------------


@ROUTES.route("GET", "/auth/user/mfa/code", contract="auth/mfa-code-get")
def mfa_start(app: LabApp, req: Request) -> Response:
    if req.user is None or req.session is None:
        raise HttpError(401, {"error": "invalid.user"})
    app.store.execute("UPDATE sessions SET mfa_tries = 0 WHERE id = ?", req.session["id"])
    return Response.json(
        {"type": "email", "waitInSeconds": 0, "state": {"state": "pending", "tries": 3, "ttl": 600}}
    )


@ROUTES.route("POST", "/auth/user/mfa/code", contract="auth/mfa-code-post")
def mfa_check(app: LabApp, req: Request) -> Response:
    if req.user is None or req.session is None:
        raise HttpError(401, {"error": "invalid.user"})
    body = req.json()
    key = body.get("key") if isinstance(body, dict) else None
    if not isinstance(key, str) or len(key) != 6:
        raise HttpError(400, {"error": "invalid.key"})
    session = app.store.get("SELECT * FROM sessions WHERE id = ?", req.session["id"])
    tries_left = 3 - session["mfa_tries"]
    if tries_left <= 0:
        return Response.json({"state": "outdated", "tries": 0, "ttl": 0})
    if secrets.compare_digest(key, app.store.meta("mfa_code") or ""):
        app.store.execute("UPDATE sessions SET mfa = 1 WHERE id = ?", req.session["id"])
        return Response.json({"state": "valid"})
    app.store.execute("UPDATE sessions SET mfa_tries = mfa_tries + 1 WHERE id = ?", req.session["id"])
    return Response.json({"state": "pending", "tries": tries_left - 1, "ttl": 600})


@ROUTES.route("GET", "/auth/validate-mfa", contract="auth/validate-mfa", access="public")
def validate_mfa_page(app: LabApp, req: Request) -> Response:
    return Response.html("<html><body><h1>Validation MFA</h1></body></html>")


@ROUTES.route("GET", "/", contract="portal/root")
def root(app: LabApp, req: Request) -> Response:
    """The portal: a session is sent on to the root page."""
    return Response(301, b"", {"Location": "/welcome"})
