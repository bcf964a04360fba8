"""The journal of an incident: one record per event, committed to the state store as it happens, read
back to resume and to roll back.

Records: ``run`` (an operation started: its name, parameters, the whole plan of items, the identity and
the ENT), ``item`` (one item's phase: ``sending`` written *before* its call, intermediate phases such as
``blocked``, then a final ``done``/``already``/``refused``/``failed``), ``end`` (the run finished or was
interrupted), and the playbook runner's ``playbook``/``step`` records. Each record is its own committed
transaction: a process killed at any point leaves every record it had written, and none half-written.
An item whose last phase is ``sending`` was in flight: its outcome is unknown until it is re-read from
the ENT. Each kind of record is a TypedDict of exactly the JSON stored (:data:`Record`), so the state
stores already written read back as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, NotRequired, Required, TypedDict

from pcnctl.records import JsonObject
from pcnctl.state.store import StateStore
from pcnctl.timespec import utcnow

FINAL = frozenset({"done", "already", "refused", "failed"})
# How a run ended, as its end record says. A run ended so is over: nothing of it is resumed. ``partial``
# is over only once no item is left to retry; ``interrupted`` and ``stopped`` (the ENT kept failing) are
# resumed, including a run whose items were all done but whose follow-ups did not run.
OVER = frozenset({"completed", "ineffective", "rolled-back"})


class RunParams(TypedDict, total=False):
    """A run's parameters; which ones are set depends on the operation (and they are in its plan digest)."""

    keep_blocked: bool  # sessions.revoke
    mode: str  # accounts.reset-password: force-change | erase
    revoke: bool  # accounts.reset-password
    profile: str  # profile blocks and messaging blocks
    method: str  # messaging blocks: communication | roles | login
    revoke_sessions: bool  # messaging blocks: end the profile's live sessions once cut
    verify: bool  # messaging blocks: prove the cut once done
    keep_relatives: bool  # messaging blocks: leave the pupils' direct links to their parents
    until: str | None
    reason: str
    title: str  # banners
    message: str
    profiles: list[str]
    query: JsonObject  # purge: the saved search it purges


class PlanItem(TypedDict, total=False):
    """One item of a run's plan: an account, a school or a message, keyed by its id. The other fields say
    what the item was when planned (which ones depends on the operation family)."""

    key: Required[str]
    login: str  # accounts
    profile: str
    schools: list[str]
    blocked: bool
    uai: str  # schools (profile blocks, messaging blocks and lifts, banners)
    group: str  # messaging blocks: the profile group cut off
    method: str  # messaging lifts: the lever, the run whose snapshot holds the prior state, the school
    snapshot: str
    school: str
    joined: bool  # messaging lifts: a join of another incident's block (only the hold is let go)


class RunMeta(TypedDict, total=False):
    """Who ran it, how, on which ENT (a 0.1 journal may lack some of these)."""

    identity: str
    auth: str
    user_id: str | None
    client_id: str | None
    profile: str
    url: str
    step: str  # "<playbook run>/<step id>" when a playbook step started the run
    parent: str  # the run whose follow-up this run is (a messaging block's session revoke)


class _Stamped(TypedDict, total=False):
    at: str  # stamped by Journal.append
    ent: str  # added by records(): the ENT the record was written for


class RunRecord(_Stamped):
    t: Literal["run"]
    run: str
    op: str
    params: RunParams
    items: list[PlanItem]
    meta: RunMeta
    approved_by: NotRequired[str]  # on a four-eyes profile: who signed the plan (approvals.py)


class ItemRecord(_Stamped):
    t: Literal["item"]
    run: str
    key: str
    phase: str
    detail: NotRequired[str]


class EndRecord(_Stamped):
    t: Literal["end"]
    run: str
    status: str
    counts: dict[str, int]
    verdict: NotRequired[JsonObject]  # what the run's follow-ups found (pcnctl.ops.operation.Verdict)


class PlaybookRecord(_Stamped):
    t: Literal["playbook"]
    run: str
    file: str
    sha256: str
    name: str
    inputs: JsonObject
    meta: RunMeta


class StepRecord(_Stamped):
    t: Literal["step"]
    run: str
    step: str
    status: str
    result: NotRequired[JsonObject]
    detail: NotRequired[str]


class PlaybookEndRecord(_Stamped):
    t: Literal["playbook-end"]
    run: str
    status: str


Record = RunRecord | ItemRecord | EndRecord | PlaybookRecord | StepRecord | PlaybookEndRecord


class Journal:
    """Appends an incident's records for one ENT."""

    def __init__(self, state: StateStore, incident: str, ent: str) -> None:
        self.state, self.incident, self.ent = state, incident, ent

    def append(self, record: Record) -> None:
        at = utcnow()
        self.state.execute(
            "INSERT INTO journal (incident, ent, run, kind, at, body) VALUES (?,?,?,?,?,?)",
            self.incident,
            self.ent,
            record["run"],
            str(record["t"]),
            at,
            json.dumps({"at": at, **record}, ensure_ascii=False, separators=(",", ":")),
        )


def records(state: StateStore, incident: str) -> list[Record]:
    """Every record of the incident, oldest first, each with the ENT it was written for."""
    out = []
    for row in state.rows("SELECT ent, body FROM journal WHERE incident = ? ORDER BY seq", incident):
        rec: Record = json.loads(row["body"])  # the store holds what append() wrote
        rec["ent"] = row["ent"]
        out.append(rec)
    return out


@dataclass
class RunState:
    """A run as the journal tells it: what was planned, the last phase of each item, how it ended."""

    run: str
    op: str
    params: RunParams
    items: list[PlanItem]
    meta: RunMeta
    phases: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    end: str | None = None
    started_at: str = ""  # UTC time of the run's first record
    ent: str = ""  # the ENT the run acted on
    approved_by: str = ""  # on a four-eyes profile: the second administrator who signed its plan
    verdict: JsonObject = field(default_factory=dict)  # what the end record kept of the run's verdict

    @property
    def finished(self) -> bool:
        return self.end in OVER or (self.end == "partial" and self.pending == [])

    @property
    def pending(self) -> list[PlanItem]:
        """Items not finished: never started, interrupted mid-way, or failed (they are retried)."""
        return [i for i in self.items if self.phases.get(i["key"]) not in FINAL - {"failed"}]

    @property
    def in_flight(self) -> set[str]:
        """Items sent when the run stopped, their answer never read: re-read them before anything else."""
        return {k for k, phase in self.phases.items() if phase == "sending"}

    @cached_property
    def planned(self) -> set[str]:
        return {str(i["key"]) for i in self.items}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            phase = self.phases.get(item["key"], "pending")
            out[phase] = out.get(phase, 0) + 1
        return out


def read(state: StateStore, incident: str, *, ent: str | None = None) -> list[RunState]:
    """Every run of an incident, in order (only those on one ENT when ``ent`` is given)."""
    return runs_of(records(state, incident), ent=ent)


def runs_of(recs: list[Record], *, ent: str | None = None) -> list[RunState]:
    """The runs that journal records tell (for a caller that needs the records too)."""
    runs: dict[str, RunState] = {}
    for rec in recs:
        if "t" not in rec:  # a record with no kind tells no run (none is written so)
            continue
        run = str(rec.get("run", ""))
        if rec["t"] == "run":
            first = runs[run].started_at if run in runs else rec.get("at", "")
            runs[run] = RunState(
                run, rec["op"], rec.get("params", {}), rec.get("items", []), rec.get("meta", {})
            )
            runs[run].started_at = first
            runs[run].ent = rec.get("ent", "")
            runs[run].approved_by = rec.get("approved_by", "")
        elif rec["t"] == "item" and run in runs and str(rec["key"]) in runs[run].planned:
            # An item outside the run's plan is never its work: not resumed, not undone, not counted.
            runs[run].phases[str(rec["key"])] = rec["phase"]
            if rec.get("detail"):
                runs[run].details[rec["key"]] = rec.get("detail", "")
        elif rec["t"] == "end" and run in runs:
            runs[run].end = rec.get("status")
            runs[run].verdict = rec.get("verdict") or runs[run].verdict
    return [r for r in runs.values() if ent is None or r.ent == ent]


def done_keys(runs: list[RunState], *ops: str) -> set[str]:
    """The items that runs of these operations finished (``done``): accounts blocked, messages purged..."""
    return {k for s in runs if s.op in ops for k, phase in s.phases.items() if phase == "done"}
