"""``pcnctl rollback ID``: undo an incident's reversible changes from its own records, newest first.

Reversible: messaging blocks (restored from their snapshots, hand changes kept), accounts the incident
blocked (unblocked, only if they are still blocked and were not blocked before), profile blocks (lifted,
accounts blocked before kept blocked). Not reversible, and listed as such: purges, password resets,
renewal codes, sessions ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pcnctl.ops import accounts, messaging
from pcnctl.ops.context import RunContext
from pcnctl.state import blocks as registry
from pcnctl.state.incidents import Incident
from pcnctl.state.journal import read
from pcnctl.state.store import StateStore

IRREVERSIBLE = {
    "messages.purge": "purged messages are gone from every mailbox (the evidence keeps them)",
    "accounts.reset-password": "passwords stay reset: hand over renewal codes",
    "accounts.renewal-codes": "renewal codes stay valid until used",
    "sessions.revoke": "ended sessions cannot come back",
    "banners.post": "banners stay up until they expire or are deleted in the ENT's admin console",
}


@dataclass
class Undo:
    kind: str  # messaging | accounts | profile | irreversible
    run: str
    description: str
    targets: list[Any]
    profile: str = ""


def plan(state: StateStore, incident: Incident, ent: str) -> list[Undo]:
    """What undoing the incident's runs on this ENT takes, newest first. Accounts whose call was in flight
    at an interruption count as changed by the run: unblocking one that the call did not reach is a no-op
    (the plan sees it unblocked), leaving it blocked would be the harm."""
    undos: list[Undo] = []
    blocks = [b for b in registry.active_blocks(state, ent) if b.incident == incident.id]
    for run in reversed(read(state, incident.id, ent=ent)):
        if run.op == messaging.OP_BLOCK:
            mine = [b for b in blocks if b.run == run.run]
            if mine:
                what = f"lift {len(mine)} messaging block(s) ({mine[0].method}, {mine[0].profile})"
                undos.append(Undo("messaging", run.run, what, mine))
        elif run.op == "accounts.block":
            was_blocked = {i["key"] for i in run.items if i.get("blocked")}
            changed = {k for k, p in run.phases.items() if p == "done"} | run.in_flight
            done = sorted(k for k in changed if k not in was_blocked)
            if done:
                undos.append(
                    Undo("accounts", run.run, f"unblock {len(done)} account(s) this incident blocked", done)
                )
        elif run.op == accounts.OP_PROFILE_BLOCK:
            profile = str(run.params.get("profile", ""))
            schools = [i["key"] for i in run.items]
            what = f"lift the {profile} profile block in {len(schools)} school(s)"
            undos.append(Undo("profile", run.run, what, schools, profile))
        elif run.op in IRREVERSIBLE and any(p == "done" for p in run.phases.values()):
            undos.append(Undo("irreversible", run.run, f"{run.op}: {IRREVERSIBLE[run.op]}", []))
    return undos


def execute(ctx: RunContext, undo: Undo) -> str:
    """Undo one run's changes through the same operations as the commands (journalled, audited)."""
    if undo.kind == "messaging":
        done = messaging.execute_unblock(ctx, undo.targets)
        return f"{sum(1 for r in done if r['result'] == 'done')} lifted"
    if undo.kind == "accounts":
        result = accounts.execute(ctx, accounts.prepare(ctx.driver, "accounts.unblock", undo.targets))
        return ", ".join(f"{n} {k}" for k, n in sorted(result.counts().items()))
    if undo.kind == "profile":
        p = accounts.plan_profile_block(ctx.driver, undo.targets, undo.profile, False)
        accounts.execute_profile_block(ctx, p)
        return f"{len(undo.targets)} school(s)"
    return "kept"
