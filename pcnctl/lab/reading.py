"""The lab's readers: recipients open the messages they received over time, with a seeded model.

Harm is not a threat delivered but a threat **opened**: a pupil who reads "une bombe ... evacuez" before the
purge took the hit, one whose copy was purged unread did not. The drill measures copies opened before the
purge, so the lab's mailboxes must be read the way people read them. The model (docs/lab.md), fixed for the
benchmark, is a curve per profile of the share of copies opened within a delay of their delivery, in school
hours:

==========  ========  =========  ========  =========
profile     5 min     30 min     4 h       24 h
==========  ========  =========  ========  =========
pupils      20 %      50 %       80 %      95 %
staff       10 %      30 %       65 %      90 %
parents      5 %      20 %       50 %      85 %
==========  ========  =========  ========  =========

Between 0 and 5 minutes the share grows linearly (about 4 % of pupils' copies a minute), then linearly in
the logarithm of the delay between the points; the rest is never opened. Each copy's delay is drawn from the
curve of its recipient's profile with a random generator seeded by the drill's seed, the message and the
recipient, so a copy gets the same delay whatever order the readers see it in, and a drill replayed with the
same seed opens the same copies at the same delays.

Opening a copy does what the platform's read does (conversation ``SqlConversationService.get``, 6.15.4,
from line 833, run by ``GET /conversation/api/messages/:id``, ``ApiController.getFullMessage`` line 102,
through ``getAndFormat`` line 913): in one transaction (line 889), the reader's ``userthreads.nb_unread`` of
the thread goes down by one when the copy was unread (lines 839-847), and ``usermessages.unread`` becomes
false (lines 853-855). The readers write it to the lab's
store directly (the lab's own ``GET /conversation/api/messages/:id`` does not mark the copy read yet, and
thousands of pupils' sessions would load the lab's capacity, which the drill keeps for the response). A copy
the purge removed first is never opened: what the readers opened is exactly what was opened before the purge.
"""

from __future__ import annotations

import bisect
import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Curve:
    """The share of copies opened within each delay (seconds) of their delivery; the last share is the
    share ever opened."""

    points: tuple[tuple[float, float], ...]

    def share(self, seconds: float) -> float:
        """The share opened within ``seconds`` (what the docs' table states)."""
        times = [t for t, _s in self.points]
        if seconds >= times[-1]:
            return self.points[-1][1]
        i = bisect.bisect_right(times, seconds)
        (t0, s0), (t1, s1) = self.points[i - 1], self.points[i]
        if t0 <= 0:
            return s0 + (s1 - s0) * seconds / t1
        ratio = math.log(seconds / t0) / math.log(t1 / t0)
        return s0 + (s1 - s0) * ratio

    def delay(self, u: float) -> float | None:
        """The delay at which a copy whose draw is ``u`` (uniform in [0, 1)) is opened; None: never."""
        if u >= self.points[-1][1]:
            return None
        for (t0, s0), (t1, s1) in zip(self.points, self.points[1:], strict=False):
            if u < s1:
                part = (u - s0) / (s1 - s0)
                return t0 + (t1 - t0) * part if t0 <= 0 else t0 * (t1 / t0) ** part
        return None  # pragma: no cover - u below the last share always falls in a segment


PUPILS = Curve(((0, 0.0), (300, 0.20), (1800, 0.50), (14400, 0.80), (86400, 0.95)))
STAFF = Curve(((0, 0.0), (300, 0.10), (1800, 0.30), (14400, 0.65), (86400, 0.90)))
PARENTS = Curve(((0, 0.0), (300, 0.05), (1800, 0.20), (14400, 0.50), (86400, 0.85)))
MODEL = {"Student": PUPILS, "Teacher": STAFF, "Personnel": STAFF, "Relative": PARENTS, "Guest": PARENTS}


def delay(seed: int, message: str, user: str, profile: str) -> float | None:
    """When (seconds after delivery) this recipient opens this copy, or None: the same answer every time."""
    draw = random.Random(f"{seed}:{message}:{user}").random()
    return MODEL.get(profile, PARENTS).delay(draw)


@dataclass
class Opened:
    """A copy the readers opened: which message, whose copy, when (epoch ms)."""

    message: str
    user: str
    at_ms: int


@dataclass
class Readers:
    """The lab's recipients reading their mailboxes, in a thread of the drill: every ``tick_s`` it looks for
    copies delivered since ``since_ms``, gives each its delay, and opens those that are due."""

    data: Path
    seed: int
    since_ms: int
    tick_s: float = 0.25
    clock: Callable[[], float] = time.time
    delivered: dict[tuple[str, str], int] = field(default_factory=dict)  # (message, user) -> delivery ms
    due: list[tuple[int, str, str]] = field(default_factory=list)  # (opening ms, message, user), sorted
    opened: list[Opened] = field(default_factory=list)
    horizon_ms: int = 0  # copies of messages older than this were all seen already
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Readers:
        self._thread = threading.Thread(target=self._loop, name="lab-readers", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading, after a last look: copies due by now are opened, none later."""
        if self._stop.is_set():
            return
        self.halt()
        self.tick()

    def halt(self) -> None:
        """Stop the thread (no last look)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.tick()

    def tick(self) -> None:
        db = _open(self.data)
        try:
            self._schedule(db)
            self._open_due(db, int(self.clock() * 1000))
        finally:
            db.close()

    def _schedule(self, db: sqlite3.Connection) -> None:
        rows = db.execute(
            "SELECT um.message_id, um.user_id, m.date, u.profile FROM conversation.messages m JOIN"
            " conversation.usermessages um ON um.message_id = m.id LEFT JOIN users u ON u.id = um.user_id"
            " WHERE m.date >= ? AND m.state IN ('SENT', 'RECALL') AND um.user_id <> m.\"from\"",
            (max(self.since_ms, self.horizon_ms),),
        ).fetchall()
        # A minute of overlap: a message written with a date a little before the last one seen.
        self.horizon_ms = max([self.horizon_ms, *(int(r[2]) - 60_000 for r in rows)])
        for message, user, date, profile in rows:
            if (message, user) in self.delivered:
                continue
            self.delivered[(message, user)] = int(date)
            wait = delay(self.seed, message, user, profile or "")
            if wait is not None:
                bisect.insort(self.due, (int(date + wait * 1000), message, user))

    def _open_due(self, db: sqlite3.Connection, now_ms: int) -> None:
        while self.due and self.due[0][0] <= now_ms:
            at, message, user = self.due.pop(0)
            if _read(db, message, user):
                self.opened.append(Opened(message, user, at))

    def opened_of(self, messages: set[str]) -> int:
        return sum(1 for o in self.opened if o.message in messages)

    def delivered_of(self, messages: set[str]) -> int:
        return sum(1 for m, _u in self.delivered if m in messages)


def _open(data: Path) -> sqlite3.Connection:
    db = sqlite3.connect(data / "lab.sqlite", timeout=30, isolation_level=None)
    db.execute("ATTACH DATABASE ? AS conversation", (str(data / "conversation.sqlite"),))
    return db


def _read(db: sqlite3.Connection, message: str, user: str) -> bool:
    """The platform's read of one copy; False when the copy is gone (purged) or was read already."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "UPDATE conversation.userthreads SET nb_unread = nb_unread - 1 WHERE user_id = ? AND thread_id ="
            " (SELECT m.thread_id FROM conversation.usermessages um JOIN conversation.messages m"
            " ON um.message_id = m.id WHERE um.user_id = ? AND um.message_id = ? AND um.unread = 1)"
            " AND nb_unread > 0",
            (user, user, message),
        )
        changed = db.execute(
            "UPDATE conversation.usermessages SET unread = 0"
            " WHERE user_id = ? AND message_id = ? AND unread = 1",
            (user, message),
        ).rowcount
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return changed == 1
