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

from datetime import datetime

from pcnctl.ent.fanout import Outcome
from pcnctl.ent.platform import EntDriver
from pcnctl.models import Group
from pcnctl.ops import approvals
from pcnctl.ops.context import Records, RunContext
from pcnctl.ops.messaging_cut import CutPlan, apply_cut
from pcnctl.ops.messaging_follow import block_verdict
from pcnctl.ops.messaging_lift import reversal_of
from pcnctl.ops.messaging_plan import (
    OP_BLOCK,
    SCHOOL_PACE,
    BlockPlan,
    BlockSnapshot,
    SchoolPlan,
    SchoolSnapshot,
    load_snapshot,
)
from pcnctl.ops.operation import (
    Cap,
    Confirmation,
    Labels,
    Pace,
    Reversal,
    Run,
    Undo,
    Unit,
    Verdict,
    confirm_for,
)
from pcnctl.records import Row
from pcnctl.state import snapshots
from pcnctl.state.blocks import Block, save_block
from pcnctl.state.journal import PlanItem, RunParams, RunState
from pcnctl.timespec import iso, utcnow

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
        SCHOOL_PACE,
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
        return block_verdict(run, p, outcomes)

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
        return reversal_of(records, state)


BLOCK = BlockMessagingOp()
