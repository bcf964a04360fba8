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
from pathlib import Path
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
# The second look: the response's hunt again, from the search its first run saved, and the accounts it links
# blocked (the threats are purged by then, so the first playbook's own searches would find nothing).
SECOND_LOOK = """\
# Written by pcnctl watch: the second look of a pre-approved response (docs/watch.md).
version: 1
name: second-look
description: >-
  The hunt again from the first run's saved search, once the attacker's other accounts have logged in,
  and the accounts it links blocked, under the same signed policy's limits.
inputs:
  search: {type: string, description: The search the first run saved.}
  since: {type: string, default: 2h, description: How far back the hunt looks.}
steps:
  - id: hunt
    op: hunt
    with: {since: "${{ inputs.since }}", search: "${{ inputs.search }}", max: 2000}
  - id: block-senders
    op: block_accounts
    approval: true
    with: {accounts: "${{ steps.hunt.accounts }}", max: 2000}
"""


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

    def guard(self, incident: str) -> Guard:
        """The policy's guard for the incident; its counts add the earlier runs' items (a second look
        blocks more accounts within the same limit, never another one)."""
        from pcnctl.state.journal import done_keys, read

        def before(op: str) -> set[str]:
            return done_keys(read(self.store, incident, ent=self.watch.ent), op)

        return Guard(self.policy, self.signers, self.reached, before)

    def inputs(self) -> dict[str, str]:
        hours = self.policy.limits.expire_hours
        given = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.policy.inputs.items()}
        return {"block_until": f"{max(1, round(hours * 60))}m", **given}

    def run(self, incident: Incident, now_ms: int, *, again: bool = False) -> Outcome:
        """Start the response in ``incident``, or continue the one a kill interrupted there; ``again``: a
        new run of the playbook there (the second look), its limits counted with the first's."""
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
        pending = runner.unfinished(self.store, incident.id) if earlier else None
        if earlier and not again and pending is None and _completed(self.store, incident.id, response.passes):
            return self._ended(response, "done", "finie avant l'interruption de la veille", [])
        path: Path | None = Path(pending.file) if pending else self.policy.playbook
        if again and not pending:
            path = self._second_look(incident)
        book, problems = load(path) if path is not None else (None, [])
        if book is None:
            what = "; ".join(str(p) for p in problems[:3]) or "the first run saved no search to hunt from"
            return self._ended(response, "failed", what, [])
        given = {"search": str(self._saved(incident.id))} if again and not pending else self.inputs()
        try:
            # The policy's hours become the messaging block's expiry where the playbook takes one.
            given = {k: v for k, v in given.items() if k in book.inputs or k != "block_until"}
            inputs = pending.inputs if pending else runner.coerce_inputs(book, given)
        except PcnError as exc:
            return self._ended(response, "failed", exc.message, [])
        guard = self.guard(incident.id)
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

    def _second_look(self, incident: Incident) -> Path | None:
        """The second look's playbook, written into the incident: the hunt again from the first run's last
        saved search (its threats are purged by then: no new search would find them), and the accounts it
        links blocked, under the same policy's guard. None when the first run saved no search."""
        if self._saved(incident.id) is None:
            return None
        path = incident.path / "second-look.yaml"
        if not path.exists():
            from pcnctl.files import write_private

            write_private(path, SECOND_LOOK)
        return path

    def _saved(self, incident: str) -> Path | None:
        """The last search the response's playbook saved (``recheck``, else ``variants``, else ``find``)."""
        from pcnctl.state.journal import records

        saved: dict[str, str] = {}
        for r in records(self.store, incident):
            result = r.get("result")
            done = r.get("t") == "step" and r.get("status") == "done"
            if done and isinstance(result, dict) and isinstance(result.get("saved"), str):
                saved[str(r.get("step"))] = str(result["saved"])
        found = next((saved[k] for k in ("recheck", "variants", "find") if k in saved), None)
        return Path(found) if found else None

    def _ended(self, response: Response, status: str, detail: str, steps: list[StepReport]) -> Outcome:
        ended = replace(response, status=status, detail=detail[:500], passes=response.passes + 1)
        self.watch.set_response(ended)
        hours = f"{self.policy.limits.expire_hours:g}"
        notes = {
            "done": f"la réponse pré-approuvée a été exécutée ({detail}) ; les blocages seront levés dans "
            f"{hours} h sauf confirmation par un opérateur",
            "refused": f"la réponse pré-approuvée n'est PAS allée au bout : {detail} ; un opérateur doit "
            "décider (ce qui a été fait est dans l'incident et sera levé à l'expiration sauf confirmation)",
            "failed": f"la réponse pré-approuvée a échoué : {detail} ; un opérateur doit prendre la main",
        }
        note = notes[status]
        if ended.passes > 1:
            note = f"second passage (les connexions faites pendant le premier) : {note}"
        return Outcome(ended, note, steps)

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
        guard = self.guard(incident.id)
        ctx = PolicyContext.create(self.driver, incident, self.store, show_progress=False, guard=guard)
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

        books = {str(self.policy.playbook.resolve()), str((ctx.incident.path / "second-look.yaml").resolve())}
        profile = self.driver.profile.name
        mine = {
            str(r["run"])
            for r in records(self.store, ctx.incident.id)
            if r.get("t") == "playbook"
            and str(r.get("file")) in books
            and _profile_of(r.get("meta")) == profile
        }
        runs = read(self.store, ctx.incident.id, ent=ctx.ent)
        return [s for s in runs if str(s.meta.get("step", "")).split("/")[0] in mine]


def _completed(store: StateStore, incident: str, passes: int) -> bool:
    """Whether more playbook runs of the incident completed than the response counted (a kill came after
    one, before its status was written)."""
    from pcnctl.state.journal import records

    ends = [
        r for r in records(store, incident) if r.get("t") == "playbook-end" and r.get("status") == "completed"
    ]
    return len(ends) > passes


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
