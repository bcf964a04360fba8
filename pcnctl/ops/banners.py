"""Banners in schools (``POST /timeline/flashmsg/structure/:id``), posted once per school per run.

A banner post is not idempotent: posting again shows the banner twice. Each school is journalled as
``sending`` before its call; a resumed run posts only the schools never sent, and reports those whose
answer was lost as unknown (look at the school's banners) rather than posting them a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pcnctl.errors import PcnError
from pcnctl.models import School
from pcnctl.ops.context import RunContext
from pcnctl.state.journal import PlanItem, RunParams, RunState

OP = "banners.post"


@dataclass(frozen=True, slots=True)
class Banner:
    title: str
    message: str
    profiles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Posted:
    school: str  # UAI
    result: str  # done | failed | unknown
    detail: str = ""


def post(
    ctx: RunContext,
    schools: Sequence[School],
    banner: Banner,
    *,
    run: str | None = None,
    skip: frozenset[str] = frozenset(),
) -> list[Posted]:
    """Post the banner in each school not in ``skip`` (ids), journalled item by item."""
    params: RunParams = {"title": banner.title, "message": banner.message, "profiles": list(banner.profiles)}
    items: list[PlanItem] = [{"key": s.id, "uai": s.uai} for s in schools]
    run = run or ctx.start(OP, params, items)
    out = []
    for school in schools:
        if school.id in skip:
            continue
        ctx.sending(run, school.id)
        try:
            ctx.driver.flash_message(school.id, banner.title, banner.message, list(banner.profiles))
        except PcnError as exc:
            ctx.record(run, OP, school.id, "failed", exc.message, school.uai)
            out.append(Posted(school.uai, "failed", exc.message))
            continue
        ctx.record(run, OP, school.id, "done", "", school.uai)
        out.append(Posted(school.uai, "done"))
    failed = sum(1 for p in out if p.result == "failed")
    ctx.end(run, "partial" if failed else "completed", {"schools": len(out), "failed": failed})
    return out


def resume(ctx: RunContext, state: RunState) -> list[Posted]:
    """Post where nothing was sent; a school whose post was in flight is reported, never posted again."""
    ctx.check_resumable(state)
    unknown = state.in_flight
    for key in sorted(unknown):
        ctx.record(
            state.run,
            OP,
            key,
            "refused",
            "answer lost before the interruption: not posted again; check the school's banners",
        )
    pending = [i for i in state.pending if i["key"] not in unknown]
    schools = {s.id: s for s in ctx.driver.list_schools()}
    banner = Banner(state.params["title"], state.params["message"], tuple(state.params["profiles"]))
    posted = post(ctx, [schools[i["key"]] for i in pending if i["key"] in schools], banner, run=state.run)
    lost = [
        Posted(next((i["uai"] for i in state.items if i["key"] == k), k), "unknown", "answer lost")
        for k in sorted(unknown)
    ]
    return lost + posted
