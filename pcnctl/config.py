"""Profiles: which ENT to talk to and how, stored as YAML that never holds a secret.

The file is ``$PCNCTL_CONFIG`` when set, else ``$XDG_CONFIG_HOME/pcnctl/config.yaml`` (``~/.config`` by
default). It is written 0600 in a 0700 directory even though it holds no secret, because logins and URLs
of an incident-response account are still worth keeping private. Keys that look like secrets are refused
on load so a password pasted into the file by hand is caught, not silently used.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pcnctl.errors import ConfigError, UsageError
from pcnctl.files import private_dir
from pcnctl.records import JsonObject

AUTH_MODES = ("cookie", "oauth-password", "oauth-client")
# Reverse proxies in front of the ENT that append to X-Forwarded-For. One is the usual deployment: a web
# server (nginx, Apache) in front of the platform's vert.x server, which the platform itself expects (its
# login redirect falls back to vert.x's own port 8009 when a request carries no X-Forwarded-For).
DEFAULT_TRUSTED_PROXIES = 1
MAX_TRUSTED_PROXIES = 10
CONFIG_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SECRET_KEYS = {
    "password",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "cookie",
    "onesessionid",
    "webhook_url",
    "smtp_password",
}


@dataclass(frozen=True, slots=True)
class Profile:
    """How to reach one ENT and who acts there. Secrets are resolved separately (see secrets.py)."""

    name: str
    url: str
    auth: str = "cookie"
    login: str | None = None
    client_id: str | None = None
    scope: str | None = None
    ca_file: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    mailstore: str | None = None
    canary: str | None = None  # login of a test account whose sends prove a messaging block works
    canary_to: str | None = None  # login the canary writes to (default: a teacher of its school)
    approvers: str | None = None  # OpenSSH allowed-signers file: purges and wide runs need a second admin
    trusted_proxies: int | None = None  # proxies in front of the ENT (None: DEFAULT_TRUSTED_PROXIES)
    state: str | None = None  # a shared state store (postgresql://ROLE@HOST/DB); None: the home's SQLite
    # The watcher's on-call channels (docs/watch.md): the SMTP password and the webhook URL (it holds a
    # token) come from the environment or the keyring, never from this file.
    page_to: str | None = None  # e-mail addresses, comma-separated
    page_from: str | None = None
    smtp: str | None = None  # smtp://[user@]host[:port], smtps://..., smtp+starttls://...
    page_webhook: bool | None = None  # page the chat webhook whose URL is kept as a secret
    policy: str | None = None  # the signed response policy the watcher may run (opt-in)

    @property
    def proxies(self) -> int:
        """How many X-Forwarded-For hops, from the right, the ENT's own proxies wrote."""
        return self.trusted_proxies or DEFAULT_TRUSTED_PROXIES

    def to_dict(self) -> dict[str, str | float]:
        data = asdict(self)
        data.pop("name")
        return {k: v for k, v in data.items() if v is not None}


def replaced_account(before: Profile, after: Profile) -> bool:
    """Whether ``after`` acts as someone else than ``before``: another ENT, account, client or mode."""
    fields = ("url", "auth", "login", "client_id")
    return any(getattr(before, f) != getattr(after, f) for f in fields)


AUDIT_KEYS = {
    "mass_messages": int,
    "mass_recipients": int,
    "mass_rate": float,
    "max_ips": int,
    "similarity": float,
    "latency_ms": float,
    "watchlist": str,
}


@dataclass(slots=True)
class Config:
    """The whole config file: profiles by name, the one in use, and the audit thresholds."""

    path: Path
    profiles: dict[str, Profile] = field(default_factory=dict)
    current: str | None = None
    audit: dict[str, Any] = field(default_factory=dict)


def validate_url(url: str) -> str:
    """Return a normalised base URL, refusing shapes that would leak credentials or mislead.

    Plain ``http://`` is accepted only for loopback addresses (the lab): anywhere else a password or a
    session cookie would cross the network in clear.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"{url!r} is not an ENT URL: expected https://host[:port]",
            hint="give the address you open in a browser, e.g. https://ent.example.fr",
        )
    if parts.username or parts.password:
        raise UsageError("the URL must not carry a login or password", hint="use --login and the keyring")
    if parts.query or parts.fragment:
        raise UsageError(f"{url!r} has a query or fragment; give only the ENT's base address")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(
            f"{url!r} uses plain http to a remote host: credentials would travel in clear",
            hint="use https:// (plain http is allowed only on 127.0.0.1/localhost, for the lab)",
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_dsn(name: str, dsn: str) -> None:
    """A mailstore DSN names the database, never its password (that comes from PGPASSWORD or ~/.pgpass)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(dsn)
    keyword = "password=" in dsn.lower() and "://" not in dsn  # "host=... password=..." form
    if parts.password or keyword or "password" in {k.lower() for k in parse_qs(parts.query)}:
        raise UsageError(
            f"profile {name!r}: the mailstore DSN holds a password, which would go into the config file",
            hint="give the DSN without it (postgresql://pcnctl_ro@db.internal/ent) and set PGPASSWORD, "
            "or use ~/.pgpass",
        )


def _check_state(name: str, url: str) -> None:
    """A shared state store is a PostgreSQL URL naming the database and the operator's role, never its
    password (that comes from PGPASSWORD, ~/.pgpass or the keyring); the home's SQLite is the default."""
    try:
        check_state_url(url)
    except UsageError as exc:
        raise UsageError(f"profile {name!r}: {exc.message}", hint=exc.hint) from None


def make_profile(name: str, **values: Any) -> Profile:
    """Build and check a profile from typed values (used by ``profile add`` and by the loader)."""
    if not _NAME.match(name):
        raise UsageError(
            f"{name!r} is not a valid profile name",
            hint="use letters, digits, '.', '_' or '-' (at most 64 characters)",
        )
    unknown = set(values) - set(Profile.__slots__) - {"name"}
    if unknown:
        raise ConfigError(f"profile {name!r}: unknown key(s) {', '.join(sorted(unknown))}")
    if "url" not in values or not values["url"]:
        raise ConfigError(f"profile {name!r} has no url")
    values["url"] = validate_url(str(values["url"]))
    auth = values.get("auth", "cookie")
    if auth not in AUTH_MODES:
        raise UsageError(f"profile {name!r}: auth must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
    if auth in ("cookie", "oauth-password") and not values.get("login"):
        raise UsageError(f"profile {name!r}: auth {auth} needs a login", hint="add --login LOGIN")
    if auth.startswith("oauth") and not values.get("client_id"):
        raise UsageError(f"profile {name!r}: auth {auth} needs a client id", hint="add --client-id ID")
    if auth == "oauth-client" and not values.get("scope"):
        # Edifice grants a client_credentials token asked without a scope no scope at all.
        raise UsageError(
            f"profile {name!r}: auth oauth-client needs the scopes registered for the client",
            hint="add --scope 'Controller|action ...' as the ENT's OAuth2 client configuration lists them",
        )
    if values.get("mailstore"):
        _check_dsn(name, str(values["mailstore"]))
    if values.get("state"):
        _check_state(name, str(values["state"]))
    for key in ("connect_timeout", "read_timeout"):
        if key in values and values[key] is not None:
            try:
                values[key] = float(values[key])
            except (TypeError, ValueError):
                raise ConfigError(f"profile {name!r}: {key} must be a number of seconds") from None
            if not 0 < values[key] <= 600:
                raise UsageError(f"profile {name!r}: {key} must be between 0 and 600 seconds")
    if values.get("trusted_proxies") is not None:
        values["trusted_proxies"] = _trusted_proxies(name, values["trusted_proxies"])
    _check_paging(name, values)
    for key in ("ca_file", "approvers", "policy"):
        if values.get(key):
            values[key] = str(Path(values[key]).expanduser())
    return Profile(name=name, **{k: v for k, v in values.items() if v is not None})


def _check_paging(name: str, values: Mapping[str, Any]) -> None:
    """The watcher's channels: addresses that look like addresses, an SMTP URL without a password."""
    for address in str(values.get("page_to") or "").split(","):
        if address.strip() and not re.match(r"^[^@\s,]+@[^@\s,]+$", address.strip()):
            raise UsageError(f"profile {name!r}: {address.strip()!r} is not an e-mail address")
    smtp = values.get("smtp")
    if smtp:
        parts = urlsplit(str(smtp))
        if parts.scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
            raise UsageError(
                f"profile {name!r}: {smtp!r} is not an SMTP server address",
                hint="give smtp://host[:port], smtps://host or smtp+starttls://user@host:587",
            )
        if parts.password is not None:
            raise UsageError(
                f"profile {name!r}: the SMTP address holds a password, which would go into the config file",
                hint="drop it and set PCNCTL_SMTP_PASSWORD, or keep it in the keyring: pcnctl watch secret "
                "smtp-password",
            )
    if values.get("page_webhook") is not None and not isinstance(values["page_webhook"], bool):
        raise UsageError(f"profile {name!r}: page_webhook is true or false")


def _trusted_proxies(name: str, value: object) -> int:
    """A count of proxies: a whole number from 1 (the ENT's own web server) to MAX_TRUSTED_PROXIES."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TRUSTED_PROXIES:
        raise UsageError(
            f"profile {name!r}: trusted_proxies must be a whole number from 1 to {MAX_TRUSTED_PROXIES}, "
            f"not {value!r}",
            hint="count the reverse proxies in front of the ENT that append to X-Forwarded-For (usually 1: "
            "its web server; 2 with a load balancer in front of it)",
        )
    return value


def load_config(path: Path) -> Config:
    """Read and check the config file (the environment says where: :attr:`pcnctl.env.Environment.config`);
    a missing file is an empty config."""
    if not path.exists():
        return Config(path=path)
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"config file {path} is not valid YAML{where}",
            hint="fix the file by hand, or move it away and re-create profiles with 'pcnctl profile add'",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if raw is None:
        return Config(path=path)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config file {path}: the top level must be a mapping with 'profiles'")
    unknown = set(raw) - {"version", "current", "profiles", "audit"}
    if unknown:
        raise ConfigError(f"config file {path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    if raw.get("version", CONFIG_VERSION) != CONFIG_VERSION:
        raise ConfigError(f"config file {path}: version {raw.get('version')!r} is not supported (expected 1)")
    profiles = _profiles(path, raw.get("profiles") or {})
    current = raw.get("current")
    if current is not None and current not in profiles:
        raise ConfigError(f"config file {path}: current profile {current!r} is not defined")
    audit = raw.get("audit") or {}
    _check_audit(path, audit)
    return Config(path=path, profiles=profiles, current=current, audit=dict(audit))


def _profiles(path: Path, raw: object) -> dict[str, Profile]:
    """The profiles of the file, each checked as ``profile add`` checks it; a secret in one is refused."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config file {path}: 'profiles' must be a mapping of name to settings")
    profiles: dict[str, Profile] = {}
    for name, values in raw.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"config file {path}: profile {name!r} must be a mapping")
        leaked = {str(k) for k in values if str(k).lower() in _SECRET_KEYS}
        if leaked:
            raise ConfigError(
                f"config file {path}: profile {name!r} holds a secret ({', '.join(sorted(leaked))})",
                hint="remove it from the file; secrets come from PCNCTL_PASSWORD / PCNCTL_CLIENT_SECRET "
                "or the keyring ('pcnctl auth login --save')",
            )
        try:
            profiles[str(name)] = make_profile(str(name), **dict(values))
        except UsageError as exc:
            raise ConfigError(f"config file {path}: {exc.message}", hint=exc.hint) from None
    return profiles


def _check_audit(path: Path, audit: object) -> None:
    """The 'audit' section: known thresholds, each of its type."""
    if not isinstance(audit, Mapping):
        raise ConfigError(f"config file {path}: 'audit' must be a mapping of thresholds")
    for key, value in audit.items():
        kind = AUDIT_KEYS.get(str(key))
        if kind is None:
            raise ConfigError(
                f"config file {path}: unknown audit setting {key!r} "
                f"(expected {', '.join(sorted(AUDIT_KEYS))})"
            )
        if not isinstance(value, (int, float) if kind is float else kind) or isinstance(value, bool):
            raise ConfigError(f"config file {path}: audit.{key} must be a {kind.__name__}")


def save_config(config: Config) -> None:
    """Write the config atomically, 0600 in a 0700 directory."""
    import yaml

    private_dir(config.path.parent)
    data: JsonObject = {"version": CONFIG_VERSION}
    if config.current:
        data["current"] = config.current
    if config.audit:
        data["audit"] = dict(config.audit)
    data["profiles"] = {name: p.to_dict() for name, p in sorted(config.profiles.items())}
    tmp = config.path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False, allow_unicode=True)
    os.replace(tmp, config.path)


def resolve_profile(name: str | None, config: Config) -> Profile:
    """Pick the profile: the one asked for (``-p``, else ``$PCNCTL_PROFILE``, both read at the edge), else
    the current one, else the only one."""
    chosen = name or config.current
    if chosen is None:
        if len(config.profiles) == 1:
            return next(iter(config.profiles.values()))
        if not config.profiles:
            raise ConfigError(
                f"no profile is configured ({config.path})",
                hint="add one: pcnctl profile add NAME --url https://ent.example.fr --login LOGIN",
            )
        raise ConfigError(
            f"several profiles exist ({', '.join(sorted(config.profiles))}) and none is chosen",
            hint="pass --profile NAME, set PCNCTL_PROFILE, or run 'pcnctl profile use NAME'",
        )
    if chosen not in config.profiles:
        known = ", ".join(sorted(config.profiles)) or "none"
        raise ConfigError(
            f"unknown profile {chosen!r} (known: {known})",
            hint="list them with 'pcnctl profile list' or add it with 'pcnctl profile add'",
        )
    return config.profiles[chosen]


def check_state_url(url: str) -> str:
    """A shared store's URL: ``postgresql://ROLE@HOST[:PORT]/DB[?...]``, never with a password (it would
    go into the config file and every process list)."""
    parts = urlsplit(url)
    hint = "give postgresql://ROLE@HOST/DB and the password in PGPASSWORD, ~/.pgpass or the keyring"
    if parts.scheme not in ("postgresql", "postgres"):
        raise UsageError(f"{url!r} is not a PostgreSQL URL", hint=hint)
    if parts.password or re.search(r"(^|&)password=", parts.query, re.IGNORECASE):
        raise UsageError("the state store URL must not carry a password", hint=hint)
    return url
