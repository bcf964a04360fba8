"""The pre-approved response: the policy's playbook, run by the watcher in the incident a detection opened.

It goes through the same doors as an operator's run: the playbook runner (:mod:`pcnctl.playbooks.runner`,
every approval given, as ``playbook run --approve-all``), whose mutating steps run their operations through
:func:`pcnctl.ops.runner.run` in a :class:`~pcnctl.watch.policy.PolicyContext`: the same journal, audit
log, snapshots, verification and verdicts, and an approval that is the policy's (its signers named in the
journal and the audit log). A watcher killed mid-response finds the response ``running`` when it starts
again and continues it as ``playbook resume`` would: finished steps are kept, the interrupted run resumes
on its sealed plan and skips what it had done. When the policy's hours have passed and no operator has
confirmed (``pcnctl watch confirm``), what the response blocked is rolled back through the rollback's own
sequence (:mod:`pcnctl.ops.rollback`), the rest of the incident (an operator's runs) left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pcnctl.errors import InterruptedRunError, PcnError
from pcnctl.watch.policy import BeyondLimits, Guard, Policy, PolicyContext
from pcnctl.watch.records import Response
from pcnctl.watch.state import WatchState

if TYPE_CHECKING:
    from pcnctl.ent.platform import EntDriver
    from pcnctl.forensics.mailstore import Mailstore
    from pcnctl.ops.context import RunContext
    from pcnctl.playbooks.runner import StepReport
    from pcnctl.state.incidents import Incident
    from pcnctl.state.journal import RunState
    from pcnctl.state.store import StateStore

HOUR_MS = 3600 * 1000


@dataclass
class Outcome:
    """How a response run ended, in the words a page uses."""

    response: Response
    note: str  # in French, for the page
    steps: list[StepReport]


@dataclass
class Responder:
    """Runs the policy's playbook for the watcher, within the policy's limits."""

    driver: EntDriver
    store: StateStore
    watch: WatchState
    policy: Policy
    signers: list[str]
    mailstore: Mailstore | None
    reached: Callable[[set[str]], set[str]]
    on_step: Callable[[StepReport], None] | None = None

    def guard(self) -> Guard:
        return Guard(self.policy, self.signers, self.reached)

    def inputs(self) -> dict[str, str]:
        hours = self.policy.limits.expire_hours
        given = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.policy.inputs.items()}
        return {"block_until": f"{max(1, round(hours * 60))}m", **given}

    def run(self, incident: Incident, now_ms: int) -> Outcome:
        """Start the response in ``incident``, or continue the one a kill interrupted there."""
        from pcnctl.playbooks import runner
        from pcnctl.playbooks.model import load

        earlier = self.watch.response(incident.id)
        response = earlier or Response(
            self.watch.ent,
            incident.id,
            self.policy.sha256,
            "running",
            now_ms,
            now_ms + int(self.policy.limits.expire_hours * HOUR_MS),
        )
        self.watch.set_response(replace(response, status="running"))
        book, problems = load(self.policy.playbook)
        if book is None:
            return self._ended(response, "failed", "; ".join(str(p) for p in problems[:3]), [])
        pending = runner.unfinished(self.store, incident.id) if earlier else None
        if earlier and pending is None and _completed(self.store, incident.id):
            return self._ended(response, "done", "finie avant l'interruption de la veille", [])
        inputs = pending.inputs if pending else runner.coerce_inputs(book, self.inputs())
        guard = self.guard()
        ctx = PolicyContext.create(self.driver, incident, self.store, show_progress=False, guard=guard)
        try:
            steps = runner.run(
                book, inputs, ctx, self.mailstore, approve_all=True, resume_from=pending, on_step=self.on_step
            )
        except (KeyboardInterrupt, InterruptedRunError):
            raise  # the response stays running: the next start of the watcher resumes it
        except BeyondLimits as exc:
            return self._ended(response, "refused", exc.message, [])
        except PcnError as exc:
            status = "refused" if isinstance(exc.__context__, BeyondLimits) else "failed"
            return self._ended(response, status, exc.message, [])
        finally:
            ctx.close()
        done = ", ".join(s.id for s in steps if s.status == "done")
        return self._ended(response, "done", f"étapes faites : {done}", steps)

    def _ended(self, response: Response, status: str, detail: str, steps: list[StepReport]) -> Outcome:
        ended = replace(response, status=status, detail=detail[:500])
        self.watch.set_response(ended)
        hours = f"{self.policy.limits.expire_hours:g}"
        notes = {
            "done": f"la réponse pré-approuvée a été exécutée ({detail}) ; les blocages seront levés dans "
            f"{hours} h sauf confirmation par un opérateur",
            "refused": f"la réponse pré-approuvée n'est PAS allée au bout : {detail} ; un opérateur doit "
            "décider (ce qui a été fait est dans l'incident et sera levé à l'expiration sauf confirmation)",
            "failed": f"la réponse pré-approuvée a échoué : {detail} ; un opérateur doit prendre la main",
        }
        return Outcome(ended, notes[status], steps)

    def expire(self, response: Response, now_ms: int) -> Outcome | None:
        """Roll back what an unconfirmed response did once its hours have passed."""
        if (
            response.confirmed_by
            or response.status not in ("done", "refused", "failed")
            or now_ms < response.expires_ms
        ):
            return None
        from pcnctl.ops import rollback
        from pcnctl.state.incidents import Incident

        incident = Incident.load(self.store, response.incident)
        ctx = PolicyContext.create(self.driver, incident, self.store, show_progress=False, guard=self.guard())
        try:
            steps = rollback.plan(ctx.records(), self._own_runs(ctx))
            verdicts = [rollback.execute(ctx, step) for step in steps if step.reversible]
        finally:
            ctx.close()
        failed = [v for v in verdicts if not v.ok]
        status = "failed" if failed else "lifted"
        detail = "; ".join(v.summary for v in verdicts) or "rien à lever"
        ended = replace(response, status=status, detail=detail[:500])
        self.watch.set_response(ended)
        note = (
            f"délai de {self.policy.limits.expire_hours:g} h écoulé sans confirmation : les blocages de la "
            f"réponse pré-approuvée ont été levés ({detail})"
        )
        if failed:
            note = f"la levée des blocages à l'expiration a échoué : {detail} ; un opérateur doit reprendre"
        return Outcome(ended, note, [])

    def _own_runs(self, ctx: RunContext) -> list[RunState]:
        """The incident's runs the watcher's playbook runs started (an operator's own runs are left)."""
        from pcnctl.state.journal import read, records

        book, profile = str(self.policy.playbook.resolve()), self.driver.profile.name
        mine = {
            str(r["run"])
            for r in records(self.store, ctx.incident.id)
            if r.get("t") == "playbook"
            and str(r.get("file")) == book
            and _profile_of(r.get("meta")) == profile
        }
        runs = read(self.store, ctx.incident.id, ent=ctx.ent)
        return [s for s in runs if str(s.meta.get("step", "")).split("/")[0] in mine]


def _completed(store: StateStore, incident: str) -> bool:
    """Whether a playbook run of the incident completed (a kill came after it, before its status)."""
    from pcnctl.state.journal import records

    return any(
        r.get("t") == "playbook-end" and r.get("status") == "completed" for r in records(store, incident)
    )


def _profile_of(meta: object) -> str:
    return str(meta.get("profile", "")) if isinstance(meta, dict) else ""


def confirm(watch: WatchState, incident: str, by: str) -> Response:
    """An operator keeps the response's blocks past their expiry."""
    from pcnctl.errors import UsageError

    response = watch.response(incident)
    if response is None:
        raise UsageError(f"the watcher ran no response in incident {incident} on {watch.ent}")
    kept = replace(response, confirmed_by=by, status=response.status)
    watch.set_response(kept)
    return kept
