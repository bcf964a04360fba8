"""Banners in schools (``POST /timeline/flashmsg/structure/:id``), posted once per school per run.

A banner post is not idempotent: posting again shows the banner twice. Each school is journalled as
``sending`` before its call; a resumed run posts only the schools never sent, and reports those whose
answer was lost as unknown (look at the school's banners) rather than posting them a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pcnctl.ent.fanout import Outcome
from pcnctl.models import School
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
from pcnctl.state.journal import PlanItem, RunParams, RunState

OP = "banners.post"
COLUMNS = ("school", "result", "detail")
LOST = "answer lost before the interruption: not posted again; check the school's banners"


@dataclass(frozen=True, slots=True)
class Banner:
    title: str
    message: str
    profiles: tuple[str, ...]


@dataclass
class BannerPlan:
    schools: list[School]
    banner: Banner
    unknown: list[str] = field(default_factory=list)  # on resume: posts whose answer was lost


def plan_banner(schools: Sequence[School], banner: Banner, skip: frozenset[str] = frozenset()) -> BannerPlan:
    """The schools to post in (``skip``: school ids an earlier run of the same step already reached)."""
    return BannerPlan([s for s in schools if s.id not in skip], banner)


class BannerOp:
    name = OP
    verb = "post a banner in"
    labels = Labels("banners posted", "bandeaux affichés")
    cap = Cap(None, "schools", "the schools are named one by one")
    pace = Pace(4, "a banner is one light call per school, seen by every person of its profiles")
    undo = Undo(
        None, "banners stay up until they expire or are deleted in the ENT's admin console", kept=True
    )
    idempotent = False  # a second post shows the banner twice
    intent = False
    columns = ("school", "name")

    def params(self, p: BannerPlan) -> RunParams:
        b = p.banner
        return {"title": b.title, "message": b.message, "profiles": list(b.profiles)}

    def items(self, p: BannerPlan) -> list[PlanItem]:
        return [{"key": s.id, "uai": s.uai} for s in p.schools]

    def todo(self, p: BannerPlan) -> int:
        return len(p.schools)

    def rows(self, p: BannerPlan) -> list[Row]:
        return [{"school": s.uai, "name": s.name} for s in p.schools]

    def summary(self, p: BannerPlan) -> str:
        return f"Plan: show a banner in {len(p.schools)} school(s)" if p.schools else "no school to post in"

    def confirmation(self, p: BannerPlan) -> Confirmation:
        return confirm_for(self.verb, len(p.schools), "schools", len(p.schools))

    def approval(self, p: BannerPlan) -> str | None:
        return None

    def prepare(self, run: Run, p: BannerPlan) -> None:
        for key in p.unknown:
            run.ctx.record(run.id, self.name, key, "refused", LOST)
            run.phases[key] = "refused"

    def units(self, run: Run, p: BannerPlan) -> list[Unit]:
        return [Unit([s.id], (p, s), {s.id: s.uai}) for s in p.schools]

    def act(self, run: Run, unit: Unit) -> list[Outcome]:
        p, school = unit.payload
        run.sending([school.id])
        b = p.banner
        run.ctx.driver.flash_message(school.id, b.title, b.message, list(b.profiles))
        return [Outcome(school.id, "done")]

    def after(self, run: Run, p: BannerPlan, outcomes: list[Outcome]) -> Verdict:
        uai = {str(i["key"]): str(i.get("uai", i["key"])) for i in run.items}
        rows: list[Row] = [
            {"school": uai.get(k, k), "result": "unknown", "detail": "answer lost"} for k in p.unknown
        ]
        rows += [{"school": uai.get(o.key, o.key), "result": o.status, "detail": o.detail} for o in outcomes]
        verdict = Verdict(self.name, run.id, "completed", "", counts(outcomes), rows, COLUMNS)
        verdict.status = "partial" if status_of(outcomes) == "partial" else "completed"
        done = [r for r in rows if r["result"] == "done"]
        verdict.summary = f"banner posted in {len(done)} school(s)"
        failed = [o for o in outcomes if o.status != "done"]
        if failed:
            verdict.summary = f"the banner failed in {len(failed)} school(s): {failed[0].detail}"
        if p.unknown:
            verdict.notes.append(f"{len(p.unknown)} post(s) whose answer was lost were not sent again")
        verdict.result = {"schools": [str(r["school"]) for r in done], "count": len(done)}
        return verdict

    def replan(self, run: Run, state: RunState) -> BannerPlan:
        """Post where nothing was sent; a school whose post was in flight is reported, never posted again."""
        unknown = sorted(state.in_flight)
        schools = {s.id: s for s in run.ctx.driver.list_schools()}
        pending = [
            schools[i["key"]] for i in state.pending if i["key"] not in unknown and i["key"] in schools
        ]
        params = state.params
        banner = Banner(params.get("title", ""), params.get("message", ""), tuple(params.get("profiles", [])))
        return BannerPlan(pending, banner, unknown)

    def reverse(self, records: Records, state: RunState) -> Reversal | None:
        return None


BANNER = BannerOp()
