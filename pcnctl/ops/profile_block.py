"""Profile blocks: the logins of a whole profile of a school (``PUT /directory/structure/:id/profile/block``).

The route is a blanket write (directory ``DefaultSchoolService.blockUsers``, 6.15.4 lines 464-475): it
sets ``blocked`` on every member of the school's profile group (ADMC accounts left out unless the caller is
an ADMC) and remembers nobody; the controller then drops their sessions (``StructureController.blockUsers``,
lines 710-760). So a block first saves who was already blocked (a sealed snapshot), and a lift blocks again
every member that was blocked before, or that an open incident wants blocked (:mod:`pcnctl.ops.intent`):
lifting a school-wide block never re-opens an account the incident cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pcnctl.ent import directory
from pcnctl.ent.fanout import Outcome
from pcnctl.ent.platform import EntDriver
from pcnctl.models import School, User
from pcnctl.ops import approvals, intent
from pcnctl.ops.context import Records
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
from pcnctl.state import snapshots
from pcnctl.state.journal import PlanItem, RunParams, RunState, read

BLOCK, LIFT = "accounts.block-profile", "accounts.unblock-profile"
COLUMNS = ("school", "name", "profile", "accounts", "already")


@dataclass
class ProfilePlan:
    profile: str
    block: bool
    schools: list[School]
    users: dict[str, list[User]]  # school id -> users of the profile
    # Filled by prepare for a lift: who stays blocked, per school, and why.
    before: dict[str, list[str]] = field(default_factory=dict)
    keep: intent.Intent = field(default_factory=intent.Intent)

    def already(self, school_id: str) -> int:
        """Accounts of the school already in the wanted state."""
        users = self.users[school_id]
        blocked = sum(1 for u in users if u.blocked)
        return blocked if self.block else len(users) - blocked

    @property
    def changes(self) -> int:
        return sum(len(self.users[s.id]) - self.already(s.id) for s in self.schools)

    def rows(self) -> list[Row]:
        return [
            {
                "school": school.uai,
                "name": school.name,
                "profile": self.profile,
                "accounts": len(self.users[school.id]),
                "already": self.already(school.id),
            }
            for school in self.schools
        ]

    def stay_blocked(self, school_id: str) -> list[str]:
        """The members a lift blocks again: blocked before the block, or wanted blocked by an incident."""
        members = {u.id for u in self.users.get(school_id, [])}
        wanted = set(self.keep.among(sorted(members)))
        return sorted(set(self.before.get(school_id, [])) | wanted)


def plan_profile_block(
    driver: EntDriver, school_refs: Sequence[str], profile: str, block: bool
) -> ProfilePlan:
    (wanted,) = directory.check_profiles([profile])
    schools = [directory.resolve_school(driver, ref) for ref in school_refs]
    users = {s.id: driver.list_users(s.id, profiles=[wanted]) for s in schools}
    return ProfilePlan(wanted, block, schools, users)


BY_SCHOOL = Cap(None, "schools", "the schools are named one by one; a wide run asks for the typed count")
SCHOOL_PACE = Pace(4, "a lift blocks again, one call each, the accounts that stay blocked", 2)


@dataclass(frozen=True)
class ProfileBlockOp:
    """Blocking or lifting a profile's logins, school by school."""

    name: str
    block: bool
    verb: str
    labels: Labels
    undo: Undo
    cap: Cap = BY_SCHOOL
    pace: Pace = SCHOOL_PACE
    idempotent: bool = True  # the route sets the state: sending it again changes nothing more
    intent: bool = False
    columns: tuple[str, ...] = COLUMNS

    def params(self, p: ProfilePlan) -> RunParams:
        return {"profile": p.profile}

    def items(self, p: ProfilePlan) -> list[PlanItem]:
        return [{"key": s.id, "uai": s.uai, "profile": p.profile} for s in p.schools]

    def todo(self, p: ProfilePlan) -> int:
        return len(p.schools)

    def rows(self, p: ProfilePlan) -> list[Row]:
        return p.rows()

    def summary(self, p: ProfilePlan) -> str:
        return (
            f"Plan: {self.verb} the {p.profile} profile in {len(p.schools)} school(s): {p.changes} "
            "account(s) change"
        )

    def confirmation(self, p: ProfilePlan) -> Confirmation:
        return confirm_for(f"{self.verb} the logins of", p.changes, f"{p.profile} accounts", len(p.schools))

    def approval(self, p: ProfilePlan) -> str | None:
        return approvals.for_schools("logins", len(p.schools))

    def prepare(self, run: Run, p: ProfilePlan) -> None:
        """A block saves who was blocked before it (once, sealed); a lift reads what the blocks of this
        incident saved, and which accounts the open incidents want blocked."""
        ctx = run.ctx
        if self.block:
            if not run.resumed:
                saved = {s.id: sorted(u.id for u in p.users[s.id] if u.blocked) for s in p.schools}
                snapshots.save(ctx.state, ctx.audit, ctx.incident.id, ctx.ent, run.id, saved)
            return
        for state in read(ctx.state, ctx.incident.id, ent=ctx.ent):
            mine = state.op == BLOCK and state.params.get("profile") == p.profile
            if mine and snapshots.exists(ctx.state, state.run):
                p.before.update(snapshots.load(ctx.state, ctx.audit, state.run))
        p.keep = intent.wanted_blocked(ctx.state, ctx.ent)

    def units(self, run: Run, p: ProfilePlan) -> list[Unit]:
        return [Unit([s.id], (p, s), {s.id: s.uai}) for s in p.schools]

    def act(self, run: Run, unit: Unit) -> list[Outcome]:
        p, school = unit.payload
        run.sending([school.id])
        driver = run.ctx.driver
        driver.block_profile(school.id, p.profile, self.block)
        if self.block:
            return [Outcome(school.id, "done")]
        kept = p.stay_blocked(school.id)
        for user_id in kept:
            driver.block_user(user_id, True)  # the lift unblocked every member: these stay blocked
        return [Outcome(school.id, "done", f"{len(kept)} account(s) kept blocked" if kept else "")]

    def after(self, run: Run, p: ProfilePlan, outcomes: list[Outcome]) -> Verdict:
        done = [o for o in outcomes if o.status == "done"]
        failed = [o for o in outcomes if o.status != "done"]
        names = {s.id: s for s in p.schools}
        verdict = Verdict(self.name, run.id, "completed", "", counts(outcomes), p.rows(), COLUMNS)
        verdict.status = "partial" if status_of(outcomes) == "partial" else "completed"
        verdict.summary = f"{self.verb} the {p.profile} profile: done in {len(done)} school(s)"
        if failed:
            first = failed[0]
            verdict.summary += f"; failed in {len(failed)}: {names[first.key].uai}: {first.detail}"
            verdict.hint = f"resume it: pcnctl incident resume {run.ctx.incident.id}"
        if not self.block:
            kept = [k for o in done for k in p.stay_blocked(o.key)]
            wanted = p.keep.among(kept)
            if kept:
                verdict.notes.append(f"{len(kept)} account(s) kept blocked after the lift")
            if wanted:
                verdict.notes.append(p.keep.note(wanted))
        verdict.result = {"schools": [names[o.key].uai for o in done], "count": len(done)}
        return verdict

    def replan(self, run: Run, state: RunState) -> ProfilePlan:
        """The schools left (each call sets the state, so a redo is safe)."""
        pending = [i["key"] for i in state.pending]
        profile = str(state.params.get("profile", ""))
        return plan_profile_block(run.ctx.driver, pending, profile, self.block)

    def reverse(self, records: Records, state: RunState) -> Reversal | None:
        """Lift the block in the schools the run reached (done or in flight)."""
        if not self.block:
            return None
        reached = [k for k, phase in state.phases.items() if phase in ("done", "sending")]
        if not reached:
            return None
        profile = str(state.params.get("profile", ""))
        what = f"lift the {profile} profile block in {len(reached)} school(s)"
        return Reversal(
            what, len(reached), lambda ctx: plan_profile_block(ctx.driver, reached, profile, False)
        )


OPERATIONS = {
    op.name: op
    for op in (
        ProfileBlockOp(
            BLOCK,
            True,
            "block",
            Labels("profile blocked in a school", "profil bloqué dans un établissement"),
            Undo(LIFT, "lifts the block in the schools it reached, and blocks again the accounts blocked "
                 "before it or wanted blocked by an open incident"),
        ),
        ProfileBlockOp(
            LIFT,
            False,
            "unblock",
            Labels("profile unblocked in a school", "profil débloqué dans un établissement"),
            Undo(None, "a lift is itself the undo of a block; block the profile again with "
                 "'pcnctl accounts block-profile'"),
        ),
    )
}  # fmt: skip
