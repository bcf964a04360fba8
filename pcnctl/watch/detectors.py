"""The audit's checks, run on what is new since the last cycle rather than on a whole window.

The cron audit (``pcnctl.reports.audit.checks``) reads fifteen minutes at a time; the watcher reads a few
seconds at a time and keeps, between cycles, a short sliding window (ten minutes by default) of what the
checks need: who sent how many messages when, to whom (pupils only: staff legitimately write to many),
the text's word pairs of pupils' messages, and the devices each account logged in from. What it looks for:

* ``watchlist``: a message matching the threat patterns (the audit's French list, or the profile's file),
  or a near-duplicate of a threat preserved in a past incident's evidence;
* ``mass-sender``: an account sending many messages, or fast (the audit's ``mass_messages`` and
  ``mass_rate``), or a pupil reaching many people (``mass_recipients``);
* ``fan-out``: one pupil's message delivered to many mailboxes at once (a whole group);
* ``template``: several pupils sending one text (the same word pairs, reworded a little);
* ``new-device``: several pupils each sending right after a first login from a device the watcher never
  saw them use (the hunt's corroboration), a signal rather than proof: it pages, it never acts.

Only messages the platform delivered or will deliver count (``SENT``, ``RECALL``, ``SCHEDULE``); drafts are
not a send. Each detection has a key, so a wave of six hundred copies of one threat is one detection that
grows, never six hundred pages.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pcnctl.forensics.search import shingles
from pcnctl.models import PlatformEvent
from pcnctl.watch.records import Detection, NewMessage

PUPIL = "Student"
SENDS = ("SENT", "RECALL", "SCHEDULE")


@dataclass(frozen=True)
class Settings:
    """Thresholds (the audit's, from the config file's ``audit:`` section, where it has them)."""

    window_ms: int = 10 * 60 * 1000
    mass_messages: int = 20
    mass_recipients: int = 40
    mass_rate: float = 5.0  # messages a minute, over at least ``rate_floor`` messages
    rate_floor: int = 5
    fanout: int = 30
    template_senders: int = 3
    similarity: float = 0.4
    new_device_ms: int = 30 * 60 * 1000
    new_device_accounts: int = 3


@dataclass
class Window:
    """What the checks remember between cycles (kept with the cursors, so a restart keeps it)."""

    sends: list[tuple[str, int]] = field(default_factory=list)  # (sender, date)
    reached: dict[str, list[str]] = field(default_factory=dict)  # pupil -> people reached (hashed)
    texts: list[tuple[str, str, int, list[int]]] = field(default_factory=list)  # pupils' (id, sender, ..)
    profiles: dict[str, str] = field(default_factory=dict)
    devices: dict[str, list[str]] = field(default_factory=dict)  # account -> devices seen (hashed)
    fresh: dict[str, int] = field(default_factory=dict)  # account -> time of a login from a new device

    def to_json(self) -> dict[str, object]:
        return {
            "sends": self.sends,
            "reached": self.reached,
            "texts": self.texts,
            "profiles": self.profiles,
            "devices": self.devices,
            "fresh": self.fresh,
        }

    @classmethod
    def from_json(cls, data: object) -> Window:
        if not isinstance(data, dict):
            return cls()
        return cls(
            [(str(s), int(d)) for s, d in data.get("sends", [])],
            {str(k): [str(x) for x in v] for k, v in data.get("reached", {}).items()},
            [(str(i), str(s), int(d), [int(x) for x in sig]) for i, s, d, sig in data.get("texts", [])],
            {str(k): str(v) for k, v in data.get("profiles", {}).items()},
            {str(k): [str(x) for x in v] for k, v in data.get("devices", {}).items()},
            {str(k): int(v) for k, v in data.get("fresh", {}).items()},
        )

    def prune(self, since_ms: int, devices_since_ms: int) -> None:
        self.sends = [s for s in self.sends if s[1] >= since_ms]
        self.texts = [t for t in self.texts if t[2] >= since_ms]
        senders = {s for s, _d in self.sends}
        self.reached = {k: v for k, v in self.reached.items() if k in senders}
        self.fresh = {k: v for k, v in self.fresh.items() if v >= devices_since_ms}


def _tag(value: str) -> str:
    """A short stable digest: the window keeps who was reached and which devices, not the ids themselves."""
    return format(zlib.crc32(value.encode()), "08x")


def signature(text: str) -> list[int]:
    """A text's word pairs, hashed: enough to compare two messages, small enough to keep."""
    return sorted({zlib.crc32(f"{a} {b}".encode()) for a, b in shingles(text)})


def _jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa and sb else 0.0


class Detectors:
    """The checks over one cycle's new events and messages, with the window they share."""

    def __init__(
        self,
        settings: Settings,
        watchlist: Sequence[tuple[str, str]],
        past: Sequence[tuple[str, list[int]]] = (),
        window: Window | None = None,
    ) -> None:
        self.settings = settings
        self.patterns = [(name, re.compile(p, re.IGNORECASE)) for name, p in watchlist]
        self.past = list(past)  # (incident, signature of a threat it preserved)
        self.window = window or Window()

    def feed(
        self,
        events: Iterable[PlatformEvent],
        messages: Sequence[NewMessage],
        now_ms: int,
        *,
        sends_from_events: bool = False,
    ) -> list[Detection]:
        """What this cycle's new events and messages show, with the window's context. Without a mailstore
        (``sends_from_events``), the event store's message creations stand for the sends: who sent how
        many, when (the audit's ``mass_senders`` reads them so), with no text and no recipients."""
        s = self.settings
        events = list(events)
        for event in events:
            self._event(event)
        if sends_from_events:
            messages = [*messages, *_creations(events)]
        sent = [m for m in messages if m.state in SENDS]
        for m in sent:
            self.window.sends.append((m.sender, m.date))
            if self.window.profiles.get(m.sender, PUPIL) == PUPIL:
                reached = self.window.reached.setdefault(m.sender, [])
                reached.extend(t for t in map(_tag, m.recipients) if t not in reached)
                if m.text:
                    self.window.texts.append((m.id, m.sender, m.date, signature(m.text)))
        found = self._watchlist(sent) + self._mass(sent) + self._fanout(sent) + self._template(sent)
        found += self._new_device(sent)
        self.window.prune(now_ms - s.window_ms, now_ms - s.new_device_ms)
        return found

    def _event(self, event: PlatformEvent) -> None:
        user = event.user_id
        if not user:
            return
        if event.profile:
            self.window.profiles[user] = event.profile
        if event.type != "LOGIN":
            return
        device = _tag(f"{event.ip or ''}|{event.ua or ''}")
        known = self.window.devices.setdefault(user, [])
        if known and device not in known:
            self.window.fresh[user] = event.date
        if device not in known:
            known.append(device)

    def _watchlist(self, sent: Sequence[NewMessage]) -> list[Detection]:
        hits: dict[str, list[NewMessage]] = {}
        for m in sent:
            name = next((n for n, p in self.patterns if p.search(m.text)), None)
            if name is not None:
                hits.setdefault(f"watchlist:{name}", []).append(m)
            like = self._like(m)
            if like:
                hits.setdefault(f"watchlist:like {like}", []).append(m)
        return [
            _detection("watchlist", key, "critical", _what_watchlist(key, ms), ms) for key, ms in hits.items()
        ]

    def _like(self, m: NewMessage) -> str:
        """The past incident whose preserved threat this message is like, or ''."""
        if not self.past:
            return ""
        mine = signature(m.text)
        score, incident = max(((_jaccard(mine, sig), inc) for inc, sig in self.past), default=(0.0, ""))
        return incident if score >= self.settings.similarity else ""

    def _mass(self, sent: Sequence[NewMessage]) -> list[Detection]:
        s, found = self.settings, []
        for sender in sorted({m.sender for m in sent}):
            latest = max(m.date for m in sent if m.sender == sender)
            dates = sorted(d for who, d in self.window.sends if who == sender and d >= latest - s.window_ms)
            minutes = max((dates[-1] - dates[0]) / 60000, 1.0)
            reasons = []
            if len(dates) >= s.mass_messages:
                reasons.append(f"{len(dates)} messages")
            if len(dates) >= s.rate_floor and len(dates) / minutes >= s.mass_rate:
                reasons.append(f"{len(dates) / minutes:.0f} messages par minute")
            if len(self.window.reached.get(sender, [])) >= s.mass_recipients:
                reasons.append(f"{len(self.window.reached[sender])} personnes atteintes")
            if reasons:
                mine = [m for m in sent if m.sender == sender]
                what = f"envoi en masse par un compte ({', '.join(reasons)} en {minutes:.0f} min)"
                found.append(_detection("mass-sender", f"mass-sender:{sender}", "critical", what, mine))
        return found

    def _fanout(self, sent: Sequence[NewMessage]) -> list[Detection]:
        wide = [
            m
            for m in sent
            if len(m.recipients) >= self.settings.fanout and self.window.profiles.get(m.sender) == PUPIL
        ]
        by_sender: dict[str, list[NewMessage]] = {}
        for m in wide:
            by_sender.setdefault(m.sender, []).append(m)
        return [
            _detection(
                "fan-out",
                f"fan-out:{sender}",
                "warning",
                f"message d'un élève à {max(len(m.recipients) for m in ms)} destinataires",
                ms,
            )
            for sender, ms in by_sender.items()
        ]

    def _template(self, sent: Sequence[NewMessage]) -> list[Detection]:
        """Pupils' new messages whose text several pupils of the window sent (one cluster per first one)."""
        s, found, taken = self.settings, [], set[str]()
        texts = self.window.texts
        for m in sent:
            if m.id in taken or self.window.profiles.get(m.sender, PUPIL) != PUPIL:
                continue
            sig = signature(m.text)
            near = [t for t in texts if abs(t[2] - m.date) <= s.window_ms]
            alike = [t for t in near if _jaccard(sig, t[3]) >= s.similarity]
            senders = {t[1] for t in alike}
            if len(senders) >= s.template_senders:
                first = min(alike, key=lambda t: (t[2], t[0]))
                mine = [x for x in sent if x.id in {t[0] for t in alike}]
                taken.update(x.id for x in mine)
                what = f"même texte envoyé par {len(senders)} élèves en quelques minutes"
                found.append(_detection("template", f"template:{first[0]}", "critical", what, mine))
        return found

    def _new_device(self, sent: Sequence[NewMessage]) -> list[Detection]:
        s = self.settings
        fresh = self.window.fresh
        sending = [
            m
            for m in sent
            if m.sender in fresh
            and 0 <= m.date - fresh[m.sender] <= s.new_device_ms
            and self.window.profiles.get(m.sender) == PUPIL
        ]
        accounts = {m.sender for m in sending}
        if len(accounts) < s.new_device_accounts:
            return []
        what = f"{len(accounts)} élèves envoient juste après une connexion depuis un nouvel appareil"
        return [_detection("new-device", "new-device", "warning", what, sending)]


def _creations(events: Sequence[PlatformEvent]) -> list[NewMessage]:
    """The messaging module's CREATE events as sends without content (the event store's view)."""
    return [
        NewMessage(e.id, e.user_id, e.date, "SENT", "", "", ())
        for e in events
        if e.type == "CREATE" and e.module == "Conversation" and e.user_id
    ]


def _what_watchlist(key: str, messages: Sequence[NewMessage]) -> str:
    name = key.removeprefix("watchlist:")
    if name.startswith("like "):
        return f"message semblable à la menace de l'incident {name.removeprefix('like ')}"
    return f"message menaçant (motif « {name} » de la liste de surveillance)"


def _detection(kind: str, key: str, severity: str, what: str, messages: Sequence[NewMessage]) -> Detection:
    return Detection(
        kind,
        key,
        severity,
        what,
        min(m.date for m in messages),
        max(m.date for m in messages),
        tuple(m.id for m in messages),
        tuple(dict.fromkeys(m.sender for m in messages)),
        sum(len(m.recipients) for m in messages),
        messages[0].subject,
    )


def merge(old: Detection, new: Detection) -> Detection:
    """A detection seen again: its messages, senders and reach added up, its time span widened."""
    messages = tuple(dict.fromkeys(old.messages + new.messages))
    added = sum(1 for m in new.messages if m not in old.messages)
    reach = old.recipients + (new.recipients * added // max(len(new.messages), 1))
    return Detection(
        old.kind,
        old.key,
        old.severity,
        new.what,
        min(old.first_ms, new.first_ms),
        max(old.last_ms, new.last_ms),
        messages,
        tuple(dict.fromkeys(old.senders + new.senders)),
        reach,
        old.subject or new.subject,
    )
