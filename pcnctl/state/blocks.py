"""The messaging blocks pcnctl put in place, as the state store keeps them: one record per school and run.

A block names the ENT it is on, the lever, the school, the incident and run that made it, who and when,
its expiry, and the run whose sealed snapshot holds the prior state (its own, or, for a block that joined
another incident's, that one's). ``messaging status``, ``expire``, ``unblock``, the audit and the incident
report all read these records; only :mod:`pcnctl.ops.messaging` writes them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from pcnctl.records import Row
from pcnctl.state.store import StateStore


@dataclass(frozen=True, slots=True)
class Block:
    id: str  # "<run>:<UAI>"
    ent: str
    run: str
    incident: str
    school_id: str
    uai: str
    name: str
    profile: str
    method: str  # communication | roles | login
    group: str
    since: str
    by: str
    auth: str
    until: str | None
    reason: str
    snapshot: str  # the run whose snapshot holds the prior state
    joined: str = ""  # the block in force this one joined ('' when its run applied the lever)
    status: str = "active"  # active | lifted
    lifted_at: str | None = None
    lifted_by: str | None = None

    @property
    def lever(self) -> tuple[str, str, str]:
        """What is actually cut on the ENT: two blocks with the same lever share it."""
        return (self.school_id, self.profile, self.method)

    def expired(self, now: datetime) -> bool:
        return bool(self.until) and datetime.fromisoformat(str(self.until).replace("Z", "+00:00")) <= now

    def lifted(self, by: str, at: str) -> Block:
        return replace(self, status="lifted", lifted_at=at, lifted_by=by)

    def status_row(self, now: datetime) -> Row:
        """The row ``messaging status`` shows (and the report and the audit start from)."""
        return {
            "school": self.uai,
            "name": self.name,
            "profile": self.profile,
            "method": self.method,
            "since": self.since,
            "by": self.by,
            "incident": self.incident,
            "until": self.until,
            "expired": self.expired(now),
            "reason": self.reason,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Block:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def blocks(state: StateStore, ent: str | None, *, include_lifted: bool = False) -> list[Block]:
    """The blocks of one ENT (of every ENT when ``ent`` is None: an incident's report), only those in
    force unless told otherwise."""
    where = ["ent = ?"] if ent is not None else []
    if not include_lifted:
        where.append("status = 'active'")
    sql = "SELECT body FROM blocks" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
    return [
        Block.from_json(json.loads(r["body"])) for r in state.rows(sql, *([ent] if ent is not None else []))
    ]


def block_by_id(state: StateStore, block_id: str) -> Block | None:
    """One block, in force or lifted, by its id (``<run>:<UAI>``)."""
    found = state.rows("SELECT body FROM blocks WHERE id = ?", block_id)
    return Block.from_json(json.loads(found[0]["body"])) if found else None


def active_blocks(state: StateStore, ent: str) -> list[Block]:
    return blocks(state, ent)


def save_block(state: StateStore, block: Block) -> None:
    state.execute(
        "INSERT INTO blocks VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status = excluded.status, "
        "body = excluded.body",
        block.id,
        block.ent,
        block.incident,
        block.run,
        block.status,
        json.dumps(asdict(block), ensure_ascii=False),
    )


def status_rows(
    state: StateStore, ent: str | None, now: datetime | None = None, *, include_lifted: bool = False
) -> list[Row]:
    now = now or datetime.now(UTC)
    return [b.status_row(now) for b in listed(state, ent, include_lifted=include_lifted)]


def listed(state: StateStore, ent: str | None, *, include_lifted: bool = False) -> list[Block]:
    """The blocks in the order ``messaging status`` lists them: by school, then by start."""
    return sorted(blocks(state, ent, include_lifted=include_lifted), key=lambda b: (b.uai, b.since))


def expired_blocks(state: StateStore, ent: str, now: datetime | None = None) -> list[Block]:
    now = now or datetime.now(UTC)
    return [b for b in active_blocks(state, ent) if b.expired(now)]
