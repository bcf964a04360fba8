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

from pcnctl.incident import snapshots
from pcnctl.incident.run import plan_digest
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
    count = 0
    for meta in sorted(root.glob("*/incident.json")) if root.exists() else []:
        count += _incident(state, meta.parent, run_ent)
    legacy = state.home / "messaging-blocks.json"
    if legacy.exists():
        for old in json.loads(legacy.read_text(encoding="utf-8")):
            entry = {"name": "", "group": "", "auth": "", "reason": "", "until": None, **old}
            entry["snapshot"] = Path(entry["snapshot"]).stem
            entry["ent"] = run_ent.get(entry["run"], "")
            entry.setdefault("joined", "")
            state.execute(
                "INSERT OR IGNORE INTO blocks VALUES (?,?,?,?,?,?)",
                entry["id"],
                entry["ent"],
                entry["incident"],
                entry["run"],
                entry["status"],
                json.dumps(entry),
            )
        legacy.rename(legacy.with_name(legacy.name + ".migrated"))
    audit_state = state.home / "audit-state.json"
    if audit_state.exists():
        state.set_setting("audit-state", json.loads(audit_state.read_text(encoding="utf-8")))
        audit_state.rename(audit_state.with_name(audit_state.name + ".migrated"))
    state.set_setting(DONE, True)
    return count


def _incident(state: StateStore, directory: Path, run_ent: dict[str, str]) -> int:
    data = json.loads((directory / "incident.json").read_text(encoding="utf-8"))
    journal = directory / "journal.jsonl"
    recs = _lines(journal) if journal.exists() else []
    for rec in recs:
        if rec.get("t") in ("run", "playbook"):
            run_ent[rec["run"]] = ent_key(rec.get("meta", {}).get("url", ""))
    ents = sorted({e for e in run_ent.values() if e})
    state.execute(
        "INSERT OR IGNORE INTO incidents VALUES (?,?,?,?,?,?,?,?)",
        data["id"],
        data["title"],
        data["opened_at"],
        data["opened_by"],
        data.get("status", "open"),
        data.get("closed_at"),
        json.dumps(data.get("profiles", [])),
        json.dumps(ents),
    )
    audit = state.audit_log()
    for rec in recs:
        ent = run_ent.get(str(rec.get("run", "")), "")
        if rec.get("phase") == "start":
            rec["phase"] = "sending"  # 0.1 wrote "start" just before the call: the same meaning
        state.execute(
            "INSERT INTO journal (incident, ent, run, kind, at, body) VALUES (?,?,?,?,?,?)",
            data["id"],
            ent,
            str(rec.get("run", "")),
            str(rec.get("t", "")),
            str(rec.get("at", "")),
            json.dumps(rec),
        )
        if rec.get("t") == "run":
            digest = plan_digest(rec["op"], rec.get("params", {}), rec.get("items", []))
            audit.append(
                incident=data["id"],
                run=rec["run"],
                action=f"{rec['op']}:start",
                target="journal",
                result="migrated",
                plan=digest,
            )
    for path in (
        sorted((directory / "snapshots").glob("*.json")) if (directory / "snapshots").exists() else []
    ):
        body = json.loads(path.read_text(encoding="utf-8"))
        snapshots.save(state, audit, data["id"], run_ent.get(path.stem, ""), path.stem, body)
        path.rename(path.with_name(path.name + ".migrated"))
    if journal.exists():
        journal.rename(journal.with_name(journal.name + ".migrated"))
    (directory / "incident.json").rename(directory / "incident.json.migrated")
    return 1
