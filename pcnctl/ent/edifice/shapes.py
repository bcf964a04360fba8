"""Parsers of the JSON shapes Edifice really returns (contracts in ``tests/contracts/``, release 6.15.4).

The same record comes back in different shapes from different routes, and the parsers accept all of them
rather than trusting one:

* ``type`` is a profile string in list routes (``head(u.profiles)``) but the whole ``profiles`` list in
  ``GET /directory/user/:userId``, and a French code (``ELEVE``...) in ``userinfo`` version 1.0.
* A user's schools are objects ``{id, name}`` in list routes; in the user detail they are the
  ``structureNodes`` objects, while ``structures`` there is the node's list of structure **externalId**
  strings.
* ``functions`` is a list of ``[code, scope]`` pairs (``[null, null]`` when there is none) in directory
  routes, and a map ``code -> {code, scope}`` in the session (``userinfo``).
* ``login`` is the alias when the user has one; the original login is ``originalLogin`` (admin list) or
  the node's ``login`` next to ``loginAlias`` (user detail).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pcnctl.errors import ApiError
from pcnctl.models import (
    PROFILES,
    BlockTrace,
    Group,
    GroupLinks,
    HeldMessage,
    Identity,
    PlatformEvent,
    RelationCut,
    Role,
    School,
    User,
    school_type,
)

# userinfo version 1.0 renames the profiles (UserInfoAdapterV1_0Json); the other versions keep them.
_V1_TYPES = {
    "ELEVE": "Student",
    "ENSEIGNANT": "Teacher",
    "PERSRELELEVE": "Relative",
    "PERSEDUCNAT": "Personnel",
    "SUPERADMIN": "Personnel",
}


@dataclass(slots=True)
class SchoolIndex:
    """How a user row names its schools (id, externalId or, as a last resort, name) mapped to UAIs."""

    by_id: dict[str, str] = field(default_factory=dict)
    by_external_id: dict[str, str] = field(default_factory=dict)

    def add(self, school_id: str, external_id: str | None, uai: str) -> None:
        self.by_id[school_id] = uai
        if external_id:
            self.by_external_id[external_id] = uai

    def uai(self, ref: Any) -> str | None:
        """The UAI of a school reference: an object with ``id``/``UAI`` or an externalId string."""
        if isinstance(ref, str):
            return self.by_external_id.get(ref) or self.by_id.get(ref)
        if isinstance(ref, Mapping):
            found = self.by_id.get(str(ref.get("id") or ""))
            if found:
                return found
            uai = ref.get("UAI") or ref.get("uai")
            if uai:
                return str(uai).upper()
            return self.by_external_id.get(str(ref.get("externalId") or ""))
        return None


def profile_of(value: Any) -> str:
    """One Edifice profile from ``type``/``profiles`` in any of its shapes ("?" when absent)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str) or not value:
        return "?"
    if value in PROFILES:
        return value
    return _V1_TYPES.get(value.upper(), value)


def function_codes(value: Any) -> tuple[str, ...]:
    """Function codes (``SUPER_ADMIN``, ``ADMIN_LOCAL``...) from pairs, strings or a session map."""
    codes: set[str] = set()
    if isinstance(value, Mapping):
        codes.update(str(k) for k in value)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, list) and item and item[0]:
                codes.add(str(item[0]))
            elif isinstance(item, str) and item:
                codes.add(item)
    return tuple(sorted(codes))


def parse_user(row: Mapping[str, Any], schools: SchoolIndex) -> User:
    """A user from any directory route: admin list, structure users, or the user detail."""
    user_id = row.get("id")
    if not isinstance(user_id, str) or not user_id:
        raise ApiError("the ENT returned a user without an id (unexpected shape)")
    refs: Iterable[Any] = row.get("structureNodes") or row.get("structures") or ()
    uais = sorted({u for u in (schools.uai(r) for r in refs) if u})
    login, alias = _logins(row)
    return User(
        id=user_id,
        login=login,
        display_name=str(row.get("displayName") or ""),
        profile=profile_of(row.get("type") if row.get("type") is not None else row.get("profiles")),
        blocked=row.get("blocked") is True,
        schools=tuple(uais),
        first_name=row.get("firstName"),
        last_name=row.get("lastName"),
        last_login=row.get("lastLogin"),
        functions=function_codes(row.get("functions")),
        alias=alias,
        classes=_class_names(row.get("allClasses")),
        relatives=_relative_names(row.get("parents")),
    )


def _class_names(value: Any) -> tuple[str, ...]:
    """The admin list's ``allClasses`` ({id, name} per class, ``[{id: null, name: null}]`` for none)."""
    items = value if isinstance(value, list) else []
    return tuple(str(c["name"]) for c in items if isinstance(c, dict) and c.get("name"))


def _relative_names(value: Any) -> tuple[str, ...]:
    """The admin list's ``parents`` ({id, firstName, lastName} per relative, directory
    ``DefaultUserService.listAdmin``); the user node's placeholders (every field null) give none."""
    names = []
    for p in value if isinstance(value, list) else []:
        if isinstance(p, dict) and (p.get("firstName") or p.get("lastName")):
            names.append(" ".join(str(p[k]) for k in ("firstName", "lastName") if p.get(k)))
    return tuple(names)


def _logins(row: Mapping[str, Any]) -> tuple[str, str | None]:
    """(original login, alias or None) from the admin list or the user node's fields."""
    shown = str(row.get("login") or "")
    original = row.get("originalLogin")
    if isinstance(original, str) and original:
        return original, (shown if shown and shown != original else None)
    alias = row.get("loginAlias")
    return shown, (str(alias) if alias else None)


def parse_school(row: Mapping[str, Any], details: Mapping[str, Any] | None = None) -> School:
    """A school from ``/directory/structure/admin/list``, with address fields when the caller has them."""
    more = details or {}
    name = str(row.get("name") or "")
    return School(
        id=str(row["id"]),
        uai=str(row.get("UAI") or "").upper(),
        name=name,
        type=school_type(name),
        city=more.get("city"),
        zip_code=more.get("zipCode"),
        academy=more.get("academy"),
    )


def parse_identity(info: Mapping[str, Any], *, auth_mode: str, client_id: str | None) -> Identity:
    """Who the session is, from ``/auth/oauth2/userinfo``.

    Version 1.0 (the default) drops ``functions`` for a bearer token; pcnctl asks for version 2.0, and when
    an older platform still answers without ``functions`` the role is marked unknown rather than guessed:
    an ADML taken for a plain user would skip the client-side scope checks.
    """
    functions = info.get("functions")
    known = isinstance(functions, Mapping)
    codes = functions if isinstance(functions, Mapping) else {}
    adml = codes.get("ADMIN_LOCAL")
    scope = adml.get("scope") if isinstance(adml, Mapping) else None
    return Identity(
        auth_mode=auth_mode,
        user_id=info.get("userId"),
        login=info.get("login"),
        display_name=info.get("username"),
        profile=profile_of(info.get("type")),
        admc="SUPER_ADMIN" in codes,
        adml_structures=tuple(scope or ()),
        client_id=client_id,
        role_known=known,
    )


def mongo_date(value: Any) -> str:
    """An ISO 8601 UTC time from a MongoDB date as the platform serialises it: ``{"$date": ms}`` (or an ISO
    string inside), or a plain ISO string from older releases."""
    if isinstance(value, Mapping):
        value = value.get("$date")
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value / 1000, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value or "")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_group(row: Mapping[str, Any]) -> Group:
    """A group from ``/directory/group/admin/list`` (``filter`` is a profile group's profile)."""
    return Group(
        id=str(row["id"]),
        name=_text(row.get("name")),
        profile=_text(row.get("filter")),
        users=int(row.get("nbUsers") or 0),
        sub_type=_text(row.get("subType")),
        type=_text(row.get("type")),
    )


def parse_group_links(group: Mapping[str, Any]) -> GroupLinks:
    """``GET /communication/group/:id``: ``communiqueWith`` holds the node of each group it sends to."""
    peers = {
        str(g["id"]): _text(g.get("users"))
        for g in group.get("communiqueWith") or []
        if isinstance(g, Mapping) and g.get("id")
    }
    return GroupLinks(
        users=_text(group.get("users")),
        relative=_text(group.get("relativeCommuniqueStudent")),
        outgoing=tuple(sorted(peers)),
        peers=peers,
    )


def parse_held(row: Mapping[str, Any]) -> HeldMessage:
    """A row of ``GET /conversation/api/folders/INBOX/messages`` (conversation ``MessageUtil``:
    ``from`` an object, ``to``/``cc`` as ``{users, groups}``; tests/contracts/conversation/)."""

    def ids(part: str, kind: str) -> list[str]:
        value = row.get(part) or {}
        items = value.get(kind) if isinstance(value, Mapping) else None
        return [str(i.get("id")) for i in items or [] if isinstance(i, Mapping) and i.get("id")]

    sender = row.get("from")
    return HeldMessage(
        id=str(row.get("id", "")),
        sender=str(sender.get("id", "")) if isinstance(sender, Mapping) else str(sender or ""),
        users=tuple(ids("to", "users") + ids("cc", "users")),
        groups=tuple(ids("to", "groups") + ids("cc", "groups")),
        no_reply=bool(row.get("noReply")),
    )


def parse_relation_cut(answer: Mapping[str, Any]) -> RelationCut:
    return RelationCut(sender=_text(answer.get("sender")), receiver=_text(answer.get("receiver")))


def parse_role(row: Mapping[str, Any]) -> Role:
    """A role of ``.../application/:appId/groups/roles``, with the ids of the groups holding it."""
    groups = row.get("groups") or []
    return Role(
        id=str(row["id"]),
        name=str(row.get("name") or ""),
        groups=tuple(str(g["id"]) for g in groups if isinstance(g, Mapping) and g.get("id")),
    )


def parse_event(row: Mapping[str, Any]) -> PlatformEvent:
    """An event of ``/infra/v2/event/list/events/:epoch`` (``event-type``, ``profil``: the platform's
    own field names)."""
    return PlatformEvent(
        id=str(row.get("_id") or ""),
        type=str(row.get("event-type") or ""),
        module=str(row.get("module") or ""),
        date=int(row["date"]),
        user_id=_text(row.get("userId")) or None,
        profile=_text(row.get("profil")),
        structures=tuple(str(s) for s in row.get("structures") or []),
        ip=_text(row.get("ip")),
        ua=_text(row.get("ua")),
    )


def parse_block_trace(row: Mapping[str, Any]) -> BlockTrace:
    owner = row.get("owner")
    return BlockTrace(
        created=mongo_date(row.get("created")),
        action=str(row.get("action") or ""),
        profile=str(row.get("profile") or ""),
        by=owner.get("displayName") if isinstance(owner, Mapping) else None,
    )
