"""Running a reviewed playbook from the command line: what ``pcnctl playbook`` and ``accounts quarantine``
(which runs ``compromised-account.yaml``) share."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pcnctl.cli._common import (
    STEP_COLUMNS,
    check_incident,
    context_options,
    emit,
    get_driver,
    get_state,
    invocation,
    note,
    record_in,
)

if TYPE_CHECKING:
    from pcnctl.playbooks.model import Playbook, Step
    from pcnctl.playbooks.params import StepParams
    from pcnctl.playbooks.runner import PlaybookRun
    from pcnctl.records import JsonObject


def load_valid(path: Path) -> Playbook:
    from pcnctl.errors import PlaybookError
    from pcnctl.playbooks.model import load

    playbook, problems = load(path)
    if problems or playbook is None:
        for p in problems:
            sys.stderr.write(f"{p}\n")
        raise PlaybookError(f"{path}: {len(problems)} problem(s); nothing was run")
    return playbook


def show_plan(playbook: Playbook, inputs: JsonObject, profile: str | None, output: str) -> None:
    """Check mode against the ENT, rendered: what ``playbook plan`` and a quarantine's dry run show."""
    from pcnctl.forensics.mailstore import optional_mailstore
    from pcnctl.playbooks import runner

    driver = get_driver(profile)
    store = optional_mailstore(driver.profile)
    try:
        reports = runner.plan(playbook, inputs, driver, store, get_state())
    finally:
        if store is not None:
            store.close()
    emit([r.to_row() for r in reports], output, STEP_COLUMNS)


def confirm_step(step: Step, params: StepParams) -> bool:
    from pcnctl.playbooks.ops import OPS

    if not sys.stdin.isatty():
        return False
    return bool(typer.confirm(f"Step {step.id} ({OPS[step.op].summary}) needs approval. Proceed?", err=True))


def execute(
    playbook: Playbook,
    inputs: JsonObject,
    incident_id: str | None,
    profile: str | None,
    approvals: list[str] | None,
    approve_all: bool,
    output: str,
    quiet: bool,
    resume_from: PlaybookRun | None = None,
) -> None:
    from pcnctl.forensics.mailstore import optional_mailstore
    from pcnctl.ops.context import RunContext
    from pcnctl.playbooks import runner

    state = check_incident(incident_id)
    driver = get_driver(profile)
    inc = record_in(incident_id, driver.whoami().label, quiet, title=playbook.name)
    ctx = RunContext.create(driver, inc, state, **context_options(driver, quiet))
    store = optional_mailstore(driver.profile)

    debug = invocation().env.debug

    def show(report: runner.StepReport) -> None:
        note(f"[{report.status}] {report.id} ({report.op}) {report.summary}", quiet)
        if debug and report.status == "done":
            note(f"  time: {report.timing.text()}")

    try:
        reports = runner.run(
            playbook,
            inputs,
            ctx,
            store,
            approvals=set(approvals or []),
            approve_all=approve_all,
            confirm=confirm_step,
            resume_from=resume_from,
            on_step=show,
        )
    finally:
        ctx.close()
        if store is not None:
            store.close()
    emit([r.to_row() for r in reports], output, STEP_COLUMNS)
    failed = [r for r in reports if r.status == "failed"]
    if failed:  # steps whose on_error said continue: the run went on, but it did not all work
        from pcnctl.errors import PartialFailureError

        raise PartialFailureError(
            f"playbook {playbook.name!r} ended with {len(failed)} failed step(s): "
            + ", ".join(r.id for r in failed),
            hint=f"see each step's summary; the incident is {inc.id}",
        )
    note(f"Playbook {playbook.name!r} completed in incident {inc.id}", quiet)
