"""Every operation that changes an ENT, by name: the one list that resume, rollback, the incident report's
labels, approvals and the audit's checks read. Adding an operation means writing its module and adding it
here; a test fails when one neither undoes its runs nor says why it cannot."""

from __future__ import annotations

from typing import Any

from pcnctl.errors import UsageError
from pcnctl.ops import accounts, profile_block
from pcnctl.ops.banners import BANNER
from pcnctl.ops.messaging import BLOCK
from pcnctl.ops.messaging_lift import LIFT
from pcnctl.ops.operation import Operation
from pcnctl.ops.purge import PURGE

OPERATIONS: dict[str, Operation[Any]] = {
    **accounts.OPERATIONS,
    **profile_block.OPERATIONS,
    BLOCK.name: BLOCK,
    LIFT.name: LIFT,
    PURGE.name: PURGE,
    BANNER.name: BANNER,
}


def operation(name: str) -> Operation[Any]:
    """The registered operation ``name`` (a journal naming another one was not written by pcnctl)."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise UsageError(f"unknown operation {name!r} in the journal", hint="nothing was done") from None


def label(name: str, lang: str = "en") -> str:
    """What a run of the operation did, in the report's language (the name itself when unknown)."""
    op = OPERATIONS.get(name)
    if op is None:
        return name
    return op.labels.fr if lang == "fr" else op.labels.en
