"""Audit reports: Markdown for mail and tickets, a self-contained HTML page for people (tables per check,
a per-school summary, messages per hour as a small SVG chart), JSON and CSV for machines; English or French.

The HTML page is a template whose values are escaped (:mod:`pcnctl.reports.html`): the watchlist shows
subjects and names an attacker wrote. Summaries are worded from each finding's numbers with the language's
own plurals, dates and numbers (:mod:`pcnctl.reports.wording`); JSON and CSV keep the checks' English.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pcnctl.output import cell, safe_csv_cell
from pcnctl.records import Cell, Row
from pcnctl.reports.audit.checks import Finding
from pcnctl.reports.audit.run import AuditReport
from pcnctl.reports.wording import DEFAULT_TZ, Wording
from pcnctl.timespec import iso

LABELS = {
    "en": {
        "title": "pcnctl audit",
        "window": "Window",
        "worst": "Overall",
        "check": "Check",
        "severity": "Severity",
        "count": "Count",
        "summary": "Summary",
        "schools": "Per school",
        "school": "School",
        "hourly": "Watchlist messages per hour",
        "hour_axis": "hour (UTC)",
        "messages_axis": "messages",
        "none": "nothing found",
        "mass_senders": "Mass senders",
        "watchlist": "Threat watchlist",
        "blocks": "Blocks in force",
        "drift": "Drift",
        "evidence": "Evidence gaps",
        "health": "Platform health",
        "watch": "Watcher",
        "ok": "ok",
        "info": "info",
        "warning": "warning",
        "critical": "critical",
    },
    "fr": {
        "title": "Audit pcnctl",
        "window": "Période",
        "worst": "Bilan",
        "check": "Contrôle",
        "severity": "Gravité",
        "count": "Nombre",
        "summary": "Résumé",
        "schools": "Par établissement",
        "school": "Établissement",
        "hourly": "Messages de la liste de surveillance par heure",
        "hour_axis": "heure (Europe/Paris)",
        "messages_axis": "messages",
        "none": "rien à signaler",
        "mass_senders": "Envois massifs",
        "watchlist": "Liste de surveillance (menaces)",
        "blocks": "Blocages en vigueur",
        "drift": "Dérives",
        "evidence": "Purges sans preuves",
        "health": "Santé de la plateforme",
        "watch": "Veille",
        "ok": "ok",
        "info": "info",
        "warning": "avertissement",
        "critical": "critique",
    },
}

# Column headings of each check's table; English keeps the keys of the JSON output.
COLUMNS = {
    "fr": {
        "login": "identifiant",
        "profile": "profil",
        "schools": "établissements",
        "messages": "messages",
        "recipients": "destinataires",
        "per_minute": "par minute",
        "ips": "adresses IP",
        "why": "motif",
        "date": "date",
        "from_name": "expéditeur",
        "subject": "objet",
        "pattern": "motif reconnu",
        "like_incident": "semblable à l'incident",
        "kind": "nature",
        "school": "établissement",
        "target": "cible",
        "since": "depuis",
        "age_hours": "âge (heures)",
        "by": "par",
        "incident": "incident",
        "until": "jusqu'au",
        "expired": "expiré",
        "detail": "détail",
        "purged": "supprimés",
        "without_evidence": "sans preuve",
        "example": "exemple",
        "route": "route",
        "median_ms": "médiane (ms)",
        "p95_ms": "p95 (ms)",
        "errors": "erreurs",
        "watcher": "veille",
        "status": "état",
        "last_beat": "dernier signe de vie",
        "age_s": "âge (s)",
        "cycles": "cycles",
    }
}
# Words that join a summary's counted phrases.
JOINS = {
    "en": {
        "among": "among",
        "unchecked": "no mailstore configured: threat watchlist not checked",
        "throttled": "throttled",
        "semicolon": "; ",
        "watch_never": "no watcher has run on this ENT",
        "watch_expected": " though the profile pages on-call channels",
        "watch_stopped": "the watcher was stopped: nobody is paged",
        "watch_stale": "the watcher has not beaten for {s} s: nobody is paged",
        "watch_alive": "the watcher is alive",
        "watch_trouble": "the watcher is alive but in trouble (see its detail)",
    },
    "fr": {
        "among": "parmi",
        "unchecked": "non vérifiée : aucune base de messagerie configurée sur le profil",
        "throttled": "limitées",
        "semicolon": " ; ",
        "watch_never": "aucune veille n'a tourné sur cet ENT",
        "watch_expected": " alors que le profil prévoit d'alerter l'astreinte",
        "watch_stopped": "la veille a été arrêtée : personne n'est alerté",
        "watch_stale": "la veille ne donne plus signe de vie depuis {s} s : personne n'est alerté",
        "watch_alive": "la veille fonctionne",
        "watch_trouble": "la veille fonctionne mais rencontre des difficultés (voir le détail)",
    },
}
# Cell values that are words, not data.
VALUES_FR = {True: "oui", False: "non", "account": "compte", "messaging": "messagerie"}


class _Words:
    """What a report says in one language: labels, headings, summaries, times, word-like cells."""

    def __init__(self, lang: str, tz: str = DEFAULT_TZ) -> None:
        self.lang = lang
        self.t = LABELS[lang]
        self.words = Wording(lang, tz)
        self.zone = self.words.zone if lang == "fr" else UTC

    def column(self, key: str) -> str:
        return COLUMNS.get(self.lang, {}).get(key, key)

    def summary(self, f: Finding) -> str:
        """The finding's summary worded from its numbers; a check that gives none keeps its own."""
        build = SUMMARIES.get(f.check)
        if build is None or not f.facts:
            return f.summary
        return build(self.words, JOINS[self.lang], f.facts)

    def when(self, moment: datetime) -> str:
        if self.lang != "fr":
            return iso(moment)
        return self.words.moment(moment, seconds=False)

    def number(self, value: float) -> str:
        return self.words.number(value) if self.lang == "fr" else cell(value)

    def value(self, column: str, value: Any) -> str:
        if self.lang == "fr":
            if column in ("date", "since", "until") and isinstance(value, str) and value[:2] == "20":
                try:
                    return self.words.when(value, seconds=False)
                except ValueError:
                    return value
            if isinstance(value, bool | str) and value in VALUES_FR:
                return VALUES_FR[value]
            if isinstance(value, int | float) and not isinstance(value, bool):
                return self.words.number(round(value, 1))
        return cell(value)


Facts = dict[str, float]


def _mass_senders(w: Wording, j: dict[str, str], f: Facts) -> str:
    return (
        f"{w.count('bulk_accounts', int(f['flagged']))} {j['among']} {w.count('senders', int(f['senders']))}"
    )


def _watchlist(w: Wording, j: dict[str, str], f: Facts) -> str:
    if f.get("unchecked"):
        return j["unchecked"]
    text = w.count("watch_hits", int(f["hits"]))
    if f.get("scheduled"):
        text += ", " + w.count("watch_scheduled", int(f["scheduled"]))
    if f.get("drafts"):
        text += j["semicolon"] + w.count("watch_drafts", int(f["drafts"]))
    return text


def _blocks(w: Wording, j: dict[str, str], f: Facts) -> str:
    return f"{w.count('blocks', int(f['blocks']))}, {w.count('blocks_expired', int(f['expired']))}"


def _drift(w: Wording, j: dict[str, str], f: Facts) -> str:
    return w.count("drift", int(f["changes"]))


def _evidence(w: Wording, j: dict[str, str], f: Facts) -> str:
    return f"{w.count('gap_incidents', int(f['incidents']))} ({w.count('gap_messages', int(f['messages']))})"


def _health(w: Wording, j: dict[str, str], f: Facts) -> str:
    text = (
        f"{w.count('routes_failing', int(f['failing']))}, {w.count('routes_slow', int(f['slow']))}"
        f" (p95 > {w.number(f['latency_ms'])} ms)"
    )
    throttled = [
        (k.removeprefix("throttled_"), int(n)) for k, n in sorted(f.items()) if k.startswith("throttled_")
    ]
    if throttled:
        text += f", {j['throttled']}{w.colon}" + ", ".join(f"{w.number(n)} × {code}" for code, n in throttled)
    return text


def _watch(w: Wording, j: dict[str, str], f: Facts) -> str:
    if f.get("never"):
        return j["watch_never"] + (j["watch_expected"] if f.get("expected") else "")
    if f.get("stopped"):
        return j["watch_stopped"]
    if "stale_s" in f:
        return j["watch_stale"].format(s=w.number(round(f["stale_s"])))
    return j["watch_trouble"] if f.get("trouble") else j["watch_alive"]


SUMMARIES: dict[str, Callable[[Wording, dict[str, str], Facts], str]] = {
    "mass_senders": _mass_senders,
    "watchlist": _watchlist,
    "blocks": _blocks,
    "drift": _drift,
    "evidence": _evidence,
    "health": _health,
    "watch": _watch,
}


def _texts(value: Cell) -> list[str]:
    """A cell as the list of texts it holds (a list, one text, or none)."""
    if isinstance(value, list):
        return value
    return [str(value)] if value else []


def per_school(report: AuditReport) -> list[Row]:
    counts: dict[str, Counter[str]] = {}
    for f in report.findings:
        for row in f.rows:
            schools = _texts(row.get("schools")) or _texts(row.get("school"))
            if f.check == "drift" and len(str(row.get("target", ""))) == 8:
                schools = [str(row["target"])]
            for uai in schools:
                counts.setdefault(uai, Counter())[f.check] += 1
    return [{"school": uai, **dict(c)} for uai, c in sorted(counts.items())]


def hourly(report: AuditReport, zone: Any = UTC) -> list[tuple[str, int]]:
    """Watchlist messages per hour of the day, in ``zone`` (the crisis cell reads its own clock)."""
    counts: Counter[str] = Counter()
    for f in report.findings:
        if f.check == "watchlist":
            for row in f.rows:
                ms = row["date_ms"]
                if isinstance(ms, int):  # a watchlist row's date, in milliseconds
                    counts[datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:00")] += 1
    return sorted(counts.items())


def _md(text: str) -> str:
    """A Markdown table cell: a pipe or a line break in a subject would end the cell."""
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _summary_rows(report: AuditReport, w: _Words) -> list[list[str]]:
    t = w.t
    return [[t[f.check], t[f.severity], w.number(f.count), w.summary(f)] for f in report.findings]


def _school_table(report: AuditReport, w: _Words) -> tuple[list[str], list[list[str]]] | None:
    schools = per_school(report)
    if not schools:
        return None
    keys = sorted({k for s in schools for k in s if k != "school"})
    rows = [[str(s["school"]), *[w.number(_count(s.get(k))) for k in keys]] for s in schools]
    return [w.t["school"], *[w.t[k] for k in keys]], rows


def _count(value: Cell) -> int:
    """A per-school count (a check that found nothing there has no key: 0)."""
    return value if isinstance(value, int) else 0


def markdown(report: AuditReport, lang: str = "en") -> str:
    from tabulate import tabulate

    w = _Words(lang)
    t = w.t
    out = [
        f"# {t['title']}: {report.profile} ({report.url})",
        "",
        f"- {t['window']}{w.words.colon}{w.when(report.since)} -> {w.when(report.until)}",
        f"- {t['worst']}{w.words.colon}**{t[report.worst]}**",
        "",
    ]
    headers = [t["check"], t["severity"], t["count"], t["summary"]]
    out.append(tabulate(_summary_rows(report, w), headers=headers, tablefmt="github"))
    for f in report.findings:
        out += ["", f"## {t[f.check]} ({t[f.severity]})", ""]
        if f.rows and f.columns:
            out.append(
                tabulate(
                    [[_md(w.value(c, r.get(c))) for c in f.columns] for r in f.rows],
                    headers=[w.column(c) for c in f.columns],
                    tablefmt="github",
                )
            )
        else:
            out.append(f"_{t['none']}_")
    schools = _school_table(report, w)
    if schools is not None:
        out += ["", f"## {t['schools']}", "", tabulate(schools[1], headers=schools[0], tablefmt="github")]
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Bar:
    """One hour's bar, its count above it and its hour below it."""

    x: int
    height: int
    width: int
    centre: int
    hour: str
    count: str
    title: str


@dataclass(frozen=True)
class Chart:
    """Watchlist messages per hour: both axes, their titles, a bar per hour (drawn by the template)."""

    width: int
    left: int
    base: int
    height: int
    top: str
    x_label: str
    y_label: str
    bars: list[Bar]


def chart(points: list[tuple[str, int]], x_label: str, y_label: str, number: Callable[[int], str]) -> Chart:
    """The chart's geometry: the tallest bar fills the plot, every bar shows at least a pixel."""
    top = max(n for _, n in points)
    left, base, height = 56, 150, 110
    bar = max(18, min(60, 640 // len(points)))
    bars = []
    for i, (hour, n) in enumerate(points):
        x = left + 4 + i * bar
        bars.append(
            Bar(
                x,
                max(1, int(height * n / top)),
                bar - 6,
                x + (bar - 6) // 2,
                hour[-5:],
                number(n),
                f"{hour}: {n}",
            )
        )
    # Wide enough for the axis title under a single bar too.
    width = max(left + bar * len(points) + 20, 240)
    return Chart(width, left, base, height, number(top), x_label, y_label, bars)


def html_page(report: AuditReport, lang: str = "en") -> str:
    """The audit as one self-contained page: the summary, the hourly chart, each finding, per school."""
    from pcnctl.reports import html

    w = _Words(lang)
    t = w.t
    points = hourly(report, w.zone)
    return html.render(
        "audit.html.j2",
        lang=lang,
        t=t,
        colon=w.words.colon,
        profile=report.profile,
        since=w.when(report.since),
        until=w.when(report.until),
        worst=report.worst,
        summary=([t["check"], t["severity"], t["count"], t["summary"]], _summary_rows(report, w)),
        chart=chart(points, t["hour_axis"], t["messages_axis"], w.words.number) if points else None,
        findings=[_finding(f, w) for f in report.findings],
        schools=_school_table(report, w),
    )


@dataclass(frozen=True)
class FindingView:
    title: str
    severity: str  # the class of its severity's style
    severity_label: str
    headers: list[str]
    rows: list[list[str]]  # none: nothing found


def _finding(f: Finding, w: _Words) -> FindingView:
    t = w.t
    if not (f.rows and f.columns):
        return FindingView(t[f.check], f.severity, t[f.severity], [], [])
    rows = [[w.value(c, r.get(c)) for c in f.columns] for r in f.rows]
    return FindingView(t[f.check], f.severity, t[f.severity], [w.column(c) for c in f.columns], rows)


def to_json(report: AuditReport) -> str:
    return json.dumps(report.to_json(), indent=1, ensure_ascii=False, default=str) + "\n"


def to_csv(report: AuditReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["check", "severity", "count", "summary", "row"])
    for f in report.findings:
        rows = f.rows or [{}]
        for row in rows:
            detail = (
                json.dumps({c: row.get(c) for c in f.columns}, ensure_ascii=False, default=str) if row else ""
            )
            writer.writerow([f.check, f.severity, f.count, safe_csv_cell(f.summary), safe_csv_cell(detail)])
    return buffer.getvalue()


RENDERERS = {"markdown": markdown, "html": html_page}
