"""Purging the threat from every mailbox: evidence first, plan, caps, batches, then a check of what is left.

``POST /conversation/api/purge/messages`` (ADMC + MFA) removes every mailbox copy of the given ids
(edifice-api.md §4). pcnctl takes evidence of the messages first (it cannot be skipped), plans (messages,
mailbox copies, schools), purges in batches under the fan-out executor with a journal (resumable), then
reads the mailstore again to report copies left, and names what no API can reach: the timeline
notifications that keep the text, and e-mail or push copies that cannot be recalled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pcnctl.ent.fanout import Outcome
from pcnctl.forensics import evidence, residue
from pcnctl.forensics.mailstore import Mailbox, Mailstore
from pcnctl.ops import approvals
from pcnctl.ops.context import Records
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
    counts,
)
from pcnctl.records import JsonObject, Row
from pcnctl.state.journal import PlanItem, RunParams, RunState

if TYPE_CHECKING:
    from pcnctl.forensics.search import SavedSearch

OP = "messages.purge"
BATCH = 100
SUMMARY_COLUMNS = ("what", "count", "note")


@dataclass
class PurgePlan:
    ids: list[str]  # still present
    gone: list[str]  # already purged
    copies: dict[str, list[Mailbox]]
    schools: dict[str, list[str]]  # message id -> recipient schools (from the search)
    query: JsonObject = field(default_factory=dict)
    saved: SavedSearch | None = None  # the search the plan came from (the evidence keeps its schools)
    # Filled by prepare, before the purge removes the copies that link them: the bundle, the attachments,
    # the timeline notifications the sends left.
    evidence: Path | None = None
    attachments: list[str] = field(default_factory=list)
    notified: int = 0

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
        saved,
    )


class PurgeOp:
    """``messages purge``: evidence, then the purge in journalled batches, then what is left."""

    name = OP
    verb = "purge"
    labels = Labels("messages purged", "messages supprimés")
    cap = Cap(500, "messages", "a purge cannot be undone: a wider one is raised on purpose (--max)")
    pace = Pace(2, "each call is one SQL delete over every mailbox on the ENT's database", 1)
    undo = Undo(None, "purged messages are gone from every mailbox (the evidence keeps them)", kept=True)
    idempotent = True  # purging ids already purged changes nothing: a lost answer may be retried
    intent = False
    columns = ("school", "messages")

    def params(self, p: PurgePlan) -> RunParams:
        return {"query": p.query}

    def items(self, p: PurgePlan) -> list[PlanItem]:
        return [{"key": i} for i in p.ids]

    def todo(self, p: PurgePlan) -> int:
        return len(p.ids)

    def rows(self, p: PurgePlan) -> list[Row]:
        return p.rows()

    def summary(self, p: PurgePlan) -> str:
        if not p.ids:
            return "every message is already gone"
        return (
            f"Plan: purge {len(p.ids)} message(s), {p.copy_count} mailbox copies, in {len(p.school_set)} "
            f"school(s); {len(p.gone)} already gone. Evidence is taken first."
        )

    def confirmation(self, p: PurgePlan) -> Confirmation:
        return Confirmation(f"Purge {len(p.ids)} messages from every mailbox.", len(p.ids))

    def approval(self, p: PurgePlan) -> str | None:
        return approvals.IRREVERSIBLE

    def prepare(self, run: Run, p: PurgePlan) -> None:
        """The evidence bundle of the messages about to be purged (the plan is sealed first, so a kill
        during the collection leaves a run to resume, which collects again, then purges)."""
        todo = [i for i in p.ids if run.phases.get(i) != "done"]
        if todo:
            p.evidence = _collect(run, todo, p)
            store = run.ctx.mailstore()
            p.attachments = residue.attachment_ids(store, todo)
            p.notified = residue.notifications(store, todo)

    def units(self, run: Run, p: PurgePlan) -> list[Unit]:
        todo = [i for i in p.ids if run.phases.get(i) != "done"]
        return [Unit(todo[i : i + BATCH]) for i in range(0, len(todo), BATCH)]

    def act(self, run: Run, unit: Unit) -> list[Outcome]:
        run.sending(unit.keys)
        run.ctx.driver.purge_messages(unit.keys)
        return [Outcome(i, "done") for i in unit.keys]

    def after(self, run: Run, p: PurgePlan, outcomes: list[Outcome]) -> Verdict:
        return _verdict(self, run, p, outcomes)

    def replan(self, run: Run, state: RunState) -> PurgePlan:
        """Messages still present are purged; evidence is taken for them first."""
        ids = [i["key"] for i in state.items]
        copies = run.ctx.mailstore().mailboxes(ids)
        present = [i for i in ids if copies.get(i)]
        query = state.params.get("query", {})
        saved: SavedSearch = {"matches": [{"id": i} for i in present], "query": query}
        return PurgePlan(present, [i for i in ids if not copies.get(i)], copies, {}, query, saved)

    def reverse(self, records: Records, state: RunState) -> Reversal | None:
        return None


PURGE = PurgeOp()


def _collect(run: Run, todo: list[str], p: PurgePlan) -> Path:
    """The evidence bundle of the messages about to be purged, with the schools the search saw."""
    ctx = run.ctx
    matches = p.saved["matches"] if p.saved else []
    bundle, count = evidence.collect(
        ctx.state,
        ctx.incident,
        ctx.mailstore(),
        todo,
        query=p.query,
        identity=ctx.identity,
        profile=ctx.driver.profile.name,
        url=ctx.driver.profile.url,
        recipient_schools={m["id"]: m.get("recipient_schools") or {} for m in matches},
        sender_schools={m["id"]: m.get("from_schools") or [] for m in matches},
        progress=ctx.show_progress,
    )
    ctx.log(run.id, f"{OP}:evidence", str(bundle), "collected", messages=count)
    return bundle


def _verdict(op: PurgeOp, run: Run, p: PurgePlan, outcomes: list[Outcome]) -> Verdict:
    """What was purged, what failed, and what the platform still holds of it, each kind counted from the
    mailstore (the copies, the rows the orphan job removes later, those nothing removes, the notifications),
    with the SQL script that finishes the removal."""
    purged = run.done()
    failed = [o for o in outcomes if o.status != "done"]
    ids = [str(i["key"]) for i in run.items]
    store = run.ctx.mailstore()
    left = residue.residue(store, ids, p.attachments, p.notified)
    rows = _summary_rows(len(purged), failed, left)
    verdict = Verdict(op.name, run.id, "completed", "", counts(outcomes), rows, SUMMARY_COLUMNS)
    verdict.counts.update({"purged": len(purged), "failed": len(failed), "leftover_copies": left.copies})
    verdict.summary = f"{len(purged)} message(s) purged"
    if failed or left.copies:
        verdict.status = "partial"
        verdict.summary = f"{len(failed)} message(s) failed and {left.copies} copies are still in mailboxes"
        verdict.hint = f"resume with 'pcnctl incident resume {run.ctx.incident.id}' or purge again"
    if p.evidence is not None:
        verdict.files["evidence"] = str(p.evidence)
    sql = _write_script(run, p, ids, store)
    verdict.files["residue_sql"] = str(sql)
    verdict.open += [f"{r['count']} {r['what']} ({r['until']})" for r in left.rows()[1:] if r["count"]]
    if not left.clean:
        verdict.notes.append(f"the SQL that finishes the removal, for the hosting team to review: {sql}")
    verdict.result = {
        "purged": len(purged),
        "leftovers": left.copies,
        "evidence": str(p.evidence or ""),
        "residue": {str(r["what"]): r["count"] for r in left.rows()},
    }
    return verdict


def _write_script(run: Run, p: PurgePlan, ids: list[str], store: Mailstore) -> Path:
    from pcnctl.files import write_private

    path = run.ctx.incident.subdir("purge") / f"{run.id}-residue.sql"
    threads = residue.thread_ids(store, ids)
    text = residue.script(run.ctx.incident.id, run.id, str(p.evidence or ""), ids, p.attachments, threads)
    write_private(path, text)
    return path


def _summary_rows(purged: int, failed: list[Outcome], left: residue.Residue) -> list[Row]:
    rows: list[Row] = [
        {"what": "messages purged", "count": purged, "note": "every mailbox copy removed"},
        {
            "what": "copies still in mailboxes",
            "count": left.copies,
            "note": "checked in the mailstore after the purge",
        },
    ]
    rows += [{"what": r["what"], "count": r["count"], "note": str(r["until"])} for r in left.rows()[1:-1]]
    rows += [
        {
            "what": "timeline notifications with the text",
            "count": left.notifications,
            "note": "the purge does not remove them: delete by resource in the platform's timeline store",
        },
        {
            "what": "e-mail and push copies",
            "count": None,
            "note": "cannot be recalled: tell the recipients (notifications may have been pushed)",
        },
    ]
    if failed:
        rows.insert(1, {"what": "messages failed", "count": len(failed), "note": failed[0].detail})
    return rows
