"""An incident: its record in the state store, and its directory ``$PCNCTL_HOME/incidents/<ID>/`` for the
files an operator opens (evidence bundles, failure lists, renewal codes, saved searches, exports).
Directories are 0700 and files 0600: they name pupils.

An incident is opened only on purpose: by ``pcnctl incident open ID``, or by a mutating command run
without ``--incident`` (which says so). A mistyped ``--incident`` is an error, never a new incident.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pcnctl.errors import UsageError
from pcnctl.files import private_dir
from pcnctl.state.backend import Row
from pcnctl.state.store import StateStore
from pcnctl.timespec import utcnow

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$")
_COLUMNS = "id, title, opened_at, opened_by, status, closed_at, profiles, ents"  # a shared store has more


@dataclass
class Incident:
    id: str
    title: str
    opened_at: str
    opened_by: str
    status: str = "open"
    closed_at: str | None = None
    profiles: list[str] = field(default_factory=list)
    ents: list[str] = field(default_factory=list)
    home: Path = field(default=Path("."), repr=False, compare=False)

    @property
    def path(self) -> Path:
        return self.home / "incidents" / self.id

    def save(self, state: StateStore) -> None:
        state.execute(
            "INSERT INTO incidents VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET title = "
            "excluded.title, status = excluded.status, closed_at = excluded.closed_at, "
            "profiles = excluded.profiles, ents = excluded.ents",
            self.id,
            self.title,
            self.opened_at,
            self.opened_by,
            self.status,
            self.closed_at,
            json.dumps(self.profiles),
            json.dumps(self.ents),
        )

    def subdir(self, name: str) -> Path:
        return private_dir(self.path / name)

    @classmethod
    def load(cls, state: StateStore, incident_id: str) -> Incident:
        rows = (
            state.rows(f"SELECT {_COLUMNS} FROM incidents WHERE id = ?", incident_id)
            if _ID.match(incident_id)
            else []
        )
        if not rows:
            raise UsageError(
                f"no incident {incident_id!r} in {state.where if state.shared else state.home}",
                hint="list them with 'pcnctl incident list'; open one with "
                "'pcnctl incident open --id ID', or leave --incident out to open a new one",
            )
        return _from_row(state, rows[0])


def _from_row(state: StateStore, row: Row) -> Incident:
    data = dict(row)
    data["profiles"] = json.loads(data["profiles"])
    data["ents"] = json.loads(data["ents"])
    return Incident(**data, home=state.home)


def new_id() -> str:
    return "INC-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def check_id(incident_id: str) -> str:
    if not _ID.match(incident_id):
        raise UsageError(
            f"{incident_id!r} is not a valid incident id",
            hint="use 3 to 64 letters, digits, '.', '_' or '-', e.g. INC-2024-03-27",
        )
    return incident_id


def create_incident(
    state: StateStore, incident_id: str | None = None, *, title: str = "", operator: str = ""
) -> Incident:
    """Open a new incident (``pcnctl incident open``, or a command run without ``--incident``)."""
    incident = Incident(
        id=check_id(incident_id) if incident_id else new_id(),
        title=title,
        opened_at=utcnow(),
        opened_by=operator or "pcnctl",
        home=state.home,
    )
    if state.rows("SELECT 1 FROM incidents WHERE id = ?", incident.id):
        raise UsageError(f"incident {incident.id} already exists", hint=f"use it: --incident {incident.id}")
    private_dir(incident.path)
    incident.save(state)
    return incident


def open_incident(
    state: StateStore, incident_id: str | None, *, title: str = "", operator: str = ""
) -> tuple[Incident, bool]:
    """The incident a mutating command records in: the one named, which must exist and be open, or a new
    one when none is named; returns it and whether it is new."""
    if incident_id is None:
        return create_incident(state, title=title, operator=operator), True
    incident = Incident.load(state, check_id(incident_id))
    if incident.status != "open":
        raise UsageError(
            f"incident {incident_id} is closed",
            hint="record it in a new incident: pcnctl incident open NEW-ID (or leave --incident out)",
        )
    return incident, False


def list_incidents(state: StateStore) -> list[Incident]:
    return [_from_row(state, r) for r in state.rows(f"SELECT {_COLUMNS} FROM incidents ORDER BY id")]
