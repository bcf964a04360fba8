"""Moving a home's embedded store into a team's shared store (``pcnctl state migrate``), once, whole.

Everything the home holds goes in one transaction of the shared store: incidents, every journal record
(in its order), snapshots, blocks, seals and the audit log. The log's entries are copied exactly, line for
line, as a chain of their own (``home:<when>:<store id>``), with the home's seal and unsealed ranges
renamed after it, so that its hashes, a printed head and ``verify-log`` still hold; new entries go to the
shared chain. The move is refused before anything is written when the shared store already holds a record
of one of these incidents (runs, snapshots or blocks included), when the home's audit log does not verify,
or when this home was moved already. The home's own store is held (its write lock) from the first read
to the end, and marked as moved once the shared store has committed: it is not written again.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pcnctl.errors import RefusedError, UsageError
from pcnctl.state.auditlog import SEAL, seal_name, verify
from pcnctl.state.backend import MOVED, Row, Seal
from pcnctl.state.store import StateStore
from pcnctl.timespec import utcnow

STORE_ID = "store-id"  # the embedded store's own random id: what the shared store knows a home by
SHOWN = 5  # conflicting ids named in a refusal
_INCIDENT = "id, title, opened_at, opened_by, status, closed_at, profiles, ents"


@dataclass(frozen=True, slots=True)
class Moved:
    """What a move copied (``pcnctl state migrate`` prints it)."""

    incidents: int
    journal: int
    snapshots: int
    blocks: int
    seals: int
    audit_entries: int
    chain: str
    target: str

    def to_row(self) -> dict[str, int | str]:
        return {
            "incidents": self.incidents,
            "journal": self.journal,
            "snapshots": self.snapshots,
            "blocks": self.blocks,
            "seals": self.seals,
            "audit_entries": self.audit_entries,
            "chain": self.chain,
            "to": self.target,
        }


@dataclass(frozen=True, slots=True)
class _Home:
    """What the home's store holds, read under its write lock."""

    incidents: list[Row]
    journal: list[Row]
    snapshots: list[Row]
    blocks: list[Row]
    seals: list[Seal]
    audit: list[str]  # the audit log's complete lines, as written
    window: str | None  # the home's audit windows (settings ``audit-state``)


def move(source: StateStore, target: StateStore, home_label: str) -> Moved:
    """Move the records of ``source`` (a home's embedded store) into ``target`` (a shared store)."""
    if source.shared or not target.shared:
        raise UsageError("a move goes from a home's own store to a shared one (postgresql://...)")
    store_id = source.setting(STORE_ID)
    if store_id is None:
        store_id = secrets.token_hex(6)
        source.set_setting(STORE_ID, store_id)
    with source.transaction():
        before = _moved_before(source, target, str(store_id))
        if before is None:
            moved = _copy(source, target, str(store_id), home_label)
            source.set_setting(MOVED, target.where)
    if before is not None:
        raise RefusedError(
            f"the records of {source.where} were moved already{before}; nothing was moved again",
            hint="use the shared store: give the profile its --state (pcnctl profile add NAME ... --state "
            "URL --force)",
        )
    return moved


def _copy(source: StateStore, target: StateStore, store_id: str, home_label: str) -> Moved:
    home = _read(source)
    _refuse_conflicts(target, home)
    chain = f"home:{datetime.now(UTC):%Y%m%dT%H%M%SZ}:{store_id}"
    moved = Moved(
        len(home.incidents),
        len(home.journal),
        len(home.snapshots),
        len(home.blocks),
        len(home.seals),
        len(home.audit),
        chain,
        target.where,
    )
    with target.transaction():
        _write(target, home, chain)
        target.execute(
            "INSERT INTO imports (source, home, chain, at, summary) VALUES (?, ?, ?, ?, ?)",
            store_id,
            home_label,
            chain,
            utcnow(),
            json.dumps(moved.to_row()),
        )
    return moved


def _moved_before(source: StateStore, target: StateStore, store_id: str) -> str | None:
    """When this home was moved before (or its move committed in the shared store just before a crash
    kept the home from hearing of it): when and by whom, the home marked as moved. None otherwise."""
    done = target.rows("SELECT at, written_by FROM imports WHERE source = ?", store_id)
    if source.setting(MOVED) is None and not done:
        return None
    if source.setting(MOVED) is None:
        source.set_setting(MOVED, target.where)
    return f" on {done[0]['at']} by the role {done[0]['written_by']}" if done else ""


def _read(source: StateStore) -> _Home:
    """Everything the home holds, once its audit log verifies."""
    log = source.audit_log()
    checked = verify(log)
    if not checked.ok:
        raise RefusedError(
            f"the audit log of this home does not verify (line {checked.line}: {checked.problem}); "
            "nothing was moved",
            hint="look into it first (pcnctl audit verify-log): an altered log is not merged into the team's",
        )
    lines = log.path.read_bytes().split(b"\n") if log.path.exists() else []
    audit = [raw.decode() for raw in lines if raw and _entry(raw)]
    return _Home(
        source.rows(f"SELECT {_INCIDENT} FROM incidents ORDER BY id"),
        source.rows("SELECT incident, ent, run, kind, at, body FROM journal ORDER BY seq"),
        source.rows("SELECT run, incident, ent, body, digest FROM snapshots ORDER BY run"),
        source.rows("SELECT id, ent, incident, run, status, body FROM blocks ORDER BY id"),
        source.seals(""),
        audit,
        json.dumps(source.setting("audit-state")) if source.setting("audit-state") else None,
    )


def _entry(raw: bytes) -> bool:
    """A complete entry (a torn last line, which verify only warns about, is not one)."""
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


def _refuse_conflicts(target: StateStore, home: _Home) -> None:
    """Nothing of these incidents may be in the shared store already: not the incident, nor a journal
    record, a snapshot or a block naming it, nor a snapshot or block of the same run or id."""
    found: list[str] = []
    incidents = sorted({str(r["id"]) for r in home.incidents} | {str(r["incident"]) for r in home.journal})
    found += _present(target, "SELECT id AS k FROM incidents WHERE id IN ({})", incidents)
    for table in ("journal", "snapshots", "blocks"):
        found += _present(
            target, f"SELECT DISTINCT incident AS k FROM {table} WHERE incident IN ({{}})", incidents
        )
    found += _present(
        target, "SELECT run AS k FROM snapshots WHERE run IN ({})", [r["run"] for r in home.snapshots]
    )
    found += _present(target, "SELECT id AS k FROM blocks WHERE id IN ({})", [r["id"] for r in home.blocks])
    if found:
        named = sorted(set(found))
        more = f" and {len(named) - SHOWN} more" if len(named) > SHOWN else ""
        raise RefusedError(
            f"the shared store already holds records of {', '.join(named[:SHOWN])}{more}; nothing was moved",
            hint="a home is moved once: this one (or a copy of it) was moved already, or another home "
            "used the same incident ids (check with pcnctl state show)",
        )


def _present(target: StateStore, sql: str, keys: Sequence[str]) -> list[str]:
    out: list[str] = []
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        out += [str(r["k"]) for r in target.rows(sql.format(",".join("?" * len(chunk))), *chunk)]
    return out


def _write(target: StateStore, home: _Home, chain: str) -> None:
    for r in home.incidents:
        target.execute(
            "INSERT INTO incidents (id, title, opened_at, opened_by, status, closed_at, profiles, ents) "
            "VALUES (?,?,?,?,?,?,?,?)",
            *(
                r[c]
                for c in ("id", "title", "opened_at", "opened_by", "status", "closed_at", "profiles", "ents")
            ),
        )
    for r in home.journal:
        target.execute(
            "INSERT INTO journal (incident, ent, run, kind, at, body) VALUES (?,?,?,?,?,?)",
            *(r[c] for c in ("incident", "ent", "run", "kind", "at", "body")),
        )
    for r in home.snapshots:
        target.execute(
            "INSERT INTO snapshots (run, incident, ent, body, digest) VALUES (?,?,?,?,?)",
            *(r[c] for c in ("run", "incident", "ent", "body", "digest")),
        )
    for r in home.blocks:
        target.execute(
            "INSERT INTO blocks (id, ent, incident, run, status, body) VALUES (?,?,?,?,?,?)",
            *(r[c] for c in ("id", "ent", "incident", "run", "status", "body")),
        )
    for seal in home.seals:
        target.set_seal(_renamed(seal.name, chain), seal.count, seal.head, seal.at)
    for line in home.audit:
        seq = int(json.loads(line)["seq"])
        target.execute("INSERT INTO audit_log (chain, seq, body) VALUES (?, ?, ?)", chain, seq, line)
    if home.window is not None:
        target.execute(
            "INSERT INTO settings (key, value) VALUES ('audit-state', ?) ON CONFLICT (role, key) DO NOTHING",
            home.window,
        )


def _renamed(name: str, chain: str) -> str:
    """The home's audit seals follow its chain (``audit-log`` → ``audit-log@CHAIN``); others keep their
    name (an evidence bundle's seal names its incident)."""
    if name == SEAL or name.startswith(f"{SEAL}:"):
        return seal_name(chain) + name[len(SEAL) :]
    return name
