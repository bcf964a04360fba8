"""The Edifice driver: typed calls over the platform's HTTP routes (reference: edifice-api.md §1, §8).

The driver knows routes and JSON shapes and nothing about incidents, caps or plans: those live in the
core modules, which talk to it through :class:`pcnctl.platform.EntDriver`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pcnctl.config import Profile
from pcnctl.edifice.auth import EdificeAuth, MfaPrompt
from pcnctl.errors import AuthError, PermissionDeniedError
from pcnctl.http import HttpClient, RetryPolicy
from pcnctl.models import Capability, Identity, School, User, school_type

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
        self._identity: Identity | None = None

    @classmethod
    def open(
        cls, profile: Profile, *, mfa_prompt: MfaPrompt | None = None, use_cache: bool = True
    ) -> EdificeDriver:
        """Build the HTTP client for ``profile`` and log in (or reuse the session ``auth login`` cached)."""
        http = HttpClient(
            profile.url,
            connect_timeout=profile.connect_timeout,
            read_timeout=profile.read_timeout,
            ca_file=profile.ca_file,
        )
        auth = EdificeAuth(profile, mfa_prompt=mfa_prompt, use_cache=use_cache)
        http.authenticator = auth
        auth.resume_or_login(http)
        return cls(profile, http, auth)

    # -- identity ------------------------------------------------------------------------------------

    def whoami(self) -> Identity:
        """Who this session is, from ``GET /auth/oauth2/userinfo`` (a service token has no user)."""
        if self._identity is not None:
            return self._identity
        if self.profile.auth == "oauth-client":
            self._identity = Identity(auth_mode="oauth-client", client_id=self.profile.client_id)
            return self._identity
        info = self.http.request("GET", "/auth/oauth2/userinfo").json()
        functions = info.get("functions") or {}
        adml = functions.get("ADMIN_LOCAL") or {}
        self._identity = Identity(
            auth_mode=self.profile.auth,
            user_id=info.get("userId"),
            login=info.get("login"),
            display_name=info.get("username"),
            profile=info.get("type"),
            admc="SUPER_ADMIN" in functions,
            adml_structures=tuple(adml.get("scope") or ()),
            client_id=self.profile.client_id,
        )
        return self._identity

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
        schools = []
        for row in rows:
            more = details.get(row["id"], {})
            name = row.get("name") or ""
            schools.append(
                School(
                    id=row["id"],
                    uai=(row.get("UAI") or "").upper(),
                    name=name,
                    type=school_type(name),
                    city=more.get("city"),
                    zip_code=more.get("zipCode"),
                    academy=more.get("academy"),
                )
            )
        schools.sort(key=lambda s: (s.uai, s.name))
        self._schools = schools
        return schools

    def _uais(self, structures: Iterable[dict[str, Any]]) -> tuple[str, ...]:
        by_id = {s.id: s.uai for s in self._schools or self.list_schools()}
        return tuple(sorted({by_id.get(s.get("id", ""), s.get("name", "?")) for s in structures}))

    def _user(self, row: dict[str, Any]) -> User:
        return User(
            id=row["id"],
            login=row.get("login") or "",
            display_name=row.get("displayName") or "",
            profile=row.get("type") or (row.get("profiles") or ["?"])[0],
            blocked=bool(row.get("blocked")),
            schools=self._uais(row.get("structures") or []),
            first_name=row.get("firstName"),
            last_name=row.get("lastName"),
            last_login=row.get("lastLogin"),
            functions=tuple(row.get("functions") or ()),
        )

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

    def find_user_by_login(self, login: str) -> User | None:
        """The user with this exact login, or None (``searchType=login`` on the admin user list)."""
        rows = self.http.request(
            "GET", "/directory/user/admin/list", params={"searchTerm": login, "searchType": "login"}
        ).json()
        exact = [r for r in rows if (r.get("login") or "").lower() == login.lower()]
        return self._user(exact[0]) if exact else None

    # -- accounts (edifice-api.md §5, §2.4) ----------------------------------------------------------

    def block_user(self, user_id: str, block: bool = True) -> None:
        """``PUT /auth/block/:id``: blocking also drops every session, token and CAS ticket at once."""
        self.http.request("PUT", f"/auth/block/{user_id}", json={"block": block}, retry=SINGLE)

    def block_users(self, user_ids: list[str], block: bool = True) -> None:
        """``PUT /auth/users/block``: one call for many accounts (ADMC in practice; an ADML gets 401)."""
        self.http.request("PUT", "/auth/users/block", json={"users": user_ids, "block": block}, retry=SINGLE)

    def force_change_password(self, user_id: str) -> None:
        self.http.request("POST", "/auth/forceChangePassword", json={"userId": user_id}, retry=SINGLE)

    def erase_password(self, user_id: str) -> None:
        self.http.request("POST", "/auth/erasePassword", json={"userId": user_id}, retry=SINGLE)

    def renewal_code(self, login: str) -> str:
        """A one-time code for the legitimate user (``POST /auth/generatePasswordRenewalCode``)."""
        body = self.http.request(
            "POST", "/auth/generatePasswordRenewalCode", data={"login": login}, retry=SINGLE
        ).json()
        return str(body["renewalCode"])

    def block_profile(self, structure_id: str, profile: str, block: bool) -> None:
        """``PUT /directory/structure/:id/profile/block``: every user of that profile in the school."""
        self.http.request(
            "PUT",
            f"/directory/structure/{structure_id}/profile/block",
            json={"profile": profile, "block": block},
        )

    def block_traces(self, structure_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.http.request(
            "GET", f"/admin/api/block/traces/{structure_id}"
        ).json()
        return rows

    # -- messaging levers (edifice-api.md §2) --------------------------------------------------------

    def profile_groups(self, structure_id: str) -> list[dict[str, Any]]:
        """Structure-level profile groups: ``[{id, name, profile, users}]``."""
        rows = self.http.request(
            "GET", "/directory/group/admin/list", params={"structureId": structure_id, "type": "ProfileGroup"}
        ).json()
        return [
            {"id": g["id"], "name": g.get("name"), "profile": g.get("filter"), "users": g.get("nbUsers", 0)}
            for g in rows
        ]

    def group_links(self, group_id: str) -> dict[str, Any]:
        """A group's link with its members (``users``: BOTH, INCOMING, OUTGOING, NONE), and its relations."""
        group = self.http.request("GET", f"/communication/group/{group_id}").json()
        outgoing = self.http.request("GET", f"/communication/group/{group_id}/outgoing").json()
        return {"users": group.get("users"), "outgoing": sorted(g["id"] for g in outgoing)}

    def remove_users_link(self, group_id: str) -> str:
        return str(self.http.request("DELETE", f"/communication/group/{group_id}/users").json().get("users"))

    def add_users_link(self, group_id: str) -> str:
        return str(self.http.request("POST", f"/communication/group/{group_id}/users").json().get("users"))

    def remove_relation(self, start_id: str, end_id: str) -> None:
        self.http.request("DELETE", f"/communication/group/{start_id}/relations/{end_id}")

    def add_relation(self, start_id: str, end_id: str) -> None:
        self.http.request("POST", f"/communication/v2/group/{start_id}/communique/{end_id}")

    def can_communicate(self, from_id: str, to_id: str) -> bool:
        body = self.http.request("GET", f"/communication/verify/{from_id}/{to_id}").json()
        return bool(body.get("canCommunicate"))

    def messaging_roles(self, structure_id: str) -> list[dict[str, Any]]:
        """Roles of the Messagerie app in a school, with the groups holding them."""
        apps = self.http.request(
            "GET", "/appregistry/applications", params={"structureId": structure_id}
        ).json()
        app_ids = [a["id"] for a in apps if a.get("name") == "Messagerie"]
        if not app_ids:
            return []
        roles: list[dict[str, Any]] = self.http.request(
            "GET", f"/appregistry/structure/{structure_id}/application/{app_ids[0]}/groups/roles"
        ).json()
        return roles

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

    def send_message(self, to: list[str], subject: str, body: str) -> str:
        """``POST /conversation/send`` as this session's user (the canary check)."""
        sent = self.http.request(
            "POST",
            "/conversation/send",
            json={"subject": subject, "body": body, "to": to, "cc": [], "cci": []},
        ).json()
        return str(sent.get("id"))

    # -- conversation and events (edifice-api.md §3, §4) -----------------------------------------------

    def purge_messages(self, ids: list[str]) -> None:
        """``POST /conversation/api/purge/messages``: every mailbox copy of these messages (ADMC + MFA)."""
        self.http.request("POST", "/conversation/api/purge/messages", json={"id": ids}, retry=SINGLE)

    def list_events(
        self, epoch_ms: int, duration_ms: int, types: list[str]
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the event store and whether more follow (``X-HAS-MORE``)."""
        response = self.http.request(
            "GET",
            f"/infra/v2/event/list/events/{epoch_ms}",
            params={
                "duration": duration_ms,
                "skip-synced": "false",
                "event-types": ",".join(types),
                "sorted": "true",
            },
        )
        return response.json(), response.headers.get("X-HAS-MORE", "false").lower() == "true"

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
        status = probe(
            "communication.verify", "GET", f"/communication/verify/{ident.user_id}/{ident.user_id}"
        )
        if status is not None:
            caps.append(_verdict("communication.verify", status, "check who can message whom"))
        return caps


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
