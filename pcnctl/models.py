"""Typed records the core passes around and the CLI renders; ``to_row`` gives their stable output keys."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TypedDict

from pcnctl.records import Row

PROFILES = ("Student", "Teacher", "Personnel", "Relative", "Guest")


@dataclass(frozen=True, slots=True)
class School:
    id: str
    uai: str
    name: str
    type: str
    city: str | None = None
    zip_code: str | None = None
    academy: str | None = None

    def to_row(self) -> Row:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    login: str
    display_name: str
    profile: str
    blocked: bool
    schools: tuple[str, ...] = ()
    first_name: str | None = None
    last_name: str | None = None
    last_login: str | None = None
    functions: tuple[str, ...] = ()
    alias: str | None = None  # the login alias, when the user chose one (login stays the original)
    # What the admin list adds (``allClasses``, ``parents``): the user's classes, and a pupil's relatives
    # as "First LAST"; empty where the route does not give them.
    classes: tuple[str, ...] = ()
    relatives: tuple[str, ...] = ()

    def to_row(self) -> Row:
        return {
            "id": self.id,
            "login": self.login,
            "alias": self.alias,
            "displayName": self.display_name,
            "profile": self.profile,
            "blocked": self.blocked,
            "schools": list(self.schools),
            "firstName": self.first_name,
            "lastName": self.last_name,
            "lastLogin": self.last_login,
            "functions": list(self.functions),
        }


@dataclass(frozen=True, slots=True)
class Identity:
    """Who acts: ADMC, ADML with its schools, a plain user, or a service account (client_credentials)."""

    auth_mode: str
    user_id: str | None = None
    login: str | None = None
    display_name: str | None = None
    profile: str | None = None
    admc: bool = False
    adml_structures: tuple[str, ...] = ()
    client_id: str | None = None
    role_known: bool = True  # False when the platform did not say which admin functions the user holds

    @property
    def role(self) -> str:
        if self.user_id is None:
            return "service"
        if not self.role_known:
            return "unknown"
        if self.admc:
            return "ADMC"
        if self.adml_structures:
            return "ADML"
        return "user"

    @property
    def label(self) -> str:
        """How the audit log and journals name this identity."""
        if self.user_id is None:
            return f"service:{self.client_id}"
        return f"{self.login} ({self.role}, {self.auth_mode})"

    def to_row(self) -> Row:
        return {
            "role": self.role,
            "login": self.login,
            "userId": self.user_id,
            "displayName": self.display_name,
            "authMode": self.auth_mode,
            "clientId": self.client_id,
            "admlStructures": list(self.adml_structures),
        }


@dataclass(frozen=True, slots=True)
class BlockTrace:
    """The platform's own record of a profile block or unblock in a school."""

    created: str  # ISO 8601, UTC
    action: str
    profile: str
    by: str | None


class GroupJson(TypedDict):
    """A group as a messaging block's snapshot stores it."""

    id: str
    name: str | None
    profile: str | None
    users: int
    sub_type: str | None
    type: str | None


@dataclass(frozen=True, slots=True)
class Group:
    """A group of a school, from the directory's admin list: ``profile`` is the profile of a profile
    group, ``users`` its member count, ``type`` (ProfileGroup, ManualGroup...) and ``sub_type``
    (StructureGroup, ClassGroup...) its kind."""

    id: str
    name: str | None = None
    profile: str | None = None
    users: int = 0
    sub_type: str | None = None
    type: str | None = None

    def to_json(self) -> GroupJson:
        return {
            "id": self.id,
            "name": self.name,
            "profile": self.profile,
            "users": self.users,
            "sub_type": self.sub_type,
            "type": self.type,
        }

    @classmethod
    def from_json(cls, data: GroupJson) -> Group:
        """Read back leniently: a snapshot needs the group's id, the rest only informs the plan."""
        return cls(
            data["id"],
            data.get("name"),
            data.get("profile"),
            data.get("users", 0),
            data.get("sub_type"),
            data.get("type"),
        )


@dataclass(frozen=True, slots=True)
class GroupLinks:
    """A group's communication state: its members' link (BOTH, INCOMING, OUTGOING, NONE, or None when
    the property is absent), the children -> relatives setting, the groups it sends to, and those
    groups' own members' link (``peers``)."""

    users: str | None
    relative: str | None
    outgoing: tuple[str, ...] = ()
    peers: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A message in the session's own inbox, as ``GET /conversation/api/folders/INBOX/messages`` lists it:
    who sent it and the people and groups it went to (a reply may answer any of them, conversation
    ``VisiblesFilter``)."""

    id: str
    sender: str
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    no_reply: bool = False


@dataclass(frozen=True, slots=True)
class RelationCut:
    """The answer to a relation removal: each group's members' link after it (None: cut, or none left)."""

    sender: str | None
    receiver: str | None


@dataclass(frozen=True, slots=True)
class Role:
    """An application role in a school, and the ids of the groups holding it."""

    id: str
    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlatformEvent:
    """One event of the platform's event store: a login, a message created... (no content, no ids of
    what was created)."""

    id: str
    type: str  # LOGIN, CREATE, ACTIVATION...
    module: str  # Auth, Conversation... or an OAuth client id for a token login
    date: int  # epoch milliseconds
    user_id: str | None = None
    profile: str | None = None
    structures: tuple[str, ...] = ()
    ip: str | None = None
    ua: str | None = None


@dataclass(slots=True)
class Capability:
    name: str
    available: bool | None
    detail: str = ""

    @property
    def state(self) -> str:
        return "yes" if self.available else ("no" if self.available is False else "unknown")

    def to_row(self) -> Row:
        return {"capability": self.name, "available": self.state, "detail": self.detail}


@dataclass(slots=True)
class Reach:
    """What an anonymous GET of the login page showed."""

    times_ms: list[float]
    page: str  # login | saturated | foreign | none


@dataclass(slots=True)
class RouteHealth:
    """Response times of one route, sampled by the audit's health check."""

    route: str
    times_ms: list[float] = field(default_factory=list)
    errors: int = 0


@dataclass(slots=True)
class DoctorReport:
    checks: list[dict[str, str]] = field(default_factory=list)  # check, status, detail
    capabilities: list[Capability] = field(default_factory=list)
    identity: Identity | None = None

    @property
    def ok(self) -> bool:
        return all(c["status"] != "fail" for c in self.checks)


def fold(text: str) -> str:
    """Lower-case, accent-free text for matching names typed without accents."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


_TYPES = (
    ("ecole", re.compile(r"\b(ecole|elementaire|maternelle|primaire|ee|em|epp)\b")),
    ("college", re.compile(r"\b(college|clg)\b")),
    ("lycee", re.compile(r"\b(lycee|lyc|lgt|lp|lpo|erea)\b")),
)


def school_type(name: str) -> str:
    """ecole, college, lycee or other, from the school's name (Edifice has no type field)."""
    folded = fold(name).replace("-", " ")
    for kind, pattern in _TYPES:
        if pattern.search(folded):
            return kind
    return "other"
