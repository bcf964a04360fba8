"""What a messaging block does once its schools are cut, inside its run: the session revoke asked for, the
verification, and the verdict that says what is proved and what stays open.

Both follow-ups work from the sealed plan and the journal (the schools done, this time or before a kill),
never from a re-plan, so a block finished by ``incident resume`` or ``playbook resume`` revokes and
verifies exactly as one that ran in one go.
"""

from __future__ import annotations

from pcnctl.ent.fanout import Outcome
from pcnctl.forensics.replies import ReplySurface
from pcnctl.models import User
from pcnctl.ops import accounts
from pcnctl.ops.messaging_cut import RELATIVES_LOSS
from pcnctl.ops.messaging_plan import SCHOOL_PACE, BlockPlan, load_snapshot, reply_surface, surface_of
from pcnctl.ops.messaging_verify import Verification, verify
from pcnctl.ops.operation import Run, Verdict, counts, status_of
from pcnctl.records import Row
from pcnctl.state.blocks import active_blocks

COLUMNS = ("school", "name", "method", "result", "detail")
# Drafts are written with the workflow right alone, to anyone (conversation ConversationController
# .createDraft, 6.15.4 line 206: no visibility filter); a reply to one's own draft then passes
# (VisiblesFilter lines 71-97).
DRAFTS_OPEN = (
    "drafts: a pupil whose session holds the Messagerie right can write a draft to anyone and answer it; "
    "closed by --method login, or by --method roles with --revoke-sessions"
)
ROLES_GAP = (
    "the roles lever does not stop a scripted POST /conversation/send, and live sessions keep their rights "
    "until they end"
)


def block_verdict(run: Run, p: BlockPlan, outcomes: list[Outcome]) -> Verdict:
    verdict = Verdict(run.op, run.id, "completed", "", counts(outcomes), _rows(run, p, outcomes), COLUMNS)
    failed = [o for o in outcomes if o.status != "done"]
    verdict.status = "partial" if status_of(outcomes) == "partial" else "completed"
    done = run.done()
    verdict.summary = f"{p.profile} messaging blocked ({p.method}) in {len(done)} school(s)" + (
        f"; {len(failed)} school(s) failed" if failed else ""
    )
    if failed:
        verdict.hint = f"resume it: pcnctl incident resume {run.ctx.incident.id}"
    if p.revoke_sessions and done:
        _revoke(run, p, done, verdict)
    if p.method == "roles":
        verdict.open.append(ROLES_GAP + ("" if p.revoke_sessions else "; add --revoke-sessions"))
    if p.cuts_relatives:
        verdict.notes.append(RELATIVES_LOSS)
    verdict.open += reply_surface(p.method, _surfaces(run, p))
    if p.method == "communication":
        verdict.open.append(DRAFTS_OPEN)
    if p.verify:
        _verify(run, p, verdict)
    verdict.result = {"schools": [str(r["school"]) for r in verdict.rows], "count": len(verdict.rows)}
    return verdict


def _surfaces(run: Run, p: BlockPlan) -> list[tuple[str, ReplySurface | None]]:
    """The reply surface of every school the run cut, from its sealed snapshot (the same whichever door
    finished the run), read in the mailstore when the profile has one."""
    ctx = run.ctx
    snapshot = load_snapshot(ctx.state, ctx.audit, run.id)
    done = [(sid, snapshot["schools"][sid]) for sid in run.done() if sid in snapshot["schools"]]
    if not (ctx.mailstore_dsn or ctx.driver.profile.mailstore):
        return [(entry["uai"], None) for _sid, entry in done]
    store = ctx.mailstore()
    return [
        (entry["uai"], surface_of(ctx.driver, store, sid, entry["prior"], p.method, p.profile))
        for sid, entry in done
    ]


def _rows(run: Run, p: BlockPlan, outcomes: list[Outcome]) -> list[Row]:
    by_id = {s.school.id: s for s in p.schools}
    rows: list[Row] = []
    for o in outcomes:
        sp = by_id[o.key]
        detail = o.detail or sp.change(p.method)
        rows.append({"school": sp.school.uai, "name": sp.school.name, "method": p.method,
                     "result": o.status, "detail": detail})  # fmt: skip
    for sp in p.schools:
        if sp.already:
            rows.append({"school": sp.school.uai, "name": sp.school.name, "method": p.method,
                         "result": "already", "detail": sp.change(p.method)})  # fmt: skip
    return sorted(rows, key=lambda r: str(r["school"]))


def _revoke(run: Run, p: BlockPlan, schools: list[str], verdict: Verdict) -> None:
    """End the live sessions of the profile in the schools cut (the roles lever leaves them their cached
    rights): a follow-up run of its own, found again by a resume."""

    def plan() -> accounts.Plan:
        driver = run.ctx.driver
        users: list[User] = [u for sid in schools for u in driver.list_users(sid, profiles=[p.profile])]
        return accounts.plan("sessions.revoke", users, {"keep_blocked": False})

    child = run.follow(accounts.OPERATIONS["sessions.revoke"], plan, "revoke")
    revoked = child.counts.get("done", 0)
    verdict.notes.append(f"sessions of {revoked} {p.profile} account(s) revoked (run {child.run})")
    verdict.notes += child.notes
    if not child.ok:
        verdict.status = "partial"
        verdict.hint = child.hint or verdict.hint
        verdict.notes.append(f"session revoke: {child.summary}")


def _verify(run: Run, p: BlockPlan, verdict: Verdict) -> Verification:
    """Prove the blocks of this run (and those it joined) with the profile's canary when it has one: the
    same checks whichever door ran the block."""
    ctx = run.ctx
    mine = [b for b in active_blocks(ctx.state, ctx.ent) if b.run == run.id]
    result = verify(
        ctx.driver,
        ctx.state,
        mine,
        canary=ctx.canary,
        canary_to=ctx.canary_to,
        concurrency=ctx.max_concurrency or SCHOOL_PACE,
        rate_limit=ctx.rate_limit,
    )
    verdict.checks = [c.to_row() for c in result.checks]
    verdict.notes.append(
        f"verification: {len(result.checks)} check(s) ({result.scope}), block {result.verdict}"
    )
    if not result.effective and verdict.status == "completed":
        verdict.status = "ineffective"
        verdict.summary += ": the block was applied but verification found it is not effective"
        verdict.hint = "see the checks; consider --method login"
    return result
