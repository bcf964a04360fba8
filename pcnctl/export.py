"""The affected schools, for the crisis cell: one row per school that received the threat.

Built client-side (Edifice has no such export, edifice-api.md §1): the recipients' schools of every threat
found, joined with the directory (UAI, name, type, city) and with the messaging blocks in force.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pcnctl import blocks as registry
from pcnctl.evidence import PARTIAL
from pcnctl.incident.store import Incident
from pcnctl.platform import EntDriver
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


def for_french_excel(rows: Iterable[dict[str, Any]], tz: str = "Europe/Paris") -> list[dict[str, Any]]:
    """The rows with French values: school types, local dates, block descriptions."""
    zone = ZoneInfo(tz)

    def when(value: Any) -> str:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value / 1000, UTC)
        else:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return moment.astimezone(zone).strftime("%d/%m/%Y %H:%M:%S")

    out = []
    for row in rows:
        french = dict(row)
        french["type"] = SCHOOL_TYPES_FR.get(row["type"], row["type"])
        for key in ("first_threat", "last_threat"):
            french[key] = when(row[key]) if row.get(key) is not None else ""
        french["messaging_blocks"] = "; ".join(
            f"{LEVERS_FR.get(b['method'], b['method'])} ({b['profile']}, depuis le {when(b['since'])})"
            for b in row.get("blocks", [])
        )
        out.append(french)
    return out


def matches_from_incident(incident: Incident) -> list[dict[str, Any]]:
    """The threats an incident preserved (its evidence bundles), as search matches."""
    root = incident.path / "evidence"
    out: dict[str, dict[str, Any]] = {}
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
    driver: EntDriver, matches: Iterable[dict[str, Any]], state: StateStore
) -> list[dict[str, Any]]:
    schools = {s.uai: s for s in driver.list_schools()}
    per: dict[str, dict[str, Any]] = {}
    for m in matches:
        by_school: dict[str, set[str]] = {}
        for recipient, uais in (m.get("recipient_schools") or {}).items():
            for uai in uais:
                by_school.setdefault(uai, set()).add(recipient)
        for uai, recipients in by_school.items():
            row = per.setdefault(uai, {"messages": set(), "recipients": set(), "senders": set(), "dates": []})
            row["messages"].add(m["id"])
            row["recipients"].update(recipients)
            row["dates"].append(m["date"])
            if uai in (m.get("from_schools") or []):
                row["senders"].add(m["from"])
    blocks: dict[str, list[dict[str, Any]]] = {}
    for b in registry.active_blocks(state, ent_key(driver.profile.url)):
        blocks.setdefault(b.uai, []).append(asdict(b))
    rows = []
    for uai, row in sorted(per.items()):
        school = schools.get(uai)
        rows.append(
            {
                "uai": uai,
                "name": school.name if school else "",
                "type": school.type if school else "",
                "city": school.city if school else "",
                "messages_received": len(row["messages"]),
                "recipients_reached": len(row["recipients"]),
                "senders_from_school": len(row["senders"]),
                "first_threat": min(row["dates"]),
                "last_threat": max(row["dates"]),
                "messaging_blocks": "; ".join(
                    f"{b['method']} ({b['profile']}, since {b['since'][:16]}Z)" for b in blocks.get(uai, [])
                ),
                "blocks": blocks.get(uai, []),
            }
        )
    return rows
