"""Blocking messaging: every Edifice lever, with a snapshot before, verification after and expiry, run as
one operation (:mod:`pcnctl.ops.runner`) from every door.

Edifice has no messaging switch (edifice-api.md §2). The levers, weakest to strongest:

* ``roles``: remove the Messagerie role from the profile's groups. The app disappears for new sessions,
  but ``POST /conversation/send`` needs no role, so a scripted send still works, and live sessions keep
  the rights they cached at login until they end. Pair it with a session revoke, or use another lever.
* ``communication`` (default): cut every group that lets the profile write, structure and class groups
  alike (:mod:`pcnctl.ops.messaging_cut`). The send route checks visibility live, so new messages to
  anyone the members could reach are refused at once, scripted ones included; the members can still
  receive. Replies are another path: see :mod:`pcnctl.ops.messaging_verify`.
* ``login``: block the logins of the whole profile in the school. Sessions drop at once and the whole ENT
  stops for those accounts, not only messaging.

Every block is recorded in the state store with the ENT it is on, its lever, school, incident, author,
times and optional expiry, and the exact prior state is saved (and sealed) before anything changes. A
school already blocked by another incident is not blocked twice: the new incident joins the block, and
the lever is lifted only when the last incident holding it lets go (:mod:`pcnctl.ops.messaging_lift`).
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
from pcnctl.ops import approvals
from pcnctl.ops.context import RunContext
from pcnctl.ops.messaging_cut import CutPlan, Prior, apply_cut, plan_cut, roles_prior
from pcnctl.ops.operation import (
    Cap,
    Confirmation,
    Labels,
    Pace,
    Records,
    Reversal,
    Run,
    Undo,
    Unit,
    Verdict,
    confirm_for,
)
from pcnctl.records import Row
from pcnctl.state import snapshots
from pcnctl.state.auditlog import AuditLog
from pcnctl.state.blocks import Block, active_blocks, save_block
from pcnctl.state.incidents import utcnow
from pcnctl.state.journal import PlanItem, RunParams, RunState
from pcnctl.state.store import StateStore, ent_key
from pcnctl.timespec import iso

METHODS = ("communication", "roles", "login")
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


# -- block ---------------------------------------------------------------------------------------------


def _apply(driver: EntDriver, sp: SchoolPlan, method: str, profile: str) -> str:
    """Apply one school's block, skipping what is already in the blocked state (safe to run twice);
    returns what the server did beyond the calls made (the journal keeps it)."""
    if method == "communication":
        return "; ".join(apply_cut(driver, CutPlan.from_json(sp.prior)))
    if method == "roles":
        if sp.prior["roles"]:
            driver.remove_roles(sp.school.id, [profile], sp.prior["roles"])
        return ""
    driver.block_profile(sp.school.id, profile, True)
    return ""


def _snapshot_and_join(ctx: RunContext, run: str, p: BlockPlan) -> None:
    """Before anything is cut: the prior state of every school to cut, sealed; and the schools another
    incident already blocks joined (their lever is restored when the last incident lets go)."""
    schools: dict[str, SchoolSnapshot] = {
        s.school.id: {"uai": s.school.uai, "group": s.group.to_json(), "prior": s.prior} for s in p.to_change
    }
    joining = [sp for sp in p.schools if sp.holder is not None and sp.holder.incident != ctx.incident.id]
    joins = {sp.school.id: sp.holder.id for sp in joining if sp.holder is not None}
    data: BlockSnapshot = {"profile": p.profile, "method": p.method, "schools": schools, "joins": joins}
    snapshots.save(ctx.state, ctx.audit, ctx.incident.id, ctx.ent, run, data)
    for sp in joining:
        if sp.holder is not None:
            _register(ctx, run, sp, p, sp.holder.snapshot, joined=sp.holder.id)


def _row(sp: SchoolPlan, method: str, result: str, detail: str) -> Row:
    return {
        "school": sp.school.uai,
        "name": sp.school.name,
        "method": method,
        "result": result,
        "detail": detail,
    }


def _register(
    ctx: RunContext, run: str, sp: SchoolPlan, p: BlockPlan, snapshot: str, joined: str = ""
) -> None:
    save_block(
        ctx.state,
        Block(
            id=f"{run}:{sp.school.uai}",
            ent=ctx.ent,
            run=run,
            incident=ctx.incident.id,
            school_id=sp.school.id,
            uai=sp.school.uai,
            name=sp.school.name,
            profile=p.profile,
            method=p.method,
            group=sp.group.id,
            since=utcnow(),
            by=ctx.identity.label,
            auth=ctx.identity.auth_mode,
            until=iso(p.until) if p.until else None,
            reason=p.reason,
            snapshot=snapshot,
            joined=joined,
        ),
    )


# -- the operation ------------------------------------------------------------------------------------------


class BlockMessagingOp:
    """``messaging block``: per school, the lever applied and registered; then the session revoke asked
    for and the verification, inside the run, so a resumed run does them too."""

    name = OP_BLOCK
    verb = "block messaging in"
    labels = Labels("messaging blocked", "messagerie bloquée")
    cap = Cap(
        None,
        "schools",
        "the schools are named or --all-schools is said; a block over more "
        "than one school asks for the typed count of accounts",
    )
    pace = Pace(
        16,
        "each school is a dozen reads and writes in a row; 16 schools in flight keep "
        "about as many calls at the ENT as an account run",
    )
    undo = Undo(
        "messaging.unblock",
        "restores each school's sealed snapshot (hand changes kept), "
        "schools reached before an interruption included; a joined block is only let go",
    )
    idempotent = True  # each school re-reads before it cuts
    intent = False
    columns = ("school", "name", "profile", "users", "method", "change", "replies_open")

    def params(self, p: BlockPlan) -> RunParams:
        return {
            "profile": p.profile,
            "method": p.method,
            "until": iso(p.until) if p.until else None,
            "reason": p.reason,
            "revoke_sessions": p.revoke_sessions,
            "verify": p.verify,
            "keep_relatives": p.keep_relatives,
        }

    def items(self, p: BlockPlan) -> list[PlanItem]:
        return [{"key": s.school.id, "uai": s.school.uai, "group": s.group.id} for s in p.to_change]

    def todo(self, p: BlockPlan) -> int:
        # A named incident joins the blocks other incidents hold (so that lifting theirs keeps it in force).
        return len(p.to_change) + (len(p.joins(p.incident)) if p.incident else 0)

    def rows(self, p: BlockPlan) -> list[Row]:
        return p.rows()

    def summary(self, p: BlockPlan) -> str:
        if not self.todo(p):
            return "messaging is already blocked there"
        already = len(p.schools) - len(p.to_change)
        return f"Plan: block {p.profile} messaging in {len(p.to_change)} school(s), {p.users} account(s)" + (
            f"; {already} already blocked" if already else ""
        )

    def confirmation(self, p: BlockPlan) -> Confirmation:
        verb = f"block {p.profile} messaging ({p.method}) of"
        return confirm_for(verb, p.users, "accounts", max(1, len(p.to_change)))

    def approval(self, p: BlockPlan) -> str | None:
        return approvals.for_schools("messaging", len(p.to_change))

    def prepare(self, run: Run, p: BlockPlan) -> None:
        if not run.resumed:
            _snapshot_and_join(run.ctx, run.id, p)

    def units(self, run: Run, p: BlockPlan) -> list[Unit]:
        return [Unit([s.school.id], (p, s), {s.school.id: s.school.uai}) for s in p.to_change]

    def act(self, run: Run, unit: Unit) -> list[Outcome]:
        p, sp = unit.payload
        run.sending([sp.school.id])
        detail = _apply(run.ctx.driver, sp, p.method, p.profile)
        # Registered before the journal says done: a crash in between re-runs the school on resume, and
        # registering again replaces the entry instead of losing it.
        _register(run.ctx, run.id, sp, p, run.id)
        return [Outcome(sp.school.id, "done", detail)]

    def after(self, run: Run, p: BlockPlan, outcomes: list[Outcome]) -> Verdict:
        from pcnctl.ops.messaging_follow import block_verdict

        return block_verdict(self, run, p, outcomes)

    def replan(self, run: Run, state: RunState) -> BlockPlan:
        """The snapshot taken before the run stays the reference, whatever the ENT looks like now (half
        cut by this very run)."""
        snapshot = load_snapshot(run.ctx.state, run.ctx.audit, state.run)
        pending = {i["key"] for i in state.pending}
        schools = {s.id: s for s in run.ctx.driver.list_schools()}
        plans = [
            SchoolPlan(schools[sid], Group.from_json(entry["group"]), entry["prior"])
            for sid, entry in snapshot["schools"].items()
            if sid in pending and sid in schools
        ]
        until = state.params.get("until")
        when = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None
        return BlockPlan(
            snapshot["profile"],
            snapshot["method"],
            plans,
            when,
            state.params.get("reason", ""),
            run.ctx.incident.id,
            bool(state.params.get("revoke_sessions")),
            bool(state.params.get("verify", True)),
            bool(state.params.get("keep_relatives")),
        )

    def reverse(self, records: Records, state: RunState) -> Reversal | None:
        from pcnctl.ops.messaging_lift import reversal_of

        return reversal_of(records, state)


BLOCK = BlockMessagingOp()
