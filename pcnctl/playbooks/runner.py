"""Running a playbook: check mode (plan), step-by-step runs in an incident with approvals, and resume.

The journal gets a ``playbook`` record (file, its SHA-256, inputs, identity) and a ``step`` record per step
with its status and result, so ``playbook resume`` restores the results of finished steps and continues
with the first unfinished one. The runs that step had started are finished first, each on its own plan
and snapshot, with its follow-ups (:func:`pcnctl.ops.runner.resume`); then the step's operation is planned
again, finds that work done, and takes the finished run's verdict as its result. A step that needs
approval and has none stops the run *before* it: nothing of that step happens.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pcnctl.errors import InterruptedRunError, PcnError, PlaybookError, RefusedError, RunFailedError
from pcnctl.ops.timing import Mark, Phase, Timing
from pcnctl.playbooks.expressions import condition, resolve
from pcnctl.playbooks.model import Playbook, Step
from pcnctl.playbooks.ops import OPS, Env
from pcnctl.playbooks.params import StepParams
from pcnctl.records import JsonObject, Row

if TYPE_CHECKING:
    from pcnctl.ent.platform import EntDriver
    from pcnctl.forensics.mailstore import Mailstore
    from pcnctl.ops.context import RunContext
    from pcnctl.state.journal import RunMeta
    from pcnctl.state.store import StateStore

Confirm = Callable[[Step, StepParams], bool]


class ApprovalMissing(RefusedError):
    """A step needs an approval the run does not have; the run stopped before it."""


@dataclass
class StepReport:
    id: str
    op: str
    status: str  # done | skipped | failed | planned | awaiting-approval
    summary: str
    result: JsonObject = field(default_factory=dict)
    timing: Timing = field(default_factory=Timing)  # where the step's time went (pcnctl.ops.timing)

    def to_row(self) -> Row:
        return {"step": self.id, "op": self.op, "status": self.status, "summary": self.summary}


@dataclass
class PlaybookRun:
    """A playbook run as the journal tells it: what ``playbook resume`` needs to continue it."""

    run: str
    file: str
    sha256: str
    inputs: JsonObject
    meta: RunMeta
    results: dict[str, JsonObject] = field(default_factory=dict)  # finished steps (done or skipped)
    end: str | None = None


def coerce_inputs(playbook: Playbook, given: dict[str, str]) -> JsonObject:
    """Typed inputs from ``--input name=value`` and the declared defaults."""
    unknown = set(given) - set(playbook.inputs)
    if unknown:
        raise PlaybookError(
            f"unknown input(s) {', '.join(sorted(unknown))}",
            hint=f"this playbook takes: {', '.join(sorted(playbook.inputs)) or 'none'}",
        )
    values: JsonObject = {}
    for name, spec in playbook.inputs.items():
        if name not in given:
            if "default" not in spec:
                raise PlaybookError(f"input {name!r} is required", hint=f"pass --input {name}=VALUE")
            values[name] = spec["default"]
            continue
        raw, kind = given[name], spec["type"]
        try:
            if kind == "int":
                values[name] = int(raw)
            elif kind == "float":
                values[name] = float(raw)
            elif kind == "bool":
                if raw.lower() not in ("true", "false", "yes", "no", "1", "0"):
                    raise ValueError(raw)
                values[name] = raw.lower() in ("true", "yes", "1")
            elif kind == "list":
                values[name] = [v.strip() for v in raw.split(",") if v.strip()]
            else:
                values[name] = raw
        except ValueError:
            raise PlaybookError(f"input {name!r} must be a {kind}, not {raw!r}") from None
    return values


def _summary(op: str, result: JsonObject, notes: list[str]) -> str:
    if notes:
        return "; ".join(notes)
    parts = [
        f"{k}={v if not isinstance(v, list) else len(v)}"
        for k, v in result.items()
        if k in ("count", "purged", "leftovers", "file")
    ]
    return ", ".join(parts)


def needs_approval(step: Step) -> bool:
    return step.approval or OPS[step.op].approval


def plan(
    playbook: Playbook,
    inputs: JsonObject,
    driver: EntDriver,
    mailstore: Mailstore | None,
    state: StateStore,
) -> list[StepReport]:
    """Check mode: read-only steps run, mutating steps plan; nothing changes on the ENT."""
    reports = []
    results: JsonObject = {}
    context: JsonObject = {"inputs": inputs, "steps": results, "incident": {"id": "(plan)"}}
    nothing: set[str] = set()  # steps skipped for want of anything to act on, and those that need them
    with tempfile.TemporaryDirectory(prefix="pcnctl-plan-") as scratch:
        for step in playbook.steps:
            if not condition(step.when, context):
                results[step.id] = _nothing(step)
                reports.append(StepReport(step.id, step.op, "skipped", "condition false"))
                continue
            env = Env(driver, None, None, state, mailstore, True, Path(scratch) / "searches")
            empty = [ref for ref in _step_refs(step.params) if ref in nothing]
            try:
                if empty:
                    raise PlaybookError(f"nothing to act on: step {empty[0]!r} had nothing to act on either")
                params = _params(step, context)
            except PlaybookError as exc:  # an earlier step found nothing: say so, plan the rest
                reports.append(StepReport(step.id, step.op, "skipped", exc.message))
                results[step.id] = _nothing(step)
                nothing.add(step.id)
                continue
            try:
                result = OPS[step.op].fn(env, params)
            except PcnError as exc:
                reports.append(StepReport(step.id, step.op, "failed", exc.message))
                results[step.id] = _nothing(step)
                continue
            results[step.id] = result
            status = "planned" if OPS[step.op].mutating else "done"
            approval = " (needs approval)" if needs_approval(step) else ""
            reports.append(
                StepReport(step.id, step.op, status, _summary(step.op, result, env.notes) + approval, result)
            )
    return reports


_STEP_REF = re.compile(r"\$\{\{\s*steps\.([\w-]+)")


def _nothing(step: Step) -> JsonObject:
    """The result of a step that did not run: every field it produces, empty."""
    return {k: [] for k in OPS[step.op].produces}


def _params(step: Step, context: JsonObject) -> StepParams:
    resolved = resolve(step.params, context)  # a mapping resolves to a mapping
    return StepParams(resolved if isinstance(resolved, Mapping) else {})


def _step_refs(params: JsonObject) -> list[str]:
    """The steps whose results ``params`` refer to."""
    return _STEP_REF.findall(json.dumps(params, default=str))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(
    playbook: Playbook,
    inputs: JsonObject,
    ctx: RunContext,
    mailstore: Mailstore | None,
    *,
    approvals: set[str] | None = None,
    approve_all: bool = False,
    confirm: Confirm | None = None,
    resume_from: PlaybookRun | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> list[StepReport]:
    """Run the playbook in ``ctx``'s incident; returns a report per step."""
    done = resume_from.results if resume_from else {}
    execution = _Execution(
        playbook,
        ctx,
        mailstore,
        resume_from.run if resume_from else f"playbook-{secrets.token_hex(4)}",
        dict(done),
        on_step,
        resuming=bool(resume_from),  # the first step started may have runs of its own to finish
    )
    if not resume_from:
        execution.begin(inputs)
    context: JsonObject = {"inputs": inputs, "steps": execution.results, "incident": {"id": ctx.incident.id}}
    for step in playbook.steps:
        if step.id in done:
            execution.reports.append(
                StepReport(step.id, step.op, "done", "done before the interruption", done[step.id])
            )
        elif not condition(step.when, context):
            execution.skip(step)
        else:
            params = _params(step, context)
            execution.approve(step, params, approve_all or step.id in (approvals or set()), confirm)
            execution.execute(step, params)
    execution.end()
    return execution.reports


@dataclass
class _Execution:
    """One playbook run in an incident: its journal records, the steps' results and their reports."""

    playbook: Playbook
    ctx: RunContext
    mailstore: Mailstore | None
    run_id: str
    results: JsonObject
    on_step: Callable[[StepReport], None] | None
    resuming: bool
    reports: list[StepReport] = field(default_factory=list)

    def begin(self, inputs: JsonObject) -> None:
        playbook = self.playbook
        self.ctx.journal.append(
            {
                "t": "playbook",
                "run": self.run_id,
                "file": str(playbook.path.resolve()),
                "sha256": _sha256(playbook.path),
                "name": playbook.name,
                "inputs": inputs,
                "meta": self.ctx.meta(),
            }
        )
        self.ctx.log(self.run_id, "playbook:start", playbook.name, "started")

    def end(self) -> None:
        self.ctx.journal.append({"t": "playbook-end", "run": self.run_id, "status": "completed"})
        self.ctx.log(self.run_id, "playbook:end", self.playbook.name, "completed")

    def report(self, report: StepReport) -> None:
        self.reports.append(report)
        if self.on_step:
            self.on_step(report)

    def skip(self, step: Step) -> None:
        result = self.results[step.id] = _nothing(step)
        self.ctx.journal.append(
            {"t": "step", "run": self.run_id, "step": step.id, "status": "skipped", "result": result}
        )
        self.report(StepReport(step.id, step.op, "skipped", "condition false", result))

    def approve(self, step: Step, params: StepParams, given: bool, confirm: Confirm | None) -> None:
        """A step that needs an approval goes on only with one (the command line's, or the terminal's)."""
        ctx = self.ctx
        if not needs_approval(step):
            return
        if given:
            ctx.log(self.run_id, "playbook:approval", step.id, "approved on the command line")
            return
        if confirm is None or not confirm(step, params):
            ctx.journal.append(
                {"t": "step", "run": self.run_id, "step": step.id, "status": "awaiting-approval"}
            )
            raise ApprovalMissing(
                f"step {step.id!r} ({OPS[step.op].summary}) needs an approval: the run stopped before it",
                hint=f"approve it with --approve {step.id} (or at a terminal); finished steps are kept: "
                f"pcnctl playbook resume {ctx.incident.id} --approve {step.id}",
            )
        ctx.log(self.run_id, "playbook:approval", step.id, "approved at the terminal")

    def execute(self, step: Step, params: StepParams) -> None:
        """The step's operation, journalled: done, failed (the run stops unless on_error says continue) or
        interrupted (resumable)."""
        ctx = self.ctx
        ctx.journal.append({"t": "step", "run": self.run_id, "step": step.id, "status": "start"})
        env = Env(
            ctx.driver, ctx.incident, ctx, ctx.state, self.mailstore, False, ctx.incident.path / "searches"
        )
        ctx.step = f"{self.run_id}/{step.id}"
        env.planned = Mark.now(ctx.driver.http.stats)
        try:
            if self.resuming:
                _finish_runs(ctx)
                self.resuming = False
            result = OPS[step.op].fn(env, params)
        except (KeyboardInterrupt, InterruptedRunError):
            ctx.journal.append({"t": "step", "run": self.run_id, "step": step.id, "status": "interrupted"})
            raise InterruptedRunError(
                f"interrupted during step {step.id!r} of playbook {self.playbook.name!r}; finished steps are "
                "kept",
                hint=f"resume it: pcnctl playbook resume {ctx.incident.id}",
            ) from None
        except PcnError as exc:
            self.failed(step, exc)
            return
        ctx.step = ""
        self.results[step.id] = result
        stored = json.loads(json.dumps(result, default=str))
        ctx.journal.append(
            {"t": "step", "run": self.run_id, "step": step.id, "status": "done", "result": stored}
        )
        # A step that runs no operation (a search, the hunt) only reads: all of it is planning.
        timing = env.timing or Timing(planning=Phase.between(env.planned, Mark.now(ctx.driver.http.stats)))
        summary = _summary(step.op, result, env.notes)
        self.report(StepReport(step.id, step.op, "done", summary, result, timing))

    def failed(self, step: Step, exc: PcnError) -> None:
        ctx = self.ctx
        ctx.step = ""
        ctx.journal.append(
            {"t": "step", "run": self.run_id, "step": step.id, "status": "failed", "detail": exc.message}
        )
        self.report(StepReport(step.id, step.op, "failed", exc.message))
        if step.on_error == "continue":
            self.results[step.id] = _nothing(step)
            return
        ctx.journal.append({"t": "playbook-end", "run": self.run_id, "status": "failed"})
        error = PlaybookError(f"step {step.id!r} failed: {exc.message}", hint=exc.hint)
        if isinstance(exc, RunFailedError):
            error.exit_code = exc.exit_code  # a run's verdict exits the same from a step as from a command
        raise error from None


def _finish_runs(ctx: RunContext) -> None:
    """Finish the runs this step started before an interruption, each on its own plan and snapshot, with
    its follow-ups; a run that ends badly fails the step as it would have the first time."""
    from pcnctl.ops import runner
    from pcnctl.state.journal import read

    mine = [r for r in read(ctx.state, ctx.incident.id, ent=ctx.ent) if r.meta.get("step") == ctx.step]
    verdicts = list(runner.resume_all(ctx, runner.unfinished(mine)))
    worst = runner.worst(verdicts)
    if worst is not None:
        raise runner.failed(worst)


def unfinished(state: StateStore, incident: str) -> PlaybookRun | None:
    """The last playbook run of an incident that did not complete: its file, inputs and finished steps."""
    from pcnctl.state.journal import records

    runs: dict[str, PlaybookRun] = {}
    for rec in records(state, incident):
        if "t" not in rec:
            continue
        if rec["t"] == "playbook":
            runs[rec["run"]] = PlaybookRun(
                rec["run"], rec["file"], rec["sha256"], rec["inputs"], rec.get("meta", {})
            )
        elif rec["t"] == "step" and rec["run"] in runs and rec["status"] in ("done", "skipped"):
            runs[rec["run"]].results[rec["step"]] = rec.get("result", {})
        elif rec["t"] == "playbook-end" and rec["run"] in runs:
            runs[rec["run"]].end = rec["status"]
    pending = [r for r in runs.values() if r.end != "completed"]
    return pending[-1] if pending else None


def check_unchanged(state: PlaybookRun) -> Path:
    path = Path(state.file)
    if not path.exists():
        raise PlaybookError(f"the playbook {path} of this run is gone", hint="restore it to resume")
    if _sha256(path) != state.sha256:
        raise PlaybookError(
            f"the playbook {path} changed since the run started: resuming could do something else",
            hint="restore the reviewed version, or start a new run",
        )
    return path
