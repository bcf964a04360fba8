"""What the watcher reads, finds and keeps, as typed records (no loose dictionaries in the loop)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Detection kinds, as the policy's ``triggers`` and the pages name them.
KINDS = ("watchlist", "template", "mass-sender", "fan-out", "new-device")
KIND_FR = {
    "watchlist": "message menaçant (liste de surveillance)",
    "template": "même texte envoyé par plusieurs élèves",
    "mass-sender": "envoi en masse",
    "fan-out": "message d'un élève à de nombreux destinataires",
    "new-device": "envois juste après une première connexion depuis un nouvel appareil",
}


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message the mailstore holds since the cursor: who sent it when, to how many people, its text."""

    id: str
    sender: str
    date: int  # epoch milliseconds
    state: str
    subject: str
    text: str  # subject and visible body, folded (lower case, no accents)
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Detection:
    """One thing the detectors found. ``key`` is what a page is deduplicated on: the same key seen again
    updates the detection, it is never paged twice."""

    kind: str
    key: str
    severity: str  # critical (a threat, mass sending) | warning (a signal worth a look)
    what: str  # in French: what was seen
    first_ms: int
    last_ms: int
    messages: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()
    recipients: int = 0
    subject: str = ""


@dataclass(slots=True)
class Wave:
    """The detections of one incident the watcher opened, as paged and answered."""

    incident: str
    opened_ms: int
    detections: dict[str, Detection] = field(default_factory=dict)

    @property
    def first_ms(self) -> int:
        return min((d.first_ms for d in self.detections.values()), default=self.opened_ms)

    @property
    def last_ms(self) -> int:
        return max((d.last_ms for d in self.detections.values()), default=self.opened_ms)

    @property
    def kinds(self) -> set[str]:
        return {d.kind for d in self.detections.values()}

    @property
    def messages(self) -> set[str]:
        return {m for d in self.detections.values() for m in d.messages}

    @property
    def senders(self) -> set[str]:
        return {s for d in self.detections.values() for s in d.senders}


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The watcher's last sign of life on one ENT, as ``doctor`` and the audit read it."""

    ent: str
    holder: str  # user@host pid N
    started_at: str
    beat_at: str
    beat_ms: int
    cycle: int
    interval_s: float
    status: str  # ok | slow | ent-unavailable | mailstore-unavailable | stopped
    detail: str = ""

    def age_s(self, now_ms: int) -> float:
        return max(0.0, (now_ms - self.beat_ms) / 1000)

    def stale(self, now_ms: int) -> bool:
        """No beat for three of its intervals (and at least a minute): the watcher is stuck or gone."""
        return self.status == "stopped" or self.age_s(now_ms) > max(60.0, 3 * self.interval_s)


@dataclass(frozen=True, slots=True)
class Response:
    """A pre-approved response the watcher ran (or refused) in one incident."""

    ent: str
    incident: str
    policy: str  # the policy file's SHA-256
    status: str  # running | done | refused | failed | lifted | confirmed
    started_ms: int
    expires_ms: int
    detail: str = ""
    confirmed_by: str = ""
    passes: int = 0  # runs of the playbook done: the first, then the second look


@dataclass(frozen=True, slots=True)
class Page:
    """One page to one channel, kept until it is delivered (a channel down is tried again next cycle)."""

    id: str
    incident: str
    channel: str  # email | webhook
    subject: str
    body: str
    status: str = "pending"  # pending | sent
    attempts: int = 0
    created_ms: int = 0
    sent_ms: int | None = None
    error: str = ""
