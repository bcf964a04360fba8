"""Blocking messaging: every Edifice lever, with a snapshot before, verification after, expiry and an exact
rollback that never overwrites what an administrator changed by hand.

Edifice has no messaging switch (edifice-api.md §2). The levers, weakest to strongest:

* ``roles``: remove the Messagerie role from the profile's groups. The app disappears for new sessions,
  but ``POST /conversation/send`` needs no role, so a scripted send still works, and live sessions keep
  the rights they cached at login until they end. Pair it with a session revoke, or use another lever.
* ``communication`` (default): cut every group that lets the profile write, structure and class groups
  alike (:mod:`pcnctl.ops.messaging_cut`). The send route checks visibility live, so this stops every send
  at once, scripted ones included; the members can still receive.
* ``login``: block the logins of the whole profile in the school. Sessions drop at once and the whole ENT
  stops for those accounts, not only messaging.

Every block is recorded in the state store with the ENT it is on, its lever, school, incident, author,
times and optional expiry, and the exact prior state is saved (and sealed) before anything changes. A
school already blocked by another incident is not blocked twice: the new incident joins the block, and
the lever is lifted only when the last incident holding it lets go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypedDict

from pcnctl.ent import directory
from pcnctl.ent.fanout import Fanout, Outcome
from pcnctl.ent.platform import EntDriver
from pcnctl.errors import PcnError, UsageError
from pcnctl.models import Group, GroupJson, School
from pcnctl.ops.context import RunContext
from pcnctl.ops.messaging_cut import (
    CutPlan,
    Prior,
    apply_cut,
    check_cut,
    plan_cut,
    restore_cut,
    restore_roles,
    roles_prior,
)
from pcnctl.progress import progress_bar
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
    "communication": "cuts every group that lets the profile write (class groups included), its relations "
    "first, then its members' link, and students' links to their relatives: effective at once, stops "
    "scripted sends too; the accounts can still receive and use the rest of the ENT. A shared (functional "
    "or manual) group is cut for all its members, teachers included.",
    "roles": "removes the Messagerie role: hides the app for new sessions only. A scripted POST "
    "/conversation/send still works, and live sessions keep their rights until they end: revoke them "
    "(pcnctl sessions revoke --school UAI --profile P) or use --method communication.",
    "login": "blocks every login of the profile in the school: sessions drop at once, and the whole ENT "
    "stops for those accounts, not only messaging.",
}
OP_BLOCK = "messaging.block"


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


def _snapshot(state: StateStore, audit: AuditLog, run: str) -> BlockSnapshot:
    snapshot: BlockSnapshot = snapshots.load(state, audit, run)  # the one this block saved (sealed)
    return snapshot


@dataclass
class SchoolPlan:
    school: School
    group: Group
    prior: Prior
    holder: Block | None = None  # the block in force on this school, which this plan joins

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


def _prior(driver: EntDriver, school: School, group: Group, method: str, profile: str) -> Prior:
    """The exact state a lever is about to change, read from the ENT."""
    if method == "communication":
        return plan_cut(driver, school.id, profile).to_json()
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
        prior = Prior() if holder else _prior(driver, school, group, method, wanted)
        plans[school.id] = SchoolPlan(school, group, prior, holder)
        return Outcome(school.id, "done")

    report = Fanout(read, key=lambda s: s.id, idempotent=True, max_concurrency=max_concurrency).run(schools)
    failed = [o for o in report.outcomes if o.status == "failed"]
    if failed:
        raise PcnError(f"could not read the state of {len(failed)} school(s): {failed[0].detail}")
    ordered = [plans[s.id] for s in sorted(schools, key=lambda s: s.uai)]
    return BlockPlan(wanted, method, ordered, until, reason)


# -- block ------------------------------------------------------------------------------------------------


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


def execute_block(ctx: RunContext, p: BlockPlan, *, run: str | None = None) -> tuple[str, list[Row]]:
    """Snapshot every school first, then block school by school (journalled, resumable), then register.
    Schools another incident already blocks are joined, not blocked again."""
    todo = p.to_change
    items: list[PlanItem] = [{"key": s.school.id, "uai": s.school.uai, "group": s.group.id} for s in todo]
    params: RunParams = {
        "profile": p.profile,
        "method": p.method,
        "until": iso(p.until) if p.until else None,
        "reason": p.reason,
    }
    if run is None:
        run = ctx.start(OP_BLOCK, params, items)
        _snapshot_and_join(ctx, run, p)
    by_id = {s.school.id: s for s in todo}
    rows: list[Row] = []

    def step(sp: SchoolPlan) -> Outcome:
        ctx.sending(run, sp.school.id)
        return Outcome(sp.school.id, "done", _apply(ctx.driver, sp, p.method, p.profile))

    def on_outcome(o: Outcome) -> None:
        sp = by_id[o.key]
        if o.status == "done":
            # Registered before the journal says done: a crash in between re-runs the school on resume,
            # and registering again replaces the entry instead of losing it.
            _register(ctx, run, sp, p, run)
        ctx.record(run, OP_BLOCK, o.key, o.status, o.detail, sp.school.uai)
        rows.append(_row(sp, p.method, o.status, o.detail or sp.change(p.method)))

    with progress_bar(len(todo), f"block {p.profile} messaging", enabled=ctx.show_progress) as advance:
        fanout = Fanout(
            step,
            key=lambda sp: sp.school.id,
            idempotent=True,
            max_concurrency=ctx.max_concurrency,
            on_outcome=on_outcome,
            on_progress=advance,
        )
        try:
            fanout.run(todo)
        except KeyboardInterrupt:
            raise ctx.interrupted(run, {"done": len(rows)}) from None
    rows += [_row(sp, p.method, "already", sp.change(p.method)) for sp in p.schools if sp.already]
    failed = sum(1 for r in rows if r["result"] == "failed")
    ctx.end(run, "partial" if failed else "completed", {"schools": len(rows), "failed": failed})
    return run, sorted(rows, key=lambda r: str(r["school"]))


def _snapshot_and_join(ctx: RunContext, run: str, p: BlockPlan) -> None:
    """Before anything is cut: the prior state of every school to cut, sealed; and the schools another
    incident already blocks joined (their lever is restored when the last incident lets go)."""
    schools: dict[str, SchoolSnapshot] = {
        s.school.id: {"uai": s.school.uai, "group": s.group.to_json(), "prior": s.prior} for s in p.to_change
    }
    data: BlockSnapshot = {"profile": p.profile, "method": p.method, "schools": schools}
    snapshots.save(ctx.state, ctx.audit, ctx.incident.id, ctx.ent, run, data)
    for sp in p.schools:
        if sp.holder is not None and sp.holder.incident != ctx.incident.id:
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


def resume_block(ctx: RunContext, state: RunState) -> tuple[str, list[Row]]:
    """Finish an interrupted block: the snapshot taken before the run stays the reference, whatever the
    ENT looks like now (half cut by this very run)."""
    ctx.check_resumable(state)
    snapshot = _snapshot(ctx.state, ctx.audit, state.run)
    pending = {i["key"] for i in state.pending}
    schools = {s.id: s for s in ctx.driver.list_schools()}
    plans = [
        SchoolPlan(schools[sid], Group.from_json(entry["group"]), entry["prior"])
        for sid, entry in snapshot["schools"].items()
        if sid in pending and sid in schools
    ]
    until_text = state.params.get("until")
    until = datetime.fromisoformat(until_text.replace("Z", "+00:00")) if until_text else None
    p = BlockPlan(snapshot["profile"], snapshot["method"], plans, until, state.params.get("reason", ""))
    return execute_block(ctx, p, run=state.run)


# -- unblock ------------------------------------------------------------------------------------------------


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


def _restore(driver: EntDriver, block: Block, entry: SchoolSnapshot) -> list[str]:
    """Put back exactly what the snapshot holds; report, and keep, what changed by hand since the block."""
    notes: list[str] = []
    prior, method = entry["prior"], block.method
    if method == "communication":
        notes += restore_cut(driver, CutPlan.from_json(prior))
    elif method == "roles":
        notes += restore_roles(driver, block.profile, prior)
    else:
        driver.block_profile(block.school_id, block.profile, False)
        for user_id in prior["blocked"]:
            driver.block_user(user_id, True)  # blocked before the incident: stays blocked
        if prior["blocked"]:
            notes.append(f"{len(prior['blocked'])} account(s) blocked before the block kept blocked")
    return notes


OP_UNBLOCK = "messaging.unblock"


def execute_unblock(ctx: RunContext, lift: Sequence[Block], *, run: str | None = None) -> list[Row]:
    """Restore each lever's snapshot, schools in parallel through the fan-out executor (each restore reads
    before it writes, so a school is safe to redo). A lever another incident still holds stays in force:
    only this incident's hold is lifted."""
    op = OP_UNBLOCK
    run = run or ctx.start(op, {}, [{"key": b.id, "uai": b.uai, "method": b.method} for b in lift])
    rows: list[Row] = []
    lifting = {b.id for b in lift}
    held = {b.lever for b in active_blocks(ctx.state, ctx.ent) if b.id not in lifting}
    levers: dict[tuple[str, str, str], list[Block]] = {}
    for block in lift:
        levers.setdefault(block.lever, []).append(block)
    loaded = {run: _snapshot(ctx.state, ctx.audit, run) for run in {b.snapshot for b in lift}}

    def step(group: list[Block]) -> list[Outcome]:
        for block in group:
            ctx.sending(run, block.id)
        if group[0].lever in held:
            return [Outcome(b.id, "done", "kept in force: another incident still holds it") for b in group]
        entry = loaded[group[0].snapshot]["schools"][group[0].school_id]
        detail = "; ".join(_restore(ctx.driver, group[0], entry))
        return [Outcome(b.id, "done", detail) for b in group]

    by_id = {b.id: b for b in lift}

    def on_outcome(o: Outcome) -> None:
        block = by_id[o.key]
        if o.status == "done":
            save_block(ctx.state, block.lifted(ctx.identity.label, utcnow()))
        ctx.record(run, op, block.id, o.status, o.detail, block.uai)
        rows.append({"school": block.uai, "method": block.method, "result": o.status, "detail": o.detail})

    fanout = Fanout(
        step,
        key=lambda group: [b.id for b in group],
        idempotent=True,
        max_concurrency=ctx.max_concurrency,
        on_outcome=on_outcome,
    )
    fanout.run(sorted(levers.values(), key=lambda g: g[0].uai))
    failed = sum(1 for r in rows if r["result"] == "failed")
    ctx.end(run, "partial" if failed else "completed", {"schools": len(rows), "failed": failed})
    return sorted(rows, key=lambda r: str(r["school"]))


def resume_unblock(ctx: RunContext, state: RunState) -> list[Row]:
    """Finish an interrupted lift: the blocks of its plan still in force (a restore is safe to redo)."""
    ctx.check_resumable(state)
    pending = {str(i["key"]) for i in state.pending}
    left = [b for b in active_blocks(ctx.state, ctx.ent) if b.id in pending]
    return execute_unblock(ctx, left, run=state.run)


# -- verification -------------------------------------------------------------------------------------------


@dataclass
class Check:
    school: str
    check: str
    expected: str
    observed: str
    ok: bool

    def to_row(self) -> Row:
        return {
            "school": self.school,
            "check": self.check,
            "expected": self.expected,
            "observed": self.observed,
            "ok": self.ok,
        }


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # what this identity could not check, and why
    roles: bool = False  # a roles block is in the set: it never stops a scripted send

    @property
    def effective(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def verdict(self) -> str:
        """What the checks prove, no more: the roles lever and unchecked parts are said as such."""
        if not self.effective:
            return "NOT effective"
        if self.roles:
            return "not effective against scripted sends (roles lever: the app is hidden, sends still pass)"
        if self.unchecked:
            return "effective on what could be checked (" + "; ".join(self.unchecked) + ")"
        return "effective"


def prior_of(state: StateStore, block: Block) -> Prior:
    """The prior state a registered block saved (its school's entry in the run's sealed snapshot)."""
    return _snapshot(state, state.audit_log(), block.snapshot)["schools"][block.school_id]["prior"]


def verify(
    driver: EntDriver,
    state: StateStore,
    blocks: Sequence[Block],
    *,
    samples: int = 3,
    canary: Callable[[], EntDriver] | None = None,
    canary_to: str | None = None,
) -> Verification:
    """Prove the blocks work: the cut groups re-read, sampled pairs through ``/communication/verify``
    (ADMC only: an ADML is told it was not checked), then a real send by the canary, which stays the proof."""
    result = Verification(roles=any(b.method == "roles" for b in blocks))
    for block in blocks:
        if block.method == "login":
            _verify_login(driver, block, samples, result)
        else:
            _verify_pairs(driver, state, block, samples, result)
    if canary is not None:
        # The recipient is looked up with the admin session: the canary itself may not search the directory.
        target = driver.find_user_by_login(canary_to) if canary_to else None
        result.checks.append(_canary(canary, target.id if target else None, blocks))
    return result


def _verify_login(driver: EntDriver, block: Block, samples: int, result: Verification) -> None:
    for member in driver.list_users(block.school_id, profiles=[block.profile])[:samples]:
        blocked = driver.get_user(member.id).blocked
        result.checks.append(
            Check(block.uai, f"{member.login} login", "blocked", "blocked" if blocked else "open", blocked)
        )


def _verify_pairs(
    driver: EntDriver, state: StateStore, block: Block, samples: int, result: Verification
) -> None:
    """The pairs that matter for the lever and the profile: members to staff and to each other; staff
    to members only for students and relatives (the rules never let staff write to guests)."""
    uai, profile, sid = block.uai, block.profile, block.school_id
    if block.method == "communication":
        for check, expected, observed, ok in check_cut(driver, CutPlan.from_json(prior_of(state, block))):
            result.checks.append(Check(uai, check, expected, observed, ok))
    members = driver.list_users(sid, profiles=[profile])
    staff = (
        driver.list_users(sid, profiles=["Teacher"])[:samples]
        + driver.list_users(sid, profiles=["Personnel"])[:1]
    )
    recipients = staff + members[samples : samples * 2]
    roles = block.method == "roles"
    reached = 0
    for member in members[:samples]:
        for other in recipients:
            can = driver.can_communicate(member.id, other.id)
            if can is None:
                result.unchecked.append(f"{uai}: sender/recipient pairs (the verify route is ADMC-only)")
                return
            reached += bool(can)
            if not roles:
                result.checks.append(
                    Check(uai, f"{member.login} -> {other.login}", "cannot send", _said(can), not can)
                )
    if roles:
        result.checks.append(
            Check(
                uai, f"{profile} sends (sampled)", "can send (roles gap)", f"{reached} pair(s) can send", True
            )
        )
    elif profile in ("Student", "Relative") and staff and members:
        back = driver.can_communicate(staff[0].id, members[0].id)
        result.checks.append(
            Check(
                uai,
                f"{staff[0].login} -> {members[0].login}",
                "can send (staff unaffected)",
                _said(back),
                bool(back),
            )
        )


def _said(can: bool | None) -> str:
    return "can send" if can else "cannot send"


def verify_run(
    ctx: RunContext,
    run: str,
    *,
    canary: Callable[[], EntDriver] | None = None,
    canary_to: str | None = None,
) -> Verification:
    """Verify the blocks a run registered: what the command and the playbook operation both do after
    a block."""
    mine = [b for b in active_blocks(ctx.state, ctx.ent) if b.run == run]
    return verify(ctx.driver, ctx.state, mine, canary=canary, canary_to=canary_to)


def revoke_sessions(ctx: RunContext, p: BlockPlan) -> int:
    """End the live sessions of the profile in the blocked schools (the roles lever leaves them their
    cached rights); returns how many accounts were revoked."""
    from pcnctl.ops import accounts

    users = [u for s in p.to_change for u in ctx.driver.list_users(s.school.id, profiles=[p.profile])]
    if not users:
        return 0
    result = accounts.execute(ctx, accounts.plan("sessions.revoke", users, {"keep_blocked": False}))
    if result.failed:
        raise PcnError(f"{result.failed} session revoke(s) failed; failures in {result.failures_file}")
    return len(result.results)


def _canary(open_canary: Callable[[], EntDriver], recipient: str | None, blocks: Sequence[Block]) -> Check:
    """Log in as the canary and try a real send; with the login lever, the refused login is the proof."""
    from pcnctl.errors import AuthError, PermissionDeniedError

    login_lever = any(b.method == "login" for b in blocks)
    try:
        canary = open_canary()
    except AuthError as exc:
        observed = f"login refused ({exc.message})"
        return Check(
            "*",
            "canary login",
            "refused (login lever)" if login_lever else "login works",
            observed,
            login_lever,
        )
    ident = canary.whoami()
    roles_only = bool(blocks) and all(b.method == "roles" for b in blocks)
    to = [recipient] if recipient else []
    label = f"canary {ident.login} real send"
    if not to:
        return Check("*", label, "refused", "no recipient (set --canary-to on the profile)", False)
    try:
        message = canary.send_message(to, "[pcnctl] test d'envoi - à ignorer", "Vérification d'un blocage.")
    except (PermissionDeniedError, AuthError) as exc:
        return Check("*", label, "refused", f"refused ({type(exc).__name__})", not roles_only)
    observed = f"SENT (message {message})"
    return Check("*", label, "sent (roles gap)" if roles_only else "refused", observed, roles_only)
