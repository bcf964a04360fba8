"""The fan-out's concurrency limit and circuit breaker: pure decisions on what the ENT's answers show.

Nothing here sends a request, sleeps or reads a clock it was not given, so the unit tests replay recorded
sequences of round trips and assert on every decision. :mod:`pcnctl.ent.fanout` holds the threads and the
lock.

The limit follows the ENT, not the client (TCP Vegas and gradient limiters work the same way):

* **What it reacts to.** Round trips timed from the moment a call is sent to the moment its answer arrives
  (:mod:`pcnctl.ent.roundtrip`), so the client's own CPU time does not hide a slower ENT. Answers are grouped
  in sampling windows (``window`` seconds and ``window_samples`` answers, or as soon as ``window_samples``
  answers are already clearly too slow); each window yields one sampled round trip (its lower quartile),
  compared with the *minimum* round trip seen plus ``slack``.
* **One decision per window.** Sampled/minimum above ``tolerance`` cuts the limit once, in proportion
  (never below ``max_cut`` of it); at or below ``healthy`` the limit grows by one slot (by half per window
  at the start and after a re-measure, until a window is not healthy or a cut comes). Answers to calls
  sent before a cut say nothing about it and are ignored, so the next decision sees the cut's effect.
* **A lasting shift becomes the new normal.** If the window after cuts that at least halved the limit is
  not faster (nor much slower), fewer calls in flight did not help: the ENT is slower, not queueing. The
  minimum is re-measured from that window and the limit grows back fast. A window that
  relieved the ENT keeps the minimum: that was queueing. After ``remeasure`` seconds neither healthy nor
  queueing, a small cut (``probe_cut``) asks the same question, so a stale minimum does not hold the limit
  down for ever; a window far faster than the minimum (the ENT recovered) replaces it at once.
* **Throttling** (429/503/509) halves the limit once per flight of calls; the pause it asks for
  (``Retry-After``) is the fan-out's to keep. Other transient failures cut by 30 %.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LimiterSettings:
    """Bounds and reaction speeds of :class:`Limiter` (the README documents the defaults)."""

    initial: int = 4
    minimum: int = 1
    maximum: int = 32
    window: float = 0.2  # seconds: the shortest sampling window
    window_samples: int = 8  # answers a window needs (fewer while the limit is below it)
    tolerance: float = 2.0  # sampled / minimum round trip above this: the ENT is queueing, cut
    healthy: float = 1.5  # at or below this: room to grow
    max_cut: float = 0.4  # a cut keeps at least this fraction of the limit
    remeasure: float = 5.0  # seconds of "hold" after which a small cut re-measures the minimum
    # Added to the minimum in every comparison: a few milliseconds are the client's own scheduling (threads
    # waiting for the interpreter), not the ENT queueing, and they would dominate a very fast ENT's ratio.
    slack: float = 0.01
    probe_cut: float = 0.75  # that cut


@dataclass(frozen=True, slots=True)
class Decision:
    """One window's verdict, logged at debug level and asserted on by the tests."""

    at: float
    action: str  # increase, hold, decrease, rebase, throttle, failure
    limit_before: float
    limit: float
    min_rtt: float | None
    sampled_rtt: float | None
    samples: int

    def describe(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1000:.0f} ms"

        return (
            f"limiter {self.action}: limit {self.limit_before:.1f} -> {self.limit:.1f}, min RTT "
            f"{ms(self.min_rtt)}, sampled RTT {ms(self.sampled_rtt)} over {self.samples} answer(s)"
        )


class Limiter:
    """The concurrency limit of one fan-out; call it from one thread at a time (the fan-out locks)."""

    def __init__(self, settings: LimiterSettings | None = None, *, clock: Callable[[], float]) -> None:
        self.settings = s = settings or LimiterSettings()
        self.clock = clock
        self._limit = float(max(s.minimum, min(s.initial, s.maximum)))
        self._min_rtt: float | None = None
        self._samples: list[float] = []
        self._window_start = clock()
        self._floor = -math.inf  # answers to calls sent before this say nothing about the last cut
        self._cut_rtt: float | None = None  # the sampled RTT that caused the last cut, until judged
        self._relief = 1.0  # below this fraction of _cut_rtt, the cut relieved the ENT
        self._pre_cut: float | None = None  # the limit before the cuts being judged
        self._probing = False  # the cut being judged is a probe of the minimum, not a reaction to queueing
        self._holding_since: float | None = None
        self._exploring = True  # grow by half per window: at the start and after a re-measure

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def min_rtt(self) -> float | None:
        return self._min_rtt

    def on_answer(self, sent: float, rtt: float) -> Decision | None:
        """Record one round trip of a call the ENT answered; a :class:`Decision` when a window closes."""
        if sent < self._floor:
            return None
        now = self.clock()
        needed = min(self.settings.window_samples, max(1, int(self._limit)))
        if now - self._window_start >= self.settings.window and len(self._samples) >= needed:
            decision = self._close_window(now)  # the window was due: this answer opens the next one
            if self._floor < sent:  # after a cut only calls sent later count
                self._samples.append(rtt)
            return decision
        self._samples.append(rtt)
        slow = self._min_rtt is not None and len(self._samples) >= needed
        reference = (self._min_rtt or 0.0) + self.settings.slack
        if slow and _lower_quartile(self._samples) > self.settings.tolerance * reference:
            return self._close_window(now)  # clearly slower already: cut now, grow on schedule
        return None

    def on_throttle(self, sent: float) -> Decision | None:
        """The ENT said slow down (429, 503, 509): halve, once per flight of calls."""
        return self._cut(sent, 0.5, "throttle")

    def on_failure(self, sent: float) -> Decision | None:
        """A transport error or a 5xx: ease off by 30 %, once per flight of calls."""
        return self._cut(sent, 0.7, "failure")

    # -- internals ------------------------------------------------------------------------------------

    def _cut(self, sent: float, factor: float, action: str) -> Decision | None:
        if sent < self._floor:
            return None
        now = self.clock()
        before = self._limit
        self._limit = max(float(self.settings.minimum), self._limit * factor)
        self._after_cut(now, None, before)
        self._pre_cut = None
        return Decision(now, action, before, self._limit, self._min_rtt, None, 0)

    def _after_cut(self, now: float, cut_rtt: float | None, before: float) -> None:
        self._floor = now
        self._cut_rtt = cut_rtt
        # A queueing ENT answers faster in proportion to the calls removed; half that gain counts as relief.
        self._relief = 1 - (1 - max(1, int(self._limit)) / max(1, int(before))) / 2
        self._holding_since = None
        self._exploring = self._probing = False
        self._samples = []
        self._window_start = now

    def _close_window(self, now: float) -> Decision:
        s = self.settings
        samples, self._samples, self._window_start = self._samples, [], now
        sampled, smallest = _lower_quartile(samples), min(samples)
        cut_rtt, self._cut_rtt = self._cut_rtt, None
        before = self._limit

        def verdict(action: str, minimum: float | None = None) -> Decision:
            return Decision(now, action, before, self._limit, minimum or self._min_rtt, sampled, len(samples))

        # A reaction to queueing must have at least halved the limit before "no relief" means anything.
        deep = self._probing or (self._pre_cut is not None and self._limit <= self._pre_cut / 2)
        if cut_rtt is not None and deep and self._relief * cut_rtt <= sampled <= s.healthy * cut_rtt:
            # Fewer calls in flight did not make the ENT faster: it is slower, not queueing. New normal.
            # (Much slower than at the cut is a new rise: judged against the minimum below.)
            self._min_rtt, self._pre_cut, self._exploring = smallest, None, True
            return verdict("rebase")
        if cut_rtt is not None and sampled < self._relief * cut_rtt:
            self._pre_cut = None  # the cut relieved the ENT: it was queueing, stay below that limit
        if self._min_rtt is not None and smallest * s.tolerance < self._min_rtt:
            # The ENT became much faster: this window mixes old slow answers with new fast ones.
            self._min_rtt = smallest
            return verdict("rebase")
        self._min_rtt = smallest if self._min_rtt is None else min(self._min_rtt, smallest)
        ratio = sampled / (self._min_rtt + s.slack)
        if ratio > s.tolerance:
            self._pre_cut = self._pre_cut or before
            self._limit = max(float(s.minimum), self._limit * max(s.max_cut, s.healthy / ratio))
            self._after_cut(now, sampled, before)
            return verdict("decrease")
        if ratio <= s.healthy:
            self._holding_since = None
            self._limit = min(float(s.maximum), self._grow())
            return verdict("increase")
        if self._holding_since is None:
            self._holding_since = now
        elif now - self._holding_since >= s.remeasure:
            # Neither healthy nor queueing for a while: is the minimum stale? Cut a little and see.
            self._pre_cut = self._pre_cut or before
            self._limit = max(float(s.minimum), self._limit * s.probe_cut)
            self._after_cut(now, sampled, before)
            self._probing = True
            return verdict("probe")
        self._exploring = False
        return verdict("hold")

    def _grow(self) -> float:
        """One slot per healthy window; half the limit while exploring (the start, after a re-measure)."""
        if self._exploring:
            return max(self._limit + 1.0, self._limit * 1.5)
        return self._limit + 1.0


def _lower_quartile(samples: list[float]) -> float:
    """The sampled round trip of a window. A lower quartile rather than the median: a busy client delays
    some answers (threads waiting for the interpreter), which inflates the upper half, while a slower or
    queueing ENT moves every answer."""
    ordered = sorted(samples)
    return ordered[(len(ordered) - 1) // 4]


class RateCap:
    """After throttling, the rate the ENT accepted caps the sending rate; the cap grows while none comes.

    A concurrency limit cannot express a rate below one call per round trip, and a token-bucket ENT answers
    429 whatever the concurrency once its bucket is dry. The first throttle halves the answer rate of the
    last ``span`` seconds (it includes the burst that emptied the bucket); each later one sets the cap to
    ``margin`` times the rate accepted since the previous throttle, pause included: over such a cycle that
    is what the ENT lets through. Between throttles the cap grows by ``growth`` per second, and it is lifted
    when it reaches ``lift`` times its starting value.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        span: float = 2.0,
        margin: float = 0.9,
        growth: float = 0.05,
        lift: float = 4.0,
    ) -> None:
        self.clock = clock
        self.span, self.margin, self.growth, self.lift = span, margin, growth, lift
        self._answers: deque[float] = deque()
        self._first: float | None = None
        self._cap: float | None = None
        self._since = -math.inf  # the last throttle that set the cap
        self._accepted = 0  # answers since then

    def on_answer(self) -> None:
        now = self.clock()
        self._first = now if self._first is None else self._first
        self._accepted += 1
        self._answers.append(now)
        while self._answers[0] < now - self.span:
            self._answers.popleft()

    def on_throttle(self, sent: float) -> float | None:
        """Set the cap; the new cap, or None when this flight of calls already set it."""
        if sent < self._since:
            return None
        now = self.clock()
        current = self.rate()
        if current is None:  # the first throttle: half of what was sent lately
            elapsed = min(self.span, now - self._first) if self._first is not None else 0.0
            recent = len(self._answers) / elapsed if elapsed > 0 else 2.0
            self._cap = max(1.0, recent / 2)
        else:
            accepted = self.margin * self._accepted / max(1e-3, now - self._since)
            self._cap = max(1.0, min(accepted, current))
        self._since, self._accepted = now, 0
        return self._cap

    def rate(self) -> float | None:
        """The cap now (calls per second), or None when sending is not capped."""
        if self._cap is None:
            return None
        grown = self._cap * (1 + self.growth * max(0.0, self.clock() - self._since))
        if grown >= self.lift * self._cap:
            self._cap = None
            return None
        return grown


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When the fan-out stops sending to a failing ENT, and how long it waits between tries."""

    failures: int = 6  # consecutive failed rounds (transport errors, 5xx) that open the circuit
    silence: float = 30.0  # or: failing and no success for this many seconds
    base_delay: float = 0.2  # the first pause after a failure; doubles per consecutive failure
    max_delay: float = 5.0


class Breaker:
    """Exponential backoff with jitter across all workers, and the circuit that ends a run.

    A burst of calls in flight that fail together is one failure, not one per call: only a failure of a call
    sent after the previous failure lengthens the streak. While the streak lasts, the fan-out sends a single
    probe at a time, so a dead ENT receives a bounded number of calls whatever the batch size.
    """

    def __init__(
        self, settings: BreakerSettings | None = None, *, clock: Callable[[], float], rng: random.Random
    ) -> None:
        self.settings = settings or BreakerSettings()
        self.clock = clock
        self.rng = rng
        self.streak = 0
        self._last_failure = -math.inf
        self._last_success = clock()
        self._items: set[str] = set()  # the items whose failures make the streak
        self.reason: str | None = None

    @property
    def probing(self) -> bool:
        return self.streak > 0

    def on_success(self) -> None:
        self.streak = 0
        self._items.clear()
        self._last_success = self.clock()

    def on_failure(self, sent: float, detail: str, item: str = "") -> float:
        """Record a failed call; returns the pause before the next call (0 when nothing changes).

        Only failures of different items open the circuit: one item that keeps failing while nothing
        else is tried is that item's problem (it ends ``failed`` after its attempts), not the ENT's.
        """
        now = self.clock()
        if sent < self._last_failure:
            return 0.0  # the same outage seen by another call of the same flight
        self._last_failure = now
        self.streak += 1
        self._items.add(item)
        s = self.settings
        if self.streak >= s.failures and len(self._items) >= s.failures:
            self.reason = f"{self.streak} consecutive failures, the last: {detail}"
        elif now - self._last_success >= s.silence and len(self._items) > 1:
            self.reason = f"no success for {now - self._last_success:.0f} s, the last failure: {detail}"
        delay = min(s.max_delay, s.base_delay * 2.0 ** (self.streak - 1))
        return delay / 2 + self.rng.uniform(0, delay / 2)

    @property
    def open(self) -> bool:
        return self.reason is not None
