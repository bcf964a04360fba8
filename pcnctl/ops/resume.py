"""Resuming runs: which operations resume, and how, in one place for ``incident resume`` and playbooks.

Every run records its whole plan before its first call and each item before its call, so a resumed run
continues its own plan with its own snapshot (it never re-plans against a state it half changed). Runs of
another ENT than the one connected are left for a profile of that ENT.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pcnctl.forensics.mailstore import Mailstore
from pcnctl.ops import accounts, banners, messaging, purge
from pcnctl.ops.context import RunContext
from pcnctl.records import Row
from pcnctl.state.journal import RunState

Resumer = Callable[[RunContext, RunState, Callable[[], Mailstore]], "Resumed"]


@dataclass
class Resumed:
    """What a resumed run did, as rows the CLI renders and a summary line."""

    run: str
    op: str
    rows: list[Row] = field(default_factory=list)
    columns: tuple[str, ...] = ()
    failed: int = 0
    result: Any = None  # the operation's own result (accounts: OpResult)


def _accounts(ctx: RunContext, state: RunState, _mail: Callable[[], Mailstore]) -> Resumed:
    result = accounts.resume_run(ctx, state)
    return Resumed(state.run, state.op, result.rows, (), result.failed, result)


def _profile(ctx: RunContext, state: RunState, _mail: Callable[[], Mailstore]) -> Resumed:
    accounts.resume_profile_block(ctx, state)
    return Resumed(state.run, state.op)


def _messaging(ctx: RunContext, state: RunState, _mail: Callable[[], Mailstore]) -> Resumed:
    _run, rows = messaging.resume_block(ctx, state)
    failed = sum(1 for r in rows if r["result"] == "failed")
    return Resumed(state.run, state.op, rows, ("school", "name", "method", "result", "detail"), failed)


def _unblock(ctx: RunContext, state: RunState, _mail: Callable[[], Mailstore]) -> Resumed:
    rows = messaging.resume_unblock(ctx, state)
    failed = sum(1 for r in rows if r["result"] == "failed")
    return Resumed(state.run, state.op, rows, ("school", "method", "result", "detail"), failed)


def _purge(ctx: RunContext, state: RunState, open_mailstore: Callable[[], Mailstore]) -> Resumed:
    store = open_mailstore()
    try:
        result = purge.resume(ctx, store, state)
    finally:
        store.close()
    return Resumed(state.run, state.op, result.summary_rows(), ("what", "count", "note"), len(result.failed))


def _banners(ctx: RunContext, state: RunState, _mail: Callable[[], Mailstore]) -> Resumed:
    posted = banners.resume(ctx, state)
    rows: list[Row] = [{"school": p.school, "result": p.result, "detail": p.detail} for p in posted]
    return Resumed(
        state.run, state.op, rows, ("school", "result", "detail"), sum(p.result == "failed" for p in posted)
    )


RESUMERS: dict[str, Resumer] = {
    **{op: _accounts for op in accounts.DEFAULT_CAPS},
    accounts.OP_PROFILE_BLOCK: _profile,
    "accounts.unblock-profile": _profile,
    messaging.OP_BLOCK: _messaging,
    messaging.OP_UNBLOCK: _unblock,
    purge.OP: _purge,
    banners.OP: _banners,
}


def unfinished(runs: Sequence[RunState], ent: str | None = None) -> list[RunState]:
    """Runs an interruption left with items to do (of one ENT when given)."""
    return [
        r for r in runs if r.op in RESUMERS and not r.finished and r.pending and (ent is None or r.ent == ent)
    ]


def resume(ctx: RunContext, state: RunState, open_mailstore: Callable[[], Mailstore]) -> Resumed:
    return RESUMERS[state.op](ctx, state, open_mailstore)
