"""``pcnctl senders``: the accounts that sent messages in a window, with rates, recipients and IPs.

Mass senders are flagged on thresholds (messages, recipients, rate); the event store gives counts, times,
IPs and user agents, and the mailstore, when configured, adds how many people each account reached (its
messages' mailbox copies, group sends expanded; drafts and scheduled messages do not count).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pcnctl.ent.platform import EntDriver
from pcnctl.forensics.events import iter_events
from pcnctl.forensics.mailstore import Mailstore, Scan
from pcnctl.forensics.search import Directory
from pcnctl.records import Row
from pcnctl.timespec import iso


@dataclass(frozen=True)
class Thresholds:
    messages: int = 20
    recipients: int = 40
    per_minute: float = 5.0


@dataclass
class _Sent:
    """What the event store says one account sent in the window."""

    first: int
    last: int
    profile: str | None
    messages: int = 0
    ips: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    structures: set[str] = field(default_factory=set)

    @property
    def per_minute(self) -> float:
        return self.messages / max((self.last - self.first) / 60000, 1.0)


def _sends(driver: EntDriver, since_ms: int, until_ms: int, progress: bool) -> dict[str, _Sent]:
    from pcnctl.progress import progress_bar

    stats: dict[str, _Sent] = {}
    minutes = max(1, (until_ms - since_ms) // 60_000)
    with progress_bar(minutes, "events (minutes of the window read)", enabled=progress) as advance:
        for event in iter_events(driver, since_ms, until_ms, covered=lambda ms: advance(ms // 60_000)):
            if event.module != "Conversation" or not event.user_id:
                continue
            sent = stats.setdefault(event.user_id, _Sent(event.date, event.date, event.profile))
            sent.messages += 1
            sent.first, sent.last = min(sent.first, event.date), max(sent.last, event.date)
            sent.ips.add(event.ip or "?")
            sent.agents.add(event.ua or "?")
            sent.structures.update(event.structures)
    return stats


def _reasons(sent: _Sent, recipients: int | None, thresholds: Thresholds) -> list[str]:
    """Why an account counts as a mass sender (none: it does not)."""
    reasons = []
    if sent.messages >= thresholds.messages:
        reasons.append(f"{sent.messages} messages")
    if recipients is not None and recipients >= thresholds.recipients:
        reasons.append(f"{recipients} recipients")
    if sent.per_minute >= thresholds.per_minute and sent.messages >= 3:
        reasons.append(f"{sent.per_minute:.1f}/min")
    return reasons


def senders(
    driver: EntDriver,
    since_ms: int,
    until_ms: int,
    *,
    store: Mailstore | None = None,
    thresholds: Thresholds = Thresholds(),
    progress: bool = False,
) -> list[Row]:
    from datetime import UTC, datetime

    stats = _sends(driver, since_ms, until_ms, progress)
    reached: dict[str, set[str]] = {}
    if store is not None and stats:
        # The copies say who was reached: a send to a group reaches each of its members.
        scan = Scan(since_ms, until_ms, list(stats))
        for message in store.with_copies(store.iter_messages(scan)):
            reached.setdefault(message.sender, set()).update(message.recipients)
    people = Directory(driver)
    people.load(list(stats))
    uai = {s.id: s.uai for s in driver.list_schools()}
    rows: list[tuple[tuple[bool, int, str], Row]] = []
    for user_id, sent in stats.items():
        recipients = len(reached[user_id]) if user_id in reached else None
        reasons = _reasons(sent, recipients, thresholds)
        login = people.login(user_id)
        row: Row = {
            "id": user_id,
            "login": login,
            "profile": sent.profile,
            "schools": sorted(uai.get(s, s) for s in sent.structures),
            "messages": sent.messages,
            "recipients": recipients,
            "per_minute": round(sent.per_minute, 2),
            "ips": sorted(sent.ips),
            "agents": len(sent.agents),
            "first": iso(datetime.fromtimestamp(sent.first / 1000, UTC)),
            "last": iso(datetime.fromtimestamp(sent.last / 1000, UTC)),
            "mass": bool(reasons),
            "why": ", ".join(reasons),
        }
        rows.append(((not reasons, -sent.messages, login), row))
    return [row for _key, row in sorted(rows, key=lambda pair: pair[0])]
