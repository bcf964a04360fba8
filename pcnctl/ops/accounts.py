"""Compromised accounts: block, unblock, revoke sessions, reset passwords, renewal codes, as operations.

Targets are resolved and scope-checked first (:mod:`pcnctl.ops.targets`), then planned here (how many
accounts, where, of which profiles, how many already in the wanted state); the one sequence of
:mod:`pcnctl.ops.runner` does the rest.

Edifice facts encoded here (edifice-api.md §5): blocking drops sessions at once; there is no logout without
block, so revoking sessions is block then unblock; erasing or forcing a password change leaves sessions
alive, so resets revoke sessions first unless told not to. An unblock that ends a revoke never re-opens an
account that an open incident wants blocked (:mod:`pcnctl.ops.intent`).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pcnctl.ent.fanout import Outcome
from pcnctl.ent.platform import EntDriver
from pcnctl.errors import ServerError
from pcnctl.files import write_private
from pcnctl.models import User
from pcnctl.ops import approvals, intent, targets
from pcnctl.ops.context import Records, RunContext
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
from pcnctl.state.journal import FINAL, PlanItem, RunParams, RunState

BLOCK_ACCOUNTS, UNBLOCK_ACCOUNTS = "accounts.block", "accounts.unblock"
THROTTLED = frozenset({429, 503, 509})  # the ENT refused without doing anything
RESULT_COLUMNS = ("id", "login", "displayName", "profile", "schools", "result", "detail")
PLAN_COLUMNS = ("school", "profile", "to_change", "already")


# -- plan -------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    op: str
    users: list[User]
    to_change: list[User]
    already: list[User]
    params: RunParams = field(default_factory=lambda: RunParams())
    # On resume: accounts this run's own call, sent before the interruption, is seen to have changed.
    confirmed: list[User] = field(default_factory=list)
    # Filled by prepare: accounts an open incident wants blocked (a revoke leaves them blocked), the
    # outcomes recorded before the fan-out, and the renewal codes generated.
    keep: intent.Intent = field(default_factory=intent.Intent)
    early: list[Outcome] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)

    @property
    def schools(self) -> Counter[str]:
        return Counter(s for u in self.to_change for s in (u.schools or ("?",)))

    @property
    def profiles(self) -> Counter[str]:
        return Counter(u.profile for u in self.to_change)

    def rows(self) -> list[Row]:
        """Per school and profile: accounts to change and already in the wanted state."""
        already = Counter((s, u.profile) for u in self.already for s in (u.schools or ("?",)))
        change = Counter((s, u.profile) for u in self.to_change for s in (u.schools or ("?",)))
        keys = sorted(set(already) | set(change))
        return [
            {"school": s, "profile": p, "to_change": change[(s, p)], "already": already[(s, p)]}
            for s, p in keys
        ]

    def summary(self) -> str:
        verb = OPERATIONS[self.op].verb
        text = (
            f"Plan: {verb} {len(self.to_change)} account(s) in {len(self.schools)} school(s) "
            f"({', '.join(f'{n} {p}' for p, n in self.profiles.most_common())})"
        )
        if self.already:
            text += f"; {len(self.already)} already in the wanted state (left alone)"
        return text


def plan(op: str, users: Sequence[User], params: RunParams | None = None) -> Plan:
    params = params or {}
    if op == "accounts.block":
        already = [u for u in users if u.blocked]
    elif op == "accounts.unblock":
        already = [u for u in users if not u.blocked]
    elif op == "sessions.revoke":
        # A blocked account has no session left; revoking would unblock it, which is not what was asked.
        already = [u for u in users if u.blocked]
    else:
        already = []
    ids = {u.id for u in already}
    return Plan(op, list(users), [u for u in users if u.id not in ids], already, params)


def leave_alone(p: Plan, ids: set[str]) -> Plan:
    """The plan with these accounts moved to ``already``: found done by an earlier run."""
    keep = [u for u in p.to_change if u.id not in ids]
    done = [u for u in p.to_change if u.id in ids]
    return Plan(p.op, p.users, keep, [*p.already, *done], p.params, p.confirmed)


def prepare(
    driver: EntDriver,
    op: str,
    refs: Sequence[str] = (),
    params: RunParams | None = None,
    *,
    from_file: Path | None = None,
    school: str | None = None,
    profiles: Sequence[str] = (),
    max_concurrency: int = 16,
    progress: bool = False,
) -> Plan:
    """Resolve, check scope, plan: the part of every account operation that only reads, shared by the
    commands, the playbooks and rollback (nothing is sent to change anything)."""
    users = targets.resolve_targets(
        driver,
        refs,
        from_file=from_file,
        school=school,
        profiles=profiles,
        max_concurrency=max_concurrency,
        progress=progress,
    )
    targets.check_scope(driver, users)
    return plan(op, users, params)


@dataclass(frozen=True)
class AccountResult:
    """One account's outcome in a run: done, already, refused or failed, and why."""

    user: User
    result: str
    detail: str

    def to_row(self) -> Row:
        return result_row(self.user, self.result, self.detail)


def result_row(u: User, result: str, detail: str) -> Row:
    return {
        "id": u.id,
        "login": u.login,
        "displayName": u.display_name,
        "profile": u.profile,
        "schools": list(u.schools),
        "result": result,
        "detail": detail,
    }


def _item(u: User) -> PlanItem:
    return {
        "key": u.id,
        "login": u.login,
        "profile": u.profile,
        "schools": list(u.schools),
        "blocked": u.blocked,
    }


ONE_CALL_EACH = Pace(32, "one light call per account; the fan-out adapts below this bound")


# -- the operations ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountsOp:
    """One account operation: the same plan, run and verdict, with the call and the state it wants."""

    name: str
    verb: str
    labels: Labels
    cap: Cap
    undo: Undo
    pace: Pace = ONE_CALL_EACH
    idempotent: bool = True
    columns: tuple[str, ...] = PLAN_COLUMNS

    @property
    def intent(self) -> bool:
        """A block of accounts already blocked is recorded: the incident wants them blocked (a lift of a
        login block keeps them so, pcnctl.ops.intent)."""
        return self.name == BLOCK_ACCOUNTS

    def params(self, p: Plan) -> RunParams:
        return p.params

    def items(self, p: Plan) -> list[PlanItem]:
        return [_item(u) for u in p.to_change] + [_item(u) for u in p.already]

    def todo(self, p: Plan) -> int:
        return len(p.to_change)

    def rows(self, p: Plan) -> list[Row]:
        return p.rows()

    def summary(self, p: Plan) -> str:
        return p.summary() if p.to_change else "every account is already in the wanted state"

    def confirmation(self, p: Plan) -> Confirmation:
        return confirm_for(self.verb, len(p.to_change), "accounts", len(p.schools))

    def approval(self, p: Plan) -> str | None:
        return approvals.for_accounts(len(p.to_change) + len(p.already))

    def prepare(self, run: Run, p: Plan) -> None:
        """Outcomes known without a call (already in the wanted state; seen done after a kill), and the
        accounts a revoke must leave blocked."""
        for u in p.already:
            if run.phases.get(u.id) not in FINAL:
                p.early.append(Outcome(u.id, "already", "already in the wanted state"))
        for u in p.confirmed:
            p.early.append(
                Outcome(u.id, "done", "sent before the interruption; the ENT shows it took effect")
            )
        for o in p.early:
            label = next((u.login for u in p.users if u.id == o.key), "")
            run.ctx.record(run.id, self.name, o.key, o.status, o.detail, label)
        if self.name in ("sessions.revoke", "accounts.reset-password"):
            p.keep = intent.wanted_blocked(run.ctx.state, run.ctx.ent)

    def units(self, run: Run, p: Plan) -> list[Unit]:
        """An ADMC (or a service account) blocks in batches, fewer calls against a platform under attack;
        anything else goes one account per call."""
        items = [_item(u) for u in p.to_change]
        size = run.ctx.batch_size
        batched = size > 0 and self.name in BATCHED and run.ctx.identity.role in ("ADMC", "service")
        chunks = (
            [items[i : i + size] for i in range(0, len(items), size)] if batched else [[i] for i in items]
        )
        return [
            Unit([i["key"] for i in c], Batch(p, c, batched), {i["key"]: i.get("login", "") for i in c})
            for c in chunks
        ]

    def act(self, run: Run, unit: Unit) -> list[Outcome]:
        batch: Batch = unit.payload
        if batch.batched:
            return _act_batch(self, run, batch.items)
        return [_act_one(self, run, batch.plan, batch.items[0])]

    def after(self, run: Run, p: Plan, outcomes: list[Outcome]) -> Verdict:
        return _verdict(self, run, p, outcomes)

    def replan(self, run: Run, state: RunState) -> Plan:
        return _replan(run, state)

    def reverse(self, records: Records, state: RunState) -> Reversal | None:
        return _reverse(records, state) if self.name == "accounts.block" else None


BATCHED = ("accounts.block", "accounts.unblock")


@dataclass(frozen=True)
class Batch:
    """What one unit of an account run acts on: its accounts, and the plan they belong to."""

    plan: Plan
    items: list[PlanItem]
    batched: bool  # one PUT /auth/users/block for them all (ADMC)


def _act_one(op: AccountsOp, run: Run, p: Plan, item: PlanItem) -> Outcome:
    """One account: the call, or the calls of a reset or revoke, each phase journalled so a resume goes on
    from the last one done."""
    driver, uid = run.ctx.driver, item["key"]
    prior = run.sending([uid])[uid]
    if op.name in BATCHED:
        block = op.name == "accounts.block"
        # Sent before and its answer lost: read the account before sending again.
        if prior == "sending" and driver.get_user(uid).blocked == block:
            return Outcome(uid, "done", "the ENT shows the earlier call took effect")
        _toggle(run, uid, block)
        return Outcome(uid, "done")
    if op.name == "accounts.renewal-codes":
        p.codes[uid] = driver.renewal_code(item["login"])
        return Outcome(uid, "done")
    return _revoke_or_reset(op, run, p, item, prior)


def _toggle(run: Run, uid: str, block: bool) -> None:
    try:
        run.ctx.driver.block_user(uid, block)
    except ServerError as exc:
        if exc.status in THROTTLED:
            run.phases[uid] = "throttled"  # refused before it was done: the retry needs no re-read
        raise


def _revoke_or_reset(op: AccountsOp, run: Run, p: Plan, item: PlanItem, prior: str | None) -> Outcome:
    """Block (sessions end), then the reset, then the unblock, unless the account is to stay blocked: asked
    so (``--keep-blocked``), or wanted blocked by an open incident, which the outcome says."""
    driver, uid = run.ctx.driver, item["key"]
    revoke = op.name == "sessions.revoke" or (p.params.get("revoke", True) and not item.get("blocked"))
    if revoke and prior not in ("blocked", "reset"):
        driver.block_user(uid, True)  # drops every session and token
        run.phase(uid, "blocked")
        prior = "blocked"
    if op.name == "accounts.reset-password" and prior != "reset":
        if p.params.get("mode", "force-change") == "erase":
            driver.erase_password(uid)
        else:
            driver.force_change_password(uid)
        run.phase(uid, "reset")
    if not revoke or p.params.get("keep_blocked"):
        return Outcome(uid, "done")
    if uid in p.keep:
        return Outcome(uid, "done", f"kept blocked: incident(s) {', '.join(p.keep.incidents([uid]))} want it")
    driver.block_user(uid, False)
    return Outcome(uid, "done")


def _act_batch(op: AccountsOp, run: Run, items: list[PlanItem]) -> list[Outcome]:
    """Block or unblock a batch with ``PUT /auth/users/block`` (ADMC): one call, one outcome per account.
    Accounts whose earlier call's answer was lost are read back first, as on the one-account path: only
    those not yet in the wanted state are sent again."""
    driver, block = run.ctx.driver, op.name == "accounts.block"
    prior = run.sending([i["key"] for i in items])
    lost = [k for k, phase in prior.items() if phase == "sending"]
    reached = {k for k in lost if driver.get_user(k).blocked == block}
    outcomes = [Outcome(k, "done", "the ENT shows the earlier call took effect") for k in sorted(reached)]
    send = [i["key"] for i in items if i["key"] not in reached]
    if send:
        driver.block_users(send, block)
    return outcomes + [Outcome(k, "done") for k in send]


# -- after: results, files, verdict ---------------------------------------------------------------------


def _verdict(op: AccountsOp, run: Run, p: Plan, outcomes: list[Outcome]) -> Verdict:
    """Per-account results, the failures file (ready for --from-file), the codes file, what was kept
    blocked, and the exit the results call for."""
    by_id = {u.id: u for u in p.users}
    every = p.early + outcomes
    results = sorted(
        (AccountResult(by_id[o.key], o.status, o.detail) for o in every if o.key in by_id),
        key=lambda r: (r.user.schools, r.user.login),
    )
    verdict = Verdict(op.name, run.id, "completed", "", counts(every), [r.to_row() for r in results])
    verdict.columns = RESULT_COLUMNS
    verdict.status = "partial" if status_of(every) == "partial" else "completed"
    failed = [r for r in results if r.result in ("failed", "refused")]
    if failed:
        path = _write_failures(run.ctx, run.id, failed)
        verdict.files["failures"] = str(path)
        verdict.hint = f"the failures are in {path}; retry them with --from-file {path}"
    if p.codes:
        verdict.files["codes"] = str(_write_codes(run.ctx, run.id, [by_id[k] for k in p.codes], p.codes))
    kept = [o.key for o in outcomes if o.detail.startswith("kept blocked")]
    if kept:
        verdict.notes.append(p.keep.note(kept))
    shown = ", ".join(f"{n} {k}" for k, n in sorted(verdict.counts.items()))
    verdict.summary = f"{op.name}: {shown}" + (f"; {len(failed)} account(s) failed" if failed else "")
    done = [r.user.id for r in results if r.result == "done"]
    verdict.result = {"accounts": done, "count": len(results)}
    return verdict


def _write_failures(ctx: RunContext, run: str, failed: list[AccountResult]) -> Path:
    """The accounts that failed, as a CSV ``--from-file`` reads to retry just them."""
    path = ctx.incident.subdir("failures") / f"{run}.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "login", "result", "reason"])
    for r in failed:
        writer.writerow([r.user.id, r.user.login, r.result, r.detail])
    write_private(path, buffer.getvalue())
    return path


def _write_codes(ctx: RunContext, run: str, users: list[User], codes: dict[str, str]) -> Path:
    """Renewal codes are secrets: a 0600 file in the incident, never the journal or the audit log."""
    path = ctx.incident.subdir("codes") / f"{run}.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "login", "displayName", "schools", "code"])
    for u in sorted(users, key=lambda u: (u.schools, u.login)):
        writer.writerow([u.id, u.login, u.display_name, ";".join(u.schools), codes[u.id]])
    write_private(path, buffer.getvalue())
    return path


# -- resume and undo ---------------------------------------------------------------------------------------


def _replan(run: Run, state: RunState) -> Plan:
    """Only the pending items, re-read from the ENT so nothing is done twice. An item that was in flight
    and is seen to have taken effect is this run's work (``done``: rollback undoes it); an item never sent
    but already in the wanted state was changed by someone else (``already``)."""
    ctx = run.ctx
    pending = state.pending
    fresh = targets.resolve_targets(
        ctx.driver,
        [i["key"] for i in pending],
        max_concurrency=ctx.max_concurrency or 16,
        progress=ctx.show_progress,  # the re-read of a large resume takes a while: show it
    )
    targets.check_scope(ctx.driver, fresh)
    by_id = {u.id: u for u in fresh}
    recorded = {i["key"]: i for i in pending}
    # Keep the blocked state the plan saw: resets and revokes decide on it, not on what the run did.
    users = [replace(u, blocked=bool(recorded[uid].get("blocked"))) for uid, u in by_id.items()]
    p = plan(state.op, users, state.params)
    if state.op in BATCHED:
        target = state.op == "accounts.block"
        reached = [u for u in p.to_change if by_id[u.id].blocked == target]
        p.to_change = [u for u in p.to_change if u not in reached]
        p.confirmed = [u for u in reached if u.id in state.in_flight]
        p.already = p.already + [u for u in reached if u.id not in state.in_flight]
    for uid in list(run.phases):
        # Interrupted right after the block call of a revoke or reset: the ENT shows it took effect.
        if uid not in recorded or run.phases[uid] != "sending" or uid not in by_id:
            continue
        if by_id[uid].blocked and not recorded[uid].get("blocked") and state.op not in BATCHED:
            run.phases[uid] = "blocked"
    return p


def _reverse(records: Records, state: RunState) -> Reversal | None:
    """Unblock what the run blocked (done, or in flight at an interruption: unblocking one the call never
    reached is a no-op, leaving it blocked would be the harm), never one blocked before the incident, and
    never one another open incident wants blocked."""
    was_blocked = {i["key"] for i in state.items if i.get("blocked")}
    changed = {k for k, phase in state.phases.items() if phase == "done"} | state.in_flight
    mine = sorted(k for k in changed if k not in was_blocked)
    others = intent.wanted_blocked(records.state, records.ent, besides=records.incident)
    undo = [k for k in mine if k not in others]
    if not undo:
        return None
    what = f"unblock {len(undo)} account(s) this incident blocked"
    if len(undo) < len(mine):
        what += f" ({len(mine) - len(undo)} kept blocked: another open incident wants them)"
    return Reversal(what, len(undo), lambda ctx: prepare(ctx.driver, "accounts.unblock", undo))


# -- the registered account operations ---------------------------------------------------------------


def _op(name: str, verb: str, en: str, fr: str, cap: int, why: str, undo: Undo, **kw: object) -> AccountsOp:
    return AccountsOp(name, verb, Labels(en, fr), Cap(cap, "accounts", why), undo, **kw)  # type: ignore[arg-type]


CAP_WHY = "a mistyped school or file should not reach more than a class's worth of accounts unasked"
OPERATIONS: dict[str, AccountsOp] = {
    op.name: op
    for op in (
        _op("accounts.block", "block", "accounts blocked", "comptes bloqués", 100, CAP_WHY,
            Undo("accounts.unblock", "unblocks the accounts the run blocked (never one blocked before, "
                 "nor one another open incident wants blocked)")),
        _op("accounts.unblock", "unblock", "accounts unblocked", "comptes débloqués", 100, CAP_WHY,
            Undo(None, "an unblock is itself the undo of a block; block them again with "
                 "'pcnctl accounts block' if needed")),
        _op("sessions.revoke", "revoke the sessions of", "sessions revoked", "sessions révoquées", 100,
            CAP_WHY, Undo(None, "ended sessions cannot come back", kept=True)),
        _op("accounts.reset-password", "reset the password of", "passwords reset",
            "mots de passe réinitialisés", 100, CAP_WHY,
            Undo(None, "passwords stay reset: hand over renewal codes", kept=True)),
        _op("accounts.renewal-codes", "generate renewal codes for", "renewal codes generated",
            "codes de renouvellement générés", 500,
            "codes are handed out school by school: a whole school's worth is expected",
            Undo(None, "renewal codes stay valid until used", kept=True),
            pace=Pace(8, "each code is generated by a write on the account; the codes go to people one by "
                      "one, speed does not matter", 2)),
    )
}  # fmt: skip
