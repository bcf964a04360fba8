"""Compromised accounts: block, unblock, revoke sessions, reset passwords, renewal codes; in bulk, safely.

The flow of every operation is the same, and it is the safety model of the design brief (§5):

1. **resolve** the targets (ids, logins, a file, or a school and profile selection) and refuse unknown ones;
2. **check scope** client-side (an ADML only inside its schools, never on an ADMC, never on itself);
3. **plan**: how many accounts, where, of which profiles, how many already in the wanted state;
4. **cap**: refuse above the cap before anything changes;
5. **run** under the fan-out executor, journalled item by item and audited, resumable after a crash.

Edifice facts encoded here (edifice-api.md §5): blocking drops sessions at once; there is no logout without
block, so revoking sessions is block then unblock; erasing or forcing a password change leaves sessions
alive, so resets revoke sessions first unless told not to.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pcnctl.ent import directory
from pcnctl.ent.fanout import Fanout, FanoutReport, Outcome
from pcnctl.ent.platform import EntDriver
from pcnctl.errors import PcnError, RefusedError, ServerError, UsageError
from pcnctl.models import User
from pcnctl.ops.context import RunContext
from pcnctl.progress import progress_bar
from pcnctl.records import Row
from pcnctl.state.incidents import write_private
from pcnctl.state.journal import PlanItem, RunParams, RunState

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

DEFAULT_CAPS = {
    "accounts.block": 100,
    "accounts.unblock": 100,
    "sessions.revoke": 100,
    "accounts.reset-password": 100,
    "accounts.renewal-codes": 500,
}
VERBS = {
    "accounts.block": "block",
    "accounts.unblock": "unblock",
    "sessions.revoke": "revoke the sessions of",
    "accounts.reset-password": "reset the password of",
    "accounts.renewal-codes": "generate renewal codes for",
}


# -- targets ----------------------------------------------------------------------------------------------


def read_refs_file(path: Path) -> list[str]:
    """Ids or logins from a file: CSV with an ``id`` or ``login`` column, or one per line (``#`` comments)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text", hint="export the file as CSV UTF-8") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise UsageError(
            f"{path} holds no account", hint="one id or login per line, or a CSV with an id column"
        )
    first = lines[0]
    # A one-column CSV has no delimiter: its header alone says it is one (no account is named "id").
    if "," in first or ";" in first or first.strip().lower() in ("id", "login"):
        dialect = ";" if first.count(";") > first.count(",") else ","
        reader = csv.DictReader(io.StringIO("\n".join(lines)), delimiter=dialect)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        column = "id" if "id" in fields else "login" if "login" in fields else None
        if column is None:
            raise UsageError(f"{path}: a CSV needs an 'id' or 'login' column (found: {', '.join(fields)})")
        refs = []
        for number, row in enumerate(reader, start=2):
            value = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}.get(column, "")
            if not value:
                raise UsageError(f"{path}, line {number}: empty {column}")
            refs.append(value)
        return refs
    refs = [line.strip() for line in lines]
    bad = [r for r in refs if not re.match(r"^[\w.@-]+$", r)]
    if bad:
        raise UsageError(f"{path}: {bad[0]!r} is neither a user id nor a login")
    return refs


def resolve_targets(
    driver: EntDriver,
    refs: Sequence[str] = (),
    *,
    from_file: Path | None = None,
    school: str | None = None,
    profiles: Sequence[str] = (),
    max_concurrency: int = 16,
    progress: bool = False,
) -> list[User]:
    """Every targeted account, deduplicated; any unknown reference refuses the whole command."""
    wanted = list(refs) + (read_refs_file(from_file) if from_file else [])
    if profiles and not school:
        raise UsageError("--profile selects accounts within a school: add --school UAI")
    if not wanted and not school:
        raise UsageError(
            "no account given", hint="give ids or logins, --from-file FILE, or --school UAI --profile P"
        )
    users: dict[str, User] = {}
    hints: list[str] = []
    if school:
        school_record, selected = directory.list_users(driver, school, list(profiles) or None)
        users.update((u.id, u) for u in selected)
        hints.append(school_record.id)
    unique = list(dict.fromkeys(r.strip() for r in wanted if r.strip()))
    if unique:
        users.update((u.id, u) for u in _look_up(driver, unique, hints, max_concurrency, progress))
    return sorted(users.values(), key=lambda u: (u.schools, u.login))


def _look_up(
    driver: EntDriver, refs: list[str], hints: list[str], concurrency: int, progress: bool
) -> list[User]:
    """The accounts named by ids or logins (``hints``: schools where an alias is looked for), in parallel;
    one reference unknown or out of scope refuses them all."""
    from pcnctl.errors import NotFoundError, PermissionDeniedError

    found: list[User] = []
    missing: list[str] = []
    denied: list[str] = []

    def lookup(ref: str) -> Outcome:
        try:
            user = driver.get_user(ref) if _UUID.match(ref) else driver.find_user_by_login(ref, hints)
        except NotFoundError:
            user = None
        except PermissionDeniedError:
            denied.append(ref)
            return Outcome(ref, "refused", "out of scope")
        if user is None:
            missing.append(ref)
            return Outcome(ref, "failed", "unknown")
        found.append(user)
        return Outcome(ref, "done")

    with progress_bar(len(refs), "look up accounts", enabled=progress) as advance:
        report = Fanout(
            lookup,
            key=lambda r: r,
            idempotent=True,
            max_concurrency=concurrency,
            on_outcome=lambda _o: advance(1),
        ).run(refs)
    errors = [o for o in report.outcomes if o.status == "failed" and o.detail != "unknown"]
    if errors:
        raise PcnError(f"could not look up {len(errors)} account(s): {errors[0].key}: {errors[0].detail}")
    if denied:
        raise RefusedError(
            f"{len(denied)} account(s) are outside this identity's scope: {', '.join(sorted(denied)[:5])}",
            hint="an ADML may only act inside its own schools; nothing was changed",
        )
    if missing:
        shown = ", ".join(sorted(missing)[:10]) + (" ..." if len(missing) > 10 else "")
        raise UsageError(
            f"{len(missing)} account(s) not found in this profile's scope: {shown}",
            hint="nothing was changed; fix or remove them and run again",
        )
    return found


def check_scope(driver: EntDriver, users: Sequence[User]) -> None:
    """Refuse, before any request, what the identity must not touch (some routes do not check it)."""
    ident = driver.whoami()
    if ident.user_id and any(u.id == ident.user_id for u in users):
        raise RefusedError(
            "the targets include the account pcnctl is acting as",
            hint="act on your own account from another admin profile",
        )
    mine = directory.adml_schools(driver)
    if mine is None:
        return
    outside = [u for u in users if not set(u.schools) & mine]
    admc = [u for u in users if "SUPER_ADMIN" in u.functions]
    if outside:
        raise RefusedError(
            f"{len(outside)} account(s) are outside the schools this ADML administers "
            f"(e.g. {outside[0].login} in {', '.join(outside[0].schools) or 'no school'})",
            hint="an ADML may only act inside its own schools; nothing was changed",
        )
    if admc:
        raise RefusedError(f"an ADML may not act on ADMC accounts ({admc[0].login}); nothing was changed")


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

    @property
    def schools(self) -> Counter[str]:
        return Counter(s for u in self.to_change for s in (u.schools or ("?",)))

    @property
    def profiles(self) -> Counter[str]:
        return Counter(u.profile for u in self.to_change)

    @property
    def wide(self) -> bool:
        """Wide actions make the operator type the count to confirm."""
        return len(self.schools) > 1 or len(self.to_change) > 20

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
        verb = VERBS[self.op]
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
    users = resolve_targets(
        driver,
        refs,
        from_file=from_file,
        school=school,
        profiles=profiles,
        max_concurrency=max_concurrency,
        progress=progress,
    )
    check_scope(driver, users)
    return plan(op, users, params)


def check_cap(p: Plan, cap: int | None) -> None:
    limit = DEFAULT_CAPS[p.op] if cap is None else cap
    if len(p.to_change) > limit:
        raise RefusedError(
            f"the plan would {VERBS[p.op]} {len(p.to_change)} accounts, above the cap of {limit}",
            hint=f"check the plan with --dry-run, then raise the cap with --max {len(p.to_change)}; "
            "nothing was changed",
        )


# -- run --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountResult:
    """One account's outcome in a run: done, already, refused or failed, and why."""

    user: User
    result: str
    detail: str

    def to_row(self) -> Row:
        return result_row(self.user, self.result, self.detail)


@dataclass
class OpResult:
    run: str
    op: str
    results: list[AccountResult]  # by school, then login
    report: FanoutReport
    failures_file: Path | None = None
    codes_file: Path | None = None
    codes: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> list[Row]:
        return [r.to_row() for r in self.results]

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.result for r in self.results))

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.result in ("failed", "refused"))


def _item(u: User) -> PlanItem:
    return {
        "key": u.id,
        "login": u.login,
        "profile": u.profile,
        "schools": list(u.schools),
        "blocked": u.blocked,
    }


def _step_fn(
    ctx: RunContext, op: str, run: str, params: RunParams, phases: dict[str, str], codes: dict[str, str]
) -> Callable[[PlanItem], Outcome]:
    """The per-account work of ``op``, skipping phases the journal says were already done."""
    driver = ctx.driver

    def step(item: PlanItem) -> Outcome:
        uid = item["key"]
        phase = phases.get(uid)
        toggles = op in ("accounts.block", "accounts.unblock")
        # Sent before and its answer lost: read the account before sending again.
        if toggles and phase == "sending" and driver.get_user(uid).blocked == (op == "accounts.block"):
            return Outcome(uid, "done", "the ENT shows the earlier call took effect")
        if phase in (None, "sending", "failed"):
            ctx.sending(run, uid)
            phases[uid] = "sending"
        if toggles:
            try:
                driver.block_user(uid, op == "accounts.block")
            except ServerError as exc:
                if exc.status in THROTTLED:
                    phases[uid] = "throttled"  # refused before it was done: the retry needs no re-read
                raise
        elif op == "sessions.revoke":
            if phase != "blocked":
                driver.block_user(uid, True)  # drops every session and token
                ctx.item(run, uid, "blocked")
                phases[uid] = "blocked"
            if not params.get("keep_blocked"):
                driver.block_user(uid, False)
        elif op == "accounts.reset-password":
            revoke = params.get("revoke", True) and not item.get("blocked")
            if revoke and phase not in ("blocked", "reset"):
                driver.block_user(uid, True)
                ctx.item(run, uid, "blocked")
                phases[uid] = phase = "blocked"
            if phase != "reset":
                if params.get("mode", "force-change") == "erase":
                    driver.erase_password(uid)
                else:
                    driver.force_change_password(uid)
                ctx.item(run, uid, "reset")
                phases[uid] = "reset"
            if revoke:
                driver.block_user(uid, False)
        elif op == "accounts.renewal-codes":
            codes[uid] = driver.renewal_code(item["login"])
        else:  # pragma: no cover - ops are validated before a run starts
            raise ValueError(op)
        return Outcome(uid, "done")

    return step


THROTTLED = frozenset({429, 503, 509})  # the ENT refused without doing anything
IDEMPOTENT_OPS = {"accounts.block", "accounts.unblock", "sessions.revoke", "accounts.reset-password"}


def _batch_fn(ctx: RunContext, op: str, run: str) -> Callable[[list[PlanItem]], list[Outcome]]:
    """Block or unblock a batch with ``PUT /auth/users/block`` (ADMC): one call, one outcome per account."""

    def step(batch: list[PlanItem]) -> list[Outcome]:
        ids = [str(i["key"]) for i in batch]
        for uid in ids:
            ctx.sending(run, uid)
        ctx.driver.block_users(ids, op == "accounts.block")
        return [Outcome(uid, "done") for uid in ids]

    return step


def execute(
    ctx: RunContext, p: Plan, *, run: str | None = None, phases: dict[str, str] | None = None
) -> OpResult:
    """Run a plan in the incident: journal, audit, fan-out; returns per-account results."""
    items = [_item(u) for u in p.to_change]
    if run is None:
        run = ctx.start(p.op, p.params, items + [_item(u) for u in p.already])
    labels = {u.id: u for u in p.users}
    results: list[AccountResult] = []
    for u in p.already:
        ctx.record(run, p.op, u.id, "already", "already in the wanted state", u.login)
        results.append(AccountResult(u, "already", "already in the wanted state"))
    for u in p.confirmed:
        detail = "sent before the interruption; the ENT shows it took effect"
        ctx.record(run, p.op, u.id, "done", detail, u.login)
        results.append(AccountResult(u, "done", detail))
    codes: dict[str, str] = {}

    def on_outcome(outcome: Outcome) -> None:
        user = labels[outcome.key]
        ctx.record(run, p.op, outcome.key, outcome.status, outcome.detail, user.login)
        results.append(AccountResult(user, outcome.status, outcome.detail))

    with progress_bar(len(items), VERBS[p.op], enabled=ctx.show_progress) as advance:
        fanout, work = _fanout(ctx, p, run, items, dict(phases or {}), codes, on_outcome, advance)
        try:
            report = fanout.run(work)
        except KeyboardInterrupt:
            raise ctx.interrupted(run, dict(Counter(r.result for r in results))) from None
    in_order = sorted(results, key=lambda r: (r.user.schools, r.user.login))
    result = OpResult(run, p.op, in_order, report, codes=codes)
    if codes:
        result.codes_file = _write_codes(ctx, run, [labels[k] for k in codes], codes)
    failed = [r for r in result.results if r.result in ("failed", "refused")]
    if failed:
        result.failures_file = _write_failures(ctx, run, failed)
    ctx.end(run, "partial" if failed else "completed", result.counts())
    return result


def _fanout(
    ctx: RunContext,
    p: Plan,
    run: str,
    items: list[PlanItem],
    phases: dict[str, str],
    codes: dict[str, str],
    on_outcome: Callable[[Outcome], None],
    advance: Callable[[int], None],
) -> tuple[Fanout[Any], list[Any]]:
    """The fan-out of a run and its work: an ADMC (or a service account) blocks in batches, fewer calls
    against a platform under attack; anything else goes one account per call."""
    if (
        ctx.batch_size > 0
        and p.op in ("accounts.block", "accounts.unblock")
        and ctx.identity.role
        in (
            "ADMC",
            "service",
        )
    ):
        batches = Fanout(
            _batch_fn(ctx, p.op, run),
            key=lambda batch: [str(i["key"]) for i in batch],
            idempotent=True,
            max_concurrency=max(1, ctx.max_concurrency // 4),
            initial_concurrency=2,
            rate_limit=ctx.rate_limit,
            on_outcome=on_outcome,
            on_progress=advance,
        )
        return batches, [items[i : i + ctx.batch_size] for i in range(0, len(items), ctx.batch_size)]
    single = Fanout(
        _step_fn(ctx, p.op, run, p.params, phases, codes),
        key=lambda i: str(i["key"]),
        idempotent=p.op in IDEMPOTENT_OPS,
        max_concurrency=ctx.max_concurrency,
        rate_limit=ctx.rate_limit,
        on_outcome=on_outcome,
        on_progress=advance,
    )
    return single, list(items)


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


# -- resume -----------------------------------------------------------------------------------------------


def resume_run(ctx: RunContext, state: RunState) -> OpResult:
    """Finish a run: only its pending items, re-read from the ENT so nothing is done twice. An item that
    was in flight and is seen to have taken effect is this run's work (``done``: rollback undoes it); an
    item never sent but already in the wanted state was changed by someone else (``already``)."""
    ctx.check_resumable(state)
    pending = state.pending
    fresh = resolve_targets(
        ctx.driver,
        [i["key"] for i in pending],
        max_concurrency=ctx.max_concurrency,
        progress=ctx.show_progress,  # the re-read of a large resume takes a while: show it
    )
    check_scope(ctx.driver, fresh)
    by_id = {u.id: u for u in fresh}
    recorded = {i["key"]: i for i in pending}
    # Keep the blocked state the plan saw: resets and revokes decide on it, not on what the run did.
    users = [replace(u, blocked=bool(recorded[uid].get("blocked"))) for uid, u in by_id.items()]
    p = plan(state.op, users, state.params)
    if state.op in ("accounts.block", "accounts.unblock"):
        target = state.op == "accounts.block"
        reached = [u for u in p.to_change if by_id[u.id].blocked == target]
        p.to_change = [u for u in p.to_change if u not in reached]
        p.confirmed = [u for u in reached if u.id in state.in_flight]
        p.already = p.already + [u for u in reached if u.id not in state.in_flight]
    phases = {k: v for k, v in state.phases.items() if k in recorded}
    for uid, phase in list(phases.items()):
        # Interrupted right after the block call: the ENT shows it took effect, so do not send it again.
        if phase == "sending" and uid in by_id and by_id[uid].blocked and not recorded[uid].get("blocked"):
            phases[uid] = "blocked"
    return execute(ctx, p, run=state.run, phases=phases)


# -- profile blocks (a whole profile of a school) -----------------------------------------------------------


@dataclass
class ProfilePlan:
    profile: str
    block: bool
    schools: list[Any]  # School
    users: dict[str, list[User]]  # school id -> users of the profile

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


def plan_profile_block(
    driver: EntDriver, school_refs: Sequence[str], profile: str, block: bool
) -> ProfilePlan:
    (wanted,) = directory.check_profiles([profile])
    schools = [directory.resolve_school(driver, ref) for ref in school_refs]
    users = {s.id: driver.list_users(s.id, profiles=[wanted]) for s in schools}
    return ProfilePlan(wanted, block, schools, users)


OP_PROFILE_BLOCK = "accounts.block-profile"


def execute_profile_block(ctx: RunContext, p: ProfilePlan, *, run: str | None = None) -> str:
    """Block or unblock a profile school by school; a block first saves who was already blocked, so that
    lifting it restores exactly that state (those accounts are blocked again)."""
    from pcnctl.state import snapshots
    from pcnctl.state.journal import read

    op = OP_PROFILE_BLOCK if p.block else "accounts.unblock-profile"
    items: list[PlanItem] = [{"key": s.id, "uai": s.uai, "profile": p.profile} for s in p.schools]
    fresh = run is None
    run = run or ctx.start(op, {"profile": p.profile}, items)
    previous: dict[str, list[str]] = {}
    if not p.block:
        for state in read(ctx.state, ctx.incident.id, ent=ctx.ent):
            mine = state.op == OP_PROFILE_BLOCK and state.params.get("profile") == p.profile
            if mine and snapshots.exists(ctx.state, state.run):
                previous.update(snapshots.load(ctx.state, ctx.audit, state.run))
    if p.block and fresh:
        snapshot = {s.id: sorted(u.id for u in p.users[s.id] if u.blocked) for s in p.schools}
        snapshots.save(ctx.state, ctx.audit, ctx.incident.id, ctx.ent, run, snapshot)
    for school in p.schools:
        ctx.sending(run, school.id)
        try:
            ctx.driver.block_profile(school.id, p.profile, p.block)
            for user_id in previous.get(school.id, []) if not p.block else []:
                ctx.driver.block_user(user_id, True)  # blocked before the incident: stays blocked
        except PcnError as exc:
            ctx.record(run, op, school.id, "failed", exc.message, school.uai)
            continue
        kept = len(previous.get(school.id, [])) if not p.block else 0
        detail = f"{kept} account(s) blocked before the incident kept blocked" if kept else ""
        ctx.record(run, op, school.id, "done", detail, school.uai)
    ctx.end(run, "completed", {"schools": len(p.schools)})
    return run


def resume_profile_block(ctx: RunContext, state: RunState) -> str:
    """Finish a profile block or lift: the schools left (each call sets the state, so a redo is safe)."""
    ctx.check_resumable(state)
    pending = [i["key"] for i in state.pending]
    p = plan_profile_block(ctx.driver, pending, state.params["profile"], state.op == OP_PROFILE_BLOCK)
    return execute_profile_block(ctx, p, run=state.run)
