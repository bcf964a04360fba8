"""Snapshots: the exact state a run is about to change, saved before its first call and sealed.

A snapshot is what an undo restores, so an altered one would make pcnctl create what was never there (a
communication relation added to it would be created on unblock). Each one is stored with its SHA-256 in
the state store, and the digest is also written into the hash-chained audit log when it is taken; loading
it recomputes the digest and compares it with both, and refuses on any difference.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pcnctl.errors import RefusedError
from pcnctl.state.auditlog import AuditLog
from pcnctl.state.store import StateStore

ACTION = "snapshot"


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def save(
    state: StateStore, audit: AuditLog, incident: str, ent: str, run: str, data: Mapping[str, object]
) -> str:
    """Store the snapshot of ``run`` (once: a resumed run keeps the one taken before it started)."""
    digest = _digest(_body(data))
    seal(audit, incident, run, digest)
    store(state, incident, ent, run, data)
    return digest


def _body(data: Mapping[str, object]) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def store(state: StateStore, incident: str, ent: str, run: str, data: Mapping[str, object]) -> str:
    """The database half of :func:`save` (an import seals after its transaction)."""
    body = _body(data)
    digest = _digest(body)
    state.execute(
        "INSERT INTO snapshots VALUES (?,?,?,?,?) ON CONFLICT(run) DO NOTHING",
        run,
        incident,
        ent,
        body,
        digest,
    )
    return digest


def seal(audit: AuditLog, incident: str, run: str, digest: str) -> None:
    audit.append(incident=incident, run=run, action=ACTION, target=run, result="saved", digest=digest)


def exists(state: StateStore, run: str) -> bool:
    return bool(state.rows("SELECT 1 FROM snapshots WHERE run = ?", run))


def load(state: StateStore, audit: AuditLog, run: str) -> Any:
    """The snapshot of ``run``, after checking it is the one sealed when it was taken: the document its
    run saved, which the caller reads as the record type it saved (a messaging block's BlockSnapshot...)."""
    rows = state.rows("SELECT body, digest FROM snapshots WHERE run = ?", run)
    if not rows:
        raise RefusedError(f"the snapshot of run {run} is missing", hint="nothing was restored from it")
    body, recorded = rows[0]["body"], rows[0]["digest"]
    sealed = {
        e.get("digest") for e in audit.entries() if e.get("action") == ACTION and e.get("target") == run
    }
    if _digest(body) != recorded or recorded not in sealed:
        raise RefusedError(
            f"the snapshot of run {run} does not match the digest sealed when it was taken: it was altered",
            hint="nothing was restored from it; check 'pcnctl audit verify-log' and restore by hand",
        )
    return json.loads(body)
