"""The audit log: every action pcnctl takes, one JSON line each, chained by SHA-256 so edits show.

Each entry carries ``prev`` (the previous entry's hash) and ``hash`` = SHA-256 of ``prev`` and the entry's
canonical JSON without ``hash``. Editing, deleting or reordering a line breaks the chain from there;
``pcnctl audit verify-log`` finds the first broken line. Appends take an exclusive ``flock`` so two pcnctl
processes never interleave or fork the chain. The file is ``$PCNCTL_HOME/audit.log`` (0600).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcnctl.config import private_dir, state_dir
from pcnctl.incident.store import utcnow

GENESIS = "0" * 64


def default_path() -> Path:
    return state_dir() / "audit.log"


def _digest(prev: str, entry: dict[str, Any]) -> str:
    body = json.dumps(
        {k: v for k, v in entry.items() if k != "hash"},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256((prev + body).encode()).hexdigest()


def _last_line(fd: int) -> bytes:
    """The file's last line, reading backwards from the end only as far as needed."""
    size = os.lseek(fd, 0, os.SEEK_END)
    chunk = 2048
    while True:
        start = max(0, size - chunk)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, size - start).rstrip(b"\n")
        if b"\n" in data or start == 0:
            return data.rsplit(b"\n", 1)[-1]
        chunk *= 4


class AuditLog:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        private_dir(self.path.parent)
        self._lock = threading.Lock()

    def append(self, **entry: Any) -> dict[str, Any]:
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                last = _last_line(fd)
                prev, seq = GENESIS, 0
                if last:
                    previous = json.loads(last)
                    prev, seq = previous["hash"], int(previous["seq"])
                record = {"seq": seq + 1, "at": utcnow(), **entry, "prev": prev}
                record["hash"] = _digest(prev, record)
                os.write(fd, (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode())
                return record
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        """Every readable entry, oldest first (a torn last line is skipped: :func:`verify` reports it)."""
        if not self.path.exists():
            return []
        out = []
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out


@dataclass(frozen=True, slots=True)
class Verification:
    entries: int
    ok: bool
    line: int | None = None
    problem: str = ""


def verify(path: Path | None = None) -> Verification:
    """Recompute the chain; report the first line that does not follow from the one before."""
    path = path or default_path()
    if not path.exists():
        return Verification(0, True)
    prev, seq = GENESIS, 0
    count = 0
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            count = number
            try:
                entry = json.loads(line)
            except ValueError:
                return Verification(number - 1, False, number, "not valid JSON")
            if entry.get("prev") != prev:
                return Verification(number - 1, False, number, "does not chain to the previous entry")
            if entry.get("seq") != seq + 1:
                return Verification(number - 1, False, number, f"sequence {entry.get('seq')} after {seq}")
            if entry.get("hash") != _digest(prev, entry):
                return Verification(number - 1, False, number, "content changed after it was written")
            prev, seq = entry["hash"], entry["seq"]
    return Verification(count, True)
