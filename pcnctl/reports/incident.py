"""The incident report for the crisis cell and the post-mortem: what was done, when, by whom, with which
identity, what was found and preserved, which schools were affected, what is still in force.

Built from the incident's own records (journal, evidence, the block registry, the audit log's entries for
the incident), so it can be written after the fact, without the ENT; school names come from those records,
or from the ENT when the caller can reach it. Times are kept in UTC in the JSON and shown in the crisis
cell's time zone (Europe/Paris by default) in Markdown and HTML, in English or French.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict
from zoneinfo import ZoneInfo

from pcnctl.forensics import evidence
from pcnctl.ops import banners
from pcnctl.ops.accounts import BLOCK_ACCOUNTS
from pcnctl.ops.purge import PURGE
from pcnctl.records import Cell, Row
from pcnctl.reports import export
from pcnctl.state import blocks as registry
from pcnctl.state.incidents import Incident
from pcnctl.state.journal import Record, RunState, done_keys, records, runs_of
from pcnctl.state.store import StateStore

DEFAULT_TZ = "Europe/Paris"


class IncidentPart(TypedDict):
    id: str
    title: str
    status: str
    opened_at: str
    opened_by: str
    closed_at: str | None
    profiles: list[str]


class TimelineEntry(TypedDict):
    at: str
    what: str
    target: str
    status: str
    by: str
    detail: str
    counts: tuple[int, int, int, int] | None
    approved_by: str  # a run's second administrator on a four-eyes profile, else ""


class EvidencePart(TypedDict):
    bundles: int
    intact: bool


class AuditLogPart(TypedDict):
    entries: int
    head: str


class AffectedPart(TypedDict):
    uai: str
    name: str | None
    messages: int


class ReportData(TypedDict):
    """Everything the report shows (its JSON form, times in UTC)."""

    incident: IncidentPart
    timeline: list[TimelineEntry]
    school_names: dict[str, str]
    accounts_blocked: int
    messages_preserved: int
    messages_purged: int
    evidence: EvidencePart
    audit_log: AuditLogPart
    messaging_blocks: list[Row]  # the rows of 'messaging status', with the school's name
    affected_schools: list[AffectedPart]


@dataclass(frozen=True)
class Event:
    """One line of the timeline: an operation run, a playbook step, a banner, the incident's life."""

    at: str  # UTC, ISO 8601
    what: str  # a label key (see LABELS) or an operation name
    target: str
    status: str
    by: str = ""
    detail: str = ""
    counts: tuple[int, int, int, int] | None = None  # items, done, already, failed (operation runs)
    approved_by: str = ""

    def to_json(self) -> TimelineEntry:
        return {
            "at": self.at,
            "what": self.what,
            "target": self.target,
            "status": self.status,
            "by": self.by,
            "detail": self.detail,
            "counts": self.counts,
            "approved_by": self.approved_by,
        }


def collect(
    state: StateStore, incident: Incident, school_names: Mapping[str, str] | None = None
) -> ReportData:
    """Everything the report shows, from the incident's records (JSON-ready, times in UTC)."""
    recs = records(state, incident.id)
    runs = runs_of(recs)
    names = dict(school_names or {})
    held = [b for b in registry.listed(state, None, include_lifted=True) if b.incident == incident.id]
    names.update({b.uai: b.name for b in held if b.name})
    now = datetime.now(UTC)
    blocks: list[Row] = [{**b.status_row(now), "name": names.get(b.uai, b.name)} for b in held]
    events = [Event(incident.opened_at, "opened", incident.id, incident.status, incident.opened_by)]
    events += _run_events(runs, recs)
    events += _audit_events(state, incident)
    if incident.closed_at:
        events.append(Event(incident.closed_at, "closed", incident.id, "closed"))
    matches = export.matches_from_incident(incident)
    schools: Counter[str] = Counter()
    for m in matches:
        for uai in {u for uais in (m.get("recipient_schools") or {}).values() for u in uais}:
            schools[uai] += 1
    checks = evidence.verify(state, incident)
    entries, head = state.audit_log().head()
    return {
        "incident": {
            "id": incident.id,
            "title": incident.title,
            "status": incident.status,
            "opened_at": incident.opened_at,
            "opened_by": incident.opened_by,
            "closed_at": incident.closed_at,
            "profiles": incident.profiles,
        },
        "timeline": [e.to_json() for e in sorted(events, key=lambda e: e.at)],
        "school_names": names,
        "accounts_blocked": len(done_keys(runs, BLOCK_ACCOUNTS)),
        "messages_preserved": len(matches),
        "messages_purged": len(done_keys(runs, PURGE.name)),
        "evidence": {"bundles": len({c.bundle for c in checks}), "intact": all(c.ok for c in checks)},
        "audit_log": {"entries": entries, "head": head},
        "messaging_blocks": blocks,
        "affected_schools": [
            {"uai": u, "name": names.get(u), "messages": n} for u, n in sorted(schools.items())
        ],
    }


def _run_events(runs: list[RunState], recs: list[Record]) -> list[Event]:
    """Operation runs (with their final status) and playbook steps, from the journal."""
    out: list[Event] = []
    started: dict[str, tuple[str, str]] = {}
    for run in runs:
        counts = run.counts()
        done, failed = counts.get("done", 0), counts.get("failed", 0) + counts.get("refused", 0)
        status = run.end or ("interrupted" if run.pending else "completed")
        tally = (len(run.items), done, counts.get("already", 0), failed)
        by = run.meta.get("identity", "")
        out.append(
            Event(run.started_at, run.op, run.run, status, by, counts=tally, approved_by=run.approved_by)
        )
    for rec in recs:
        if "t" not in rec:
            continue
        if rec["t"] == "playbook":
            started[rec["run"]] = (rec["name"], rec.get("meta", {}).get("identity", ""))
            out.append(Event(rec["at"], "playbook", rec["name"], "started", started[rec["run"]][1]))
        elif rec["t"] == "step" and rec.get("status") != "start":
            name = started.get(rec.get("run", ""), ("", ""))[0]
            out.append(
                Event(rec["at"], "step", f"{name}: {rec['step']}", rec["status"], "", rec.get("detail", ""))
            )
        elif rec["t"] == "playbook-end":
            name, by = started.get(rec.get("run", ""), ("", ""))
            out.append(Event(rec["at"], "playbook-end", name, rec["status"], by))
    return out


def _audit_events(state: StateStore, incident: Incident) -> list[Event]:
    """Banners shown in schools: the audit log is where the banner operation records each school."""
    return [
        Event(
            e["at"],
            "banner",
            str(e.get("target_label") or e.get("target", "")),
            str(e.get("result", "")),
            str(e.get("actor", "")),
        )
        for e in state.audit_log().entries()
        if e.get("incident") == incident.id and e.get("action") == banners.OP
    ]


# -- rendering -------------------------------------------------------------------------------------------

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "incident": "Incident",
        "status": "Status",
        "opened_by": "opened {at} by {by}",
        "closed_on": "closed {at}",
        "profiles": "ENT profiles",
        "summary": "Accounts blocked: {blocked}; messages preserved as evidence: {kept}; purged: {purged}",
        "evidence": "Evidence bundles: {n} ({state})",
        "seal": "Audit log sealed at entry {n}, head {head}",
        "intact": "hashes intact",
        "altered": "ALTERED",
        "timeline": "Timeline",
        "time": "time",
        "what": "what",
        "target": "target",
        "by": "by",
        "result": "result",
        "detail": "detail",
        "counts": "{0} items: {1} done, {2} already so, {3} failed",
        "approved_by": "approved by",
        "affected": "Affected schools",
        "school": "school",
        "uai": "UAI",
        "threats": "threats received",
        "blocks": "Messaging blocks",
        "profile": "profile",
        "lever": "lever",
        "since": "since",
        "until": "until",
        "times_in": "Times in {tz}.",
        "opened": "incident opened",
        "closed": "incident closed",
        "playbook": "playbook started",
        "playbook-end": "playbook ended",
        "step": "playbook step",
        "banner": "banner shown",
    },
    "fr": {
        "incident": "Incident",
        "status": "État",
        "opened_by": "ouvert le {at} par {by}",
        "closed_on": "clos le {at}",
        "profiles": "Profils ENT",
        "summary": "Comptes bloqués : {blocked} ; messages conservés comme preuves : {kept} ; "
        "supprimés : {purged}",
        "evidence": "Lots de preuves : {n} ({state})",
        "seal": "Journal d'audit scellé à l'entrée {n}, empreinte {head}",
        "intact": "empreintes intactes",
        "altered": "ALTÉRÉES",
        "timeline": "Chronologie",
        "time": "heure",
        "what": "action",
        "target": "cible",
        "by": "par",
        "result": "résultat",
        "detail": "détail",
        "counts": "{0} éléments : {1} faits, {2} déjà faits, {3} en échec",
        "approved_by": "approuvé par",
        "affected": "Établissements touchés",
        "school": "établissement",
        "uai": "UAI",
        "threats": "menaces reçues",
        "blocks": "Blocages de la messagerie",
        "profile": "profil",
        "lever": "levier",
        "since": "depuis",
        "until": "jusqu'au",
        "times_in": "Heures de {tz}.",
        "opened": "ouverture de l'incident",
        "closed": "clôture de l'incident",
        "playbook": "début du playbook",
        "playbook-end": "fin du playbook",
        "step": "étape du playbook",
        "banner": "bandeau affiché",
    },
}
# What statuses read as; English keeps the words the journal uses.
STATUS: dict[str, dict[str, str]] = {
    "en": {},
    "fr": {
        "open": "ouvert",
        "closed": "clos",
        "completed": "terminé",
        "partial": "partiel",
        "interrupted": "interrompu",
        "failed": "échec",
        "done": "fait",
        "skipped": "sauté",
        "awaiting-approval": "en attente d'approbation",
        "started": "commencé",
        "active": "en vigueur",
        "lifted": "levé",
        "expired": "expiré",
    },
}


class _View:
    """Labels and local times for one language and time zone."""

    def __init__(self, lang: str, tz: str) -> None:
        self.t = LABELS[lang]
        self.lang = lang
        self.zone = ZoneInfo(tz)
        self.tz = tz

    def word(self, key: str) -> str:
        """A label, or an operation's (from the registry: the report names every operation there is)."""
        from pcnctl.ops.registry import label

        return self.t.get(key) or label(key, self.lang)

    def status(self, key: str) -> str:
        return STATUS[self.lang].get(key, key)

    def when(self, value: str | None) -> str:
        if not value:
            return ""
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(self.zone)
        return moment.strftime("%d/%m/%Y %H:%M:%S" if self.lang == "fr" else "%Y-%m-%d %H:%M:%S %Z")

    def school(self, uai: str, name: str | None) -> str:
        return f"{name} ({uai})" if name else uai

    def header(self, data: ReportData) -> list[str]:
        inc, t = data["incident"], self.t
        state = t["intact"] if data["evidence"]["intact"] else t["altered"]
        opened = t["opened_by"].format(at=self.when(inc["opened_at"]), by=inc["opened_by"])
        closed = f", {t['closed_on'].format(at=self.when(inc['closed_at']))}" if inc["closed_at"] else ""
        return [
            f"{t['status']}: {self.status(inc['status'])} ({opened}{closed})",
            f"{t['profiles']}: {', '.join(inc['profiles']) or '-'}",
            t["summary"].format(
                blocked=data["accounts_blocked"],
                kept=data["messages_preserved"],
                purged=data["messages_purged"],
            ),
            t["evidence"].format(n=data["evidence"]["bundles"], state=state),
            t["seal"].format(n=data["audit_log"]["entries"], head=data["audit_log"]["head"][:16]),
        ]

    def tables(self, data: ReportData) -> list[tuple[str, list[str], list[list[str]]]]:
        t = self.t
        names = data.get("school_names") or {}
        timeline = [
            [
                self.when(e["at"]),
                self.word(e["what"]),
                self.school(e["target"], names.get(e["target"])),
                e["by"],
                self.status(e["status"]),
                (t["counts"].format(*counts) if (counts := e.get("counts")) else e["detail"])
                + (f"; {t['approved_by']} {who}" if (who := e.get("approved_by")) else ""),
            ]
            for e in data["timeline"]
        ]
        affected = [[self.school(s["uai"], s["name"]), str(s["messages"])] for s in data["affected_schools"]]
        blocks = [
            [
                self.school(_text(b["school"]), _text(b.get("name")) or None),
                _text(b["profile"]),
                _text(b["method"]),
                self.when(_text(b["since"])),
                self.when(_text(b["until"])),
                self.status(_text(b["status"])),
            ]
            for b in data["messaging_blocks"]
        ]
        return [
            (t["timeline"], [t["time"], t["what"], t["target"], t["by"], t["result"], t["detail"]], timeline),
            (t["affected"], [t["school"], t["threats"]], affected),
            (
                t["blocks"],
                [t["school"], t["profile"], t["lever"], t["since"], t["until"], t["status"]],
                blocks,
            ),
        ]


def _text(value: Cell) -> str:
    """A block row's cell as text (every cell of it is a text or null)."""
    return "" if value is None else str(value)


def markdown(data: ReportData, lang: str = "en", tz: str = DEFAULT_TZ) -> str:
    from tabulate import tabulate

    view = _View(lang, tz)
    inc = data["incident"]
    out = [f"# {view.t['incident']} {inc['id']}" + (f": {inc['title']}" if inc["title"] else ""), ""]
    out += [f"- {line}" for line in view.header(data)] + ["", f"_{view.t['times_in'].format(tz=tz)}_"]
    for title, headers, rows in view.tables(data):
        out += ["", f"## {title}", "", tabulate(rows, headers=headers, tablefmt="github")]
    return "\n".join(out) + "\n"


def html_page(data: ReportData, lang: str = "en", tz: str = DEFAULT_TZ) -> str:
    view = _View(lang, tz)
    inc = data["incident"]

    def table(headers: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    header = "".join(f"<li>{html.escape(line)}</li>" for line in view.header(data))
    sections = "".join(
        f"<h2>{html.escape(title)}</h2>" + table(h, rows) for title, h, rows in view.tables(data)
    )
    altered = "" if data["evidence"]["intact"] else f'<p class="bad">{html.escape(view.t["altered"])}</p>'
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{html.escape(view.t['incident'])} {html.escape(inc['id'])}</title><style>"
        "body{font-family:sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin:1rem 0}"
        "th,td{border:1px solid #bbb;padding:.3rem .6rem;text-align:left}th{background:#eee}"
        ".bad{color:#b00;font-weight:bold}</style></head><body>"
        f"<h1>{html.escape(view.t['incident'])} {html.escape(inc['id'])}"
        + (f": {html.escape(inc['title'])}" if inc["title"] else "")
        + "</h1>"
        f"<ul>{header}</ul>{altered}<p><em>{html.escape(view.t['times_in'].format(tz=tz))}</em></p>"
        f"{sections}</body></html>\n"
    )


def to_json(data: ReportData) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"
