"""The journal of an incident: one JSON line per event, written item by item, read back to resume.

Records: ``run`` (an operation started: its name, parameters, planned items, identity), ``item`` (one
item's phase: ``start``, an intermediate phase such as ``blocked``, or a final ``done``/``already``/
``refused``/``failed``), and ``end`` (the run finished, or was interrupted). Each record is handed to the
kernel with one ``write(2)`` as soon as it happens, so a killed process loses nothing it had finished;
``fsync`` runs every second and at the end of a run so a power cut loses at most that second.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcnctl.config import private_dir
from pcnctl.incident.store import utcnow

FINAL = frozenset({"done", "already", "refused", "failed"})


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._lock = threading.Lock()
        self._synced = time.monotonic()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"at": utcnow(), **record}, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())
            if time.monotonic() - self._synced > 1.0:
                os.fsync(self._fd)
                self._synced = time.monotonic()

    def sync(self) -> None:
        with self._lock:
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            os.fsync(self._fd)
            os.close(self._fd)


@dataclass
class RunState:
    """A run as the journal tells it: what was planned, the last phase of each item, how it ended."""

    run: str
    op: str
    params: dict[str, Any]
    items: list[dict[str, Any]]
    meta: dict[str, Any]
    phases: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    end: str | None = None
    started_at: str = ""  # UTC time of the run's first record

    @property
    def finished(self) -> bool:
        return self.end == "completed" or (self.end == "partial" and self.pending == [])

    @property
    def pending(self) -> list[dict[str, Any]]:
        """Items not finished: never started, interrupted mid-way, or failed (they are retried)."""
        return [i for i in self.items if self.phases.get(i["key"]) not in FINAL - {"failed"}]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            phase = self.phases.get(item["key"], "pending")
            out[phase] = out.get(phase, 0) + 1
        return out


def read(path: Path) -> list[RunState]:
    """Every run of a journal, in order. A torn last line (a crash mid-write) is ignored."""
    runs: dict[str, RunState] = {}
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            kind, run = rec.get("t"), rec.get("run")
            if kind == "run":
                first = runs[run].started_at if run in runs else rec.get("at", "")
                runs[run] = RunState(
                    run, rec["op"], rec.get("params", {}), rec.get("items", []), rec.get("meta", {})
                )
                runs[run].started_at = first
            elif kind == "item" and run in runs:
                runs[run].phases[rec["key"]] = rec["phase"]
                if rec.get("detail"):
                    runs[run].details[rec["key"]] = rec["detail"]
            elif kind == "end" and run in runs:
                runs[run].end = rec.get("status")
    return list(runs.values())


def done_keys(runs: list[RunState], *ops: str) -> set[str]:
    """The items that runs of these operations finished (``done``): accounts blocked, messages purged..."""
    return {k for s in runs if s.op in ops for k, phase in s.phases.items() if phase == "done"}
