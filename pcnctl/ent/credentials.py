"""Secret resolution: environment first (cron, CI), then the keyring (people), never a file.

``PCNCTL_PASSWORD`` and ``PCNCTL_CLIENT_SECRET`` win when set, so unattended runs never touch the keyring
(and never pay its ~100 ms backend discovery). The keyring entry is service ``pcnctl``, user
``<profile>:<kind>``. Only ``auth login`` caches a session (its token or cookies), in the keyring when one
exists, on a headless machine in the kernel keyring (memory only, per user, expiring after a shift); never
in a file: a session cookie is as good as a password while it lives. A cached session names the home and
config it belongs to, and the ENT, account and authentication mode it was opened for.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from pcnctl.config import Profile
from pcnctl.ent.kernelkeys import KernelKeyring
from pcnctl.env import Environment
from pcnctl.errors import ConfigError

SERVICE = "pcnctl"
ENV_VARS = {
    "password": "PCNCTL_PASSWORD",
    "client_secret": "PCNCTL_CLIENT_SECRET",
    "canary_password": "PCNCTL_CANARY_PASSWORD",
    "state_password": "PGPASSWORD",  # the role of a shared state store (libpq's own variable)
    "smtp-password": "PCNCTL_SMTP_PASSWORD",  # the watcher's e-mail pages
    "webhook-url": "PCNCTL_WEBHOOK_URL",  # the watcher's chat pages (the URL holds a token)
}


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


def forget(
    profile: Profile, kinds: tuple[str, ...] = ("password", "client_secret", "session", "state_password")
) -> list[str]:
    """Delete the profile's keyring entries; returns the kinds that were there."""
    if not keyring_available():
        return []
    return [kind for kind in kinds if _delete(f"{profile.name}:{kind}")]


def _delete(entry: str) -> bool:
    """Delete one keyring entry; False when it was not there."""
    try:
        _keyring().delete_password(SERVICE, entry)
    except Exception as exc:
        if not _keyring_error(exc):
            raise
        return False
    return True


# The state store's setting that says the home's audit log is signed with a key kept in the keyring (the
# setting holds where, never the key): without it no command pays the keyring's start-up to look.
AUDIT_KEY_SETTING = "audit-key"


def _audit_key_entry(home: Path) -> str:
    return f"audit-key:{home.expanduser().resolve()}"


def load_audit_key(home: Path) -> bytes | None:
    """The key that signs the audit log of ``home``, from the keyring; None when it is not there."""
    if not keyring_available():
        return None
    try:
        value = _keyring().get_password(SERVICE, _audit_key_entry(home))
    except Exception as exc:
        if not _keyring_error(exc):
            raise
        return None
    return str(value).encode() if value else None


def create_audit_key(home: Path) -> None:
    """Generate a random key for the audit log of ``home`` and keep it in the keyring (never in a file:
    a key next to the log it signs would let whoever rewrites the log sign it too)."""
    if not keyring_available():
        raise ConfigError(
            "this machine has no keyring to keep the audit key in (nothing was changed)",
            hint="set PCNCTL_AUDIT_KEY in the environment of every pcnctl command instead, from a secret "
            "kept outside the home (a systemd credential, a vault)",
        )
    _keyring().set_password(SERVICE, _audit_key_entry(home), secrets.token_urlsafe(32))


SESSION_TTL_S = 12 * 3600  # a shift: the kernel forgets a cached session after that


class CachedSession(TypedDict, total=False):
    """A session ``auth login`` cached: a token or the session's cookies, and whose session it is.

    ``url``, ``auth`` and ``account`` (the login) are the profile's when it was cached, ``user_id`` what
    the ENT's userinfo said then: a session is reused only by the same account on the same ENT with the
    same authentication mode, and only while the ENT still names the same user (see EdificeAuth)."""

    url: str
    auth: str
    account: str
    user_id: str
    at: float  # when it was cached (seconds since the epoch)
    token: str
    cookies: dict[str, str]


def cacheable(profile: Profile) -> bool:
    """Whether a session of this profile may be cached at all. A client_credentials token is not: the
    ENT's userinfo names no user for it (so nothing could check whose it is), and a new one needs no MFA."""
    return profile.auth != "oauth-client"


def _account(profile: Profile) -> str:
    """Who the profile logs in as: its login, and the OAuth2 client that asks on its behalf, if any."""
    return "|".join(part for part in ((profile.login or "").lower(), profile.client_id or "") if part)


def _cached_for(data: object, profile: Profile) -> bool:
    """Whether what the keyring holds is a session cached for this profile's ENT, account and mode."""
    if not isinstance(data, dict):
        return False
    owner = (data.get("url"), data.get("auth"), data.get("account"))
    carried = isinstance(data.get("token"), str) or isinstance(data.get("cookies"), dict)
    user = data.get("user_id")
    return owner == (profile.url, profile.auth, _account(profile)) and carried and bool(user)


class Secrets:
    """Where one invocation finds its secrets and keeps its sessions: the secret variables the edge read
    (:attr:`pcnctl.env.Environment.secrets`), what the operator typed at a prompt (this process only), the
    keyring; and the cache ``auth login`` fills, scoped to the invocation's home and config file."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._typed: dict[tuple[str, str], str] = {}

    @property
    def mfa_code(self) -> str | None:
        return self.env.mfa_code

    def provide(self, profile: Profile, kind: str, value: str) -> None:
        """Hold a secret typed at a prompt for this process only (nothing is written anywhere)."""
        self._typed[(profile.name, kind)] = value

    def lookup(self, profile: Profile, kind: str) -> Secret | None:
        """The secret typed here, else given by variable, else in the keyring; None when none has it."""
        variable = ENV_VARS[kind]
        if (profile.name, kind) in self._typed:
            return Secret(self._typed[(profile.name, kind)], "prompt")
        given = self.env.secret(variable)
        if given:
            return Secret(given, f"env:{variable}")
        try:
            value = _keyring().get_password(SERVICE, f"{profile.name}:{kind}")
        except Exception as exc:
            if _keyring_error(exc):
                return None
            raise
        return Secret(value, "keyring") if value else None

    def require(self, profile: Profile, kind: str) -> Secret:
        """Like :meth:`lookup`, but a missing secret is a :class:`ConfigError` that says how to give it."""
        found = self.lookup(profile, kind)
        if found:
            return found
        variable = ENV_VARS[kind]
        what = "password" if kind == "password" else "OAuth2 client secret"
        hint = f"set {variable} (cron, CI), or store it with 'pcnctl auth login --save -p {profile.name}'"
        if not keyring_available():
            hint = (
                f"this machine has no keyring (headless?): set {variable} in the environment of the command"
            )
        raise ConfigError(f"no {what} for profile {profile.name!r}", hint=hint)

    # -- the session cache -------------------------------------------------------------------------------

    def session_store(self) -> str:
        """Where ``auth login`` caches sessions here: ``keyring``, ``kernel`` (headless), or ``none``."""
        if not self.env.session_cache:
            return "none"
        if keyring_available():
            return "keyring"
        if self.env.kernel_keyring and KernelKeyring.open() is not None:
            return "kernel"
        return "none"

    def _slot(self, profile: Profile) -> str:
        """The entry a profile's session is cached under: the profile name and a digest of the pcnctl home
        and config file, so that another home or config with a profile of the same name never reads it."""
        place = f"{self.env.home.expanduser().resolve()}\0{self.env.config.expanduser().resolve()}"
        return f"{profile.name}:session:{hashlib.sha256(place.encode()).hexdigest()[:20]}"

    def load_session(self, profile: Profile) -> CachedSession | None:
        """The session ``auth login`` cached for this profile, if it was cached for the profile's ENT,
        account and authentication mode; one cached for anything else (the profile changed) is dropped."""
        raw = self._read_slot(self._slot(profile)) if cacheable(profile) else None
        if not raw:
            return None
        try:
            session: CachedSession = json.loads(raw)
        except ValueError:
            session = {}
        if _cached_for(session, profile):
            return session
        self.drop_session(profile)
        return None

    def _read_slot(self, slot: str) -> str | None:
        where = self.session_store()
        if where == "keyring":
            try:
                value = _keyring().get_password(SERVICE, slot)
            except Exception as exc:
                if not _keyring_error(exc):
                    raise
                return None
            return str(value) if value else None
        ring = KernelKeyring.open() if where == "kernel" else None
        return ring.get(slot) if ring else None

    def save_session(self, profile: Profile, data: CachedSession) -> bool:
        """Cache a session in the keyring, else in the kernel keyring (memory only, expiring); False when
        neither is there or the profile's sessions are never cached (nothing is cached, never in a file)."""
        where = self.session_store()
        if not cacheable(profile) or where == "none":
            return False
        owner: CachedSession = {"url": profile.url, "auth": profile.auth, "account": _account(profile)}
        raw = json.dumps({**data, **owner})
        if where == "keyring":
            _keyring().set_password(SERVICE, self._slot(profile), raw)
            return True
        ring = KernelKeyring.open()
        return ring is not None and ring.put(self._slot(profile), raw, SESSION_TTL_S)

    def drop_session(self, profile: Profile) -> None:
        """Forget the profile's cached session (logout, expiry, a profile replaced or removed), and the
        entry older versions cached under the bare profile name, which said nothing of whose it was."""
        if keyring_available():
            _delete(self._slot(profile))
            _delete(f"{profile.name}:session")
        ring = KernelKeyring.open() if self.session_store() == "kernel" else None
        if ring is not None:
            ring.drop(self._slot(profile))
            ring.drop(f"{profile.name}:session")
