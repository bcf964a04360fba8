"""The crisis cell's files: the affected schools (one row per school that received the threat), and per
school the people who received it and whether they opened it (the list a school needs to call families).

Built client-side (Edifice has no such export, edifice-api.md §1): the recipients' schools of every threat
found, joined with the directory (UAI, name, type, city; a person's classes and relatives) and with the
messaging blocks in force. The Excel files are real workbooks (:mod:`pcnctl.reports.xlsx`): French
headings, numbers as numbers, dates as dates in the crisis cell's time zone, no cell a formula.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from pcnctl.ent.platform import EntDriver
from pcnctl.forensics import exposure
from pcnctl.forensics.exposure import RecipientExposure, SchoolExposure, Status
from pcnctl.forensics.search import SavedMatch
from pcnctl.models import School, User
from pcnctl.records import Row
from pcnctl.reports import xlsx
from pcnctl.reports.wording import DEFAULT_TZ, parse_time
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


def for_french_excel(rows: Iterable[AffectedSchool], tz: str = DEFAULT_TZ) -> list[Row]:
    """The rows with French values for the CSV: school types, local dates as text, block descriptions."""
    when = _local_text(tz)
    out = []
    for school in rows:
        french = school.to_row()
        kind = str(french["type"])
        french["type"] = SCHOOL_TYPES_FR.get(kind, kind)
        french["first_threat"], french["last_threat"] = when(min(school.dates)), when(max(school.dates))
        french["messaging_blocks"] = _blocks_fr(school.blocks, when)
        out.append(french)
    return out


def affected_workbook(rows: Iterable[AffectedSchool], tz: str = DEFAULT_TZ) -> bytes:
    """The affected schools as a French Excel workbook: counts as numbers, threat times as dates."""
    when = _local_text(tz)
    table: list[dict[str, xlsx.Value]] = []
    for school in rows:
        values: dict[str, xlsx.Value] = {k: v for k, v in school.to_row().items() if not isinstance(v, list)}
        kind = str(values["type"])
        values["type"] = SCHOOL_TYPES_FR.get(kind, kind)
        values["first_threat"] = parse_time(min(school.dates))
        values["last_threat"] = parse_time(max(school.dates))
        values["messaging_blocks"] = _blocks_fr(school.blocks, when)
        table.append(values)
    columns = [xlsx.Column(c, _heading(c, tz), WIDTHS.get(c, 16)) for c in COLUMNS]
    return xlsx.workbook([xlsx.Sheet("Établissements touchés", columns, table)], tz)


WIDTHS = {"name": 34, "city": 20, "first_threat": 20, "last_threat": 20, "messaging_blocks": 48}


def _heading(column: str, tz: str) -> str:
    """A French heading; a time column names the zone its times are in (a workbook has none)."""
    heading = EXCEL_HEADERS[column]
    return f"{heading} ({tz})" if column in ("first_threat", "last_threat") else heading


def _local_text(tz: str) -> Callable[[str | int], str]:
    zone = ZoneInfo(tz)

    def when(value: str | int) -> str:
        return parse_time(value).astimezone(zone).strftime("%d/%m/%Y %H:%M:%S")

    return when


def _blocks_fr(blocks: Iterable[Block], when: Callable[[str | int], str]) -> str:
    return "; ".join(
        f"{LEVERS_FR.get(b.method, b.method)} ({b.profile}, depuis le {when(b.since)})" for b in blocks
    )


def matches_from_incident(incident: Incident) -> list[SavedMatch]:
    """The threats an incident preserved (its evidence bundles), as search matches."""
    out: list[SavedMatch] = []
    for m in exposure.evidence_records(incident.path):
        match: SavedMatch = {
            "id": m["id"],
            "date": m.get("date") or "",
            "from": str(m.get("from") or ""),
            "from_schools": m.get("from_schools") or [],
            "recipient_schools": m.get("recipient_schools") or {},
        }
        out.append(match)
    return out


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


# -- exposure: per school, who received the threat and whether they opened it --------------------------------

PROFILES_FR = {
    "Student": "Élève",
    "Relative": "Parent",
    "Teacher": "Enseignant",
    "Personnel": "Personnel",
    "Guest": "Invité",
}
PROFILE_ORDER = ("Student", "Relative", "Teacher", "Personnel", "Guest")
OPENED_FR = {
    Status.OPENED: "oui",
    Status.UNKNOWN: "inconnu",
    Status.UNREAD: "non",
    Status.PURGED_UNREAD: "non",
}
STATUS_FR = {
    Status.OPENED: "ouverte avant la suppression",
    Status.PURGED_UNREAD: "jamais ouverte : supprimée sans avoir été lue",
    Status.UNREAD: "pas ouverte lors de la collecte des preuves ; pas encore supprimée",
    Status.UNKNOWN: "état de lecture non relevé",
}
MEANING_FR = (
    "« Ouverte » : la copie de la personne était marquée comme lue lors de la collecte des preuves, "
    "avant la suppression (message ouvert, répondu ou transféré). L'objet, et dans une notification le "
    "début du texte, ont pu être vus sans ouvrir le message."
)


ABOUT_COLUMNS = (xlsx.Column("what", "Élément", 44), xlsx.Column("value", "Valeur", 60))


def exposure_columns(tz: str) -> list[xlsx.Column]:
    return [
        xlsx.Column("name", "Nom", 28),
        xlsx.Column("profile", "Profil", 12),
        xlsx.Column("classes", "Classe", 12),
        xlsx.Column("relatives", "Responsables (annuaire)", 36),
        xlsx.Column("opened", "A ouvert la menace", 12),
        xlsx.Column("status", "Situation", 44),
        xlsx.Column("messages", "Menaces reçues", 10),
        xlsx.Column("opened_count", "Menaces ouvertes", 10),
        xlsx.Column("delivered", f"Première réception ({tz})", 20),
        xlsx.Column("read_at", f"État de lecture relevé le ({tz})", 20),
        xlsx.Column("login", "Identifiant ENT", 22),
    ]


@dataclass(frozen=True)
class ExposureFile:
    """One school's file and its counts (people, not copies)."""

    uai: str
    name: str
    path: Path
    recipients: int
    opened: int
    purged_unread: int
    unread: int
    unknown: int
    named: int  # recipients the directory named

    def to_row(self) -> Row:
        return {
            "uai": self.uai,
            "name": self.name,
            "recipients": self.recipients,
            "opened": self.opened,
            "purged_unread": self.purged_unread,
            "unread": self.unread,
            "unknown": self.unknown,
            "named": self.named,
            "file": str(self.path),
        }


EXPOSURE_COLUMNS = (
    "uai",
    "name",
    "recipients",
    "opened",
    "purged_unread",
    "unread",
    "unknown",
    "named",
    "file",
)


@dataclass(frozen=True)
class ExposurePlan:
    """What ``incident exposure`` writes, decided from the incident's records before the ENT is asked."""

    incident: str
    schools: list[SchoolExposure]
    named: bool  # the schools were asked for by UAI: one outside the caller's directory is refused
    unplaced: int  # recipients whose school the evidence does not give (in no school's file)


@dataclass(frozen=True)
class ExposureExport:
    files: list[ExposureFile]
    skipped: list[str]  # the incident's schools outside the caller's directory (an ADML's other schools)


def plan_exposure(state: StateStore, incident: Incident, wanted: Sequence[str] = ()) -> ExposurePlan:
    """The schools to export: those asked for (each must be one of the incident's), else all of them;
    exposure from the evidence's read flags and the journal's purged messages."""
    from pcnctl.errors import UsageError
    from pcnctl.ops.purge import PURGE
    from pcnctl.state.journal import done_keys, records, runs_of

    purged = done_keys(runs_of(records(state, incident.id)), PURGE.name)
    exposed = exposure.from_evidence(incident.path, purged)
    mine = {s.uai: s for s in exposed if s.uai}
    asked = list(dict.fromkeys(u.strip().upper() for u in wanted))
    unknown = [u for u in asked if u not in mine]
    if unknown:
        raise UsageError(
            f"{unknown[0]} is not one of the incident's schools",
            hint=f"its schools: {', '.join(sorted(mine)) or 'none (no evidence with recipients)'}",
        )
    unplaced = sum(len(s.recipients) for s in exposed if not s.uai)
    chosen = [mine[u] for u in asked] if asked else list(mine.values())
    return ExposurePlan(incident.id, chosen, bool(asked), unplaced)


def write_exposure(
    driver: EntDriver, plan: ExposurePlan, out_dir: Path, *, tz: str = DEFAULT_TZ
) -> ExposureExport:
    """One workbook per school (``exposition-UAI.xlsx``, 0600) naming the recipients from the directory
    (their class, their relatives); a school the caller's directory does not list is skipped, or refused
    when it was asked for by name."""
    from pcnctl.errors import RefusedError
    from pcnctl.files import private_dir

    schools = {s.uai: s for s in driver.list_schools()}
    missing = [s.uai for s in plan.schools if s.uai not in schools]
    if missing and plan.named:
        raise RefusedError(
            f"school {missing[0]} is not in this profile's directory",
            hint="an ADML sees its own schools only: export those, or use a profile whose scope has it",
        )
    private_dir(out_dir)
    files = []
    for exposed in plan.schools:
        school = schools.get(exposed.uai)
        if school is None:
            continue
        people = {u.id: u for u in driver.list_users(school.id)}
        path = out_dir / f"exposition-{school.uai}.xlsx"
        xlsx.write_private(path, exposure_workbook(school, exposed, people, plan.incident, tz))
        files.append(_exposure_file(school, exposed, people, path))
    return ExposureExport(files, missing)


def _exposure_file(
    school: School, exposed: SchoolExposure, people: Mapping[str, User], path: Path
) -> ExposureFile:
    return ExposureFile(
        school.uai,
        school.name,
        path,
        len(exposed.recipients),
        exposed.count(Status.OPENED),
        exposed.count(Status.PURGED_UNREAD),
        exposed.count(Status.UNREAD),
        exposed.count(Status.UNKNOWN),
        sum(1 for r in exposed.recipients if r.user_id in people),
    )


def exposure_workbook(
    school: School, exposed: SchoolExposure, people: Mapping[str, User], incident: str, tz: str = DEFAULT_TZ
) -> bytes:
    """The school's list: each recipient (pupils first, by class and name) and whether they opened the
    threat; a second sheet says what the counts mean."""
    rows = sorted((_person_row(r, people.get(r.user_id)) for r in exposed.recipients), key=_person_order)
    about = _about_rows(school, exposed, incident, tz)
    return xlsx.workbook(
        [
            xlsx.Sheet("Destinataires", exposure_columns(tz), rows),
            xlsx.Sheet("À lire", ABOUT_COLUMNS, about),
        ],
        tz,
    )


def _person_row(r: RecipientExposure, user: User | None) -> dict[str, xlsx.Value]:
    name = ""
    if user is not None:
        name = " ".join(p for p in (user.last_name, user.first_name) if p) or user.display_name
    return {
        "name": name or "(absent de l'annuaire)",
        "profile": PROFILES_FR.get(user.profile, user.profile) if user else "",
        "classes": ", ".join(user.classes) if user else "",
        "relatives": "; ".join(user.relatives) if user else "",
        "opened": OPENED_FR[r.status],
        "status": STATUS_FR[r.status],
        "messages": len(r.messages),
        "opened_count": len(r.opened),
        "delivered": parse_time(r.first_delivered) if r.first_delivered else None,
        "read_at": parse_time(r.read_at) if r.read_at else None,
        "login": user.login if user else r.user_id,
        "_profile": user.profile if user else "",
    }


def _person_order(row: Mapping[str, xlsx.Value]) -> tuple[int, str, str]:
    profile = str(row["_profile"])
    rank = PROFILE_ORDER.index(profile) if profile in PROFILE_ORDER else len(PROFILE_ORDER)
    return rank, str(row["classes"]), str(row["name"]).casefold()


def _about_rows(
    school: School, exposed: SchoolExposure, incident: str, tz: str
) -> list[dict[str, xlsx.Value]]:
    counts: list[tuple[str, xlsx.Value]] = [
        ("Établissement", f"{school.name} ({school.uai})"),
        ("Incident", incident),
        ("Destinataires de la menace", len(exposed.recipients)),
        ("L'ont ouverte avant la suppression", exposed.count(Status.OPENED)),
        ("Ne l'ont jamais ouverte (supprimée sans avoir été lue)", exposed.count(Status.PURGED_UNREAD)),
        ("Pas ouverte lors de la collecte, pas encore supprimée", exposed.count(Status.UNREAD)),
        ("État de lecture non relevé", exposed.count(Status.UNKNOWN)),
        ("Copies reçues", exposed.copies),
        (f"État de lecture relevé le ({tz})", parse_time(exposed.read_at) if exposed.read_at else None),
        ("Ce que « ouverte » veut dire", MEANING_FR),
    ]
    return [{"what": what, "value": value} for what, value in counts]
