"""The operation protocol: what every operation that changes an ENT says of itself, and the pieces it provides
to the one sequence that runs it (:mod:`pcnctl.ops.runner`).

An operation is a small object, not a class in a hierarchy: its name and labels, its cap, how it paces its
calls, how it is undone (or why it cannot be), and the functions the sequence calls in order:

``plan`` (reads only; built by the operation's own planning function, whose arguments differ) →
``items`` (the whole plan, sealed before the first call) → ``prepare`` (a snapshot, evidence: after the
plan is sealed, before any change) → ``units`` and ``act`` (one idempotent unit of work at a time, each of
its items journalled ``sending`` before the call) → ``after`` (verification, session revokes, the leftover
check: a :class:`Verdict`) and, on resume, ``replan`` (from the sealed plan, never a new one); ``undo``
gives the plan of the operation that reverses a run, when there is one.

Commands, playbook steps, ``incident resume``, ``playbook resume`` and ``rollback`` all go through
:func:`pcnctl.ops.runner.run` and :func:`pcnctl.ops.runner.resume`, so each ends the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from pcnctl.errors import ExitCode
from pcnctl.ops.timing import Mark, Timing

if TYPE_CHECKING:
    from pcnctl.ent.fanout import FanoutReport, Outcome
    from pcnctl.ops.context import Records, RunContext
    from pcnctl.records import JsonObject, Row
    from pcnctl.state.journal import PlanItem, RunParams, RunState

P = TypeVar("P")
Status = Literal["completed", "partial", "ineffective", "stopped", "nothing"]


@dataclass(frozen=True, slots=True)
class Labels:
    """What a run of the operation did, as the incident report and the audit say it."""

    en: str
    fr: str


@dataclass(frozen=True, slots=True)
class Cap:
    """The most items one run may change unless the operator raises it (``--max``), and why that number.
    ``default`` None: no count cap, and ``why`` says what bounds the run instead."""

    default: int | None
    unit: str
    why: str


@dataclass(frozen=True, slots=True)
class Pace:
    """How many units of work may be in flight at most (the fan-out adapts below it), and why."""

    concurrency: int
    why: str
    initial: int = 4


@dataclass(frozen=True, slots=True)
class Undo:
    """How a run is undone: by a run of the registered ``inverse`` operation, or not, and why.
    ``kept``: a run that cannot be undone and that rollback lists as kept (a purge, a reset); an
    operation that is itself an undo (a lift, an unblock) is not listed."""

    inverse: str | None
    why: str
    kept: bool = False


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What the operator is asked before a run starts; ``count``: the number a wide run makes them type."""

    question: str
    count: int | None = None


@dataclass(frozen=True, slots=True)
class Unit:
    """One call's worth of work: the items (journal keys) it covers, what the operation needs to act, and
    how each item is named in the audit log (a login, a UAI)."""

    keys: list[str]
    payload: Any = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    """A started (or resumed) run, as ``prepare``, ``act`` and ``after`` see it."""

    ctx: RunContext
    id: str
    op: str
    phases: dict[str, str] = field(default_factory=dict)  # the journal's last phase of each item
    resumed: bool = False
    items: list[PlanItem] = field(default_factory=list)  # the sealed plan (all of it, also on resume)
    report: FanoutReport | None = None
    follow_up: FollowUp | None = None  # set by the runner: how this run starts a follow-up run

    def follow(self, op: Operation[Any], plan: Callable[[], object], suffix: str) -> Verdict:
        """A follow-up run of this one (a block's session revoke), through the same sequence: started
        once, resumed if a kill left it unfinished, read back when done."""
        if self.follow_up is None:
            raise RuntimeError(f"run {self.id} was not started by the runner: it cannot start a follow-up")
        return self.follow_up(self, op, plan, suffix)

    def sending(self, keys: Sequence[str]) -> dict[str, str | None]:
        """Journal each item ``sending`` before its call, and return the phase each had: a call retried
        after a lost answer sees ``sending`` and re-reads the ENT before sending again. An intermediate
        phase (``blocked``, ``reset``) is kept: the item resumes from it; so is ``throttled`` (refused
        before anything was done: the journal's ``sending`` already says the call is out)."""
        prior = {k: self.phases.get(k) for k in keys}
        for key in keys:
            if prior[key] in (None, "sending", "failed"):
                self.ctx.sending(self.id, key)
                self.phases[key] = "sending"
        return prior

    def done(self) -> list[str]:
        """The items this run finished ``done``, this time or before an interruption."""
        return [str(i["key"]) for i in self.items if self.phases.get(str(i["key"])) == "done"]

    def phase(self, key: str, phase: str, detail: str = "") -> None:
        """An intermediate phase of one item (``blocked``, ``reset``...), so a resume skips what is done."""
        self.phases[key] = phase
        self.ctx.item(self.id, key, phase, detail)


@dataclass
class Verdict:
    """How a run ended, what its follow-ups found, and what stays open: what every door reports."""

    op: str
    run: str
    status: Status
    summary: str
    counts: dict[str, int] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    columns: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)  # follow-ups done and their findings
    open: list[str] = field(default_factory=list)  # what the run leaves open on the platform, checked
    checks: list[Row] = field(default_factory=list)  # the verification's rows, when there is one
    result: JsonObject = field(default_factory=dict)  # the fields a playbook step gives later steps
    files: dict[str, str] = field(default_factory=dict)  # what the run wrote (failures, codes, evidence)
    hint: str = ""  # how to finish what is not done
    report: FanoutReport | None = None
    incident: str = ""  # the incident the run recorded in
    timing: Timing = field(default_factory=Timing)  # where the run's time went (pcnctl.ops.timing)

    @property
    def ok(self) -> bool:
        return self.status in ("completed", "nothing")

    @property
    def exit_code(self) -> ExitCode:
        """The one place a run's outcome becomes an exit code (the ``interrupted`` case is an error)."""
        return EXIT_CODES[self.status]

    def stored(self) -> JsonObject:
        """What the journal's end record keeps of the verdict (a resumed playbook step reads it back)."""
        return {
            "summary": self.summary,
            "notes": list(self.notes),
            "open": list(self.open),
            "result": self.result,
            "files": dict(self.files),
        }


EXIT_CODES: dict[Status, ExitCode] = {
    "completed": ExitCode.OK,
    "nothing": ExitCode.OK,
    "partial": ExitCode.PARTIAL,
    "ineffective": ExitCode.PARTIAL,
    "stopped": ExitCode.UNAVAILABLE,
}


class Door(Protocol):
    """How a caller lets a run start: the confirmation it asks for, then the context it runs in (a
    command opens the incident only once the operator has said yes); ``parent``: the run whose follow-up
    this one is, if any; ``planned``: when the plan's reads began, so that the run's timing counts them."""

    parent: str
    planned: Mark | None

    def confirm(self, confirmation: Confirmation) -> None: ...

    def context(self) -> AbstractContextManager[RunContext]: ...


class Operation(Protocol[P]):
    """What the runner needs of an operation; ``P`` is its plan."""

    @property
    def name(self) -> str: ...

    @property
    def verb(self) -> str: ...  # what it does to its items, for caps, confirmations and progress

    @property
    def labels(self) -> Labels: ...

    @property
    def cap(self) -> Cap: ...

    @property
    def pace(self) -> Pace: ...

    @property
    def undo(self) -> Undo: ...

    @property
    def idempotent(self) -> bool: ...  # a unit whose answer was lost may be sent again

    @property
    def intent(self) -> bool: ...  # a run is recorded even with nothing to change: its items are wanted

    @property
    def columns(self) -> tuple[str, ...]: ...  # the plan's rows (dry run, check mode, confirmation)

    def params(self, plan: P) -> RunParams: ...

    def items(self, plan: P) -> list[PlanItem]: ...

    def todo(self, plan: P) -> int: ...

    def rows(self, plan: P) -> list[Row]: ...

    def summary(self, plan: P) -> str: ...

    def confirmation(self, plan: P) -> Confirmation: ...

    def approval(self, plan: P) -> str | None: ...

    def prepare(self, run: Run, plan: P) -> None: ...

    def units(self, run: Run, plan: P) -> Sequence[Unit]: ...

    def act(self, run: Run, unit: Unit) -> list[Outcome]: ...

    def after(self, run: Run, plan: P, outcomes: list[Outcome]) -> Verdict: ...

    def replan(self, run: Run, state: RunState) -> P: ...

    def reverse(self, records: Records, state: RunState) -> Reversal | None: ...


class FollowUp(Protocol):
    """The runner's follow-up sequence, handed to each run it drives (operations never import the runner,
    which finds them through the registry)."""

    def __call__(self, run: Run, op: Operation[Any], plan: Callable[[], object], suffix: str) -> Verdict: ...


def counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """How many outcomes of each status (``done``, ``already``, ``failed``...)."""
    return dict(Counter(o.status for o in outcomes))


def status_of(outcomes: Sequence[Outcome]) -> str:
    """``partial`` when an item failed or was refused, else ``completed``."""
    return "partial" if any(o.status in ("failed", "refused") for o in outcomes) else "completed"


@dataclass(frozen=True)
class Reversal:
    """What undoing a run takes: what it does, over how many items, and how to build the plan of the
    operation's registered inverse once connected (it may re-read the ENT)."""

    description: str
    count: int
    build: Callable[[RunContext], object]


def wide(items: int, schools: int) -> bool:
    """A run over more than one school or more than 20 items makes the operator type its count."""
    return schools > 1 or items > 20


def confirm_for(verb: str, items: int, unit: str, schools: int) -> Confirmation:
    """The one wording of a confirmation: wide runs ask for the typed count."""
    if wide(items, schools):
        where = f" in {schools} schools" if schools > 1 else ""
        return Confirmation(f"This will {verb} {items} {unit}{where}.", items)
    return Confirmation(f"{verb[0].upper()}{verb[1:]} {items} {unit}?")
