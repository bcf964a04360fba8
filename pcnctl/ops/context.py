"""Where runs happen: an incident on one ENT, as one identity, with its journal, audit log and lock.

Every run of an operation (:mod:`pcnctl.ops.runner`) writes through a :class:`RunContext`, so that whatever
the door (command, playbook step, resume, rollback), the journal can resume it and the audit log names the
identity and the authentication mode.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

from pcnctl.ent.platform import EntDriver
from pcnctl.errors import InterruptedRunError, RefusedError
from pcnctl.models import Identity
from pcnctl.records import JsonObject
from pcnctl.state.auditlog import AuditDetails, AuditLog
from pcnctl.state.incidents import Incident
from pcnctl.state.journal import (
    EndRecord,
    ItemRecord,
    Journal,
    PlanItem,
    RunMeta,
    RunParams,
    RunRecord,
    RunState,
)
from pcnctl.state.store import StateStore, ent_key

if TYPE_CHECKING:
    from pcnctl.forensics.mailstore import Mailstore


def plan_digest(op: str, params: RunParams, items: list[PlanItem]) -> str:
    """The SHA-256 of a run's plan, sealed in the audit log when the run starts: resume acts only on it."""
    body = json.dumps([op, params, items], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Records:
    """What the state store holds of one incident on one ENT: enough to plan an undo without the ENT."""

    state: StateStore
    audit: AuditLog
    incident: str
    ent: str


@dataclass
class RunContext:
    driver: EntDriver
    incident: Incident
    state: StateStore
    journal: Journal
    audit: AuditLog
    identity: Identity
    max_concurrency: int | None = None  # the operator's --concurrency; None: each operation's own pace
    rate_limit: float | None = None
    show_progress: bool = True
    batch_size: int = 50  # accounts per PUT /auth/users/block call (ADMC only); 0 = one call per account
    step: str = ""  # "<playbook run>/<step id>" while a playbook step runs: its runs are found by it
    canary: Callable[[], EntDriver] | None = None  # a session as the profile's canary, for verification
    canary_to: str | None = None
    mailstore_dsn: str | None = None  # the command's --mailstore; else the profile's
    _held: ExitStack = field(default_factory=ExitStack, repr=False)
    _store: Mailstore | None = field(default=None, repr=False)

    @classmethod
    def create(cls, driver: EntDriver, incident: Incident, state: StateStore, **options: Any) -> RunContext:
        """A context for runs in ``incident`` on the driver's ENT; it holds the incident's lock until
        :meth:`close` (a second run on the same incident refuses instead of racing this one)."""
        held = ExitStack()
        held.enter_context(state.lock(incident.id))
        try:
            ident = driver.whoami()
        except BaseException:
            held.close()
            raise
        ent = ent_key(driver.profile.url)
        if driver.profile.name not in incident.profiles or ent not in incident.ents:
            incident.profiles = sorted({*incident.profiles, driver.profile.name})
            incident.ents = sorted({*incident.ents, ent})
            incident.save(state)
        journal = Journal(state, incident.id, ent)
        ctx = cls(driver, incident, state, journal, state.audit_log(), ident, **options)
        ctx._held = held
        return ctx

    @property
    def ent(self) -> str:
        return self.journal.ent

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        self._held.close()

    def mailstore(self) -> Mailstore:
        """The mailstore of the profile (or the command's), opened once for the context's runs."""
        if self._store is None:
            from pcnctl.forensics.mailstore import open_mailstore

            self._store = open_mailstore(self.driver.profile, self.mailstore_dsn)
        return self._store

    def records(self) -> Records:
        """The incident's records on this ENT, as an undo is planned from them."""
        return Records(self.state, self.audit, self.incident.id, self.ent)

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_resumable(self, state: RunState) -> None:
        """Refuse to resume a run of another ENT, or one whose plan is not the one sealed when it started."""
        if state.ent and state.ent != self.ent:
            raise RefusedError(
                f"run {state.run} acted on {state.ent}, not on {self.ent}",
                hint=f"resume it with a profile of that ENT: --ent PROFILE ({state.meta.get('profile')})",
            )
        digest = plan_digest(state.op, state.params, state.items)
        sealed = [
            e.get("plan")
            for e in self.audit.entries()
            if e.get("run") == state.run and e.get("action") == f"{state.op}:start"
        ]
        if digest not in sealed:
            raise RefusedError(
                f"the journal's plan of run {state.run} is not the one recorded in the audit log when it "
                "started: it was changed",
                hint="nothing was resumed; check 'pcnctl audit verify-log' and the incident's records",
            )

    def meta(self) -> RunMeta:
        return {
            "identity": self.identity.label,
            "auth": self.identity.auth_mode,
            "user_id": self.identity.user_id,
            "client_id": self.identity.client_id,
            "profile": self.driver.profile.name,
            "url": self.driver.profile.url,
            "step": self.step,
        }

    def start(
        self,
        op: str,
        params: RunParams,
        items: list[PlanItem],
        run: str | None = None,
        *,
        approval: str | None = None,
        parent: str = "",
    ) -> str:
        """Seal the plan and record the run; ``approval``: why the plan needs a second administrator on a
        four-eyes profile (the operation says); ``parent``: the run whose follow-up this one is."""
        run = run or f"{op}-{secrets.token_hex(4)}"
        approver = self.approval(op, params, items, approval)  # refuses here, before anything changes
        record: RunRecord = {
            "t": "run",
            "run": run,
            "op": op,
            "params": params,
            "items": items,
            "meta": {**self.meta(), "parent": parent} if parent else self.meta(),
        }
        # The seal first: a kill between the two leaves a sealed plan with no run, which resumes nothing.
        details: AuditDetails = {"plan": plan_digest(op, params, items)}
        if approver:
            record["approved_by"] = details["approved_by"] = approver
        self.log(run, f"{op}:start", f"{len(items)} item(s)", "started", **details)
        self.journal.append(record)
        return run

    def approval(self, op: str, params: RunParams, items: list[PlanItem], why: str | None) -> str | None:
        """The second administrator who approved this plan, on a four-eyes profile (see approvals.py)."""
        approvers = self.driver.profile.approvers
        if not approvers or why is None:
            return None
        from pcnctl.ops import approvals

        me = self.identity.login or self.driver.profile.login or ""  # a client id is not an administrator
        plan = approvals.Plan(self.ent, self.incident.id, op, params, items, me, self.identity.label)
        return approvals.check(plan, why, approvers, self.incident.path / "approvals")

    def sending(self, run: str, key: str) -> None:
        """Written before an item's call: if the answer is lost, resume knows to re-read it."""
        self.item(run, key, "sending")

    def log(self, run: str, action: str, target: str, result: str, **extra: Unpack[AuditDetails]) -> None:
        """One audit-log entry, naming who acted and how they authenticated."""
        self.audit.append(
            actor=self.identity.label,
            auth=self.identity.auth_mode,
            profile=self.driver.profile.name,
            url=self.driver.profile.url,
            incident=self.incident.id,
            run=run,
            action=action,
            target=target,
            result=result,
            **extra,
        )

    def item(self, run: str, key: str, phase: str, detail: str = "") -> None:
        record: ItemRecord = {"t": "item", "run": run, "key": key, "phase": phase}
        if detail:
            record["detail"] = detail
        self.journal.append(record)

    def record(self, run: str, op: str, key: str, result: str, detail: str = "", label: str = "") -> None:
        """A final outcome: in the journal and in the audit log."""
        self.item(run, key, result, detail)
        self.log(run, op, key, result, target_label=label, detail=detail)

    def interrupted(self, run: str, counts: dict[str, int]) -> InterruptedRunError:
        """Record that ``run`` stopped part-way and return the error that tells the operator how to resume."""
        self.end(run, "interrupted", counts)
        return InterruptedRunError(
            f"interrupted: run {run} of incident {self.incident.id} stopped part-way (what was done is kept)",
            hint=f"resume it: pcnctl incident resume {self.incident.id}",
        )

    def end(self, run: str, status: str, counts: dict[str, int], verdict: JsonObject | None = None) -> None:
        record: EndRecord = {"t": "end", "run": run, "status": status, "counts": counts}
        if verdict is not None:
            record["verdict"] = verdict
        self.journal.append(record)
