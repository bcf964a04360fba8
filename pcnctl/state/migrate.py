"""Bringing a home written by pcnctl 0.1 into the state store, once, on first use.

0.1 kept ``incidents/<ID>/incident.json``, ``journal.jsonl`` and ``snapshots/*.json`` per incident and
``messaging-blocks.json`` for the whole home, none of them saying which ENT they were about. Each journal
record is imported with the ENT its run names (the run record's base URL), snapshots and plans are sealed
in the audit log as migrated (so resume and unblock accept them), blocks take the ENT of the run that
made them, and the old files are renamed ``*.migrated`` (kept, never read again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pcnctl.ops.context import plan_digest
from pcnctl.state import snapshots
from pcnctl.state.auditlog import AuditEntry
from pcnctl.state.store import StateStore, ent_key

DONE = "migrated-0.1"


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a torn last line of 0.1: nothing was committed by it
    return out


def migrate(state: StateStore) -> int:
    """Import what a 0.1 home holds; returns how many incidents were imported (0 when nothing to do)."""
    if state.setting(DONE):
        return 0
    root = state.home / "incidents"
    run_ent: dict[str, str] = {}
    done: list[Path] = []  # renamed once everything is committed: a kill mid-way imports again, whole
    seals: list[AuditEntry] = []  # audit entries, appended after the commit (never under its lock)
    with state.transaction():
        if state.setting(DONE):  # another process imported it while this one waited for the lock
            return 0
        for meta in sorted(root.glob("*/incident.json")) if root.exists() else []:
            done += _incident(state, meta.parent, run_ent, seals)
        done += _blocks_and_settings(state, run_ent)
        state.set_setting(DONE, True)
    audit = state.audit_log()
    for entry in seals:
        audit.append(**entry)
    for path in done:
        path.rename(path.with_name(path.name + ".migrated"))
    return sum(1 for p in done if p.name == "incident.json")


def _blocks_and_settings(state: StateStore, run_ent: dict[str, str]) -> list[Path]:
    done: list[Path] = []
    legacy = state.home / "messaging-blocks.json"
    if legacy.exists():
        for old in json.loads(legacy.read_text(encoding="utf-8")):
            entry = {"name": "", "group": "", "auth": "", "reason": "", "until": None, **old}
            entry["snapshot"] = Path(entry["snapshot"]).stem
            entry["ent"] = run_ent.get(entry["run"], "")
            entry.setdefault("joined", "")
            state.execute(
                "INSERT INTO blocks VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                entry["id"],
                entry["ent"],
                entry["incident"],
                entry["run"],
                entry["status"],
                json.dumps(entry),
            )
        done.append(legacy)
    audit_state = state.home / "audit-state.json"
    if audit_state.exists():
        state.set_setting("audit-state", json.loads(audit_state.read_text(encoding="utf-8")))
        done.append(audit_state)
    return done


def _incident(
    state: StateStore, directory: Path, run_ent: dict[str, str], seals: list[AuditEntry]
) -> list[Path]:
    data = json.loads((directory / "incident.json").read_text(encoding="utf-8"))
    journal = directory / "journal.jsonl"
    recs = _lines(journal) if journal.exists() else []
    mine = {
        r["run"]: ent_key(r.get("meta", {}).get("url", "")) for r in recs if r.get("t") in ("run", "playbook")
    }
    run_ent.update(mine)
    state.execute(
        "INSERT INTO incidents VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        data["id"],
        data["title"],
        data["opened_at"],
        data["opened_by"],
        data.get("status", "open"),
        data.get("closed_at"),
        json.dumps(data.get("profiles", [])),
        json.dumps(sorted({e for e in mine.values() if e})),
    )
    for rec in recs:
        _record(state, data["id"], run_ent.get(str(rec.get("run", "")), ""), rec, seals)
    done = [directory / "incident.json"] + ([journal] if journal.exists() else [])
    folder = directory / "snapshots"
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        body = json.loads(path.read_text(encoding="utf-8"))
        digest = snapshots.store(state, data["id"], run_ent.get(path.stem, ""), path.stem, body)
        seals.append(
            {
                "incident": data["id"],
                "run": path.stem,
                "action": snapshots.ACTION,
                "target": path.stem,
                "result": "migrated",
                "digest": digest,
            }
        )
        done.append(path)
    return done


def _record(state: StateStore, incident: str, ent: str, rec: dict[str, Any], seals: list[AuditEntry]) -> None:
    if rec.get("phase") == "start":
        rec["phase"] = "sending"  # 0.1 wrote "start" just before the call: the same meaning
    state.execute(
        "INSERT INTO journal (incident, ent, run, kind, at, body) VALUES (?,?,?,?,?,?)",
        incident,
        ent,
        str(rec.get("run", "")),
        str(rec.get("t", "")),
        str(rec.get("at", "")),
        json.dumps(rec),
    )
    if rec.get("t") == "run":
        digest = plan_digest(rec["op"], rec.get("params", {}), rec.get("items", []))
        seals.append(
            {
                "incident": incident,
                "run": rec["run"],
                "action": f"{rec['op']}:start",
                "target": "journal",
                "result": "migrated",
                "plan": digest,
            }
        )
