"""Edifice authentication, as the platform does it (reference: edifice-api.md §0.1).

* ``cookie``: ``POST /auth/login`` form; success is the ``oneSessionId`` cookie; writes echo the
  ``XSRF-TOKEN`` cookie as ``X-XSRF-TOKEN``. A refused login re-renders the login page with the
  **translated** message (French on most ENTs), not a key: the messages are matched in both languages.
* ``oauth-password``: ``POST /auth/oauth2/token`` with ``grant_type=password``; a bearer token for a user.
* ``oauth-client``: ``grant_type=client_credentials``; a service token with no user, which bypasses the
  rights filters and MFA on the server, so the tool records it as such in every journal.

Admin cookie sessions may be sent to ``/auth/validate-mfa``; the code flow ``GET/POST /auth/user/mfa/code``
is done in-band with a code from ``PCNCTL_MFA_CODE`` or typed by the operator.

This class is also the HTTP client's :class:`~pcnctl.ent.http.Authenticator`: everything the client must know
of Edifice's sessions (credentials per request, what an expired session or an MFA demand looks like, the
platform's auth error bodies) lives here, so ``pcnctl.ent.http`` stays a generic client.
"""

from __future__ import annotations

import base64
import contextlib
import html
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import urlsplit

from pcnctl.config import Profile
from pcnctl.ent import credentials
from pcnctl.ent.credentials import Secrets
from pcnctl.ent.edifice.shapes import parse_identity
from pcnctl.ent.http import HttpClient, RetryPolicy, error_key
from pcnctl.errors import AuthError, MfaRequiredError, PcnError, PermissionDeniedError, ServerError
from pcnctl.models import Identity

if TYPE_CHECKING:
    import requests

DEFAULT_USER_SCOPE = "userinfo auth directory conversation appregistry communication timeline admin infra"
_LOGIN_ERROR = re.compile(r"auth\.error\.[A-Za-z.]+")
_NO_RETRY = RetryPolicy(attempts=1)
# Logins are retried on 5xx and transport errors, with backoff: an overloaded ENT (April 2021) answers
# 502/503 to a rush of logins, and giving up at the first one leaves the on-call without a session.
_LOGIN_RETRY = RetryPolicy(attempts=4, base_delay=0.5, repeatable=True)
# The MFA code flow is part of the login and is retried the same way. Asking for the code again keeps the
# pending code (auth DefaultMfaService.generateOrRefreshCode only refreshes its ttl and tries); sending it
# again after a 5xx or a reset is what a person does. Only a refused code (a 200 answer) spends a try.
_MFA_RETRY = _LOGIN_RETRY

# Asks for the MFA code, given the channel the ENT sent it by (None when it does not say).
MfaPrompt = Callable[[str | None], str | None]


class _TokenAnswer(TypedDict, total=False):
    """What ``POST /auth/oauth2/token`` answers: a token, or an OAuth2 error."""

    access_token: str
    error: str
    error_description: str


# What the login page says for each refusal, in the platform's French and English translations
# (auth/src/main/resources/i18n/fr.json, en.json); a fragment that survives small wording changes.
_PAGE_TEXTS = {
    "auth.error.authenticationFailed": ("identifiant ou le mot de passe est incorrect", "invalid login or"),
    "auth.error.blockedUser": ("a bloqué votre accès",),
    "auth.error.blockedProfileType": ("bloqué pour votre profil",),
    "auth.error.global": ("momentanément indisponible",),
    "auth.error.ban": ("trop grand nombre de tentatives",),
}

_LOGIN_MESSAGES = {
    "auth.error.authenticationFailed": ("login or password refused", "check the login and the password"),
    "auth.error.blockedUser": (
        "this account is blocked on the ENT",
        "an ADMC must unblock it ('pcnctl accounts unblock') before it can log in",
    ),
    "auth.error.blockedProfileType": (
        "logins of this account's profile are blocked on the ENT",
        "lift the profile block before logging in with this account",
    ),
    "auth.error.global": ("the ENT could not log this account in", "retry later, or check 'pcnctl doctor'"),
    "auth.error.ban": (
        "the ENT refuses logins for this account for a while (too many failed attempts)",
        "wait before trying again; check the password first",
    ),
}


def login_page_error(response: requests.Response) -> str:
    """The ``auth.error.*`` key of a login page the ENT re-rendered, from its key or translated text."""
    text = html.unescape(response.text or "")
    key_match = _LOGIN_ERROR.search(text)
    if key_match:
        return key_match.group(0)
    folded = text.lower()
    for key, fragments in _PAGE_TEXTS.items():
        if any(f in folded for f in fragments):
            return key
    return "auth.error.authenticationFailed"


def _looks_like_login_page(response: requests.Response) -> bool:
    """A refused Edifice login is its login page again: a 200 HTML page with the login form or its
    controller (a reset redirect and an activation page are the platform's too)."""
    if response.status_code in (301, 302, 303):
        return "/auth/" in response.headers.get("Location", "")
    text = response.text or ""
    return response.status_code == 200 and ("LoginController" in text or 'action="/auth/login"' in text)


class EdificeAuth:
    """Opens and renews a session for one profile; plugs into :class:`HttpClient` as its authenticator."""

    def __init__(
        self,
        profile: Profile,
        secrets: Secrets,
        *,
        mfa_prompt: MfaPrompt | None = None,
        use_cache: bool = True,
    ):
        self.profile = profile
        self.secrets = secrets
        self.mfa_prompt = mfa_prompt
        self.use_cache = use_cache
        self.logged_in_at: float | None = None
        self.token: str | None = None
        # Who a cached session turned out to be when it was checked (the driver's whoami starts from it).
        self.identity: Identity | None = None

    # -- Authenticator protocol ---------------------------------------------------------------------

    def headers(self, http: HttpClient, method: str) -> dict[str, str]:
        """A bearer token, or for a cookie write the ``XSRF-TOKEN`` cookie echoed as a header."""
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if method not in ("GET", "HEAD", "OPTIONS"):
            xsrf = http.cookie("XSRF-TOKEN")
            if xsrf:
                return {"X-XSRF-TOKEN": xsrf}
        return {}

    def challenge(self, response: requests.Response) -> str | None:
        """Edifice answers a missing second factor with a redirect to ``/auth/validate-mfa``, and an
        expired session with a redirect to its login page: ``/auth/login``, or a configured ``loginUri``
        (an SSO portal) that looks like neither. A bearer token it no longer knows is a 401
        ``invalid_token``."""
        status = response.status_code
        if status in (301, 302, 303, 307):
            location = response.headers.get("Location", "")
            if "/auth/validate-mfa" in location:
                return "second-factor"
            if "forceChangePassword" in location:
                return None
            return "expired"
        if status == 401 and self.token:
            return "expired" if "invalid_token" in response.headers.get("WWW-Authenticate", "") else None
        return None

    def auth_error(self, method: str, path: str, response: requests.Response) -> PcnError | None:
        status = response.status_code
        location = response.headers.get("Location", "")
        if status in (301, 302, 303, 307):
            if "/auth/validate-mfa" in location:
                return MfaRequiredError(
                    f"{method} {path}: the ENT requires MFA for this admin session",
                    hint="run interactively to type the code, set PCNCTL_MFA_CODE, or use an oauth-client "
                    "profile for unattended runs",
                )
            if "forceChangePassword" in location:
                return AuthError(
                    f"the ENT requires a new password for {self.profile.login!r} before any other call",
                    hint="log in once in a browser and change the password, then 'pcnctl auth login'",
                )
            portal = urlsplit(location).netloc or "its login page"
            return AuthError(
                f"{method} {path}: the ENT sends this session to {portal} to log in again",
                hint="log in again with 'pcnctl auth login'; an account federated through SSO cannot "
                "log in with a password (paste the browser's cookies, or use an OAuth2 profile)",
            )
        if status == 401 and "invalid_token" in response.headers.get("WWW-Authenticate", ""):
            return AuthError(
                f"{method} {path}: the access token was refused",
                hint="log in again with 'pcnctl auth login'",
            )
        if status == 403 and error_key(response) == "invalid.xsrf.token":
            return PermissionDeniedError(
                "the ENT refused the anti-CSRF token of this session",
                method=method,
                path=path,
                status=status,
                hint="log in again with 'pcnctl auth login' (the XSRF-TOKEN cookie is missing or stale)",
            )
        return None

    def renew(self, http: HttpClient) -> None:
        if self.use_cache:
            self.secrets.drop_session(self.profile)
        self.clear(http)
        self.login(http)

    def clear(self, http: HttpClient) -> None:
        http.clear_cookies()
        self.token = None

    def complete_mfa(self, http: HttpClient) -> None:
        info = http.request("GET", "/auth/user/mfa/code", auth=False, retry=_MFA_RETRY).json()
        channel = None if info.get("type") is None else str(info.get("type"))
        code = self.secrets.mfa_code or (self.mfa_prompt(channel) if self.mfa_prompt else None)
        if not code:
            raise MfaRequiredError(
                "the ENT requires MFA for this admin session and no code can be asked here",
                hint="run the command in a terminal to type the code, set PCNCTL_MFA_CODE, or use an "
                "oauth-client profile for unattended runs",
            )
        code = code.strip()
        if not re.fullmatch(r"\d{6}", code):
            raise AuthError(
                "an MFA code is 6 digits", hint="type the code the ENT sent, or set PCNCTL_MFA_CODE to it"
            )
        result = http.request(
            "POST", "/auth/user/mfa/code", json={"key": code}, auth=False, retry=_MFA_RETRY
        ).json()
        state = result.get("state")
        if state != "valid":
            tries = result.get("tries")
            left = f"; {tries} tries left" if tries is not None else ""
            raise AuthError(
                f"the MFA code was refused (state: {state}{left})",
                hint="ask for a new code and try again ('pcnctl auth login')",
            )

    # -- login flows ------------------------------------------------------------------------------------

    def resume_or_login(self, http: HttpClient) -> str:
        """Reuse the session ``auth login`` cached when the ENT still says it is the same user's
        (``"cached"``), else log in with the profile's secret (``"login"``)."""
        if self.resume(http):
            return "cached"
        self.login(http)
        return "login"

    def resume(self, http: HttpClient) -> bool:
        """Put the cached session on the client if the ENT still says it is the user it was cached for;
        one that is not (another user's, expired) is dropped. False when no session was resumed."""
        cached = self.secrets.load_session(self.profile) if self.use_cache else None
        if cached is None:
            return False
        if self._resume(http, cached):
            return True
        self.secrets.drop_session(self.profile)
        self.clear(http)
        return False

    def _resume(self, http: HttpClient, cached: credentials.CachedSession) -> bool:
        """Put the cached session on the client and ask the ENT whose it is (``GET /auth/oauth2/userinfo``,
        open to any session: auth ``AuthController.userInfo``). Only the user it was cached for may go on
        with it; an expired session (a redirect or a 401) or another user's means a new login."""
        if cached.get("token"):
            self.token = str(cached["token"])
        else:
            http.set_cookies({str(k): str(v) for k, v in (cached.get("cookies") or {}).items()})
        response = http.request(
            "GET",
            "/auth/oauth2/userinfo",
            params={"version": "v2.0"},
            allow=(301, 302, 303, 307, 401, 403),
            auth=False,
        )
        info: object = None
        if response.status_code == 200:
            with contextlib.suppress(ValueError):
                info = response.json()
        if not isinstance(info, dict) or not info.get("userId") or info["userId"] != cached.get("user_id"):
            return False
        self.identity = parse_identity(info, auth_mode=self.profile.auth, client_id=self.profile.client_id)
        return True

    def remember(self, http: HttpClient, user_id: str | None) -> bool:
        """Cache this session for the commands that follow (``auth login`` only, once it has passed MFA):
        under the profile's ENT, account and mode, with the user the ENT named. False when nothing was
        cached (no keyring here, a service token, or no user)."""
        if not user_id:
            return False
        data: credentials.CachedSession = {"user_id": user_id, "at": time.time()}
        if self.token:
            data["token"] = self.token
        else:
            data["cookies"] = http.session_cookies()
        return self.secrets.save_session(self.profile, data)

    def login(self, http: HttpClient) -> None:
        mode = self.profile.auth
        if mode == "cookie":
            self._cookie_login(http)
        elif mode == "oauth-password":
            password = self.secrets.require(self.profile, "password").value
            self._token(
                http, {"grant_type": "password", "username": self.profile.login, "password": password}
            )
        else:
            self._token(http, {"grant_type": "client_credentials"})
        self.logged_in_at = time.time()

    def _cookie_login(self, http: HttpClient) -> None:
        password = self.secrets.require(self.profile, "password").value
        self.clear(http)
        response = http.request(
            "POST",
            "/auth/login",
            data={"email": self.profile.login, "password": password, "callBack": "/", "rememberMe": "true"},
            headers={"Accept": "text/html"},
            allow=(200, 302, 303, 401, 403, 429, 509),
            auth=False,
            retry=_LOGIN_RETRY,
        )
        if http.cookie("oneSessionId"):
            return
        if response.status_code in (429, 509):
            raise ServerError(
                "the ENT refused new sessions (quota or rate limit)",
                method="POST",
                path="/auth/login",
                status=response.status_code,
                hint="the platform is saturated; retry in a minute",
            )
        if not _looks_like_login_page(response):
            raise AuthError(
                f"{self.profile.url} does not answer like an Edifice ENT (HTTP {response.status_code} to the "
                "login form, no session and no login page)",
                hint="check the profile's URL: the ENT's root, e.g. https://ent.example.fr (not a portal, a "
                "proxy or a maintenance page)",
            )
        key = login_page_error(response)
        message, hint = _LOGIN_MESSAGES.get(key, (f"login refused ({key})", "check the account"))
        raise AuthError(f"{message} (login {self.profile.login!r})", hint=hint)

    def _token(self, http: HttpClient, form: dict[str, str | None]) -> None:
        secret = self.secrets.require(self.profile, "client_secret").value
        basic = base64.b64encode(f"{self.profile.client_id}:{secret}".encode()).decode()
        scope = self.profile.scope or (DEFAULT_USER_SCOPE if form["grant_type"] == "password" else None)
        if not scope:
            # The platform grants a token asked without a scope no scope at all: every module refuses it.
            raise AuthError(
                f"profile {self.profile.name!r} has no OAuth2 scope for its client_credentials token",
                hint="set the scopes registered for this client on the ENT: pcnctl profile add ... --scope",
            )
        form["scope"] = scope
        self.token = None
        response = http.request(
            "POST",
            "/auth/oauth2/token",
            data=form,
            headers={"Authorization": f"Basic {basic}"},
            allow=(400, 401, 403, 429, 509),
            auth=False,
            retry=_LOGIN_RETRY,
        )
        body: _TokenAnswer = {}
        with contextlib.suppress(ValueError):
            body = response.json()
        if response.status_code == 200 and body.get("access_token"):
            self.token = str(body["access_token"])
            return
        raise self._refused(response.status_code, body, form)

    def _refused(self, status: int, body: _TokenAnswer, form: dict[str, str | None]) -> PcnError:
        """The error a refused token request means, in the platform's words turned into what to do."""
        if status in (429, 509):
            return ServerError(
                f"the ENT refused new sessions ({body.get('error', 'quota')})",
                method="POST",
                path="/auth/oauth2/token",
                status=status,
                hint="the platform is saturated; retry in a minute",
            )
        error = str(body.get("error") or "refused")
        description = str(body.get("error_description") or "")
        if error == "invalid_client":
            return AuthError(
                f"the OAuth2 client {self.profile.client_id!r} was refused (wrong id, secret or grant type)",
                hint="check the client id and PCNCTL_CLIENT_SECRET / the keyring entry",
            )
        if description in _LOGIN_MESSAGES:
            message, hint = _LOGIN_MESSAGES[description]
            return AuthError(f"{message} (login {self.profile.login!r})", hint=hint)
        if error in ("invalid_grant", "invalid_scope"):
            # Edifice answers 401 invalid_grant when the client may not have a requested scope.
            return AuthError(
                f"the OAuth2 client {self.profile.client_id!r} may not ask for scope {form.get('scope')!r}",
                hint="set --scope on the profile to the scopes registered for this client on the ENT",
            )
        return AuthError(
            f"token request refused: {error}{f' ({description})' if description else ''}",
            hint="check the login and the password" if form["grant_type"] == "password" else None,
        )

    def logout(self, http: HttpClient) -> None:
        """Close the session on the ENT (cookie mode) and forget the cached one."""
        if self.profile.auth == "cookie" and http.cookie("oneSessionId"):
            http.request("GET", "/auth/logout", allow=(200, 302, 303, 401), auth=False, retry=_NO_RETRY)
        self.clear(http)
        if self.use_cache:
            self.secrets.drop_session(self.profile)
