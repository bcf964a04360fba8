"""What the open incidents want blocked, so that a blanket write never re-opens an attacker's account.

Edifice keeps one ``blocked`` flag per account. Lifting a profile's login block (``PUT
/directory/structure/:id/profile/block`` with ``block:false``) sets it to false on **every** member of the
profile group, whoever blocked them and why (directory ``DefaultSchoolService.blockUsers``), and a session
revoke is a block then an unblock. So every lift and every revoke asks this module which accounts an open
incident on the ENT wants blocked, and keeps them blocked.

The journal is the one source: an account an ``accounts.block`` run blocked, or found already blocked
(the incident wants it blocked either way), or a revoke kept blocked, is wanted until an
``accounts.unblock`` run of the same incident (a rollback's, or the operator's) lets it go, or the incident
is closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pcnctl.state.incidents import list_incidents
from pcnctl.state.journal import RunState, read
from pcnctl.state.store import StateStore

WANTS = ("done", "already")
# The account operations whose runs say what an incident wants blocked (pcnctl.ops.accounts registers them).
BLOCK, UNBLOCK, REVOKE = "accounts.block", "accounts.unblock", "sessions.revoke"


@dataclass
class Intent:
    """Accounts wanted blocked on one ENT, each with the open incidents that want it."""

    by_account: dict[str, set[str]] = field(default_factory=dict)

    def __contains__(self, account: str) -> bool:
        return account in self.by_account

    def among(self, accounts: Sequence[str]) -> list[str]:
        return [a for a in accounts if a in self.by_account]

    def incidents(self, accounts: Sequence[str]) -> list[str]:
        return sorted({i for a in accounts for i in self.by_account.get(a, set())})

    def note(self, kept: Sequence[str]) -> str:
        """What a lift or a revoke says of the accounts it kept blocked."""
        return (
            f"{len(kept)} account(s) kept blocked: incident(s) {', '.join(self.incidents(kept))} want them "
            "blocked (lift them with 'pcnctl accounts unblock --incident ID')"
        )


def wanted_blocked(state: StateStore, ent: str, *, besides: str | None = None) -> Intent:
    """The accounts open incidents on ``ent`` want blocked (``besides``: leave one incident out, the one
    whose blocks a rollback is undoing)."""
    intent = Intent()
    for incident in list_incidents(state):
        if incident.status != "open" or incident.id == besides:
            continue
        for account in _wanted_by(read(state, incident.id, ent=ent)):
            intent.by_account.setdefault(account, set()).add(incident.id)
    return intent


def _wanted_by(runs: Sequence[RunState]) -> set[str]:
    """One incident's runs, in order: blocks add, unblocks of the same incident take away."""
    wanted: set[str] = set()
    for run in runs:
        keys = {k for k, phase in run.phases.items() if phase in WANTS}
        if run.op == BLOCK:
            wanted |= keys
        elif run.op == REVOKE and run.params.get("keep_blocked"):
            wanted |= {k for k, phase in run.phases.items() if phase == "done"}
        elif run.op == UNBLOCK:
            wanted -= keys
    return wanted
