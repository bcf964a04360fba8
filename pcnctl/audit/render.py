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

from pcnctl.audit.run import AuditReport
from pcnctl.output import cell, safe_csv_cell
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
        "none": "nothing found",
        "mass_senders": "Mass senders",
        "watchlist": "Threat watchlist",
        "blocks": "Blocks in force",
        "drift": "Drift",
        "evidence": "Evidence gaps",
        "health": "Platform health",
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
        "none": "rien à signaler",
        "mass_senders": "Envois massifs",
        "watchlist": "Liste de surveillance (menaces)",
        "blocks": "Blocages en vigueur",
        "drift": "Dérives",
        "evidence": "Purges sans preuves",
        "health": "Santé de la plateforme",
        "ok": "ok",
        "info": "info",
        "warning": "avertissement",
        "critical": "critique",
    },
}


def per_school(report: AuditReport) -> list[dict[str, Any]]:
    counts: dict[str, Counter[str]] = {}
    for f in report.findings:
        for row in f.rows:
            schools = row.get("schools") or ([row["school"]] if row.get("school") else [])
            if f.check == "drift" and len(str(row.get("target", ""))) == 8:
                schools = [row["target"]]
            for uai in schools:
                counts.setdefault(uai, Counter())[f.check] += 1
    return [{"school": uai, **dict(c)} for uai, c in sorted(counts.items())]


def hourly(report: AuditReport) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for f in report.findings:
        if f.check == "watchlist":
            for row in f.rows:
                counts[datetime.fromtimestamp(row["date_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:00")] += 1
    return sorted(counts.items())


def markdown(report: AuditReport, lang: str = "en") -> str:
    from tabulate import tabulate

    t = LABELS[lang]
    out = [
        f"# {t['title']}: {report.profile} ({report.url})",
        "",
        f"- {t['window']}: {iso(report.since)} -> {iso(report.until)}",
        f"- {t['worst']}: **{t[report.worst]}**",
        "",
    ]
    out.append(
        tabulate(
            [[t[f.check], t[f.severity], f.count, f.summary] for f in report.findings],
            headers=[t["check"], t["severity"], t["count"], t["summary"]],
            tablefmt="github",
        )
    )
    for f in report.findings:
        out += ["", f"## {t[f.check]} ({t[f.severity]})", ""]
        if f.rows and f.columns:
            out.append(
                tabulate(
                    [[cell(r.get(c)) for c in f.columns] for r in f.rows],
                    headers=list(f.columns),
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


def _chart(points: list[tuple[str, int]]) -> str:
    if not points:
        return ""
    top = max(n for _, n in points)
    width, bar = 600, max(12, 560 // max(len(points), 1))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="160" role="img">']
    for i, (hour, n) in enumerate(points):
        h = int(120 * n / top)
        x = 20 + i * bar
        parts.append(
            f'<rect x="{x}" y="{130 - h}" width="{bar - 4}" height="{h}" fill="#b33"><title>'
            f"{html.escape(hour)}: {n}</title></rect>"
        )
        parts.append(f'<text x="{x}" y="150" font-size="9">{html.escape(hour[-5:])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_page(report: AuditReport, lang: str = "en") -> str:
    t = LABELS[lang]

    def table(headers: list[str], rows: list[list[Any]]) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell(c))}</td>" for c in r) + "</tr>" for r in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    sections = [
        f"<h1>{html.escape(t['title'])}: {html.escape(report.profile)}</h1>",
        f"<p>{t['window']}: {iso(report.since)} &rarr; {iso(report.until)}. {t['worst']}: "
        f'<span class="{report.worst}">{t[report.worst]}</span></p>',
        table(
            [t["check"], t["severity"], t["count"], t["summary"]],
            [[t[f.check], t[f.severity], f.count, f.summary] for f in report.findings],
        ),
    ]
    points = hourly(report)
    if points:
        sections += [f"<h2>{html.escape(t['hourly'])}</h2>", _chart(points)]
    for f in report.findings:
        sections.append(
            f'<h2>{html.escape(t[f.check])} <span class="{f.severity}">({t[f.severity]})</span></h2>'
        )
        if f.rows and f.columns:
            sections.append(table(list(f.columns), [[r.get(c) for c in f.columns] for r in f.rows]))
        else:
            sections.append(f"<p><em>{html.escape(t['none'])}</em></p>")
    schools = per_school(report)
    if schools:
        keys = sorted({k for s in schools for k in s if k != "school"})
        sections += [
            f"<h2>{html.escape(t['schools'])}</h2>",
            table(
                [t["school"], *[t[k] for k in keys]],
                [[s["school"], *[s.get(k, 0) for k in keys]] for s in schools],
            ),
        ]
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(t["title"])}'
        "</title><style>body{font-family:sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;"
        "margin:.5rem 0 1.5rem}th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left;"
        "font-size:.9rem}"
        "th{background:#eee}.critical{color:#b00;font-weight:bold}.warning{color:#c60;font-weight:bold}"
        ".ok{color:#070}</style></head><body>" + "".join(sections) + "</body></html>\n"
    )


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
