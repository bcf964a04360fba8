"""The small protocol between pcnctl's core operations and an ENT platform driver.

Core modules (directory, doctor, and the incident operations) depend on this protocol, not on Edifice.
Only Edifice is implemented; the protocol grows one method at a time as operations need it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from pcnctl.config import Profile
from pcnctl.http import HttpClient
from pcnctl.models import Capability, Identity, School, User


class EntDriver(Protocol):
    platform: str
    profile: Profile
    http: HttpClient

    def whoami(self) -> Identity: ...

    def list_schools(self) -> list[School]: ...

    def list_users(
        self, structure_id: str, *, profiles: Iterable[str] = (), search: str | None = None
    ) -> list[User]: ...

    def structure_users(self, structure_id: str) -> list[User]: ...

    def get_user(self, user_id: str) -> User: ...

    def find_user_by_login(self, login: str) -> User | None: ...

    def probe(self) -> list[Capability]: ...

    def block_user(self, user_id: str, block: bool = True) -> None: ...

    def block_users(self, user_ids: list[str], block: bool = True) -> None: ...

    def force_change_password(self, user_id: str) -> None: ...

    def erase_password(self, user_id: str) -> None: ...

    def renewal_code(self, login: str) -> str: ...

    def block_profile(self, structure_id: str, profile: str, block: bool) -> None: ...

    def block_traces(self, structure_id: str) -> list[dict[str, Any]]: ...
