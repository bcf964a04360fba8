"""The affected schools, for the crisis cell: one row per school that received the threat.

Built client-side (Edifice has no such export, edifice-api.md §1): the recipients' schools of every threat
found, joined with the directory (UAI, name, type, city) and with the messaging blocks in force.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pcnctl.ent.platform import EntDriver
from pcnctl.forensics.evidence import PARTIAL
from pcnctl.forensics.search import SavedMatch
from pcnctl.models import School
from pcnctl.records import Row
from pcnctl.state import blocks as registry
from pcnctl.state.blocks import Block
from pcnctl.state.incidents import Incident
from pcnctl.state.store import StateStore, ent_key

COLUMNS = (
    "uai",
    "name",
    "type",
    "city",
    "messages_received",
    "recipients_reached",
    "senders_from_school",
    "first_threat",
    "last_threat",
    "messaging_blocks",
)


# The French crisis cell's spreadsheet: its headings, school types as written in French, and dates French
# Excel reads as dates (day/month/year, local time) rather than ISO UTC strings it leaves as text.
EXCEL_HEADERS = {
    "uai": "UAI",
    "name": "Établissement",
    "type": "Type",
    "city": "Commune",
    "messages_received": "Messages reçus",
    "recipients_reached": "Destinataires touchés",
    "senders_from_school": "Expéditeurs de l'établissement",
    "first_threat": "Première menace",
    "last_threat": "Dernière menace",
    "messaging_blocks": "Blocages de la messagerie en vigueur",
}
SCHOOL_TYPES_FR = {"ecole": "école", "college": "collège", "lycee": "lycée", "other": "autre"}
LEVERS_FR = {"communication": "communication", "roles": "droits", "login": "connexion"}


@dataclass
class AffectedSchool:
    """One school that received the threat: who there got it, who sent it from there, when, and the
    messaging blocks in force on it."""

    uai: str
    school: School | None  # None when the directory does not list the UAI
    messages: set[str] = field(default_factory=set)
    recipients: set[str] = field(default_factory=set)
    senders: set[str] = field(default_factory=set)
    dates: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    def to_row(self) -> Row:
        school = self.school
        return {
            "uai": self.uai,
            "name": school.name if school else "",
            "type": school.type if school else "",
            "city": school.city if school else "",
            "messages_received": len(self.messages),
            "recipients_reached": len(self.recipients),
            "senders_from_school": len(self.senders),
            "first_threat": min(self.dates),
            "last_threat": max(self.dates),
            "messaging_blocks": "; ".join(
                f"{b.method} ({b.profile}, since {b.since[:16]}Z)" for b in self.blocks
            ),
        }


def for_french_excel(rows: Iterable[AffectedSchool], tz: str = "Europe/Paris") -> list[Row]:
    """The rows with French values: school types, local dates, block descriptions."""
    zone = ZoneInfo(tz)

    def when(value: str | int) -> str:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value / 1000, UTC)
        else:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return moment.astimezone(zone).strftime("%d/%m/%Y %H:%M:%S")

    out = []
    for school in rows:
        french = school.to_row()
        kind = str(french["type"])
        french["type"] = SCHOOL_TYPES_FR.get(kind, kind)
        french["first_threat"], french["last_threat"] = when(min(school.dates)), when(max(school.dates))
        french["messaging_blocks"] = "; ".join(
            f"{LEVERS_FR.get(b.method, b.method)} ({b.profile}, depuis le {when(b.since)})"
            for b in school.blocks
        )
        out.append(french)
    return out


def matches_from_incident(incident: Incident) -> list[SavedMatch]:
    """The threats an incident preserved (its evidence bundles), as search matches."""
    root = incident.path / "evidence"
    out: dict[str, SavedMatch] = {}
    if root.exists():
        for bundle in sorted(root.iterdir()):
            path = bundle / "messages.jsonl"
            if bundle.name.startswith(PARTIAL) or not path.exists():
                continue  # an interrupted collection is not evidence
            for line in path.read_text(encoding="utf-8").splitlines():
                m = json.loads(line)
                out[m["id"]] = {
                    "id": m["id"],
                    "date": m["date"],
                    "from": m["from"],
                    "from_schools": m.get("from_schools") or [],
                    "recipient_schools": m.get("recipient_schools") or {},
                }
    return list(out.values())


def affected_schools(
    driver: EntDriver, matches: Iterable[SavedMatch], state: StateStore
) -> list[AffectedSchool]:
    schools = {s.uai: s for s in driver.list_schools()}
    per: dict[str, AffectedSchool] = {}
    for m in matches:
        by_school: dict[str, set[str]] = {}
        for recipient, uais in (m.get("recipient_schools") or {}).items():
            for uai in uais:
                by_school.setdefault(uai, set()).add(recipient)
        for uai, recipients in by_school.items():
            school = per.setdefault(uai, AffectedSchool(uai, schools.get(uai)))
            school.messages.add(m["id"])
            school.recipients.update(recipients)
            school.dates.append(m["date"])
            if uai in (m.get("from_schools") or []):
                school.senders.add(m["from"])
    for b in registry.active_blocks(state, ent_key(driver.profile.url)):
        if b.uai in per:
            per[b.uai].blocks.append(b)
    return [per[uai] for uai in sorted(per)]
