"""``pcnctl rollback ID``: undo an incident's reversible changes from its own records, newest first.

What a run's undo is, each operation says (:attr:`~pcnctl.ops.operation.Operation.undo`, from the
registry): messaging blocks are lifted from their sealed snapshots (hand changes kept), accounts the
incident blocked are unblocked (never one blocked before, nor one another open incident wants blocked),
profile blocks are lifted (accounts blocked before, or wanted blocked, kept blocked). A run's undo is
planned from the journal (its items, the one in flight at a kill included) and its sealed snapshot, never
from what a half-finished run registered. Purges, resets, codes, revokes and banners are listed as kept,
with why. An undone run is marked ``rolled-back``: ``incident resume`` never takes it up again.
"""

from __future__ import annotations

from dataclasses import dataclass

from pcnctl.ops.context import Records, RunContext
from pcnctl.ops.operation import Reversal, Verdict
from pcnctl.ops.registry import OPERATIONS
from pcnctl.ops.runner import InContext, run
from pcnctl.state.journal import RunState

KINDS = ("accounts", "profile", "messaging", "messages", "banners")


def kind_of(op: str) -> str:
    """The family an operation belongs to, as ``rollback --only``/``--skip`` name them."""
    if op.startswith("messaging."):
        return "messaging"
    if op.endswith("-profile"):
        return "profile"
    if op.startswith(("accounts.", "sessions.")):
        return "accounts"
    return op.split(".")[0]


@dataclass(frozen=True)
class UndoStep:
    """One run's undo: what it does (``reversal``), or why the run is kept as it is."""

    run: str
    op: str
    description: str
    reversal: Reversal | None = None

    @property
    def kind(self) -> str:
        return kind_of(self.op)

    @property
    def reversible(self) -> bool:
        return self.reversal is not None


def plan(records: Records, runs: list[RunState]) -> list[UndoStep]:
    """What undoing the incident's runs on this ENT takes, newest first (read from the state store only:
    a dry run needs no ENT)."""
    steps: list[UndoStep] = []
    for state in reversed(runs):
        op = OPERATIONS.get(state.op)
        if op is None or state.end == "rolled-back" or state.meta.get("parent"):
            continue
        if op.undo.inverse is not None:
            reversal = op.reverse(records, state)
            if reversal is not None:
                steps.append(UndoStep(state.run, state.op, reversal.description, reversal))
        elif op.undo.kept and any(phase == "done" for phase in state.phases.values()):
            steps.append(UndoStep(state.run, state.op, f"{state.op}: {op.undo.why}"))
    return steps


def execute(ctx: RunContext, step: UndoStep) -> Verdict:
    """Undo one run through its operation's inverse, journalled and audited like any run; the run undone
    is marked ``rolled-back`` once its undo ends well."""
    assert step.reversal is not None
    inverse = OPERATIONS[str(OPERATIONS[step.op].undo.inverse)]
    # The undo of a run is as wide as the run was (it was capped and confirmed then; this one was too).
    verdict = run(inverse, step.reversal.build(ctx), InContext(ctx), cap=step.reversal.count)
    if verdict.ok:
        ctx.end(step.run, "rolled-back", {}, None)
    return verdict
