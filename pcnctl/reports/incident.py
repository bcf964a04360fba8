"""The incident report for the crisis cell and the post-mortem: what was done, when, by whom, with which
identity, what was found and preserved, which schools were affected, what is still in force.

Built from the incident's own records (journal, evidence, the block registry, the audit log's entries for
the incident), so it can be written after the fact, without the ENT; school names come from those records,
or from the ENT when the caller can reach it. Times are kept in UTC in the JSON and shown in the crisis
cell's time zone (Europe/Paris by default) in Markdown and HTML, in English or French, with the language's
own dates, numbers and plurals (:mod:`pcnctl.reports.wording`). The HTML page is a template whose values
are escaped (:mod:`pcnctl.reports.html`): a threat's subject or a sender's name is shown, never run.

Exposure (who opened the threat before the purge, per school) comes from the read flags the evidence
recorded before the purge removed the copies (:mod:`pcnctl.forensics.exposure`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict

from pcnctl.forensics import evidence, exposure, residue
from pcnctl.ops import banners
from pcnctl.ops.accounts import BLOCK_ACCOUNTS
from pcnctl.ops.purge import PURGE
from pcnctl.records import Cell, Row
from pcnctl.reports import export
from pcnctl.reports.wording import DEFAULT_TZ, Wording
from pcnctl.state import blocks as registry
from pcnctl.state.incidents import Incident
from pcnctl.state.journal import Record, RunState, done_keys, records, runs_of
from pcnctl.state.store import StateStore


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


class ExposurePart(TypedDict):
    """One school's recipients of the threat, by what their copies said before the purge (people, not
    copies: someone who received three threats and opened one counts once, as opened)."""

    uai: str  # "" for recipients whose school is not known
    name: str | None
    recipients: int
    opened: int
    purged_unread: int
    unread: int  # not opened when the evidence was taken, and not purged
    unknown: int  # evidence written before pcnctl recorded the read flags
    copies: int
    read_at: str  # UTC: when the read flags were taken (the latest collection)


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
    exposure: list[ExposurePart]
    residue: ResiduePart


class ResiduePart(TypedDict):
    """What the platform still holds of the purged messages (the purge runs' own counts, added up), and
    the SQL scripts that finish the removal, for the hosting team."""

    counts: dict[str, int]  # by kind: copies, messages, attachments, threads, originals, notifications
    scripts: list[str]


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
    purged = done_keys(runs, PURGE.name)
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
        "messages_purged": len(purged),
        "evidence": {"bundles": len({c.bundle for c in checks}), "intact": all(c.ok for c in checks)},
        "audit_log": {"entries": entries, "head": head},
        "messaging_blocks": blocks,
        "affected_schools": [
            {"uai": u, "name": names.get(u), "messages": n} for u, n in sorted(schools.items())
        ],
        "exposure": [
            _exposure_part(s, names.get(s.uai)) for s in exposure.from_evidence(incident.path, purged)
        ],
        "residue": _residue_part(runs),
    }


def _residue_part(runs: list[RunState]) -> ResiduePart:
    """The purge runs' residue as their verdicts counted it when each ended."""
    parts: list[residue.Residue] = []
    scripts: list[str] = []
    for run in runs:
        result, files = run.verdict.get("result"), run.verdict.get("files")
        if run.op != PURGE.name or not isinstance(result, dict):
            continue
        if isinstance(kept := result.get("residue"), dict):
            parts.append(residue.from_verdict(kept))
        if isinstance(files, dict) and files.get("residue_sql"):
            scripts.append(str(files["residue_sql"]))
    return {"counts": residue.total(parts).counts(), "scripts": scripts}


def _exposure_part(school: exposure.SchoolExposure, name: str | None) -> ExposurePart:
    status = exposure.Status
    return {
        "uai": school.uai,
        "name": name,
        "recipients": len(school.recipients),
        "opened": school.count(status.OPENED),
        "purged_unread": school.count(status.PURGED_UNREAD),
        "unread": school.count(status.UNREAD),
        "unknown": school.count(status.UNKNOWN),
        "copies": school.copies,
        "read_at": school.read_at,
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
        "exposure": "Who opened the threat",
        "exposure_intro": "Read from each recipient's mailbox copy when the evidence was taken ({at}), "
        "before the purge removed the copies. Opened means the copy was marked read: the message opened, "
        "answered or forwarded. The subject, and in a notification the start of the text, may have been "
        "seen without opening it; a copy its holder deleted before the evidence was taken is not counted.",
        "school_unknown": "School not known",
        "residue": "What the platform still holds of the purged messages",
        "residue_intro": "The purge removes every mailbox copy; the platform keeps the rest of a message "
        "until the time shown. The hosting team can finish the removal with the SQL the purge wrote, after "
        "reviewing it: {scripts}.",
        "kind": "what",
        "count": "count",
        "how_long": "kept",
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
        "exposure": "Qui a ouvert la menace",
        "exposure_intro": "D'après la copie de chaque destinataire, relevée lors de la collecte des preuves "
        "({at}), avant que la suppression n'efface les copies. Ouvert : la copie était marquée comme lue "
        "(message ouvert, répondu ou transféré). L'objet, et dans une notification le début du texte, ont pu "
        "être vus sans l'ouvrir ; une copie supprimée par son destinataire avant la collecte n'est pas "
        "comptée.",
        "school_unknown": "Établissement inconnu",
        "residue": "Ce que la plateforme conserve des messages supprimés",
        "residue_intro": "La suppression retire toutes les copies des boîtes ; la plateforme garde le reste "
        "du message jusqu'au moment indiqué. L'hébergeur peut achever la suppression avec le SQL écrit par "
        "la purge, après l'avoir relu : {scripts}.",
        "kind": "élément",
        "count": "nombre",
        "how_long": "conservé",
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


@dataclass(frozen=True)
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    intro: str = ""  # a paragraph under the title


@dataclass(frozen=True)
class ExposureView:
    """The exposure section: its title, what the counts mean, then each school and its counted lines."""

    title: str
    intro: str
    schools: list[tuple[str, list[str]]]


class _View:
    """Labels, counted phrases and local times for one language and time zone."""

    def __init__(self, lang: str, tz: str) -> None:
        self.t = LABELS[lang]
        self.lang = lang
        self.tz = tz
        self.words = Wording(lang, tz)

    def word(self, key: str) -> str:
        """A label, or an operation's (from the registry: the report names every operation there is)."""
        from pcnctl.ops.registry import label

        return self.t.get(key) or label(key, self.lang)

    def status(self, key: str) -> str:
        return STATUS[self.lang].get(key, key)

    def when(self, value: str | None) -> str:
        return self.words.when(value)

    def school(self, uai: str, name: str | None) -> str:
        if not uai:
            return self.t["school_unknown"]
        return f"{name} ({uai})" if name else uai

    def tally(self, counts: tuple[int, int, int, int] | list[int]) -> str:
        """An operation run's counts: "4 items: 3 done, 1 already so, 0 failed", plurals as the language
        wants them."""
        items, done, already, failed = counts
        w = self.words
        done_part = ", ".join([w.count("done", done), w.count("already", already), w.count("failed", failed)])
        return f"{w.count('items', items)}{w.colon}{done_part}"

    def header(self, data: ReportData) -> list[str]:
        inc, t, n = data["incident"], self.t, self.words.number
        state = t["intact"] if data["evidence"]["intact"] else t["altered"]
        opened = t["opened_by"].format(at=self.when(inc["opened_at"]), by=inc["opened_by"])
        closed = f", {t['closed_on'].format(at=self.when(inc['closed_at']))}" if inc["closed_at"] else ""
        colon = self.words.colon
        return [
            f"{t['status']}{colon}{self.status(inc['status'])} ({opened}{closed})",
            f"{t['profiles']}{colon}{', '.join(inc['profiles']) or '-'}",
            t["summary"].format(
                blocked=n(data["accounts_blocked"]),
                kept=n(data["messages_preserved"]),
                purged=n(data["messages_purged"]),
            ),
            t["evidence"].format(n=n(data["evidence"]["bundles"]), state=state),
            t["seal"].format(n=n(data["audit_log"]["entries"]), head=data["audit_log"]["head"][:16]),
        ]

    def tables(self, data: ReportData) -> list[Table]:
        t = self.t
        names = data.get("school_names") or {}
        timeline = [
            [
                self.when(e["at"]),
                self.word(e["what"]),
                self.school(e["target"], names.get(e["target"])),
                e["by"],
                self.status(e["status"]),
                (self.tally(counts) if (counts := e.get("counts")) else e["detail"])
                + (f"; {t['approved_by']} {who}" if (who := e.get("approved_by")) else ""),
            ]
            for e in data["timeline"]
        ]
        affected = [
            [self.school(s["uai"], s["name"]), self.words.number(s["messages"])]
            for s in data["affected_schools"]
        ]
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
        tables = [
            Table(
                t["timeline"],
                [t["time"], t["what"], t["target"], t["by"], t["result"], t["detail"]],
                timeline,
            ),
            Table(t["affected"], [t["school"], t["threats"]], affected),
            Table(
                t["blocks"],
                [t["school"], t["profile"], t["lever"], t["since"], t["until"], t["status"]],
                blocks,
            ),
        ]
        return tables + ([kept] if (kept := self.residue(data)) else [])

    def residue(self, data: ReportData) -> Table | None:
        """What the purges left, each kind counted with until when, when the incident purged anything."""
        part = data.get("residue")
        if not part or not part["scripts"]:
            return None
        left = residue.Residue(**{k: part["counts"].get(k, 0) for k in residue.FIELDS})
        rows = [[str(r["what"]), self.words.number(int(str(r["count"]))), str(r["until"])]
                for r in left.rows(self.lang)]  # fmt: skip
        intro = self.t["residue_intro"].format(scripts=", ".join(part["scripts"]))
        return Table(self.t["residue"], [self.t["kind"], self.t["count"], self.t["how_long"]], rows, intro)

    def exposure(self, data: ReportData) -> ExposureView | None:
        """Per school: its recipients, how many opened the threat before the purge, how many never did."""
        parts = [p for p in data.get("exposure") or [] if p["recipients"]]
        if not parts:
            return None
        w = self.words
        schools = []
        for p in parts:
            lines = [w.count("recipients", p["recipients"]), w.count("opened", p["opened"])]
            lines.append(w.count("purged_unread", p["purged_unread"]))
            if p["unread"]:
                lines.append(w.count("unread", p["unread"]))
            if p["unknown"]:
                lines.append(w.count("unknown", p["unknown"]))
            schools.append((self.school(p["uai"], p["name"]), lines))
        read_at = max(p["read_at"] for p in parts)
        return ExposureView(
            self.t["exposure"], self.t["exposure_intro"].format(at=self.when(read_at)), schools
        )


def _text(value: Cell) -> str:
    """A block row's cell as text (every cell of it is a text or null)."""
    return "" if value is None else str(value)


def _md(text: str) -> str:
    """A Markdown table cell: a pipe or a line break from a subject or a name would end the cell."""
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown(data: ReportData, lang: str = "en", tz: str = DEFAULT_TZ) -> str:
    from tabulate import tabulate

    view = _View(lang, tz)
    inc = data["incident"]
    out = [f"# {view.t['incident']} {inc['id']}" + (f": {inc['title']}" if inc["title"] else ""), ""]
    out += [f"- {line}" for line in view.header(data)] + ["", f"_{view.t['times_in'].format(tz=tz)}_"]
    for table in view.tables(data):
        rows = [[_md(c) for c in row] for row in table.rows]
        out += ["", f"## {table.title}", ""] + ([table.intro, ""] if table.intro else [])
        out += [tabulate(rows, headers=table.headers, tablefmt="github")]
    shown = view.exposure(data)
    if shown is not None:
        out += ["", f"## {shown.title}", "", shown.intro]
        for school, lines in shown.schools:
            out += ["", f"### {school}", "", *(f"- {line}" for line in lines)]
    return "\n".join(out) + "\n"


def html_page(data: ReportData, lang: str = "en", tz: str = DEFAULT_TZ) -> str:
    """The report as one self-contained page (no script, no outside resource), every value escaped."""
    from pcnctl.reports import html

    view = _View(lang, tz)
    inc = data["incident"]
    return html.render(
        "incident.html.j2",
        lang=lang,
        heading=f"{view.t['incident']} {inc['id']}" + (f": {inc['title']}" if inc["title"] else ""),
        title=f"{view.t['incident']} {inc['id']}",
        header=view.header(data),
        altered=None if data["evidence"]["intact"] else view.t["altered"],
        times_in=view.t["times_in"].format(tz=tz),
        tables=view.tables(data),
        exposure=view.exposure(data),
    )


def to_json(data: ReportData) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"
