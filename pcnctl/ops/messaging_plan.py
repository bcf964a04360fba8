"""A messaging block's plan: per school, the profile's group and the exact state its lever is about to
change, read from the ENT before anything is cut, and what the members can still answer; and the sealed
snapshot the block saves of it, which verification, the lift and a resume read back.

The levers and what each leaves open are described in :mod:`pcnctl.ops.messaging`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NotRequired, TypedDict

from pcnctl.ent import directory
from pcnctl.ent.fanout import Fanout, Outcome
from pcnctl.ent.platform import EntDriver
from pcnctl.errors import PcnError, UsageError
from pcnctl.forensics.mailstore import Mailstore
from pcnctl.forensics.replies import ReplySurface, group_messages
from pcnctl.models import Group, GroupJson, School
from pcnctl.ops.messaging_cut import CutPlan, Prior, plan_cut, roles_prior
from pcnctl.records import Row
from pcnctl.state import snapshots
from pcnctl.state.auditlog import AuditLog
from pcnctl.state.blocks import Block, active_blocks
from pcnctl.state.store import StateStore, ent_key
from pcnctl.timespec import iso

METHODS = ("communication", "roles", "login")
# Schools in flight at once, for the cut and for its verification: each school is a dozen reads and writes
# in a row, so 16 schools keep about as many calls at the ENT as an account run.
SCHOOL_PACE = 16
LEVERS = {
    "communication": "cuts every group that lets the profile write (class groups included, and the shared "
    "groups its members are in, for all their members), its relations first, then its members' link, and "
    "pupils' links to their parents: new messages are refused at once, scripted ones too. It does not stop "
    "replies (a reply to a message the member holds is not checked) nor drafts answered by their writer: "
    "--method login does. The accounts can still receive and use the rest of the ENT.",
    "roles": "removes the Messagerie role: hides the app for new sessions only. A scripted POST "
    "/conversation/send still works, replies too, and live sessions keep their rights until they end: revoke "
    "them (--revoke-sessions) or use --method login.",
    "login": "blocks every login of the profile in the school: sessions drop at once, and the whole ENT "
    "stops for those accounts, not only messaging (replies and drafts included).",
}
OP_BLOCK = "messaging.block"
REPLIES_OPEN = (
    "replies: the pupils can still answer any message they hold, to all its addressees (the reply route "
    "does not check them); closed by --method login, and for the threats by their purge"
)


def reply_surface(method: str, schools: list[tuple[str, ReplySurface | None]]) -> list[str]:
    """What a lever leaves open to replies, with the group messages held per school (UAI, surface; None:
    not measured): every lever but login."""
    if method == "login":
        return []
    measured = [(uai, s) for uai, s in schools if s is not None and s.messages]
    if not measured:
        unmeasured = any(s is None for _uai, s in schools)
        return [REPLIES_OPEN + (" (not measured: the profile has no mailstore)" if unmeasured else "")]
    total = sum(s.messages for _uai, s in measured)
    where = "; ".join(f"{uai}: {s.text()}" for uai, s in measured[:5])
    more = f"; and {len(measured) - 5} more school(s)" if len(measured) > 5 else ""
    return [f"{REPLIES_OPEN}: {total} group message(s) held in {len(measured)} school(s) ({where}{more})"]


def surface_of(
    driver: EntDriver, store: Mailstore, school_id: str, prior: Prior, method: str, profile: str
) -> ReplySurface:
    """The group messages the school's members of ``profile`` hold: those addressed to a group the lever
    cuts (communication), or to one of the profile's groups (roles, login)."""
    if method == "communication":
        groups = list(prior.get("targets", []))
    else:
        groups = [g.id for g in driver.school_groups(school_id) if g.profile == profile]
    return group_messages(store, groups)


def _replies_cell(method: str, replies: ReplySurface | None) -> str:
    if method == "login":
        return "closed (login)"
    return "not measured" if replies is None else replies.text()


# -- plan -------------------------------------------------------------------------------------------------


class SchoolSnapshot(TypedDict):
    uai: str
    group: GroupJson
    prior: Prior


class BlockSnapshot(TypedDict):
    """What a messaging block saves, sealed, before its first call: per school, the profile's group and
    the state its lever is about to change."""

    profile: str
    method: str
    schools: dict[str, SchoolSnapshot]
    joins: NotRequired[dict[str, str]]  # schools another incident blocked: the block joined, by its id


def load_snapshot(state: StateStore, audit: AuditLog, run: str) -> BlockSnapshot:
    snapshot: BlockSnapshot = snapshots.load(state, audit, run)  # the one this block saved (sealed)
    return snapshot


@dataclass
class SchoolPlan:
    school: School
    group: Group
    prior: Prior
    holder: Block | None = None  # the block in force on this school, which this plan joins
    replies: ReplySurface | None = None  # what the members can still answer (None: not measured)

    @property
    def already(self) -> bool:
        return self.holder is not None

    def change(self, method: str) -> str:
        if self.holder is not None:
            return (
                f"already blocked by incident {self.holder.incident}: this incident joins the block "
                "(lifted when both let go)"
            )
        if method == "communication":
            return CutPlan.from_json(self.prior).summary()
        if method == "roles":
            n = len(self.prior["roles"])
            subs = len(self.prior.get("order", [])) - 1
            also = f"; also in {subs} sub-structure(s) attached below" if subs > 0 else ""
            return (f"remove {n} Messagerie role(s)" if n else "no Messagerie role to remove") + also
        return f"block {self.group.users - len(self.prior['blocked'])} login(s)"


@dataclass
class BlockPlan:
    profile: str
    method: str
    schools: list[SchoolPlan]
    until: datetime | None = None
    reason: str = ""
    incident: str | None = None  # the incident the run records in, when named (it may join blocks)
    revoke_sessions: bool = False  # the follow-up that ends live sessions (the roles lever leaves them)
    verify: bool = True  # the follow-up that proves the cut
    keep_relatives: bool = False  # leave the pupils' direct links to their parents (and the hand-made ones)

    @property
    def cuts_relatives(self) -> bool:
        return any(s.prior.get("relatives") for s in self.to_change)

    @property
    def to_change(self) -> list[SchoolPlan]:
        return [s for s in self.schools if not s.already]

    @property
    def users(self) -> int:
        return sum(s.group.users for s in self.to_change)

    def joins(self, incident: str | None) -> list[SchoolPlan]:
        """Schools another incident blocks, which a run in ``incident`` joins (None: a new incident)."""
        return [s for s in self.schools if s.holder is not None and s.holder.incident != incident]

    def rows(self) -> list[Row]:
        return [
            {
                "school": s.school.uai,
                "name": s.school.name,
                "profile": self.profile,
                "users": s.group.users,
                "method": self.method,
                "change": s.change(self.method),
                "replies_open": _replies_cell(self.method, s.replies),
            }
            for s in self.schools
        ]


def _profile_group(driver: EntDriver, school: School, profile: str) -> Group:
    """The school's structure group of the profile (class groups have the same ``filter``)."""
    groups = [
        g for g in driver.profile_groups(school.id) if g.profile == profile and g.sub_type != "ClassGroup"
    ]
    if not groups:
        raise PcnError(f"school {school.uai} has no {profile} profile group")
    return groups[0]


def _prior(
    driver: EntDriver, school: School, group: Group, method: str, profile: str, keep_relatives: bool
) -> Prior:
    """The exact state a lever is about to change, read from the ENT."""
    if method == "communication":
        return plan_cut(driver, school.id, profile, keep_relatives=keep_relatives).to_json()
    if method == "roles":
        return roles_prior(driver, school.id, profile, [])
    users = driver.list_users(school.id, profiles=[profile])
    return {"blocked": sorted(u.id for u in users if u.blocked)}


def plan_block(
    driver: EntDriver,
    profile: str,
    school_refs: Sequence[str],
    *,
    all_schools: bool,
    method: str,
    until: datetime | None = None,
    reason: str = "",
    max_concurrency: int = 16,
    state: StateStore,
    incident: str | None = None,
    revoke_sessions: bool = False,
    verify: bool = True,
    keep_relatives: bool = False,
    mailstore: Mailstore | None = None,
) -> BlockPlan:
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}", hint=f"choose from {', '.join(METHODS)}")
    (wanted,) = directory.check_profiles([profile])
    if all_schools == bool(school_refs):
        raise UsageError("give --school UAI (repeatable) or --all-schools, not both and not neither")
    if until is not None and until <= datetime.now(UTC):
        raise UsageError(f"--until {iso(until)} is already past")
    schools = (
        driver.list_schools() if all_schools else [directory.resolve_school(driver, r) for r in school_refs]
    )
    schools = list({s.id: s for s in schools}.values())
    current = {
        (b.school_id, b.profile, b.method): b for b in active_blocks(state, ent_key(driver.profile.url))
    }
    plans: dict[str, SchoolPlan] = {}

    def read(school: School) -> Outcome:
        group = _profile_group(driver, school, wanted)
        holder = current.get((school.id, wanted, method))
        prior = Prior() if holder else _prior(driver, school, group, method, wanted, keep_relatives)
        plans[school.id] = SchoolPlan(school, group, prior, holder)
        return Outcome(school.id, "done")

    report = Fanout(read, key=lambda s: s.id, idempotent=True, max_concurrency=max_concurrency).run(schools)
    failed = [o for o in report.outcomes if o.status == "failed"]
    if failed:
        raise PcnError(f"could not read the state of {len(failed)} school(s): {failed[0].detail}")
    ordered = [plans[s.id] for s in sorted(schools, key=lambda s: s.uai)]
    if mailstore is not None:
        for sp in ordered:
            if sp.holder is None:
                sp.replies = surface_of(driver, mailstore, sp.school.id, sp.prior, method, wanted)
    # Only the roles lever leaves live sessions their rights: the revoke follows that lever alone.
    revoke = revoke_sessions and method == "roles"
    return BlockPlan(wanted, method, ordered, until, reason, incident, revoke, verify, keep_relatives)
