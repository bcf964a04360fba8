"""Purging the threat from every mailbox: evidence first, plan, caps, batches, then a check of what is left.

``POST /conversation/api/purge/messages`` (ADMC + MFA) removes every mailbox copy of the given ids
(edifice-api.md §4). pcnctl takes evidence of the messages first (it cannot be skipped), plans (messages,
mailbox copies, schools), purges in batches under the fan-out executor with a journal (resumable), then
reads the mailstore again to report copies left, and names what no API can reach: the timeline
notifications that keep the text, and e-mail or push copies that cannot be recalled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pcnctl.ent.fanout import Fanout, Outcome
from pcnctl.errors import RefusedError
from pcnctl.forensics import evidence
from pcnctl.forensics.mailstore import Mailbox, Mailstore
from pcnctl.ops.context import RunContext
from pcnctl.progress import progress_bar
from pcnctl.records import JsonObject, Row
from pcnctl.state.journal import RunState

if TYPE_CHECKING:
    from pcnctl.forensics.search import SavedSearch

OP = "messages.purge"
DEFAULT_CAP = 500
BATCH = 100


@dataclass
class PurgePlan:
    ids: list[str]  # still present
    gone: list[str]  # already purged
    copies: dict[str, list[Mailbox]]
    schools: dict[str, list[str]]  # message id -> recipient schools (from the search)
    query: JsonObject = field(default_factory=dict)

    @property
    def copy_count(self) -> int:
        return sum(len(self.copies.get(i, [])) for i in self.ids)

    @property
    def school_set(self) -> set[str]:
        return {s for i in self.ids for s in self.schools.get(i, [])}

    def rows(self) -> list[Row]:
        per: dict[str, dict[str, int]] = {}
        for message_id in self.ids:
            for uai in self.schools.get(message_id, []) or ["?"]:
                row = per.setdefault(uai, {"messages": 0})
                row["messages"] += 1
        return [{"school": s, "messages": r["messages"]} for s, r in sorted(per.items())]


def plan(store: Mailstore, saved: SavedSearch) -> PurgePlan:
    ids = list(dict.fromkeys(m["id"] for m in saved["matches"]))
    copies = store.mailboxes(ids)
    schools = {m["id"]: list(m.get("schools") or []) for m in saved["matches"]}
    return PurgePlan(
        [i for i in ids if copies.get(i)],
        [i for i in ids if not copies.get(i)],
        copies,
        schools,
        saved.get("query", {}),
    )


def check_cap(p: PurgePlan, cap: int | None) -> None:
    limit = DEFAULT_CAP if cap is None else cap
    if len(p.ids) > limit:
        raise RefusedError(
            f"the plan would purge {len(p.ids)} messages, above the cap of {limit}",
            hint=f"check it with --dry-run, then raise the cap with --max {len(p.ids)}; nothing was changed",
        )


@dataclass
class PurgeResult:
    run: str
    purged: list[str]
    failed: list[tuple[str, str]]
    leftovers: dict[str, list[Mailbox]]
    evidence: Path | None
    notifications: int

    def summary_rows(self) -> list[Row]:
        rows: list[Row] = [
            {"what": "messages purged", "count": len(self.purged), "note": "every mailbox copy removed"},
            {
                "what": "copies still in mailboxes",
                "count": sum(len(v) for v in self.leftovers.values()),
                "note": "checked in the mailstore after the purge",
            },
            {
                "what": "timeline notifications with the text",
                "count": self.notifications,
                "note": "the purge does not remove them: delete by resource in the platform's timeline store",
            },
            {
                "what": "e-mail and push copies",
                "count": None,
                "note": "cannot be recalled: tell the recipients (notifications may have been pushed)",
            },
        ]
        if self.failed:
            rows.insert(1, {"what": "messages failed", "count": len(self.failed), "note": self.failed[0][1]})
        return rows


def execute(
    ctx: RunContext,
    store: Mailstore,
    p: PurgePlan,
    saved: SavedSearch,
    *,
    run: str | None = None,
    done: Sequence[str] = (),
) -> PurgeResult:
    """The run's plan first, then evidence, then purge in journalled batches, then the leftover check.
    The plan is recorded before the evidence so that a kill during the collection leaves a run to resume
    (which collects again, then purges), not nothing."""
    bundle: Path | None = None
    todo = [i for i in p.ids if i not in set(done)]
    run = run or ctx.start(OP, {"query": p.query}, [{"key": i} for i in p.ids])
    if todo:
        bundle = _collect(ctx, store, run, todo, saved)
    purged: list[str] = list(done)
    failed: list[tuple[str, str]] = []
    try:
        _purge(ctx, run, todo, purged, failed)
    except KeyboardInterrupt:
        raise ctx.interrupted(run, {"done": len(purged)}) from None
    leftovers = {k: v for k, v in store.mailboxes(p.ids).items() if v}
    # One timeline notification per person reached but the sender; drafts and scheduled messages have
    # only the sender's copy, hence none.
    notifications = sum(len([c for c in p.copies.get(i, []) if not c.own]) for i in p.ids)
    ctx.end(
        run,
        "partial" if failed or leftovers else "completed",
        {
            "purged": len(purged),
            "failed": len(failed),
            "leftover_copies": sum(len(v) for v in leftovers.values()),
        },
    )
    return PurgeResult(run, purged, failed, leftovers, bundle, notifications)


def _collect(ctx: RunContext, store: Mailstore, run: str, todo: list[str], saved: SavedSearch) -> Path:
    """The evidence bundle of the messages about to be purged, with the schools the search saw."""
    schools = {m["id"]: m.get("recipient_schools") or {} for m in saved["matches"]}
    bundle, count = evidence.collect(
        ctx.state,
        ctx.incident,
        store,
        todo,
        query=saved.get("query", {}),
        identity=ctx.identity,
        profile=ctx.driver.profile.name,
        url=ctx.driver.profile.url,
        recipient_schools=schools,
        sender_schools={m["id"]: m.get("from_schools") or [] for m in saved["matches"]},
        progress=ctx.show_progress,
    )
    ctx.log(run, f"{OP}:evidence", str(bundle), "collected", messages=count)
    return bundle


def _purge(
    ctx: RunContext, run: str, todo: list[str], purged: list[str], failed: list[tuple[str, str]]
) -> None:
    """Purge in journalled batches, each id written ``sending`` before its call; outcomes go to the lists."""

    def step(batch: list[str]) -> list[Outcome]:
        for message_id in batch:
            ctx.sending(run, message_id)
        ctx.driver.purge_messages(batch)
        return [Outcome(i, "done") for i in batch]

    with progress_bar(len(todo), "purge", enabled=ctx.show_progress) as advance:

        def counted(o: Outcome) -> None:
            ctx.record(run, OP, o.key, o.status, o.detail)
            if o.status == "done":
                purged.append(o.key)
            else:
                failed.append((o.key, o.detail))
            advance(1)

        # Purging ids already purged changes nothing on the platform: a lost answer may be retried.
        fanout = Fanout(
            step,
            key=lambda b: list(b),
            idempotent=True,
            max_concurrency=2,
            initial_concurrency=1,
            on_outcome=counted,
        )
        fanout.run([todo[i : i + BATCH] for i in range(0, len(todo), BATCH)])


def resume(ctx: RunContext, store: Mailstore, state: RunState) -> PurgeResult:
    """Finish an interrupted purge: messages still present are purged; evidence is taken for them first."""
    ctx.check_resumable(state)
    ids = [i["key"] for i in state.items]
    copies = store.mailboxes(ids)
    present = [i for i in ids if copies.get(i)]
    p = PurgePlan(present, [i for i in ids if not copies.get(i)], copies, {}, state.params.get("query", {}))
    saved: SavedSearch = {"matches": [{"id": i} for i in present], "query": state.params.get("query", {})}
    return execute(ctx, store, p, saved, run=state.run)
