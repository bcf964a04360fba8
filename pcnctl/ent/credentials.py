"""Secret resolution: environment first (cron, CI), then the keyring (people), never a file.

``PCNCTL_PASSWORD`` and ``PCNCTL_CLIENT_SECRET`` win when set, so unattended runs never touch the keyring
(and never pay its ~100 ms backend discovery). The keyring entry is service ``pcnctl``, user
``<profile>:<kind>``. Session tokens obtained by ``auth login`` are cached the same way when a keyring
exists; on a headless machine in the kernel keyring (memory only, per user, expiring after a shift); never
in a file: a session cookie is as good as a password while it lives.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, TypedDict

from pcnctl.config import Profile
from pcnctl.ent.kernelkeys import KernelKeyring
from pcnctl.errors import ConfigError

SERVICE = "pcnctl"
ENV_VARS = {
    "password": "PCNCTL_PASSWORD",
    "client_secret": "PCNCTL_CLIENT_SECRET",
    "canary_password": "PCNCTL_CANARY_PASSWORD",
}


_MEMORY: dict[tuple[str, str], str] = {}


def provide(profile: Profile, kind: str, value: str) -> None:
    """Hold a secret typed at a prompt for this process only (nothing is written anywhere)."""
    _MEMORY[(profile.name, kind)] = value


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value and where it came from (``env:NAME`` or ``keyring``); repr never shows the value."""

    value: str
    source: str

    def __repr__(self) -> str:
        return f"Secret(source={self.source!r})"


def needed_kinds(profile: Profile) -> tuple[str, ...]:
    """Which secrets a profile's auth mode needs."""
    return {
        "cookie": ("password",),
        "oauth-password": ("password", "client_secret"),
        "oauth-client": ("client_secret",),
    }[profile.auth]


def _keyring() -> Any:
    import keyring

    return keyring


def _keyring_error(exc: Exception) -> bool:
    from keyring.errors import KeyringError

    return isinstance(exc, KeyringError)


def lookup(profile: Profile, kind: str) -> Secret | None:
    """Return the secret from the environment or the keyring, or None when neither has it."""
    env = ENV_VARS[kind]
    if (profile.name, kind) in _MEMORY:
        return Secret(_MEMORY[(profile.name, kind)], "prompt")
    if os.environ.get(env):
        return Secret(os.environ[env], f"env:{env}")
    try:
        value = _keyring().get_password(SERVICE, f"{profile.name}:{kind}")
    except Exception as exc:
        if _keyring_error(exc):
            return None
        raise
    return Secret(value, "keyring") if value else None


def require(profile: Profile, kind: str) -> Secret:
    """Like :func:`lookup`, but a missing secret is a :class:`ConfigError` that says how to provide it."""
    found = lookup(profile, kind)
    if found:
        return found
    env = ENV_VARS[kind]
    what = "password" if kind == "password" else "OAuth2 client secret"
    hint = f"set {env} (cron, CI), or store it with 'pcnctl auth login --save -p {profile.name}'"
    if not keyring_available():
        hint = f"this machine has no keyring (headless?): set {env} in the environment of the command"
    raise ConfigError(f"no {what} for profile {profile.name!r}", hint=hint)


def keyring_available() -> bool:
    """True when a real keyring backend is usable here."""
    try:
        backend = _keyring().get_keyring()
    except Exception:
        return False
    name = type(backend).__module__ + "." + type(backend).__name__
    return not name.startswith(("keyring.backends.fail", "keyring.backends.null"))


def store(profile: Profile, kind: str, value: str) -> None:
    """Save a secret in the keyring, or explain why it cannot be saved."""
    if not keyring_available():
        raise ConfigError(
            "this machine has no keyring to save the secret in",
            hint=f"set {ENV_VARS.get(kind, 'the variable')} in the environment instead",
        )
    _keyring().set_password(SERVICE, f"{profile.name}:{kind}", value)


def forget(profile: Profile, kinds: tuple[str, ...] = ("password", "client_secret", "session")) -> list[str]:
    """Delete the profile's keyring entries; returns the kinds that were there."""
    if not keyring_available():
        return []
    removed = []
    kr = _keyring()
    for kind in kinds:
        try:
            kr.delete_password(SERVICE, f"{profile.name}:{kind}")
            removed.append(kind)
        except Exception as exc:
            if not _keyring_error(exc):
                raise
    return removed


SESSION_TTL_S = 12 * 3600  # a shift: the kernel forgets a cached session after that


def session_store() -> str:
    """Where ``auth login`` caches sessions here: ``keyring``, ``kernel`` (headless), or ``none``."""
    if os.environ.get("PCNCTL_NO_SESSION_CACHE"):
        return "none"
    if keyring_available():
        return "keyring"
    if not os.environ.get("PCNCTL_NO_KERNEL_KEYRING") and KernelKeyring.open() is not None:
        return "kernel"
    return "none"


class CachedSession(TypedDict, total=False):
    """A session ``auth login`` caches: a token, or the session's cookies, for one ENT URL."""

    url: str
    auth: str  # the profile's authentication mode when it was cached
    at: float  # when it was cached (seconds since the epoch)
    token: str
    cookies: dict[str, str]


def load_session(profile: Profile) -> CachedSession | None:
    """The session cached by ``auth login`` (cookies or token), if one is cached for this profile's URL."""
    where = session_store()
    raw: str | None = None
    if where == "keyring":
        try:
            raw = _keyring().get_password(SERVICE, f"{profile.name}:session")
        except Exception as exc:
            if not _keyring_error(exc):
                raise
    elif where == "kernel":
        ring = KernelKeyring.open()
        raw = ring.get(f"{profile.name}:session") if ring else None
    if not raw:
        return None
    try:
        session: CachedSession = json.loads(raw)
    except ValueError:
        return None
    return session if _cached_for(session, profile.url) else None


def _cached_for(data: object, url: str) -> bool:
    """Whether what the keyring holds is a session cached for this URL (anything else is ignored)."""
    return isinstance(data, dict) and data.get("url") == url


def save_session(profile: Profile, data: CachedSession) -> bool:
    """Cache a session in the keyring, else in the kernel keyring (memory only, expiring); False when
    neither is there (nothing is cached, and never in a file)."""
    where = session_store()
    raw = json.dumps({**data, "url": profile.url})
    if where == "keyring":
        _keyring().set_password(SERVICE, f"{profile.name}:session", raw)
        return True
    ring = KernelKeyring.open() if where == "kernel" else None
    return ring is not None and ring.put(f"{profile.name}:session", raw, SESSION_TTL_S)


def drop_session(profile: Profile) -> None:
    """Forget the cached session (after logout or when the ENT says it expired)."""
    forget(profile, ("session",))
    ring = KernelKeyring.open() if session_store() == "kernel" else None
    if ring is not None:
        ring.drop(f"{profile.name}:session")
