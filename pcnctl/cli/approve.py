"""``pcnctl approve``: a second administrator reads an approval request and signs it with their SSH key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pcnctl.cli._common import OutputOpt, QuietOpt, confirm_action, emit_record, handle_errors, note
from pcnctl.cli.accounts import YesOpt


@handle_errors
def approve(
    request: Annotated[
        Path, typer.Argument(help="The request file the operator's run wrote.", show_default=False)
    ],
    key: Annotated[
        Path, typer.Option("--key", help="Your SSH private key (its principal is in the approvers file).")
    ] = Path("~/.ssh/id_ed25519"),
    yes: YesOpt = False,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Approve another administrator's purge or wide run (four-eyes profiles): read it, then sign it.

    The signature (REQUEST.sig, written beside the request) is valid for that very plan, for two hours after
    the request was written, and only if your key is in the profile's approvers file under a login that is
    not the operator's. Nothing is sent to the ENT.
    """
    from pcnctl.errors import RefusedError
    from pcnctl.ops import approvals

    asked = approvals.Request.read(request)
    shown: dict[str, str | int] = {
        "operation": asked.op,
        "why": asked.reason,
        "ent": asked.ent,
        "incident": asked.incident,
        "items": asked.count,
        "parameters": json.dumps(asked.params, ensure_ascii=False, sort_keys=True),
        "schools": ", ".join(f"{uai} ({n})" for uai, n in asked.schools.items()),
        "sample": ", ".join(asked.sample),
        "reason given": asked.note,
        "requested by": asked.requested_by,
        "requested at": asked.requested_at,
        "expires at": asked.expires_at,
    }
    emit_record(shown, output)
    if asked.expired:
        raise RefusedError(f"the request expired at {asked.expires_at}", hint="the operator runs it again")
    confirm_action(
        f"Approve {asked.op} of {asked.count} item(s) by {asked.requested_by}?", yes=yes, count=asked.count
    )
    signature = approvals.sign(request, key.expanduser())
    note(
        f"Approved: {signature} (copy it beside the request if the operator works on another machine)", quiet
    )
