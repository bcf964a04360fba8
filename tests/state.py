"""Reading pcnctl's state store from a test, as a second process would (read-only, no lock taken)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


def journal(home: Path, incident: str) -> list[dict[str, Any]]:
    """The incident's journal records, oldest first ([] before the first run has written any)."""
    path = home / "state.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT body FROM journal WHERE incident = ? ORDER BY seq", (incident,)).fetchall()
    except sqlite3.OperationalError:  # the schema is being created by the process under test
        return []
    finally:
        db.close()
    return [json.loads(body) for (body,) in rows]


def journal_text(home: Path, incident: str) -> str:
    """The journal as one JSON line per record (what a grep for a marker needs)."""
    return "\n".join(json.dumps(r, separators=(",", ":")) for r in journal(home, incident))
