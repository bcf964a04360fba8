"""Lifting messaging blocks: each lever's sealed snapshot restored exactly, hand changes kept, a lever that
another incident still holds left in force.

A lift is planned either from the blocks registry (``messaging unblock``, ``expire``: the blocks in force)
or from a block run's own journal and snapshot (``rollback``: every school the run reached, the one in
flight at a kill included, whether or not it was registered). Its items carry everything a resume needs,
so a resumed lift reads the journal only. Lifting the ``login`` lever unblocks every member of the profile
(a blanket write, see :mod:`pcnctl.ops.profile_block`): the members blocked before, or wanted blocked by
an open incident, are blocked again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pcnctl.ent.fanout import Outcome
from pcnctl.ent.platform import EntDriver
from pcnctl.errors import UsageError
from pcnctl.ops import intent
from pcnctl.ops.context import Records
from pcnctl.ops.messaging_cut import CutPlan, restore_cut, restore_roles
from pcnctl.ops.messaging_plan import OP_BLOCK, BlockSnapshot, SchoolSnapshot, load_snapshot
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
    counts,
    status_of,
)
from pcnctl.records import Row
from pcnctl.state.blocks import Block, active_blocks, block_by_id, save_block
from pcnctl.state.journal import PlanItem, RunParams, RunState
from pcnctl.state.store import StateStore
from pcnctl.timespec import utcnow

OP_UNBLOCK = "messaging.unblock"
LOST_LINKS = (
    "the pupils' links to their parents are back; hand-made links into the parents are not (the route "
    "recreates only the pupils')"
)
COLUMNS = ("school", "method", "result", "detail")


@dataclass(frozen=True)
class Lift:
    """One block to lift: which school and lever, and where its prior state is sealed."""

    key: str  # the block's id, "<run>:<UAI>"
    snapshot: str  # the run whose sealed snapshot holds the prior state
    school_id: str
    uai: str
    profile: str
    method: str
    joined: bool = False  # a join of another incident's block: only this incident's hold is let go

    @property
    def lever(self) -> tuple[str, str, str]:
        return (self.school_id, self.profile, self.method)

    @classmethod
    def of(cls, block: Block) -> Lift:
        return cls(block.id, block.snapshot, block.school_id, block.uai, block.profile, block.method,
                   bool(block.joined))  # fmt: skip

    def item(self) -> PlanItem:
        return {"key": self.key, "uai": self.uai, "method": self.method, "snapshot": self.snapshot,
                "school": self.school_id, "profile": self.profile, "joined": self.joined}  # fmt: skip

    @classmethod
    def from_item(cls, item: PlanItem) -> Lift:
        return cls(item["key"], item.get("snapshot", ""), item.get("school", ""), item.get("uai", ""),
                   item.get("profile", ""), item.get("method", ""), bool(item.get("joined")))  # fmt: skip


@dataclass
class LiftPlan:
    lifts: list[Lift]
    # Filled by prepare: levers held by blocks not lifted here, and what open incidents want blocked.
    held: set[tuple[str, str, str]] = field(default_factory=set)
    keep: intent.Intent = field(default_factory=intent.Intent)
    snapshots: dict[str, BlockSnapshot] = field(default_factory=dict)

    @property
    def schools(self) -> int:
        return len({lift.uai for lift in self.lifts})


def select_blocks(
    state: StateStore, ent: str, *, incident: str | None, school_refs: Sequence[str], all_schools: bool
) -> list[Block]:
    """The blocks in force on this ENT that a lift names; a named incident must exist."""
    if sum(bool(x) for x in (incident, school_refs, all_schools)) != 1:
        raise UsageError("give exactly one of --incident ID, --school UAI (repeatable) or --all-schools")
    current = active_blocks(state, ent)
    if incident:
        from pcnctl.state.incidents import Incident

        Incident.load(state, incident)  # a mistyped id is an error, not "no block matches"
        return [b for b in current if b.incident == incident]
    if school_refs:
        from pcnctl.uai import normalise

        uais = {normalise(r) for r in school_refs}
        return [b for b in current if b.uai in uais]
    return current


def plan_lift(blocks: Sequence[Block]) -> LiftPlan:
    return LiftPlan([Lift.of(b) for b in blocks])


def _restore(driver: EntDriver, lift: Lift, entry: SchoolSnapshot, keep: intent.Intent) -> list[str]:
    """Put back exactly what the snapshot holds; report, and keep, what changed by hand since the block."""
    notes: list[str] = []
    prior = entry["prior"]
    if lift.method == "communication":
        cut = CutPlan.from_json(prior)
        notes += restore_cut(driver, cut)
        if cut.relatives:
            notes.append(LOST_LINKS)
    elif lift.method == "roles":
        notes += restore_roles(driver, lift.profile, prior)
    else:
        driver.block_profile(lift.school_id, lift.profile, False)  # every member of the profile unblocked
        members = {u.id for u in driver.list_users(lift.school_id, profiles=[lift.profile])}
        before = set(prior["blocked"])
        wanted = set(keep.among(sorted(members - before)))
        for user_id in sorted(before | wanted):
            driver.block_user(user_id, True)
        if before:
            notes.append(f"{len(before)} account(s) blocked before the block kept blocked")
        if wanted:
            notes.append(keep.note(sorted(wanted)))
    return notes


class LiftMessagingOp:
    """``messaging unblock``, ``expire`` and a rollback's lift: per lever, its snapshot restored."""

    name = OP_UNBLOCK
    verb = "lift the messaging blocks in"
    labels = Labels("messaging block lifted", "blocage de la messagerie levé")
    cap = Cap(None, "schools", "the blocks are named by incident, school or --all-schools")
    pace = Pace(16, "each lever is a dozen reads and writes in a row, as when it was cut")
    undo = Undo(None, "a lift is itself the undo of a block; block again with 'pcnctl messaging block'")
    idempotent = True  # each restore reads before it writes
    intent = False
    columns = ("school", "method", "profile", "block")

    def params(self, p: LiftPlan) -> RunParams:
        return {}

    def items(self, p: LiftPlan) -> list[PlanItem]:
        return [lift.item() for lift in p.lifts]

    def todo(self, p: LiftPlan) -> int:
        return len(p.lifts)

    def rows(self, p: LiftPlan) -> list[Row]:
        return [
            {"school": x.uai, "method": x.method, "profile": x.profile, "incident": x.key} for x in p.lifts
        ]

    def summary(self, p: LiftPlan) -> str:
        if not p.lifts:
            return "no messaging block in force matches"
        return f"Plan: lift {len(p.lifts)} block(s) in {p.schools} school(s)"

    def confirmation(self, p: LiftPlan) -> Confirmation:
        return confirm_for("lift", len(p.lifts), "messaging blocks", p.schools)

    def approval(self, p: LiftPlan) -> str | None:
        return None  # a lift gives back what was there: no second administrator needed

    def prepare(self, run: Run, p: LiftPlan) -> None:
        """Every snapshot the lifts restore, loaded and its seal checked before any change (an altered one
        refuses the whole lift); the levers other blocks hold; what open incidents want blocked."""
        ctx = run.ctx
        p.snapshots = {
            s: load_snapshot(ctx.state, ctx.audit, s) for s in sorted({x.snapshot for x in p.lifts})
        }
        lifting = {lift.key for lift in p.lifts}
        p.held = {b.lever for b in active_blocks(run.ctx.state, run.ctx.ent) if b.id not in lifting}
        p.keep = intent.wanted_blocked(run.ctx.state, run.ctx.ent)

    def units(self, run: Run, p: LiftPlan) -> list[Unit]:
        levers: dict[tuple[str, str, str], list[Lift]] = {}
        for lift in p.lifts:
            levers.setdefault(lift.lever, []).append(lift)
        ordered = sorted(levers.values(), key=lambda g: g[0].uai)
        return [Unit([x.key for x in g], (p, g), {x.key: x.uai for x in g}) for g in ordered]

    def act(self, run: Run, unit: Unit) -> list[Outcome]:
        p, group = unit.payload
        run.sending(unit.keys)
        first: Lift = group[0]
        if first.lever in p.held:
            detail = "kept in force: another incident still holds it"
        else:
            entry = p.snapshots[first.snapshot]["schools"][first.school_id]
            detail = "; ".join(_restore(run.ctx.driver, first, entry, p.keep))
        for lift in group:
            block = block_by_id(run.ctx.state, lift.key)
            if block is not None and block.status == "active":
                save_block(run.ctx.state, block.lifted(run.ctx.identity.label, utcnow()))
        return [Outcome(lift.key, "done", detail) for lift in group]

    def after(self, run: Run, p: LiftPlan, outcomes: list[Outcome]) -> Verdict:
        by_key = {lift.key: lift for lift in p.lifts}
        rows: list[Row] = [
            {"school": by_key[o.key].uai, "method": by_key[o.key].method, "result": o.status,
             "detail": o.detail}
            for o in outcomes if o.key in by_key
        ]  # fmt: skip
        rows.sort(key=lambda r: str(r["school"]))
        failed = [r for r in rows if r["result"] != "done"]
        verdict = Verdict(self.name, run.id, "completed", "", counts(outcomes), rows, COLUMNS)
        verdict.status = "partial" if status_of(outcomes) == "partial" else "completed"
        verdict.summary = f"{len(rows) - len(failed)} block(s) lifted" + (
            f", {len(failed)} could not be lifted" if failed else ""
        )
        if failed:
            verdict.hint = f"run it again, or: pcnctl incident resume {run.ctx.incident.id}"
        verdict.notes += sorted({str(r["detail"]) for r in rows if "kept blocked" in str(r["detail"])})
        done = [r for r in rows if r["result"] == "done"]
        verdict.result = {"schools": [str(r["school"]) for r in done], "count": len(done)}
        return verdict

    def replan(self, run: Run, state: RunState) -> LiftPlan:
        """The lifts of the sealed plan not done yet (a restore is safe to redo), from the journal alone; a
        lift journalled by an older pcnctl names only the block, which the registry then describes."""
        lifts = []
        for item in state.pending:
            if item.get("snapshot"):
                lifts.append(Lift.from_item(item))
            elif (block := block_by_id(run.ctx.state, item["key"])) is not None:
                lifts.append(Lift.of(block))
        return LiftPlan(lifts)

    def reverse(self, records: Records, state: RunState) -> Reversal | None:
        return None


LIFT = LiftMessagingOp()


def reversal_of(records: Records, state: RunState) -> Reversal | None:
    """What undoing a block run takes, from its journal and sealed snapshot (never the registry alone):
    every school the run reached, done or in flight at a kill, and every block it joined; a block
    already lifted since is left alone."""
    if state.op != OP_BLOCK:
        return None
    snapshot = load_snapshot(records.state, records.audit, state.run)
    reached = {k for k, phase in state.phases.items() if phase in ("done", "sending")}
    lifts = [
        Lift(f"{state.run}:{entry['uai']}", state.run, sid, entry["uai"], snapshot["profile"],
             snapshot["method"])
        for sid, entry in snapshot["schools"].items() if sid in reached
    ]  # fmt: skip
    lifts += _joins(records.state, state.run, snapshot.get("joins"))
    lifts = [x for x in lifts if (b := block_by_id(records.state, x.key)) is None or b.status == "active"]
    if not lifts:
        return None
    what = f"lift {len(lifts)} messaging block(s) ({snapshot['method']}, {snapshot['profile']})"
    return Reversal(what, len(lifts), lambda _ctx: LiftPlan(lifts))


def _joins(state: StateStore, run: str, joins: dict[str, str] | None) -> list[Lift]:
    """The blocks a run joined (its registry entries; a snapshot sealed before joins were kept in it
    names none, and then the registry is the record)."""
    mine = [b for b in _registered(state, run) if b.joined]
    if joins is not None:
        mine = [b for b in mine if b.school_id in joins]
    return [Lift.of(b) for b in mine]


def _registered(state: StateStore, run: str) -> list[Block]:
    from pcnctl.state.blocks import blocks

    return [b for b in blocks(state, None, include_lifted=True) if b.run == run]
