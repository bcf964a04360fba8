"""The one HTTP client of pcnctl: the only module that imports requests.

Policy, stated once:

* Every request has a connect and a read timeout. Redirects are never followed: on an ENT a redirect
  means "log in" or "do MFA", and following it would turn an auth problem into a confusing HTML page.
* Idempotent methods (GET, HEAD, PUT, DELETE) are retried on 429, 5xx, 509 and transport errors,
  with exponential backoff and full jitter, honouring ``Retry-After``. POST is never retried: a send or a
  purge must not run twice because an answer was lost.
* The client knows no platform: an :class:`Authenticator` (the platform driver's) adds the credentials
  to each request, tells an expired session or a second-factor demand from an ordinary answer, and names
  the platform's own auth errors. An expired session is renewed once, then the request is replayed.
* Every error carries the method, path and status, and the server's own error key when it gave one.
* Debug logs show method, path, status and time, never bodies, cookies or headers: those hold secrets.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from pcnctl import __version__
from pcnctl.ent import roundtrip
from pcnctl.errors import (
    ApiError,
    NotFoundError,
    PcnError,
    PermissionDeniedError,
    ServerError,
    TransportError,
)

log = logging.getLogger("pcnctl.ent.http")

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 509})
THROTTLE_STATUSES = frozenset({429, 503, 509})


class Authenticator(Protocol):
    """What the HTTP client needs from a platform's auth flow."""

    def headers(self, http: HttpClient, method: str) -> dict[str, str]:
        """Credentials for one request (a bearer token, an anti-CSRF header...)."""

    def challenge(self, response: requests.Response) -> str | None:
        """``"expired"``, ``"second-factor"``, or None when the answer is not an auth challenge."""

    def renew(self, http: HttpClient) -> None:
        """Open a fresh session (the previous one expired)."""

    def complete_mfa(self, http: HttpClient) -> None:
        """Validate the second factor for the current session, or raise MfaRequiredError."""

    def auth_error(self, method: str, path: str, response: requests.Response) -> PcnError | None:
        """The platform's meaning of an auth-related error answer, or None to use the generic one."""


@dataclass(slots=True)
class HttpStats:
    """Counters the doctor, the fan-out executor and the audit health check read."""

    requests: int = 0
    retries: int = 0
    renewals: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latency_ms: list[float] = field(default_factory=list)
    waited_s: float = 0.0  # slept before a call: backoff, Retry-After, pacing (pcnctl.ops.timing)

    @property
    def throttled(self) -> int:
        return sum(self.statuses[s] for s in THROTTLE_STATUSES)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry idempotent calls; the fan-out executor passes ``attempts=1`` and paces itself."""

    attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 20.0
    max_retry_after: float = 120.0
    # A POST safe to send again (a login: a second session is harmless, no answer is worse); writes that
    # are not safe to repeat keep the default and are never retried here.
    repeatable: bool = False


class HttpClient:
    """A requests.Session bound to one ENT, with the policy described in the module docstring."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        ca_file: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Told before each wait of a second or more: an operator must not stare at a silent terminal
        # while an overloaded ENT is retried.
        self.on_retry = on_retry
        self.timeout = (connect_timeout, read_timeout)
        self.retry = retry or RetryPolicy()
        self.stats = HttpStats()
        self.authenticator: Authenticator | None = None
        self._sleep = sleep
        # Renewing a session must happen once even when many fan-out threads see it expire together.
        self._auth_lock = threading.Lock()
        self._auth_generation = 0
        self._stats_lock = threading.Lock()
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        # TLS verification is always on: a CA file replaces the bundle, nothing turns it off. The bundle is
        # named on every request, so that REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE cannot replace a profile's CA
        # file, nor make a profile without one trust another CA without saying so.
        self._verify: str | bool = ca_file or certifi_bundle()
        self.session.verify = self._verify
        self.session.headers["User-Agent"] = f"pcnctl/{__version__}"
        self.session.headers["Accept"] = "application/json"

    # -- session state -------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    def cookie(self, name: str) -> str | None:
        for c in self.session.cookies:
            if c.name == name:
                return c.value
        return None

    def set_cookies(self, cookies: Mapping[str, str]) -> None:
        self.session.cookies.clear()
        for name, value in cookies.items():
            self.session.cookies.set(name, value, domain=self.host, path="/")

    def session_cookies(self) -> dict[str, str]:
        return {c.name: c.value for c in self.session.cookies if c.value is not None}

    def clear_cookies(self) -> None:
        self.session.cookies.clear()

    # -- requests ------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        allow: tuple[int, ...] = (),
        retry: RetryPolicy | None = None,
        auth: bool = True,
    ) -> requests.Response:
        """Send one request under the policy; return the response or raise a mapped :class:`PcnError`.

        Statuses in ``allow`` are returned instead of raised (capability probes use it). ``auth=False``
        marks the login calls themselves, which must not trigger a renewal loop.
        """
        method = method.upper()
        policy = retry or self.retry
        renewed = False
        mfa_done = False
        attempt = 0
        while True:
            attempt += 1
            generation = self._auth_generation
            try:
                response = self._send(method, path, params=params, json=json, data=data, extra=headers)
            except TransportError:
                if (method in IDEMPOTENT or policy.repeatable) and attempt < policy.attempts:
                    self._backoff(attempt, None, policy)
                    continue
                raise
            status = response.status_code
            challenge = self.authenticator.challenge(response) if auth and self.authenticator else None
            if challenge == "second-factor" and not mfa_done:
                self._reauthenticate(generation, mfa=True)
                mfa_done = True
                continue
            if challenge == "expired" and not renewed:
                self._reauthenticate(generation, mfa=False)
                renewed = True
                continue
            if status in allow:
                return response
            repeat = method in IDEMPOTENT or policy.repeatable
            if status in RETRY_STATUSES and repeat and attempt < policy.attempts:
                self._backoff(attempt, response, policy)
                continue
            if status < 300:
                return response
            raise self._error(method, path, response)

    def _reauthenticate(self, generation: int, *, mfa: bool) -> None:
        """Renew the session or pass the second factor once, even when many threads ask together."""
        assert self.authenticator is not None
        with self._auth_lock:
            if generation != self._auth_generation:  # another thread did it meanwhile
                return
            if mfa:
                self.authenticator.complete_mfa(self)
            else:
                self.stats.renewals += 1
                self.authenticator.renew(self)
            self._auth_generation += 1

    def _send(
        self, method: str, path: str, *, extra: Mapping[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        url = self.base_url + path
        headers: dict[str, str] = {}
        if self.authenticator is not None and "Authorization" not in (extra or {}):
            headers.update(self.authenticator.headers(self, method))
        headers.update(extra or {})
        started = time.perf_counter()
        sent = time.monotonic()  # round-trip hook for the fan-out's limiter (pcnctl.ent.roundtrip)
        try:
            response = self.session.request(
                method,
                url,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                verify=self._verify,
                **kwargs,
            )
        except requests.exceptions.SSLError as exc:
            raise TransportError(
                f"TLS verification failed for {self.host}: {_reason(exc)}",
                hint="if the ENT uses a private CA, give its certificate with 'pcnctl profile add ... "
                "--ca-file FILE'; verification is never turned off",
            ) from None
        except requests.exceptions.Timeout:
            raise TransportError(
                f"{method} {path}: no answer from {self.host} within {self.timeout[1]:g} s",
                hint="the ENT may be overloaded; retry later or raise the profile's read_timeout",
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise TransportError(
                f"cannot reach {self.base_url}: {_reason(exc)}",
                hint="check the URL, the network and that the ENT is up ('pcnctl doctor')",
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransportError(f"{method} {path} failed: {_reason(exc)}") from None
        roundtrip.note(sent, time.monotonic())
        elapsed = (time.perf_counter() - started) * 1000
        with self._stats_lock:
            self.stats.requests += 1
            self.stats.statuses[response.status_code] += 1
            if len(self.stats.latency_ms) < 100_000:
                self.stats.latency_ms.append(elapsed)
        log.debug("%s %s -> %s in %.0f ms", method, _redact_path(path), response.status_code, elapsed)
        return response

    def _backoff(self, attempt: int, response: requests.Response | None, policy: RetryPolicy) -> None:
        self.stats.retries += 1
        wait = random.uniform(0, min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)))
        if response is None:
            self._waiting(wait, "no answer", attempt, policy)
            return
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            if retry_after > policy.max_retry_after:
                raise ServerError(
                    f"the ENT asks to wait {retry_after:.0f} s before retrying",
                    method=response.request.method or "",
                    path=_path_of(response),
                    status=response.status_code,
                    hint="the platform is saturated; retry later",
                )
            wait = retry_after + random.uniform(0, policy.base_delay)
        self._waiting(wait, f"answered {response.status_code}", attempt, policy)

    def _waiting(self, wait: float, what: str, attempt: int, policy: RetryPolicy) -> None:
        if self.on_retry is not None and wait >= 1.0:
            self.on_retry(f"the ENT {what}; try {attempt + 1} of {policy.attempts} in {wait:.1f} s")
        self.stats.waited_s += wait
        self._sleep(wait)

    def _error(self, method: str, path: str, response: requests.Response) -> Exception:
        status = response.status_code
        key = error_key(response)
        shown = _redact_path(path)
        if self.authenticator is not None:
            specific = self.authenticator.auth_error(method, shown, response)
            if specific is not None:
                return specific
        if status in (301, 302, 303, 307, 308):
            location = response.headers.get("Location", "")
            return ApiError(f"unexpected redirect to {location}", method=method, path=shown, status=status)
        if status in (401, 403):
            return PermissionDeniedError(
                f"access denied: this identity may not do that{f' ({key})' if key else ''}",
                method=method,
                path=shown,
                status=status,
                hint="check the profile's rights and admin scope with 'pcnctl doctor'",
            )
        if status == 404:
            return NotFoundError(
                f"not found{f' ({key})' if key else ''}", method=method, path=shown, status=status
            )
        if status in RETRY_STATUSES or status >= 500:
            what = {
                429: "rate limited",
                509: "session quota exceeded",
                503: "service unavailable",
            }.get(status, "server error")
            tries = "" if method in IDEMPOTENT else " (not retried: POST is not idempotent)"
            error = ServerError(
                f"the ENT answered {what}{f' ({key})' if key else ''}{tries}",
                method=method,
                path=shown,
                status=status,
                hint="the platform may be overloaded; retry later",
            )
            error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return error
        return ApiError(
            f"the ENT refused the request{f': {key}' if key else ''}",
            method=method,
            path=shown,
            status=status,
        )


def certifi_bundle() -> str:
    """The CA bundle requests ships with (certifi): what a profile without --ca-file trusts."""
    import certifi  # a dependency of requests

    return str(certifi.where())


def error_key(response: requests.Response) -> str | None:
    """The server's error key (``{"error": ...}``), when the body is JSON and has one."""
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        value = body.get("error_description") or body.get("error")
        return str(value) if value else None
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _path_of(response: requests.Response | None) -> str:
    if response is None or response.request is None or not response.request.url:
        return ""
    return _redact_path(urlsplit(response.request.url).path)


def _redact_path(path: str) -> str:
    if "access_token=" in path or "password=" in path:
        return path.split("?", 1)[0] + "?<redacted>"
    return path


def _reason(exc: Exception) -> str:
    """A one-line reason from a requests/urllib3 exception chain, without URLs that may carry tokens."""
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "certificate verify failed",
        "No route to host",
        "Temporary failure in name resolution",
        "Connection reset",
    ):
        if marker in text:
            return marker.lower()
    return text.split(":")[-1].strip(" )'\"") or type(exc).__name__
