"""The one sequence every operation runs through, whichever door opened it.

``run``: cap → nothing to do? → confirm → start (the plan sealed, approval checked) → prepare → fan-out of
the operation's units, each item journalled before its call → after (verification, follow-ups) → end
(with the verdict) → :class:`~pcnctl.ops.operation.Verdict`. ``resume``: the same from ``prepare`` on,
on the sealed plan. A Ctrl-C records the run as interrupted and raises; an ENT that keeps failing ends it
``stopped`` (resumable, exit 5). The verdict's status is the exit code (:data:`EXIT_CODES`), so a command,
a playbook step, ``incident resume`` and ``rollback`` that run the same plan end the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

from pcnctl.ent.fanout import CircuitOpenError, Fanout, FanoutReport, Outcome
from pcnctl.errors import RefusedError, RunFailedError
from pcnctl.ops.context import RunContext
from pcnctl.ops.operation import Confirmation, Door, Operation, Run, Unit, Verdict, counts
from pcnctl.ops.timing import Mark, Phase
from pcnctl.progress import progress_bar
from pcnctl.state.journal import RunState, read

P = TypeVar("P")


def check_cap(op: Operation[P], plan: P, cap: int | None) -> None:
    """Refuse, before anything changes, a plan above the operation's cap (or the operator's ``--max``)."""
    limit = op.cap.default if cap is None else cap
    count = op.todo(plan)
    if limit is not None and count > limit:
        raise RefusedError(
            f"the plan would {op.verb} {count} {op.cap.unit}, above the cap of {limit}",
            hint=f"check the plan with --dry-run, then raise the cap with --max {count}; nothing was changed",
        )


def run(op: Operation[P], plan: P, door: Door, *, cap: int | None = None) -> Verdict:
    """Run a plan from any door: the caller built it with the operation's own planning function."""
    check_cap(op, plan, cap)
    items = op.items(plan)
    changes = op.todo(plan) > 0
    if not changes and not (op.intent and items):
        return Verdict(op.name, "", "nothing", f"Nothing to do: {op.summary(plan)}", rows=op.rows(plan))
    asked = time.monotonic()
    if changes:  # a run that changes nothing is recorded without asking: it only says what is wanted
        door.confirm(op.confirmation(plan))
    confirming = time.monotonic() - asked  # the operator's time at the terminal: no phase of the run
    with door.context() as ctx:
        why = op.approval(plan) if changes else None
        run_id = ctx.start(op.name, op.params(plan), items, approval=why, parent=door.parent)
        begun = Mark.now(ctx.driver.http.stats)
        verdict = drive(op, plan, Run(ctx, run_id, op.name, items=items, follow_up=follow_up))
        if door.planned is not None:
            verdict.timing.planning = Phase.between(door.planned, begun, less=confirming)
    if not changes and verdict.ok:
        verdict.status = "nothing"
    return verdict


def resume(ctx: RunContext, state: RunState) -> Verdict:
    """Finish a run on its own sealed plan: only what is left, then its follow-ups and its end."""
    from pcnctl.ops.registry import operation

    op = operation(state.op)
    ctx.check_resumable(state)
    current = Run(
        ctx,
        state.run,
        state.op,
        dict(state.phases),
        resumed=True,
        items=list(state.items),
        follow_up=follow_up,
    )
    return drive(op, op.replan(current, state), current)


def drive(op: Operation[P], plan: P, run: Run) -> Verdict:
    """From a sealed plan to a verdict: prepare, the fan-out, the follow-ups, the end record."""
    ctx = run.ctx
    outcomes: list[Outcome] = []
    stats = ctx.driver.http.stats
    try:
        begun = Mark.now(stats)
        op.prepare(run, plan)
        run.report = _fan_out(op, run, op.units(run, plan), outcomes)
        acted = Mark.now(stats)
        verdict = op.after(run, plan, outcomes)
        waited = run.report.waited_s if run.report is not None else 0.0
        verdict.timing.writes = Phase.between(begun, acted) + Phase(waited_s=waited)
        verdict.timing.verification = Phase.between(acted, Mark.now(stats))
    except KeyboardInterrupt:
        raise ctx.interrupted(run.id, counts(outcomes)) from None
    except CircuitOpenError as exc:
        ctx.end(run.id, "stopped", counts(outcomes))
        hint = f"check the ENT ('pcnctl doctor'), then: pcnctl incident resume {ctx.incident.id}"
        done = counts(outcomes)
        stopped = Verdict(op.name, run.id, "stopped", exc.message, done, hint=hint, report=exc.report)
        stopped.incident = ctx.incident.id
        return stopped
    verdict.report, verdict.incident = run.report, ctx.incident.id
    ctx.end(run.id, verdict.status, verdict.counts, verdict.stored())
    return verdict


def _fan_out(op: Operation[P], run: Run, units: Sequence[Unit], outcomes: list[Outcome]) -> FanoutReport:
    """Each unit through the adaptive fan-out; each outcome recorded (journal and audit) as it arrives."""
    ctx = run.ctx
    labels = {k: v for u in units for k, v in u.labels.items()}

    def recorded(outcome: Outcome) -> None:
        ctx.record(run.id, op.name, outcome.key, outcome.status, outcome.detail, labels.get(outcome.key, ""))
        run.phases[outcome.key] = outcome.status
        outcomes.append(outcome)

    total = sum(len(u.keys) for u in units)
    with progress_bar(total, op.verb, enabled=ctx.show_progress and total > 0) as advance:
        fanout: Fanout[Unit] = Fanout(
            lambda unit: op.act(run, unit),
            key=lambda unit: list(unit.keys),
            idempotent=op.idempotent,
            max_concurrency=ctx.max_concurrency or op.pace.concurrency,
            initial_concurrency=op.pace.initial,
            rate_limit=ctx.rate_limit,
            on_outcome=recorded,
            on_progress=advance,
        )
        return fanout.run(list(units))


# -- doors --------------------------------------------------------------------------------------------------


@dataclass
class InContext:
    """A door with a context already open: a playbook step, a rollback (they confirmed their own way,
    before)."""

    ctx: RunContext
    parent: str = ""
    planned: Mark | None = None  # when the step's planning reads began (pcnctl.ops.timing)

    def confirm(self, confirmation: Confirmation) -> None:
        return None

    def context(self) -> AbstractContextManager[RunContext]:
        return nullcontext(self.ctx)


@dataclass
class Opening:
    """A command's door: the operator confirms, then ``opening`` opens the incident and the context."""

    confirm_fn: Callable[[Confirmation], None]
    opening: Callable[[], AbstractContextManager[RunContext]]
    parent: str = ""
    planned: Mark | None = None  # when the command's planning reads began (pcnctl.ops.timing)

    def confirm(self, confirmation: Confirmation) -> None:
        self.confirm_fn(confirmation)

    def context(self) -> AbstractContextManager[RunContext]:
        return self.opening()


# -- follow-ups and incident-wide resume ------------------------------------------------------------------


def follow_up(run: Run, op: Operation[P], plan: Callable[[], P], suffix: str) -> Verdict:
    """A follow-up run of ``run`` (a block's session revoke): started once, resumed if a kill left it
    unfinished, read back when done; its id is derived from the parent's so a resume finds it."""
    ctx, child = run.ctx, f"{run.id}.{suffix}"
    earlier = [s for s in read(ctx.state, ctx.incident.id, ent=ctx.ent) if s.run == child]
    if earlier and earlier[-1].finished:
        return stored_verdict(earlier[-1])
    if earlier:
        return resume(ctx, earlier[-1])
    built = plan()
    if op.todo(built) == 0:
        return Verdict(op.name, child, "nothing", f"Nothing to do: {op.summary(built)}")
    items = op.items(built)
    run_id = ctx.start(op.name, op.params(built), items, child, parent=run.id)
    return drive(op, built, Run(ctx, run_id, op.name, items=items, follow_up=follow_up))


def stored_verdict(state: RunState) -> Verdict:
    """The verdict a finished run's end record kept."""
    kept = state.verdict
    notes = kept.get("notes")
    opened = kept.get("open")
    result = kept.get("result")
    files = kept.get("files")
    status = state.end if state.end in ("completed", "partial", "ineffective", "stopped") else "completed"
    return Verdict(
        state.op,
        state.run,
        status,  # type: ignore[arg-type]  # one of the statuses checked above
        str(kept.get("summary", "")),
        counts=state.counts(),
        notes=[str(n) for n in notes] if isinstance(notes, list) else [],
        open=[str(n) for n in opened] if isinstance(opened, list) else [],
        result=result if isinstance(result, dict) else {},
        files={str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {},
    )


def unfinished(runs: Sequence[RunState], ent: str | None = None) -> list[RunState]:
    """Runs an interruption (or a stop) left to finish, of one ENT when given; follow-ups are finished by
    their parent's resume."""
    from pcnctl.ops.registry import OPERATIONS

    return [
        r
        for r in runs
        if r.op in OPERATIONS
        and not r.finished
        and r.end != "rolled-back"
        and not r.meta.get("parent")
        and (ent is None or r.ent == ent)
    ]


def resume_all(ctx: RunContext, runs: Sequence[RunState]) -> Iterator[Verdict]:
    """Resume each run in turn; a run that fails or stops does not keep the others from being resumed
    (each one's verdict says how it ended, the caller exits with the worst)."""
    for state in runs:
        fresh = [s for s in read(ctx.state, ctx.incident.id, ent=ctx.ent) if s.run == state.run]
        if fresh and fresh[-1].finished:
            continue
        yield resume(ctx, fresh[-1] if fresh else state)


def worst(verdicts: Sequence[Verdict]) -> Verdict | None:
    """The verdict whose exit code is the highest: what a door that ran several exits with."""
    failing = [v for v in verdicts if not v.ok]
    return max(failing, key=lambda v: int(v.exit_code)) if failing else None


def failed(verdict: Verdict) -> RunFailedError:
    """The error a door raises for a verdict that is not ok: the message, the hint, the exit code."""
    return RunFailedError(verdict.summary, exit_code=verdict.exit_code, hint=verdict.hint or None)
