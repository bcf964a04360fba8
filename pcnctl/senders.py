"""``pcnctl senders``: the accounts that sent messages in a window, with rates, recipients and IPs.

Mass senders are flagged on thresholds (messages, recipients, rate); the event store gives counts, times,
IPs and user agents, and the mailstore, when configured, adds how many people each account reached (its
messages' mailbox copies, group sends expanded; drafts and scheduled messages do not count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pcnctl.platform import EntDriver
from pcnctl.search import Directory
from pcnctl.sources.events import iter_events
from pcnctl.sources.mailstore import Mailstore, Scan
from pcnctl.timespec import iso


@dataclass(frozen=True)
class Thresholds:
    messages: int = 20
    recipients: int = 40
    per_minute: float = 5.0


def senders(
    driver: EntDriver,
    since_ms: int,
    until_ms: int,
    *,
    store: Mailstore | None = None,
    thresholds: Thresholds = Thresholds(),
    progress: bool = False,
) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    from pcnctl.progress import progress_bar

    stats: dict[str, dict[str, Any]] = {}
    minutes = max(1, (until_ms - since_ms) // 60_000)
    with progress_bar(minutes, "events (minutes of the window read)", enabled=progress) as advance:
        for event in iter_events(driver, since_ms, until_ms, covered=lambda ms: advance(ms // 60_000)):
            if event.get("module") != "Conversation" or not event.get("userId"):
                continue
            row = stats.setdefault(
                event["userId"],
                {
                    "messages": 0,
                    "first": event["date"],
                    "last": event["date"],
                    "ips": set(),
                    "agents": set(),
                    "structures": set(),
                    "profile": event.get("profil"),
                },
            )
            row["messages"] += 1
            row["first"], row["last"] = min(row["first"], event["date"]), max(row["last"], event["date"])
            row["ips"].add(event.get("ip") or "?")
            row["agents"].add(event.get("ua") or "?")
            row["structures"].update(event.get("structures") or [])
    reached: dict[str, set[str]] = {}
    if store is not None and stats:
        # The copies say who was reached: a send to a group reaches each of its members.
        scan = Scan(since_ms, until_ms, list(stats))
        for message in store.with_copies(store.iter_messages(scan)):
            reached.setdefault(message.sender, set()).update(message.recipients)
    people = Directory(driver)
    people.load(list(stats))
    uai = {s.id: s.uai for s in driver.list_schools()}
    rows = []
    for user_id, row in stats.items():
        minutes = max((row["last"] - row["first"]) / 60000, 1.0)
        rate = row["messages"] / minutes
        recipients = len(reached[user_id]) if user_id in reached else None
        reasons = []
        if row["messages"] >= thresholds.messages:
            reasons.append(f"{row['messages']} messages")
        if recipients is not None and recipients >= thresholds.recipients:
            reasons.append(f"{recipients} recipients")
        if rate >= thresholds.per_minute and row["messages"] >= 3:
            reasons.append(f"{rate:.1f}/min")
        rows.append(
            {
                "id": user_id,
                "login": people.login(user_id),
                "profile": row["profile"],
                "schools": sorted(uai.get(s, s) for s in row["structures"]),
                "messages": row["messages"],
                "recipients": recipients,
                "per_minute": round(rate, 2),
                "ips": sorted(row["ips"]),
                "agents": len(row["agents"]),
                "first": iso(datetime.fromtimestamp(row["first"] / 1000, UTC)),
                "last": iso(datetime.fromtimestamp(row["last"] / 1000, UTC)),
                "mass": bool(reasons),
                "why": ", ".join(reasons),
            }
        )
    return sorted(rows, key=lambda r: (not r["mass"], -r["messages"], r["login"]))
