"""The operations a playbook step can call: the same core functions the commands use.

Each operation declares its parameters (with types), whether it changes anything, whether it always needs
an approval, and the results later steps may use. In check mode (``playbook plan``) read-only operations run
for real against the ENT and mutating ones only plan, returning the same result fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcnctl.errors import PcnError, PlaybookError
from pcnctl.forensics.hunt import op_hunt as hunt_op
from pcnctl.playbooks.params import StepParams
from pcnctl.records import JsonObject, JsonValue

if TYPE_CHECKING:
    from pcnctl.ent.platform import EntDriver
    from pcnctl.forensics.mailstore import Mailstore
    from pcnctl.forensics.search import SearchResult
    from pcnctl.ops.context import RunContext
    from pcnctl.ops.operation import Operation, Verdict
    from pcnctl.ops.timing import Mark, Timing
    from pcnctl.state.incidents import Incident
    from pcnctl.state.journal import RunParams, RunState
    from pcnctl.state.store import StateStore


@dataclass(frozen=True)
class Param:
    type: str  # string | int | float | bool | list
    required: bool = False
    default: JsonValue = None


@dataclass
class Env:
    """What a step runs with: the connection, the incident, the mailstore, and the run's mode."""

    driver: EntDriver
    incident: Incident | None  # None in check mode
    ctx: RunContext | None  # None in check mode
    state: StateStore  # the home's records (read in check mode too)
    mailstore: Mailstore | None
    check: bool
    workdir: Path  # where saved searches go: the incident, or a scratch directory in check mode
    notes: list[str] = field(default_factory=list)
    planned: Mark | None = None  # when the step began: its operation's planning reads start there
    timing: Timing | None = None  # the step's run's timing, once it ran (pcnctl.ops.timing)

    def run(self, op: Operation[Any], plan: object, cap: int | None = None) -> Verdict | None:
        """A mutating step: in check mode the plan (cap checked, summary noted, None); otherwise the
        operation's one sequence, whose verdict fails the step, with its exit code, when it is not ok.
        A step resumed after its run finished finds nothing to do: the run's own verdict is its result."""
        from pcnctl.ops import runner

        runner.check_cap(op, plan, cap)
        if self.check or self.ctx is None:
            self.notes.append(op.summary(plan))
            return None
        earlier = _earlier_run(self.ctx, op.name) if op.todo(plan) == 0 else None
        verdict = (
            runner.stored_verdict(earlier)
            if earlier
            else runner.run(
                op, plan, runner.InContext(self.ctx, planned=self.planned), cap=cap
            )  # max checked
        )
        self.timing = verdict.timing
        self.notes += verdict.notes + [f"still open: {line}" for line in verdict.open]
        if not verdict.ok:
            raise runner.failed(verdict)
        return verdict


def _earlier_run(ctx: RunContext, op: str) -> RunState | None:
    """The finished run of ``op`` this very step started before an interruption, if any."""
    from pcnctl.state.journal import read

    mine = [
        r
        for r in read(ctx.state, ctx.incident.id, ent=ctx.ent)
        if r.meta.get("step") == ctx.step and r.op == op and not r.meta.get("parent") and r.finished
    ]
    return mine[-1] if mine else None


OpFn = Callable[[Env, StepParams], JsonObject]


@dataclass(frozen=True)
class Op:
    fn: OpFn
    params: dict[str, Param]
    produces: tuple[str, ...]
    mutating: bool
    approval: bool  # always needs an approval (destructive or wide)
    summary: str


def _ms(text: str | None, future: bool = False) -> int | None:
    from pcnctl.timespec import parse_when

    return int(parse_when(text, future=future).timestamp() * 1000) if text else None


def op_search(env: Env, p: StepParams) -> JsonObject:
    """``op: search``: the matches saved for later steps (purge, export, hunt). Without ``states``: SENT,
    RECALL and SCHEDULE; the matches of the states left out are counted in the step's summary."""
    from pcnctl.forensics import search as core
    from pcnctl.timespec import parse_when

    query = core.Query(
        since=parse_when(since, future=False) if (since := p.text("since")) else None,
        until=parse_when(until, future=False) if (until := p.text("until")) else None,
        senders=p.texts("from"),
        subject=p.text("subject"),
        body=p.text("body"),
        regex=p.text("regex"),
        has_attachment=p.flag("has_attachment"),
        like=p.text("like"),
        threshold=p.number("similarity") or 0.4,
        states=core.parse_states(p.texts("states")),
    )
    core.check_query(query)  # a pattern that can backtrack for ever stops the step before it reads
    if env.mailstore is None:
        raise PlaybookError("the search step needs a mailstore: set --mailstore on the profile")
    result = core.run(env.driver, env.mailstore, query)
    env.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = env.workdir / f"search-{int(time.time() * 1000)}.json"
    result.save(path, profile=env.driver.profile.name, url=env.driver.profile.url)
    if result.left_out:
        env.notes.append(_left_out(result))
    senders = sorted({m.message.sender for m in result.matches})
    schools = sorted({s for m in result.matches for s in m.schools})
    sender_schools = sorted({s for m in result.matches for s in m.sender_schools})
    return {
        "messages": [m.message.id for m in result.matches],
        "count": len(result.matches),
        "senders": senders,
        "schools": schools,
        "sender_schools": sender_schools,
        "saved": str(path),
    }


def _left_out(result: SearchResult) -> str:
    """The step's summary when states were left out that hold matches (the runner prints the notes)."""
    from pcnctl.forensics.mailstore import STATES
    from pcnctl.forensics.search import describe_left_out

    left = result.left_out_states()
    wanted = [s for s in STATES if s in result.query.states or s in left]
    draft = "; a draft was never sent: report it, do not purge it" if "DRAFT" in left else ""
    return (
        f"count={len(result.matches)}; also matching, left out: {describe_left_out(result.left_out)} "
        f"(states: [{', '.join(wanted)}] lists them{draft})"
    )


def op_senders(env: Env, p: StepParams) -> JsonObject:
    from pcnctl.forensics.senders import Thresholds, senders

    rows = senders(
        env.driver,
        _ms(p.text("since") or "1h") or 0,
        int(datetime.now(UTC).timestamp() * 1000),
        store=env.mailstore,
        thresholds=Thresholds(p.integer("mass_messages") or 20),
    )
    flagged = [r for r in rows if r["mass"]]
    return {"accounts": [r["id"] for r in flagged], "count": len(flagged), "all": [r["id"] for r in rows]}


# Done once per account and incident by a playbook: a second reset would erase the password the owner has
# set since with the code, and a second code voids the one already handed out. The commands
# (`pcnctl accounts reset-password`, `renewal-codes`) always act, for when another one is wanted.
ONCE_PER_INCIDENT = {"accounts.reset-password": "reset-password", "accounts.renewal-codes": "renewal-codes"}


def _done_in_incident(env: Env, op: str) -> set[str]:
    """The accounts an earlier run of ``op`` in this incident, on this ENT, finished."""
    if op not in ONCE_PER_INCIDENT or env.incident is None:
        return set()
    from pcnctl.state import journal
    from pcnctl.state.store import ent_key

    runs = journal.read(env.state, env.incident.id, ent=ent_key(env.driver.profile.url))
    return journal.done_keys(runs, op)


def _accounts(env: Env, op: str, p: StepParams, params: RunParams) -> JsonObject:
    from pcnctl.ops import accounts

    ids = list(dict.fromkeys(p.texts("accounts")))
    if not ids:
        return {"accounts": [], "count": 0}
    plan = accounts.prepare(env.driver, op, ids, params)
    earlier = _done_in_incident(env, op) & {u.id for u in plan.to_change}
    if earlier:
        plan = accounts.leave_alone(plan, earlier)
        env.notes.append(
            f"{len(earlier)} account(s) already done by an earlier run in incident "
            f"{env.incident.id if env.incident else ''}: left alone "
            f"(`pcnctl accounts {ONCE_PER_INCIDENT[op]}` does it again)"
        )
    verdict = env.run(accounts.OPERATIONS[op], plan, p.integer("max") or None)  # the commands' caps
    if verdict is None:
        return {"accounts": [u.id for u in plan.to_change], "count": len(plan.to_change)}
    return verdict.result


def op_block_accounts(env: Env, p: StepParams) -> JsonObject:
    return _accounts(env, "accounts.block", p, {})


def op_unblock_accounts(env: Env, p: StepParams) -> JsonObject:
    return _accounts(env, "accounts.unblock", p, {})


def op_revoke_sessions(env: Env, p: StepParams) -> JsonObject:
    return _accounts(env, "sessions.revoke", p, {"keep_blocked": bool(p.flag("keep_blocked"))})


def op_reset_password(env: Env, p: StepParams) -> JsonObject:
    return _accounts(
        env, "accounts.reset-password", p, {"mode": p.text("mode") or "force-change", "revoke": True}
    )


def op_renewal_codes(env: Env, p: StepParams) -> JsonObject:
    out = _accounts(env, "accounts.renewal-codes", p, {})
    # In check mode there is no incident yet: the codes would go to its codes/ directory.
    out["file"] = str(env.incident.path / "codes") if env.incident is not None else "(the incident's codes/)"
    return out


def op_block_messaging(env: Env, p: StepParams) -> JsonObject:
    from pcnctl.ops import messaging, messaging_plan
    from pcnctl.timespec import parse_when

    schools = p.texts("schools")
    everywhere = bool(p.flag("all_schools"))
    if not schools and not everywhere:
        return {"schools": [], "count": 0}
    verify = p.flag("verify")
    plan = messaging_plan.plan_block(
        env.driver,
        p.text("profile") or "Student",
        [] if everywhere else schools,
        all_schools=everywhere,
        method=p.text("method") or "communication",
        until=parse_when(until) if (until := p.text("until")) else None,
        reason=p.text("reason") or "",
        state=env.state,
        incident=env.incident.id if env.incident is not None else None,
        revoke_sessions=bool(p.flag("revoke_sessions")),
        verify=True if verify is None else verify,
        keep_relatives=bool(p.flag("keep_relatives")),
        mailstore=env.mailstore,
    )
    verdict = env.run(messaging.BLOCK, plan)
    if verdict is None:
        return {"schools": [s.school.uai for s in plan.to_change], "count": len(plan.to_change)}
    return verdict.result


def op_block_profile(env: Env, p: StepParams) -> JsonObject:
    """The login lever on whole profiles of schools (``accounts block-profile``), or its lift."""
    from pcnctl.ops import profile_block

    schools = p.texts("schools")
    if not schools:
        return {"schools": [], "count": 0}
    lift = bool(p.flag("unblock"))
    plan = profile_block.plan_profile_block(env.driver, schools, p.text("profile") or "Student", not lift)
    verdict = env.run(profile_block.OPERATIONS[profile_block.LIFT if lift else profile_block.BLOCK], plan)
    if verdict is None:
        return {"schools": [s.uai for s in plan.schools], "count": len(plan.schools)}
    return verdict.result


def op_unblock_messaging(env: Env, p: StepParams) -> JsonObject:
    from pcnctl.ops.messaging_lift import LIFT, plan_lift
    from pcnctl.state import blocks as registry
    from pcnctl.state.store import ent_key

    incident = p.text("incident") or (env.incident.id if env.incident is not None else None)
    if incident is None:  # check mode, and no incident named: the run's own one does not exist yet
        env.notes.append("would lift the messaging blocks of the incident the run is recorded in")
        return {"schools": [], "count": 0}
    ent = ent_key(env.driver.profile.url)
    blocks = [b for b in registry.active_blocks(env.state, ent) if b.incident == incident]
    plan = plan_lift(blocks)
    verdict = env.run(LIFT, plan)
    if verdict is None:
        return {"schools": [b.uai for b in blocks], "count": len(blocks)}
    return verdict.result


def op_purge(env: Env, p: StepParams) -> JsonObject:
    from pcnctl.forensics.search import load_saved
    from pcnctl.ops import purge

    if env.mailstore is None:
        raise PlaybookError("the purge step needs a mailstore: set --mailstore on the profile")
    saved = load_saved(Path(str(p.value("search"))))
    plan = purge.plan(env.mailstore, saved)
    verdict = env.run(purge.PURGE, plan, p.integer("max") or None)
    if verdict is None:
        return {"purged": len(plan.ids), "leftovers": 0, "evidence": ""}
    return verdict.result if verdict.result else {"purged": 0, "leftovers": 0, "evidence": ""}


def op_export(env: Env, p: StepParams) -> JsonObject:
    from pcnctl.forensics.search import load_saved
    from pcnctl.output import FORMATS, render, render_excel_csv
    from pcnctl.reports import export

    fmt = p.text("format") or "csv"
    if fmt not in (*FORMATS, "xlsx"):
        raise PlaybookError(f"export: unknown format {fmt!r} (csv, json, jsonl, markdown, table or xlsx)")
    if fmt == "xlsx" and p.flag("excel"):
        raise PlaybookError("export: excel (a CSV for Excel) and format: xlsx (a workbook): choose one")
    if search := p.text("search"):
        matches = load_saved(Path(search))["matches"]
    else:
        matches = export.matches_from_incident(env.incident) if env.incident is not None else []
    affected = export.affected_schools(env.driver, matches, env.state)
    rows = [school.to_row() for school in affected]
    path = env.workdir.parent / f"affected-schools.{'md' if fmt == 'markdown' else fmt}"
    if env.check:
        return {"file": str(path), "schools": [s.uai for s in affected], "count": len(rows)}
    if fmt == "xlsx":
        from pcnctl.reports import xlsx

        xlsx.write_private(path, export.affected_workbook(affected))
        return {"file": str(path), "schools": [s.uai for s in affected], "count": len(rows)}
    with path.open("w", encoding="utf-8", newline="") as fh:
        if p.flag("excel"):
            render_excel_csv(rows, export.COLUMNS, fh)
        else:
            render(rows, fmt, export.COLUMNS, stream=fh)
    return {"file": str(path), "schools": [s.uai for s in affected], "count": len(rows)}


def op_recipients(env: Env, p: StepParams) -> JsonObject:
    """Who received the messages of a saved search (from their mailbox copies), written for the schools to
    warn: one row per recipient with their schools and how many of the messages they received."""
    import csv
    import io

    from pcnctl.files import write_private
    from pcnctl.forensics.search import load_saved

    received: dict[str, tuple[set[str], set[str]]] = {}
    for m in load_saved(Path(str(p.value("search"))))["matches"]:
        for user, uais in (m.get("recipient_schools") or {}).items():
            messages, schools = received.setdefault(user, (set(), set()))
            messages.add(m["id"])
            schools.update(uais)
    path = env.workdir.parent / f"recipients-{int(time.time() * 1000)}.csv"
    if not env.check:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["id", "schools", "messages"])
        for user, (messages, schools) in sorted(received.items()):
            writer.writerow([user, ";".join(sorted(schools)), len(messages)])
        write_private(path, buffer.getvalue())
    return {"file": str(path), "accounts": sorted(received), "count": len(received)}


def op_notify(env: Env, p: StepParams) -> JsonObject:
    from pcnctl.ent import directory
    from pcnctl.ops import banners

    schools = [directory.resolve_school(env.driver, s) for s in p.texts("schools")]
    banner = banners.Banner(
        p.text("title") or "Information",
        str(p.value("message")),
        tuple(p.texts("profiles") or ["Teacher", "Personnel"]),
    )
    plan = banners.plan_banner(schools, banner, _reached_by_step(env))
    env.run(banners.BANNER, plan)
    return {"schools": [s.uai for s in schools], "count": len(schools)}


def _reached_by_step(env: Env) -> frozenset[str]:
    """Schools an interrupted run of this very step reached, or may have (a banner is never posted twice;
    a lost answer was reported by the resume)."""
    from pcnctl.ops import banners
    from pcnctl.state.journal import read

    if env.ctx is None or env.incident is None:
        return frozenset()
    earlier = [
        r for r in read(env.state, env.incident.id, ent=env.ctx.ent) if r.meta.get("step") == env.ctx.step
    ]
    return frozenset(k for r in earlier if r.op == banners.OP for k in r.phases)


def op_wait(env: Env, p: StepParams) -> JsonObject:
    seconds = p.number("seconds") or 0
    if not env.check:
        time.sleep(seconds)
    env.notes.append(f"{'would wait' if env.check else 'waited'} {seconds:g} s")
    return {}


def op_assert(env: Env, p: StepParams) -> JsonObject:
    from pcnctl.playbooks.expressions import condition

    value, comparator, than = p.value("value"), p.text("op") or "gt", p.value("than", 0)
    if not condition({"value": value, "op": comparator, "than": than}, {}):
        raise PcnError(p.text("message") or f"assertion failed: {value!r} {p.text('op') or 'gt'} {than!r}")
    env.notes.append(f"holds: {value!r} {comparator} {than!r}")
    return {}


STR, INT, FLT, BOOL, LIST, ANY = "string", "int", "float", "bool", "list", "any"
OPS: dict[str, Op] = {
    "search": Op(
        op_search,
        {
            "since": Param(STR),
            "until": Param(STR),
            "from": Param(LIST),
            "subject": Param(STR),
            "body": Param(STR),
            "regex": Param(STR),
            "has_attachment": Param(BOOL),
            "like": Param(STR),
            "similarity": Param(FLT),
            "states": Param(LIST),
        },
        ("messages", "count", "senders", "schools", "sender_schools", "saved"),
        False,
        False,
        "search the mailstore",
    ),
    "senders": Op(
        op_senders,
        {"since": Param(STR), "mass_messages": Param(INT)},
        ("accounts", "count", "all"),
        False,
        False,
        "accounts that sent in bulk",
    ),
    "hunt": Op(
        hunt_op,
        {
            "since": Param(STR),
            "until": Param(STR),
            "baseline": Param(STR),
            "messages": Param(LIST),
            "search": Param(STR),
            "accounts": Param(LIST),
            "ips": Param(LIST),
            "agents": Param(LIST),
            "min_score": Param(FLT),
            "max": Param(INT),
        },
        ("accounts", "count", "silent", "file"),
        False,
        False,
        "every account sharing the attacker's traces",
    ),
    "block_accounts": Op(
        op_block_accounts,
        {"accounts": Param(LIST, True), "max": Param(INT)},
        ("accounts", "count"),
        True,
        False,
        "block accounts",
    ),
    "unblock_accounts": Op(
        op_unblock_accounts,
        {"accounts": Param(LIST, True), "max": Param(INT)},
        ("accounts", "count"),
        True,
        False,
        "unblock accounts",
    ),
    "revoke_sessions": Op(
        op_revoke_sessions,
        {"accounts": Param(LIST, True), "keep_blocked": Param(BOOL), "max": Param(INT)},
        ("accounts", "count"),
        True,
        False,
        "end sessions",
    ),
    "reset_password": Op(
        op_reset_password,
        {"accounts": Param(LIST, True), "mode": Param(STR), "max": Param(INT)},
        ("accounts", "count"),
        True,
        False,
        "reset passwords",
    ),
    "renewal_codes": Op(
        op_renewal_codes,
        {"accounts": Param(LIST, True), "max": Param(INT)},
        ("accounts", "count", "file"),
        True,
        False,
        "renewal codes",
    ),
    "block_messaging": Op(
        op_block_messaging,
        {
            "profile": Param(STR),
            "schools": Param(LIST),
            "all_schools": Param(BOOL),
            "method": Param(STR),
            "until": Param(STR),
            "reason": Param(STR),
            "revoke_sessions": Param(BOOL),
            "verify": Param(BOOL),
            "keep_relatives": Param(BOOL),
        },
        ("schools", "count"),
        True,
        True,
        "block messaging",
    ),
    "block_profile": Op(
        op_block_profile,
        {"schools": Param(LIST, True), "profile": Param(STR), "unblock": Param(BOOL)},
        ("schools", "count"),
        True,
        True,
        "block (or unblock) a profile's logins in schools",
    ),
    "unblock_messaging": Op(
        op_unblock_messaging,
        {"incident": Param(STR)},
        ("schools", "count"),
        True,
        False,
        "lift messaging blocks",
    ),
    "purge": Op(
        op_purge,
        {"search": Param(STR, True), "max": Param(INT)},
        ("purged", "leftovers", "evidence"),
        True,
        True,
        "purge messages",
    ),
    "export": Op(
        op_export,
        {"search": Param(STR), "format": Param(STR), "excel": Param(BOOL)},
        ("file", "schools", "count"),
        False,
        False,
        "export the affected schools",
    ),
    "recipients": Op(
        op_recipients,
        {"search": Param(STR, True)},
        ("file", "accounts", "count"),
        False,
        False,
        "list who received the messages of a search",
    ),
    "notify": Op(
        op_notify,
        {
            "schools": Param(LIST, True),
            "title": Param(STR),
            "message": Param(STR, True),
            "profiles": Param(LIST),
        },
        ("schools", "count"),
        True,
        False,
        "banner in schools",
    ),
    "wait": Op(op_wait, {"seconds": Param(FLT, True)}, (), False, False, "wait"),
    "assert": Op(
        op_assert,
        {"value": Param(ANY, True), "op": Param(STR), "than": Param(ANY), "message": Param(STR)},
        (),
        False,
        False,
        "stop unless true",
    ),
}
