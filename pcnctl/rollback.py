"""``pcnctl rollback ID``: undo an incident's reversible changes from its own records, newest first.

Reversible: messaging blocks (restored from their snapshots, hand changes kept), accounts the incident
blocked (unblocked, only if they are still blocked and were not blocked before), profile blocks (lifted,
accounts blocked before kept blocked). Not reversible, and listed as such: purges, password resets,
renewal codes, sessions ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pcnctl import messaging
from pcnctl.incident.journal import read
from pcnctl.incident.store import Incident

IRREVERSIBLE = {
    "messages.purge": "purged messages are gone from every mailbox (the evidence keeps them)",
    "accounts.reset-password": "passwords stay reset: hand over renewal codes",
    "accounts.renewal-codes": "renewal codes stay valid until used",
    "sessions.revoke": "ended sessions cannot come back",
}


@dataclass
class Undo:
    kind: str  # messaging | accounts | profile | irreversible
    run: str
    description: str
    targets: list[Any]
    profile: str = ""


def plan(incident: Incident) -> list[Undo]:
    runs = read(incident.journal_path)
    undos: list[Undo] = []
    blocks = [b for b in messaging.active_blocks() if b["incident"] == incident.id]
    for state in reversed(runs):
        if state.op == messaging.OP_BLOCK:
            mine = [b for b in blocks if b["run"] == state.run]
            if mine:
                undos.append(
                    Undo(
                        "messaging",
                        state.run,
                        f"lift {len(mine)} messaging block(s) ({mine[0]['method']}, {mine[0]['profile']})",
                        mine,
                    )
                )
        elif state.op == "accounts.block":
            was_blocked = {i["key"] for i in state.items if i.get("blocked")}
            done = [k for k, p in state.phases.items() if p == "done" and k not in was_blocked]
            if done:
                undos.append(
                    Undo("accounts", state.run, f"unblock {len(done)} account(s) this incident blocked", done)
                )
        elif state.op == "accounts.block-profile":
            undos.append(
                Undo(
                    "profile",
                    state.run,
                    f"lift the {state.params.get('profile')} profile block in {len(state.items)} school(s)",
                    [i.get("uai") for i in state.items],
                )
            )
        elif state.op in IRREVERSIBLE and any(p == "done" for p in state.phases.values()):
            undos.append(Undo("irreversible", state.run, f"{state.op}: {IRREVERSIBLE[state.op]}", []))
    return undos
