"""Edifice authentication, as the platform does it (reference: edifice-api.md §0.1).

* ``cookie``: ``POST /auth/login`` form; success is the ``oneSessionId`` cookie; writes echo the
  ``XSRF-TOKEN`` cookie as ``X-XSRF-TOKEN`` (done by the HTTP client).
* ``oauth-password``: ``POST /auth/oauth2/token`` with ``grant_type=password``; a bearer token for a user.
* ``oauth-client``: ``grant_type=client_credentials``; a service token with no user, which bypasses the
  rights filters and MFA on the server, so the tool records it as such in every journal.

Admin cookie sessions may be sent to ``/auth/validate-mfa``; the code flow ``GET/POST /auth/user/mfa/code``
is done in-band with a code from ``PCNCTL_MFA_CODE`` or typed by the operator.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import time
from collections.abc import Callable
from typing import Any

from pcnctl import credentials
from pcnctl.config import Profile
from pcnctl.errors import AuthError, MfaRequiredError, ServerError
from pcnctl.http import HttpClient, RetryPolicy

DEFAULT_USER_SCOPE = "userinfo auth directory conversation appregistry communication timeline admin infra"
_LOGIN_ERROR = re.compile(r"auth\.error\.[A-Za-z.]+")
_NO_RETRY = RetryPolicy(attempts=1)

MfaPrompt = Callable[[dict[str, Any]], str | None]

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
}


class EdificeAuth:
    """Opens and renews a session for one profile; plugs into :class:`HttpClient` as its authenticator."""

    def __init__(self, profile: Profile, *, mfa_prompt: MfaPrompt | None = None, use_cache: bool = True):
        self.profile = profile
        self.mfa_prompt = mfa_prompt
        self.use_cache = use_cache
        self.logged_in_at: float | None = None

    # -- Authenticator protocol ---------------------------------------------------------------------

    def renew(self, http: HttpClient) -> None:
        if self.use_cache:
            credentials.drop_session(self.profile)
        http.clear_auth()
        self.login(http)

    def complete_mfa(self, http: HttpClient) -> None:
        info = http.request("GET", "/auth/user/mfa/code", auth=False, retry=_NO_RETRY).json()
        code = os.environ.get("PCNCTL_MFA_CODE") or (self.mfa_prompt(info) if self.mfa_prompt else None)
        if not code:
            raise MfaRequiredError(
                "the ENT requires MFA for this admin session and no code can be asked here",
                hint="run the command in a terminal to type the code, set PCNCTL_MFA_CODE, or use an "
                "oauth-client profile for unattended runs",
            )
        result = http.request(
            "POST", "/auth/user/mfa/code", json={"key": code.strip()}, auth=False, retry=_NO_RETRY
        ).json()
        state = result.get("state")
        if state != "valid":
            tries = result.get("tries")
            left = f"; {tries} tries left" if tries is not None else ""
            raise AuthError(
                f"the MFA code was refused (state: {state}{left})",
                hint="ask for a new code and try again ('pcnctl auth login')",
            )
        self._cache(http)

    # -- login flows ------------------------------------------------------------------------------------

    def resume_or_login(self, http: HttpClient) -> str:
        """Reuse a cached session when there is one (``"cached"``), else log in (``"login"``)."""
        cached = credentials.load_session(self.profile) if self.use_cache else None
        if cached and cached.get("auth") == self.profile.auth:
            if cached.get("token"):
                http.bearer = str(cached["token"])
            else:
                http.set_cookies({str(k): str(v) for k, v in (cached.get("cookies") or {}).items()})
            return "cached"
        self.login(http)
        return "login"

    def login(self, http: HttpClient) -> None:
        mode = self.profile.auth
        if mode == "cookie":
            self._cookie_login(http)
        elif mode == "oauth-password":
            password = credentials.require(self.profile, "password").value
            self._token(
                http, {"grant_type": "password", "username": self.profile.login, "password": password}
            )
        else:
            self._token(http, {"grant_type": "client_credentials"})
        self.logged_in_at = time.time()
        self._cache(http)

    def _cookie_login(self, http: HttpClient) -> None:
        password = credentials.require(self.profile, "password").value
        http.clear_auth()
        response = http.request(
            "POST",
            "/auth/login",
            data={"email": self.profile.login, "password": password, "callBack": "/", "rememberMe": "true"},
            headers={"Accept": "text/html"},
            allow=(200, 302, 303, 401, 403, 429, 509),
            auth=False,
            retry=_NO_RETRY,
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
        key_match = _LOGIN_ERROR.search(response.text or "")
        key = key_match.group(0) if key_match else "auth.error.authenticationFailed"
        message, hint = _LOGIN_MESSAGES.get(key, (f"login refused ({key})", "check the account"))
        raise AuthError(f"{message} (login {self.profile.login!r})", hint=hint)

    def _token(self, http: HttpClient, form: dict[str, Any]) -> None:
        secret = credentials.require(self.profile, "client_secret").value
        basic = base64.b64encode(f"{self.profile.client_id}:{secret}".encode()).decode()
        scope = self.profile.scope or (DEFAULT_USER_SCOPE if form["grant_type"] == "password" else None)
        if scope:
            form["scope"] = scope
        http.bearer = None
        response = http.request(
            "POST",
            "/auth/oauth2/token",
            data=form,
            headers={"Authorization": f"Basic {basic}"},
            allow=(400, 401, 403, 429, 509),
            auth=False,
            retry=_NO_RETRY,
        )
        body: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            body = response.json()
        if response.status_code == 200 and body.get("access_token"):
            http.bearer = str(body["access_token"])
            return
        if response.status_code in (429, 509):
            raise ServerError(
                f"the ENT refused new sessions ({body.get('error', 'quota')})",
                method="POST",
                path="/auth/oauth2/token",
                status=response.status_code,
                hint="the platform is saturated; retry in a minute",
            )
        error = str(body.get("error") or "refused")
        description = str(body.get("error_description") or "")
        if error == "invalid_client":
            raise AuthError(
                f"the OAuth2 client {self.profile.client_id!r} was refused (wrong id, secret or grant type)",
                hint="check the client id and PCNCTL_CLIENT_SECRET / the keyring entry",
            )
        if description in _LOGIN_MESSAGES:
            message, hint = _LOGIN_MESSAGES[description]
            raise AuthError(f"{message} (login {self.profile.login!r})", hint=hint)
        if error == "invalid_scope":
            raise AuthError(
                f"the OAuth2 client may not ask for scope {form.get('scope')!r}",
                hint="set a narrower --scope on the profile, matching the client's registered scope",
            )
        raise AuthError(
            f"token request refused: {error}{f' ({description})' if description else ''}",
            hint="check the login and the password" if form["grant_type"] == "password" else None,
        )

    def _cache(self, http: HttpClient) -> None:
        if not self.use_cache:
            return
        data: dict[str, Any] = {"auth": self.profile.auth, "at": time.time()}
        if http.bearer:
            data["token"] = http.bearer
        else:
            data["cookies"] = http.session_cookies()
        credentials.save_session(self.profile, data)

    def logout(self, http: HttpClient) -> None:
        """Close the session on the ENT (cookie mode) and forget the cached one."""
        if self.profile.auth == "cookie" and http.cookie("oneSessionId"):
            http.request("GET", "/auth/logout", allow=(200, 302, 303, 401), auth=False, retry=_NO_RETRY)
        http.clear_auth()
        if self.use_cache:
            credentials.drop_session(self.profile)
