"""The incident report for the crisis cell and the post-mortem: what was done, when, by whom, with which
identity, what was found and preserved, which schools were affected, what is still in force.

Built from the incident directory only (journal, snapshots, evidence, the block registry), so it can be
written after the fact, without the ENT. Markdown for mail and tickets, a self-contained HTML page for
people.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from typing import Any

from pcnctl import evidence, export, messaging
from pcnctl.incident.journal import done_keys, read
from pcnctl.incident.store import Incident


def collect(incident: Incident) -> dict[str, Any]:
    runs = read(incident.journal_path)
    timeline = []
    for state in runs:
        counts = state.counts()
        timeline.append(
            {
                "run": state.run,
                "op": state.op,
                "by": state.meta.get("identity", ""),
                "auth": state.meta.get("auth", ""),
                "items": len(state.items),
                "done": counts.get("done", 0),
                "already": counts.get("already", 0),
                "failed": counts.get("failed", 0) + counts.get("refused", 0),
                "status": state.end or ("interrupted" if state.pending else "completed"),
            }
        )
    blocked_accounts = sorted(done_keys(runs, "accounts.block"))
    purged = len(done_keys(runs, "messages.purge"))
    checks = evidence.verify(incident)
    blocks = [b for b in messaging.status_rows(include_lifted=True) if b["incident"] == incident.id]
    matches = export.matches_from_incident(incident)
    schools: Counter[str] = Counter()
    for m in matches:
        for uai in {u for uais in (m.get("recipient_schools") or {}).values() for u in uais}:
            schools[uai] += 1
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
        "timeline": timeline,
        "accounts_blocked": len(blocked_accounts),
        "messages_preserved": len(matches),
        "messages_purged": purged,
        "evidence": {"bundles": len({c.bundle for c in checks}), "intact": all(c.ok for c in checks)},
        "messaging_blocks": blocks,
        "affected_schools": [{"uai": u, "messages": n} for u, n in sorted(schools.items())],
    }


def markdown(data: dict[str, Any]) -> str:
    from tabulate import tabulate

    inc = data["incident"]
    out = [
        f"# Incident {inc['id']}: {inc['title']}",
        "",
        f"- Status: **{inc['status']}** (opened {inc['opened_at']} by {inc['opened_by']}"
        + (f", closed {inc['closed_at']}" if inc["closed_at"] else "")
        + ")",
        f"- ENT profiles: {', '.join(inc['profiles']) or '-'}",
        f"- Accounts blocked: {data['accounts_blocked']}; messages preserved as evidence: "
        f"{data['messages_preserved']}; purged: {data['messages_purged']}",
        f"- Evidence bundles: {data['evidence']['bundles']} "
        f"({'hashes intact' if data['evidence']['intact'] else 'ALTERED'})",
        "",
    ]
    out += ["## Timeline", ""]
    rows = [
        [t["run"], t["op"], t["by"], t["auth"], t["items"], t["done"], t["already"], t["failed"], t["status"]]
        for t in data["timeline"]
    ]
    out.append(
        tabulate(
            rows,
            headers=["run", "operation", "by", "auth", "items", "done", "already", "failed", "status"],
            tablefmt="github",
        )
    )
    out += ["", "## Affected schools", ""]
    out.append(
        tabulate(
            [[s["uai"], s["messages"]] for s in data["affected_schools"]],
            headers=["UAI", "threats received"],
            tablefmt="github",
        )
    )
    out += ["", "## Messaging blocks", ""]
    out.append(
        tabulate(
            [
                [b["school"], b["profile"], b["method"], b["since"], b["until"] or "", b["status"]]
                for b in data["messaging_blocks"]
            ],
            headers=["UAI", "profile", "lever", "since", "until", "status"],
            tablefmt="github",
        )
    )
    return "\n".join(out) + "\n"


def html_page(data: dict[str, Any]) -> str:
    def table(headers: list[str], rows: list[list[Any]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    inc = data["incident"]
    return (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        f"<title>Incident {html.escape(inc['id'])}</title><style>"
        "body{font-family:sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin:1rem 0}"
        "th,td{border:1px solid #bbb;padding:.3rem .6rem;text-align:left}th{background:#eee}"
        ".bad{color:#b00;font-weight:bold}</style></head><body>"
        f"<h1>Incident {html.escape(inc['id'])}: {html.escape(inc['title'])}</h1>"
        f"<p>Status <b>{html.escape(inc['status'])}</b>, opened {html.escape(inc['opened_at'])} by "
        f"{html.escape(inc['opened_by'])}. Accounts blocked: {data['accounts_blocked']}; messages preserved: "
        f"{data['messages_preserved']}; purged: {data['messages_purged']}. Evidence: "
        f"{data['evidence']['bundles']} bundle(s), "
        + ("hashes intact" if data["evidence"]["intact"] else '<span class="bad">ALTERED</span>')
        + ".</p>"
        "<h2>Timeline</h2>"
        + table(
            ["run", "operation", "by", "auth", "items", "done", "already", "failed", "status"],
            [
                [
                    t["run"],
                    t["op"],
                    t["by"],
                    t["auth"],
                    t["items"],
                    t["done"],
                    t["already"],
                    t["failed"],
                    t["status"],
                ]
                for t in data["timeline"]
            ],
        )
        + "<h2>Affected schools</h2>"
        + table(["UAI", "threats received"], [[s["uai"], s["messages"]] for s in data["affected_schools"]])
        + "<h2>Messaging blocks</h2>"
        + table(
            ["UAI", "profile", "lever", "since", "until", "status"],
            [
                [b["school"], b["profile"], b["method"], b["since"], b["until"] or "", b["status"]]
                for b in data["messaging_blocks"]
            ],
        )
        + "</body></html>\n"
    )


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"
