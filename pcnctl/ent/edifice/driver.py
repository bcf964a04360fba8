"""The Edifice driver: typed calls over the platform's HTTP routes (reference: edifice-api.md §1, §8).

The driver knows routes and JSON shapes and nothing about incidents, caps or plans: those live in the
core modules, which talk to it through :class:`pcnctl.ent.platform.EntDriver`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pcnctl.config import Profile
from pcnctl.ent.credentials import Secrets
from pcnctl.ent.edifice.auth import EdificeAuth, MfaPrompt
from pcnctl.ent.edifice.shapes import (
    SchoolIndex,
    parse_block_trace,
    parse_event,
    parse_group,
    parse_group_links,
    parse_held,
    parse_identity,
    parse_relation_cut,
    parse_role,
    parse_school,
    parse_user,
)
from pcnctl.ent.http import HttpClient, RetryPolicy
from pcnctl.errors import AuthError, ConflictError, NotFoundError, PcnError, PermissionDeniedError
from pcnctl.models import (
    BlockTrace,
    Capability,
    Group,
    GroupLinks,
    HeldMessage,
    Identity,
    PlatformEvent,
    Reach,
    RelationCut,
    Role,
    RouteHealth,
    School,
    User,
)

_PROBE = RetryPolicy(attempts=1)
# Bulk calls run under the fan-out executor, which paces and retries: one attempt per call here.
SINGLE = RetryPolicy(attempts=1)


class EdificeDriver:
    """One authenticated connection to an Edifice ENT."""

    platform = "edifice"

    def __init__(self, profile: Profile, http: HttpClient, auth: EdificeAuth) -> None:
        self.profile = profile
        self.http = http
        self.auth = auth
        self._schools: list[School] | None = None
        self._index = SchoolIndex()
        self._identity: Identity | None = None
        # Admin-list rows of the structures already listed to find an alias, kept for the connection.
        self._listed: dict[str, list[dict[str, Any]]] = {}

    @staticmethod
    def client(
        profile: Profile, retry: RetryPolicy | None = None, on_retry: Callable[[str], None] | None = None
    ) -> HttpClient:
        """The HTTP client for ``profile``, not logged in."""
        return HttpClient(
            profile.url,
            connect_timeout=profile.connect_timeout,
            read_timeout=profile.read_timeout,
            ca_file=profile.ca_file,
            retry=retry,
            on_retry=on_retry,
        )

    @classmethod
    def open(
        cls,
        profile: Profile,
        secrets: Secrets,
        *,
        mfa_prompt: MfaPrompt | None = None,
        use_cache: bool = True,
        on_retry: Callable[[str], None] | None = None,
    ) -> EdificeDriver:
        """Build the HTTP client for ``profile`` and log in, or reuse the session ``auth login`` cached once
        the ENT has said it is still the same user's (that answer is then who this driver is)."""
        http = cls.client(profile, on_retry=on_retry)
        auth = EdificeAuth(profile, secrets, mfa_prompt=mfa_prompt, use_cache=use_cache)
        http.authenticator = auth
        auth.resume_or_login(http)
        driver = cls(profile, http, auth)
        driver._identity = auth.identity
        return driver

    # -- identity ------------------------------------------------------------------------------------

    def whoami(self) -> Identity:
        """Who this session is, from ``GET /auth/oauth2/userinfo?version=v2.0`` (a service token has no user).

        Version 2.0 keeps ``functions`` for a bearer token, where the default 1.0 drops them; see
        :func:`pcnctl.ent.edifice.shapes.parse_identity` for what happens on a platform without it.
        """
        if self._identity is not None:
            return self._identity
        if self.profile.auth == "oauth-client":
            self._identity = Identity(auth_mode="oauth-client", client_id=self.profile.client_id)
            return self._identity
        info = self.http.request("GET", "/auth/oauth2/userinfo", params={"version": "v2.0"}).json()
        self._identity = parse_identity(info, auth_mode=self.profile.auth, client_id=self.profile.client_id)
        return self._identity

    def pass_second_factor(self) -> None:
        """Make the platform ask for MFA now if it will ask at all (admins only), through one small
        MFA-protected read, so that a session cached by ``auth login`` has passed it already."""
        if self.whoami().role in ("ADMC", "ADML"):
            schools = self.list_schools()
            if schools:
                self.list_users(schools[0].id, profiles=["Guest"])

    # -- directory -----------------------------------------------------------------------------------

    def list_schools(self) -> list[School]:
        """Schools this identity administers, with city and académie when the caller may read them."""
        if self._schools is not None:
            return self._schools
        rows = self.http.request("GET", "/directory/structure/admin/list").json()
        details: dict[str, dict[str, Any]] = {}
        # /directory/structures carries address fields but is an ADMC (workflow) route: an ADML gets 401.
        extra = self.http.request("GET", "/directory/structures", allow=(401, 403))
        if extra.status_code == 200:
            details = {d["id"]: d for d in extra.json()}
        schools = [parse_school(row, details.get(row["id"])) for row in rows]
        for row, school in zip(rows, schools, strict=True):
            self._index.add(school.id, row.get("externalId"), school.uai)
        schools.sort(key=lambda s: (s.uai, s.name))
        self._schools = schools
        return schools

    def _user(self, row: dict[str, Any]) -> User:
        if self._schools is None:
            self.list_schools()
        return parse_user(row, self._index)

    def list_users(
        self, structure_id: str, *, profiles: Iterable[str] = (), search: str | None = None
    ) -> list[User]:
        """Users of one structure via ``GET /directory/user/admin/list`` (server-side filters)."""
        params: list[tuple[str, Any]] = [("structureId", structure_id)]
        params += [("profile", p) for p in profiles]
        if search:
            params += [("searchTerm", search), ("searchType", "displayName")]
        rows = self.http.request("GET", "/directory/user/admin/list", params=params).json()
        return [self._user(r) for r in rows]

    def structure_users(self, structure_id: str) -> list[User]:
        """Every user of a structure via ``GET /directory/structure/:id/users``."""
        rows = self.http.request("GET", f"/directory/structure/{structure_id}/users").json()
        return [self._user(r) for r in rows]

    def get_user(self, user_id: str) -> User:
        return self._user(self.http.request("GET", f"/directory/user/{user_id}").json())

    def find_user_by_login(self, login: str, schools: Iterable[str] = ()) -> User | None:
        """The user whose login or alias is ``login``, or None, without listing the platform.

        Edifice has no search by login. Generated logins are ``prenom.nom`` (accents and symbols dropped,
        a number from 2 on collision), so the admin list's name search (``firstName``/``lastName``,
        prefix match on the search fields) finds the few homonyms, and the exact login is picked among
        them. An alias can be anything: it is looked for in the structures given (or the ADML's own),
        each listed once per connection.
        """
        wanted = login.strip().lower()
        ident = self.whoami()
        if ident.user_id and wanted == (ident.login or "").lower():
            return self.get_user(ident.user_id)
        guess = login_name_guess(wanted)
        if guess is not None:
            first, last = guess
            rows = self.http.request(
                "GET", "/directory/user/admin/list", params={"firstName": first, "lastName": last}
            ).json()
            found = _pick_login(rows, wanted)
            if found is not None:
                return self._user(found)
        places = list(schools) or (list(ident.adml_structures) if ident.role == "ADML" else [])
        for structure_id in places:
            found = _pick_login(self._structure_rows(structure_id), wanted)
            if found is not None:
                return self._user(found)
        return None

    def _structure_rows(self, structure_id: str) -> list[dict[str, Any]]:
        if structure_id not in self._listed:
            self._listed[structure_id] = self.http.request(
                "GET", "/directory/user/admin/list", params={"structureId": structure_id}
            ).json()
        return self._listed[structure_id]

    # -- accounts (edifice-api.md §5, §2.4) ----------------------------------------------------------

    def block_user(self, user_id: str, block: bool = True) -> None:
        """``PUT /auth/block/:id``: blocking also drops every session, token and CAS ticket at once."""
        response = self.http.request(
            "PUT", f"/auth/block/{user_id}", json={"block": block}, retry=SINGLE, allow=(400,)
        )
        if response.status_code == 400:  # the platform's answer for an id it does not know
            raise NotFoundError(
                f"no account {user_id} on the ENT", method="PUT", path="/auth/block/…", status=400
            )

    def block_users(self, user_ids: list[str], block: bool = True) -> None:
        """``PUT /auth/users/block``: one call for many accounts (ADMC in practice; an ADML gets 401).

        With one unknown id in the list the platform answers 400 but blocks the others **without**
        dropping their sessions: pcnctl then blocks each account on its own, which does drop them."""
        response = self.http.request(
            "PUT",
            "/auth/users/block",
            json={"users": user_ids, "block": block},
            retry=SINGLE,
            allow=(400,),
        )
        if response.status_code == 400:
            unknown = []
            for user_id in user_ids:
                try:
                    self.block_user(user_id, block)
                except NotFoundError:
                    unknown.append(user_id)
            if unknown:
                raise NotFoundError(f"{len(unknown)} account(s) unknown on the ENT: {', '.join(unknown[:5])}")

    def force_change_password(self, user_id: str) -> None:
        self.http.request("POST", "/auth/forceChangePassword", json={"userId": user_id}, retry=SINGLE)

    def erase_password(self, user_id: str) -> None:
        self.http.request("POST", "/auth/erasePassword", json={"userId": user_id}, retry=SINGLE)

    def renewal_code(self, login: str) -> str:
        """A one-time code for the legitimate user (``POST /auth/generatePasswordRenewalCode``).

        ``login`` must be the original login, not an alias; the platform answers 500 when no activated,
        non-federated account has exactly that login."""
        response = self.http.request(
            "POST", "/auth/generatePasswordRenewalCode", data={"login": login}, retry=SINGLE, allow=(500,)
        )
        if response.status_code == 500:
            raise NotFoundError(
                f"the ENT has no activated local account with login {login!r} for a renewal code",
                method="POST",
                path="/auth/generatePasswordRenewalCode",
                status=500,
            )
        return str(response.json()["renewalCode"])

    def block_profile(self, structure_id: str, profile: str, block: bool) -> None:
        """``PUT /directory/structure/:id/profile/block``: every user of that profile in the school."""
        self.http.request(
            "PUT",
            f"/directory/structure/{structure_id}/profile/block",
            json={"profile": profile, "block": block},
        )

    def block_traces(self, structure_id: str) -> list[BlockTrace]:
        rows = self.http.request("GET", f"/admin/api/block/traces/{structure_id}").json()
        return sorted((parse_block_trace(r) for r in rows), key=lambda t: t.created)

    # -- messaging levers (edifice-api.md §2) --------------------------------------------------------

    def profile_groups(self, structure_id: str) -> list[Group]:
        """Profile groups of a school, structure and class level."""
        rows = self.http.request(
            "GET", "/directory/group/admin/list", params={"structureId": structure_id, "type": "ProfileGroup"}
        ).json()
        return [parse_group(g) for g in rows]

    def school_groups(self, structure_id: str) -> list[Group]:
        """Every group of a school (profile, functional, manual, head-teacher...)."""
        rows = self.http.request(
            "GET", "/directory/group/admin/list", params={"structureId": structure_id}
        ).json()
        return [parse_group(g) for g in rows]

    def group_links(self, group_id: str) -> GroupLinks:
        """One ``GET /communication/group/:id``: the members' link, ``relativeCommuniqueStudent``, the
        outgoing relations and those groups' own members' link, from the same answer."""
        return parse_group_links(self.http.request("GET", f"/communication/group/{group_id}").json())

    def remove_users_link(self, group_id: str) -> str | None:
        """``DELETE .../users``: the server picks the side; None when both went. A 409 (the group both
        sends and receives) raises :class:`ConflictError`."""
        r = self.http.request("DELETE", f"/communication/group/{group_id}/users", allow=(409,))
        if r.status_code == 409:
            raise ConflictError(f"group {group_id}: {r.json().get('error')}")
        value = r.json().get("users")
        return None if value is None else str(value)

    def add_users_link(self, group_id: str) -> str:
        return str(self.http.request("POST", f"/communication/group/{group_id}/users").json().get("users"))

    def set_users_link(self, group_id: str, direction: str) -> None:
        """The deprecated ``POST /communication/group/:id?direction=``: the only exact way to write
        INCOMING, OUTGOING or NONE."""
        self.http.request("POST", f"/communication/group/{group_id}", params={"direction": direction})

    def remove_relation(self, start_id: str, end_id: str) -> RelationCut | None:
        """The answer's ``sender``/``receiver`` (null = that side's members' link was cut too); None for a
        400, which the platform sends **after** deleting the edge (a group without ``users``)."""
        r = self.http.request("DELETE", f"/communication/group/{start_id}/relations/{end_id}", allow=(400,))
        if r.status_code == 400:
            return None
        return parse_relation_cut(r.json())

    def add_relation(self, start_id: str, end_id: str) -> None:
        """The deprecated v1 route: the edge and the id, no direction change (an exact restore)."""
        self.http.request("POST", f"/communication/group/{start_id}/communique/{end_id}")

    def remove_relative_links(self, group_id: str, direction: str) -> int:
        r = self.http.request(
            "DELETE", f"/communication/relative/{group_id}", params={"direction": direction}
        )
        return int(r.json().get("number") or 0)

    def add_relative_links(self, group_id: str, direction: str) -> int:
        r = self.http.request("POST", f"/communication/relative/{group_id}", params={"direction": direction})
        return int(r.json().get("number") or 0)

    def sub_structures(self, structure_id: str) -> list[str]:
        """The structures attached below this one, at any depth (from the admin list's ``parents``)."""
        rows = self.http.request("GET", "/directory/structure/admin/list").json()
        children: dict[str, list[str]] = {}
        for row in rows:
            for parent in row.get("parents") or []:
                if parent.get("id"):
                    children.setdefault(parent["id"], []).append(row["id"])
        out, todo = [], [structure_id]
        while todo:
            for child in sorted(children.get(todo.pop(), [])):
                if child not in out and child != structure_id:
                    out.append(child)
                    todo.append(child)
        return out

    def can_communicate(self, from_id: str, to_id: str) -> bool | None:
        """``GET /communication/verify``: None when the route is refused (ADMC only on the platform)."""
        r = self.http.request("GET", f"/communication/verify/{from_id}/{to_id}", allow=(401, 403))
        if r.status_code in (401, 403):
            return None
        return bool(r.json().get("canCommunicate"))

    def messaging_roles(self, structure_id: str) -> list[Role]:
        """Roles of the Messagerie app in a school, with the groups holding them."""
        apps = self.http.request(
            "GET", "/appregistry/applications", params={"structureId": structure_id}
        ).json()
        app_ids = [a["id"] for a in apps if a.get("name") == "Messagerie"]
        if not app_ids:
            return []
        roles = self.http.request(
            "GET", f"/appregistry/structure/{structure_id}/application/{app_ids[0]}/groups/roles"
        ).json()
        return [parse_role(r) for r in roles]

    def remove_roles(self, structure_id: str, profiles: list[str], roles: list[str]) -> None:
        # A JSON body on a DELETE: the platform reads it there.
        self.http.request(
            "DELETE",
            f"/appregistry/structures/{structure_id}/roles",
            json={"profiles": profiles, "roles": roles},
        )

    def add_roles(self, structure_id: str, profiles: list[str], roles: list[str]) -> None:
        self.http.request(
            "PUT",
            f"/appregistry/structures/{structure_id}/roles",
            json={"profiles": profiles, "roles": roles},
        )

    def send_message(self, to: list[str], subject: str, body: str, in_reply_to: str | None = None) -> str:
        """``POST /conversation/send`` as this session's user (the canary's checks); with ``in_reply_to``,
        a reply: the platform does not check that the answered message's people are visible."""
        sent = self.http.request(
            "POST",
            "/conversation/send",
            params={"In-Reply-To": in_reply_to} if in_reply_to else None,
            json={"subject": subject, "body": body, "to": to, "cc": [], "cci": []},
        ).json()
        return str(sent.get("id"))

    def inbox(self, limit: int = 25) -> list[HeldMessage]:
        """The session's own inbox, newest first (``GET /conversation/api/folders/INBOX/messages``)."""
        rows = self.http.request(
            "GET", "/conversation/api/folders/INBOX/messages", params={"page_size": min(25, limit)}
        ).json()
        return [parse_held(r) for r in rows]

    def group_members(self, group_id: str) -> list[User]:
        """A group's members, wherever they are (``GET /directory/user/admin/list?groupId=`` alone: with a
        structureId the platform would list that structure instead)."""
        rows = self.http.request("GET", "/directory/user/admin/list", params={"groupId": group_id}).json()
        return [self._user(r) for r in rows]

    # -- conversation and events (edifice-api.md §3, §4) -----------------------------------------------

    def purge_messages(self, ids: list[str]) -> None:
        """``POST /conversation/api/purge/messages``: every mailbox copy of these messages (ADMC + MFA)."""
        self.http.request("POST", "/conversation/api/purge/messages", json={"id": ids}, retry=SINGLE)

    def list_events(
        self, epoch_ms: int, duration_ms: int, types: list[str]
    ) -> tuple[list[PlatformEvent], bool]:
        """One page of the event store and whether more follow (``X-HAS-MORE``)."""
        response = self.http.request(
            "GET",
            f"/infra/v2/event/list/events/{epoch_ms}",
            # event-types is repeated, one type a value: a comma list would match no event.
            params=[
                ("duration", duration_ms),
                ("skip-synced", "false"),
                ("sorted", "true"),
                *(("event-types", t) for t in types),
            ],
        )
        events = [parse_event(e) for e in response.json()]
        return events, response.headers.get("X-HAS-MORE", "false").lower() == "true"

    def flash_message(self, structure_id: str, title: str, text: str, profiles: list[str]) -> None:
        """A banner shown to a school's users (``POST /timeline/flashmsg/structure/:id``)."""
        now = datetime.now(UTC)
        self.http.request(
            "POST",
            f"/timeline/flashmsg/structure/{structure_id}",
            json={
                "title": title,
                "contents": {"fr": text},
                "profiles": profiles,
                "color": "red",
                "startDate": now.isoformat(),
                "endDate": (now + timedelta(days=2)).isoformat(),
            },
        )

    # -- health ------------------------------------------------------------------------------------

    @classmethod
    def reach(cls, profile: Profile, rounds: int = 3) -> Reach:
        """Time the login page without logging in, and say what it is: the login form, the platform's
        "too many of you today" page (its session limit is reached), or something that is not Edifice."""
        http = cls.client(profile, RetryPolicy(attempts=1))
        times: list[float] = []
        page = ""
        for _ in range(rounds):
            started = time.perf_counter()
            response = http.request("GET", "/auth/login", allow=(200, 302, 401, 404), auth=False)
            times.append((time.perf_counter() - started) * 1000)
            page = response.text if response.status_code == 200 else ""
        return Reach(times_ms=times, page=_login_page_kind(page))

    def health(self, rounds: int = 5) -> list[RouteHealth]:
        """Response times of a few cheap routes, anonymous and authenticated, for the audit."""
        routes = (
            ("GET", "/auth/login", False),
            ("GET", "/auth/oauth2/userinfo", True),
            ("GET", "/directory/structure/admin/list", True),
        )
        out = []
        for method, path, auth in routes:
            sample = RouteHealth(f"{method} {path}")
            for _ in range(rounds):
                started = time.perf_counter()
                try:
                    self.http.request(method, path, auth=auth, allow=(200, 302, 401), retry=_PROBE)
                except PcnError:
                    sample.errors += 1
                sample.times_ms.append((time.perf_counter() - started) * 1000)
            out.append(sample)
        return out

    # -- capabilities --------------------------------------------------------------------------------

    def probe(self) -> list[Capability]:
        """Probe what this ENT and this identity allow, without changing anything (edifice-api.md §8)."""
        caps: list[Capability] = []
        ident = self.whoami()

        def probe(name: str, method: str, path: str, **kwargs: Any) -> int | None:
            try:
                return self.http.request(
                    method, path, allow=(200, 201, 204, 302, 400, 401, 403, 404), retry=_PROBE, **kwargs
                ).status_code
            except (AuthError, PermissionDeniedError) as exc:
                caps.append(Capability(name, False, exc.message))
                return None

        status = probe("directory.schools", "GET", "/directory/structure/admin/list")
        if status is not None:
            caps.append(_verdict("directory.schools", status, "list the schools administered"))
        status = probe("directory.users", "GET", "/directory/user/admin/list", params={"profile": "Guest"})
        if status is not None:
            caps.append(_verdict("directory.users", status, "list users (admin list, MFA-protected)"))
        status = probe(
            "conversation.api", "GET", "/conversation/api/folders/INBOX/messages", params={"page_size": 1}
        )
        if status is not None:
            caps.append(_verdict("conversation.api", status, "mailbox API v1 (own mailbox only)"))
        # An empty id list makes the real handler answer 400 before touching data: 400 means available.
        status = probe(
            "conversation.purge_by_id", "POST", "/conversation/api/purge/messages", json={"id": []}
        )
        if status is not None:
            caps.append(_verdict("conversation.purge_by_id", status, "cross-mailbox purge by id", ok=(400,)))
        epoch = int(time.time() * 1000)
        status = probe(
            "infra.event_store", "GET", f"/infra/v2/event/list/events/{epoch}", params={"duration": 1}
        )
        if status is not None:
            caps.append(_verdict("infra.event_store", status, "event store: who sent when"))
        if ident.user_id:
            status = probe(
                "communication.verify", "GET", f"/communication/verify/{ident.user_id}/{ident.user_id}"
            )
            if status is not None:
                caps.append(_verdict("communication.verify", status, "check who can message whom"))
        return caps


def _login_page_kind(html: str) -> str:
    if not html:
        return "none"
    if "tooload" in html or "très nombreux aujourd" in html:
        return "saturated"
    if "/auth/login" in html or 'name="password"' in html:
        return "login"
    return "foreign"


_GENERATED_LOGIN = re.compile(r"^([a-z0-9_]+)\.([a-z0-9_]*[a-z_])(\d*)$")


def login_name_guess(login: str) -> tuple[str, str] | None:
    """(first name, last name) search terms from a generated ``prenom.nom[N]`` login, else None."""
    match = _GENERATED_LOGIN.match(login)
    if match is None:
        return None
    return match.group(1).replace("_", ""), match.group(2).replace("_", "")


def _pick_login(rows: Iterable[dict[str, Any]], wanted: str) -> dict[str, Any] | None:
    """The row whose original login or alias is ``wanted`` (case-insensitive)."""
    for row in rows:
        names = {str(row.get(k) or "").lower() for k in ("login", "originalLogin", "loginAlias")}
        if wanted in names:
            return row
    return None


def _verdict(name: str, status: int, what: str, ok: tuple[int, ...] = (200, 204)) -> Capability:
    if status in ok:
        return Capability(name, True, what)
    reason = {
        302: "needs MFA on this session",
        401: "denied for this identity",
        403: "denied for this identity",
        404: "route absent on this ENT (older release?)",
    }.get(status, f"unexpected status {status}")
    return Capability(name, False, f"{what}: {reason}")
