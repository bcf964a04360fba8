"""Audit reports: Markdown for mail and tickets, a self-contained HTML page for people (tables per check,
a per-school summary, messages per hour as a small SVG chart), JSON and CSV for machines; English or French.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pcnctl.output import cell, safe_csv_cell
from pcnctl.records import Cell, Row
from pcnctl.reports.audit.checks import Finding
from pcnctl.reports.audit.run import AuditReport
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
# The French summary of each check, from its count (the checks word their summaries in English).
SUMMARIES_FR = {
    "mass_senders": "{n} compte(s) envoyant en masse",
    "watchlist": "{n} message(s) correspondant à la liste de surveillance",
    "blocks": "{n} blocage(s) en vigueur",
    "drift": "{n} changement(s) d'un incident ouvert défait(s) depuis",
    "evidence": "{n} incident(s) avec des messages supprimés sans preuve vérifiée",
    "health": "{n} route(s) lente(s) ou en échec",
    "watch": "{n} problème(s) de la veille (pcnctl watch)",
}
# Cell values that are words, not data.
VALUES_FR = {True: "oui", False: "non", "account": "compte", "messaging": "messagerie"}


class _Words:
    """What a report says in one language: labels, headings, summaries, times, word-like cells."""

    def __init__(self, lang: str, tz: str = "Europe/Paris") -> None:
        self.lang = lang
        self.t = LABELS[lang]
        self.zone = ZoneInfo(tz) if lang == "fr" else UTC

    def column(self, key: str) -> str:
        return COLUMNS.get(self.lang, {}).get(key, key)

    def summary(self, f: Any) -> str:
        if self.lang != "fr":
            return str(f.summary)
        if f.check == "watchlist" and f.severity == "info" and not f.rows:
            return "non vérifiée : aucune base de messagerie configurée sur le profil"
        return SUMMARIES_FR[f.check].format(n=f.count)

    def when(self, moment: datetime) -> str:
        if self.lang != "fr":
            return iso(moment)
        return moment.astimezone(self.zone).strftime("%d/%m/%Y %H:%M")

    def value(self, column: str, value: Any) -> str:
        if self.lang == "fr":
            if column in ("date", "since", "until") and isinstance(value, str) and value[:2] == "20":
                try:
                    return self.when(datetime.fromisoformat(value.replace("Z", "+00:00")))
                except ValueError:
                    return value
            if isinstance(value, bool | str) and value in VALUES_FR:
                return VALUES_FR[value]
        return cell(value)


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


def markdown(report: AuditReport, lang: str = "en") -> str:
    from tabulate import tabulate

    w = _Words(lang)
    t = w.t
    out = [
        f"# {t['title']}: {report.profile} ({report.url})",
        "",
        f"- {t['window']}: {w.when(report.since)} -> {w.when(report.until)}",
        f"- {t['worst']}: **{t[report.worst]}**",
        "",
    ]
    out.append(
        tabulate(
            [[t[f.check], t[f.severity], f.count, w.summary(f)] for f in report.findings],
            headers=[t["check"], t["severity"], t["count"], t["summary"]],
            tablefmt="github",
        )
    )
    for f in report.findings:
        out += ["", f"## {t[f.check]} ({t[f.severity]})", ""]
        if f.rows and f.columns:
            out.append(
                tabulate(
                    [[w.value(c, r.get(c)) for c in f.columns] for r in f.rows],
                    headers=[w.column(c) for c in f.columns],
                    tablefmt="github",
                )
            )
        else:
            out.append(f"_{t['none']}_")
    schools = per_school(report)
    if schools:
        keys = sorted({k for s in schools for k in s if k != "school"})
        out += ["", f"## {t['schools']}", ""]
        out.append(
            tabulate(
                [[s["school"], *[s.get(k, 0) for k in keys]] for s in schools],
                headers=[t["school"], *[t[k] for k in keys]],
                tablefmt="github",
            )
        )
    return "\n".join(out) + "\n"


def _chart(points: list[tuple[str, int]], x_label: str, y_label: str) -> str:
    """Bars per hour with both axes, their titles, hour labels under the bars and the count above each."""
    if not points:
        return ""
    top = max(n for _, n in points)
    left, base, height = 56, 150, 110
    bar = max(18, min(60, 640 // len(points)))
    width = left + bar * len(points) + 20
    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="200" role="img" '
        f'aria-label="{esc(y_label)}" font-family="sans-serif">',
        f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#333"/>',
        f'<line x1="{left}" y1="{base}" x2="{left}" y2="{base - height - 10}" stroke="#333"/>',
        f'<text x="{left - 6}" y="{base + 4}" font-size="10" text-anchor="end">0</text>',
        f'<text x="{left - 6}" y="{base - height + 4}" font-size="10" text-anchor="end">{top}</text>',
        f'<text x="12" y="{base - height // 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {base - height // 2})">{esc(y_label)}</text>',
        f'<text x="{(left + width) // 2}" y="195" font-size="11" text-anchor="middle">{esc(x_label)}</text>',
    ]
    for i, (hour, n) in enumerate(points):
        h = max(1, int(height * n / top))
        x = left + 4 + i * bar
        parts.append(
            f'<rect x="{x}" y="{base - h}" width="{bar - 6}" height="{h}" fill="#b33">'
            f"<title>{esc(hour)}: {n}</title></rect>"
        )
        centre = x + (bar - 6) // 2
        parts.append(f'<text x="{centre}" y="{base - h - 3}" font-size="10" text-anchor="middle">{n}</text>')
        parts.append(
            f'<text x="{centre}" y="{base + 14}" font-size="9" text-anchor="middle">{esc(hour[-5:])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


_STYLE = (
    "body{font-family:sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;"
    "margin:.5rem 0 1.5rem}th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left;"
    "font-size:.9rem}"
    "th{background:#eee}.critical{color:#b00;font-weight:bold}.warning{color:#c60;font-weight:bold}"
    ".ok{color:#070}"
)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(report: AuditReport, lang: str = "en") -> str:
    """The audit as one self-contained page: the summary, the hourly chart, each finding, per school."""
    w = _Words(lang)
    t = w.t
    sections = [
        f"<h1>{html.escape(t['title'])}: {html.escape(report.profile)}</h1>",
        f"<p>{t['window']}: {w.when(report.since)} &rarr; {w.when(report.until)}. {t['worst']}: "
        f'<span class="{report.worst}">{t[report.worst]}</span></p>',
        _table(
            [t["check"], t["severity"], t["count"], t["summary"]],
            [[t[f.check], t[f.severity], f.count, w.summary(f)] for f in report.findings],
        ),
    ]
    points = hourly(report, w.zone)
    if points:
        sections += [
            f"<h2>{html.escape(t['hourly'])}</h2>",
            _chart(points, t["hour_axis"], t["messages_axis"]),
        ]
    sections += [part for f in report.findings for part in _finding(f, w)]
    schools = per_school(report)
    if schools:
        keys = sorted({k for s in schools for k in s if k != "school"})
        sections += [
            f"<h2>{html.escape(t['schools'])}</h2>",
            _table(
                [t["school"], *[t[k] for k in keys]],
                [[s["school"], *[s.get(k, 0) for k in keys]] for s in schools],
            ),
        ]
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(t["title"])}'
        f"</title><style>{_STYLE}</style></head><body>" + "".join(sections) + "</body></html>\n"
    )


def _finding(f: Finding, w: _Words) -> list[str]:
    t = w.t
    title = f'<h2>{html.escape(t[f.check])} <span class="{f.severity}">({t[f.severity]})</span></h2>'
    if not (f.rows and f.columns):
        return [title, f"<p><em>{html.escape(t['none'])}</em></p>"]
    rows = [[w.value(c, r.get(c)) for c in f.columns] for r in f.rows]
    return [title, _table([w.column(c) for c in f.columns], rows)]


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
