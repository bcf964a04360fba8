"""An incident on disk: ``$PCNCTL_HOME/incidents/<ID>/`` with ``incident.json``, ``journal.jsonl``,
``snapshots/``, ``failures/`` and ``codes/``. Directories are 0700 and files 0600: they name pupils.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pcnctl.config import private_dir, state_dir
from pcnctl.errors import UsageError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$")


def utcnow() -> str:
    """UTC time as ISO 8601 with milliseconds and a Z: the one time format of journals and logs."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def incidents_dir() -> Path:
    return state_dir() / "incidents"


def write_private(path: Path, text: str) -> None:
    """Write a file 0600 atomically (incident metadata, failure lists, renewal codes)."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@dataclass
class Incident:
    id: str
    title: str
    opened_at: str
    opened_by: str
    status: str = "open"
    closed_at: str | None = None
    profiles: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return incidents_dir() / self.id

    @property
    def journal_path(self) -> Path:
        return self.path / "journal.jsonl"

    def save(self) -> None:
        write_private(
            self.path / "incident.json", json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"
        )

    def subdir(self, name: str) -> Path:
        return private_dir(self.path / name)

    @classmethod
    def load(cls, incident_id: str) -> Incident:
        path = incidents_dir() / incident_id / "incident.json"
        if not _ID.match(incident_id) or not path.exists():
            raise UsageError(
                f"no incident {incident_id!r} in {incidents_dir()}",
                hint="list them with 'pcnctl incident list'",
            )
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return cls(**data)


def new_id() -> str:
    return "INC-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def open_incident(incident_id: str | None, *, title: str = "", operator: str = "") -> tuple[Incident, bool]:
    """Load the incident, or create it (with the given id, or a new one); returns it and whether it is new."""
    if incident_id is not None:
        if not _ID.match(incident_id):
            raise UsageError(
                f"{incident_id!r} is not a valid incident id",
                hint="use 3 to 64 letters, digits, '.', '_' or '-', e.g. INC-2024-03-27",
            )
        if (incidents_dir() / incident_id / "incident.json").exists():
            incident = Incident.load(incident_id)
            if incident.status != "open":
                raise UsageError(
                    f"incident {incident_id} is closed",
                    hint="record it in a new incident: pcnctl incident open NEW-ID (or leave --incident out)",
                )
            return incident, False
    incident = Incident(
        id=incident_id or new_id(),
        title=title or "incident opened by pcnctl",
        opened_at=utcnow(),
        opened_by=operator or "pcnctl",
    )
    private_dir(incident.path)
    incident.save()
    return incident, True


def list_incidents() -> list[Incident]:
    root = incidents_dir()
    if not root.exists():
        return []
    out = []
    for path in sorted(root.iterdir()):
        if (path / "incident.json").exists():
            out.append(Incident.load(path.name))
    return out
