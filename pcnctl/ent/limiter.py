"""The fan-out's concurrency limit and circuit breaker: pure decisions on what the ENT's answers show.

Nothing here sends a request or sleeps, and the :class:`Limiter` reads no clock: it is told when each call
was sent and answered, so the unit tests replay recorded sequences of round trips and assert on every
decision. :mod:`pcnctl.ent.fanout` holds the threads, the lock and the clock.

The policy, in one sentence: a bulk run never holds more calls at a slower ENT than it held before the ENT
slowed (an ENT slowed by everyone's load is overloaded whether or not pcnctl's share relieves it). How:

* **Round trips, per window.** Calls are timed from send to answer (:mod:`pcnctl.ent.roundtrip`) and
  grouped in sampling windows (``window`` seconds or one minimum round trip, whichever is longer, and
  ``window_samples`` answers; or as soon as that many answers are already clearly too slow). Each window
  yields one sampled round trip (its lower quartile), compared with the *minimum* round trip seen plus
  ``slack``.
* **The limit follows use.** Each healthy window (ratio at or below ``healthy``) also measures the calls
  the run kept busy at the ENT: answers per second times the round trip a call takes when nothing waits,
  the mean of the first windows at the ENT's current speed, while the run is light (Little's law; see
  :class:`Use`). The limit grows by one slot per healthy window (by half while exploring: at the start and
  after a re-measure) but never beyond ``headroom`` over the use, plus one call, and is trimmed to that.
  A limit the client cannot fill is not headroom the ENT granted: the moment the ENT slows, every slot
  the client holds fills. Climbing back to the ceiling after a rise, the ceiling alone bounds growth.
* **A rise halves.** A window above ``tolerance`` cuts to at most ``rise_cut`` of the calls the run had at
  the ENT before the rise (fewer the slower: ``healthy`` over the ratio of it, never below ``max_cut``).
  Answers to calls sent before a cut say nothing about it and are ignored, so the next window sees the
  cut's effect.
* **Slower is not a licence for more.** If that next window is no faster, fewer calls did not help: the
  ENT is slower for everyone. Its new latency becomes the minimum and the limit grows back, but never above
  ``before_share`` of the calls it had before the rise (the *ceiling*), until the ENT answers as fast as it
  did then. If the window is faster, the ENT was queueing behind the run's own calls: the minimum stays,
  and so does the lower limit. After ``remeasure`` seconds between healthy and tolerance, a small cut
  (``probe_cut``) asks the same question, so a stale minimum does not hold the limit down for ever.
* **Throttling** (429/503/509) halves the limit once per flight of calls; the pause it asks for
  (``Retry-After``) and the rate cap are the fan-out's to keep. Other transient failures cut by 30 %.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LimiterSettings:
    """Bounds and reaction speeds of :class:`Limiter` (the README documents the defaults)."""

    initial: int = 4
    minimum: int = 1
    maximum: int = 32
    window: float = 0.2  # seconds: the shortest sampling window
    window_samples: int = 8  # answers a window needs (fewer while the limit is below it)
    tolerance: float = 2.0  # sampled / minimum round trip above this: the ENT slowed, cut
    healthy: float = 1.5  # at or below this: the ENT's usual speed, the limit follows use
    rise_cut: float = 0.4  # a rise keeps at most this fraction of the calls in use before it
    max_cut: float = 0.25  # and at least this fraction, however slow the window
    remeasure: float = 5.0  # seconds of "hold" after which a small cut re-measures the minimum
    probe_cut: float = 0.75  # that cut
    headroom: float = 0.1  # the limit stays within this fraction above the calls in use (plus one call)
    trim_check: float = 0.8  # trims down to this fraction of the limit are checked for faster answers
    # The ceiling after a rise, as a share (rounded to whole calls) of the calls in use before it: the client
    # counts them within a tenth or so either way (part of each call is its own), and the ceiling must not
    # exceed what the ENT had.
    before_share: float = 0.85
    # Added to the minimum in every comparison: a few milliseconds are the client's own scheduling (threads
    # waiting for the interpreter), not the ENT queueing, and they would dominate a very fast ENT's ratio.
    slack: float = 0.01


@dataclass(frozen=True, slots=True)
class Decision:
    """One window's verdict, logged at debug level and asserted on by the tests."""

    at: float
    action: str  # increase, hold, trim, decrease, rebase, probe, throttle, failure
    limit_before: float
    limit: float
    min_rtt: float | None
    sampled_rtt: float | None
    samples: int
    in_use: float | None = None  # calls the run kept at the ENT over the window (see Use)
    ceiling: float | None = None  # the calls in use before the ENT slowed, while it is still slower

    def describe(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1000:.0f} ms"

        use = "" if self.in_use is None else f", in use {self.in_use:.1f}"
        ceiling = "" if self.ceiling is None else f", ceiling {self.ceiling:.1f}"
        return (
            f"limiter {self.action}: limit {self.limit_before:.1f} -> {self.limit:.1f}, min RTT "
            f"{ms(self.min_rtt)}, sampled RTT {ms(self.sampled_rtt)} over {self.samples} answer(s)"
            f"{use}{ceiling}"
        )


@dataclass(slots=True)
class _Window:
    """The answers of one sampling window."""

    start: float
    samples: list[float] = field(default_factory=list)  # round trips of calls sent after the last cut
    answers: int = 0  # every answer, those to calls sent before a cut included: they were at the ENT
    slots: int = 0  # the limit in force when each answered call was sent, summed

    def add(self, rtt: float | None, slots: int) -> None:
        self.answers += 1
        self.slots += slots
        if rtt is not None:
            self.samples.append(rtt)

    def rate(self, now: float) -> float:
        """Answers per second since the window opened (time the run left idle counts: it is not use)."""
        span = now - self.start
        return self.answers / span if span > 0 else 0.0

    def mean(self) -> float:
        return sum(self.samples) / len(self.samples)

    def slots_at_send(self) -> float:
        """The limit the window's calls were sent under: the new slots of a limit that just grew have not
        answered yet, a window later they have."""
        return self.slots / self.answers


class Use:
    """The calls a run keeps busy at the ENT, window by window: answers per second times the round trip a
    call takes when nothing waits (Little's law).

    That round trip is the mean of the first windows at the ENT's current speed (the start of the run, or
    just after a rise or a fall), while the run is light: then each call is only at the ENT and on the
    wire. Later, when more calls than the ENT or a busy client can take at once are in flight, round trips
    grow but answers per second do not, and the use stops growing with the limit: slots spent waiting are
    not use. A mean rather than the fastest round trip, because an ENT's calls differ by nature (a read, a
    write; a cache hit, a miss) without any queue.

    The ENT's speed can drift within its usual band, so trimming is checked too: once trims have taken the
    limit down to ``check`` of where they began, the next window must answer faster (by a quarter of the
    share removed: what any queue gives back). If it does not, the round trip a call counts for becomes
    that window's mean.

    The bound follows the share of its slots a run fills (use over the limit its calls were sent under):
    a limit that just grew is judged once its new slots have answered.
    """

    def __init__(self, check: float, windows: int = 10, light: int = 3) -> None:
        self.check, self.light = check, light
        self.uses: deque[float] = deque(maxlen=windows)  # the last healthy windows' use
        self.fills: deque[float] = deque(maxlen=windows)  # and their use per slot
        self.typical: float | None = None  # the round trip a call counts for, once measured
        self._early: list[float] = []  # the mean round trips of the first windows at this speed
        self._trim_from: tuple[int, float] | None = None  # (limit, mean round trip) when trims began
        self._checking = False  # the trims went deep enough: the next window says whether they helped

    def measure(self, window: _Window, now: float) -> tuple[float, float]:
        """Record a healthy window; its use and the share of its slots the run filled."""
        mean = window.mean()
        if self.typical is None:
            self._early.append(mean)
            if len(self._early) >= self.light:
                self.typical = statistics.median(self._early)
        use = window.rate(now) * (mean if self.typical is None else self.typical)
        fill = use / window.slots_at_send()
        self.uses.append(use)
        self.fills.append(fill)
        return use, fill

    def bound(self, fill: float | None, limit: float, headroom: float) -> float:
        """The most slots this use allows: ``headroom`` above the calls the run fills of ``limit``'s slots,
        plus one call to grow into; unbounded before any measure.

        Growth needs both the last window and the median of the last three to allow it, a trim needs both
        to ask for it: one window short of answers (a pause, a burst) neither adds nor takes slots."""
        if not self.fills:
            return math.inf
        lately = statistics.median(list(self.fills)[-3:])
        latest = lately if fill is None else fill  # (a window after a pause measured nothing)
        slots = _slots(limit)
        up = (1 + headroom) * min(latest, lately) * slots + 1
        if up >= limit:
            return up
        return min(limit, (1 + headroom) * max(latest, lately) * slots + 1)

    def level(self, *, rise: bool = False) -> float | None:
        """The calls in use over the last two seconds or so (the median of the last windows): the level
        before a rise. At a rise the last window is left out: the ENT had stopped answering during it."""
        uses = list(self.uses)[:-1] if rise and len(self.uses) > 1 else list(self.uses)
        return statistics.median(uses) if uses else None

    def judge(self, limit: float, mean_rtt: float) -> None:
        """A healthy window after deep trims: faster answers, it was queueing; otherwise, the ENT's speed
        has drifted and its calls now take this window's mean."""
        if self._checking and self._trim_from is not None:
            start, before = self._trim_from
            removed = 1 - max(1, _slots(limit)) / max(1, start)
            if mean_rtt > before * (1 - removed / 4):
                self.typical = mean_rtt
            self._trim_from, self._checking = None, False

    def trimmed(self, before: float, after: float, mean_rtt: float) -> bool:
        """Note a trim; True when trims now reach ``check`` of where they began (check the next window)."""
        if self._trim_from is None:
            self._trim_from = (max(1, _slots(before)), mean_rtt)
        self._checking = _slots(after) <= self.check * self._trim_from[0]
        return self._checking

    def grew(self) -> None:
        self._trim_from, self._checking = None, False

    def reset(self) -> None:
        """The ENT's speed changed: the round trip a call counts for is measured afresh. The last windows'
        use stays: calls in flight do not change with the ENT's speed, and the first windows after a
        change, often short of answers, would otherwise trim the limit on their own."""
        self.typical = None
        self._early = []
        self.grew()


class Limiter:
    """The concurrency limit of one fan-out; call it from one thread at a time (the fan-out locks)."""

    def __init__(self, settings: LimiterSettings | None = None) -> None:
        self.settings = s = settings or LimiterSettings()
        self._limit = float(max(s.minimum, min(s.initial, s.maximum)))
        self._min_rtt: float | None = None
        self._now = -math.inf  # the latest time the limiter was told of
        self._window: _Window | None = None  # opened by the first answer
        self._floor = -math.inf  # answers to calls sent before this say nothing about the last change
        self._cut_rtt: float | None = None  # the sampled RTT that caused the last cut, until judged
        self._relief = 1.0  # below this fraction of _cut_rtt, the cut relieved the ENT
        self._before: float | None = None  # calls in use before the cut being judged
        self._ceiling: float | None = None  # at most this many calls while the ENT is slower than...
        self._ceiling_rtt: float | None = None  # ... this minimum round trip, the one before it slowed
        self.use = Use(s.trim_check)
        # False for the first window and the one after a cut: their start is not the flow of answers (the
        # first round trip brings none, a throttle's pause none either), so their rate is not use.
        self._measured = False
        self._holding_since: float | None = None
        self._exploring = True  # grow by half per window: at the start and after a re-measure
        self._history: deque[tuple[float, int]] = deque([(-math.inf, _slots(self._limit))], maxlen=64)

    @property
    def limit(self) -> int:
        return _slots(self._limit)

    @property
    def min_rtt(self) -> float | None:
        return self._min_rtt

    @property
    def ceiling(self) -> float | None:
        return self._ceiling

    def on_answer(self, sent: float, answered: float) -> Decision | None:
        """Record one call the ENT answered (send and answer times); a :class:`Decision` when a window
        closes."""
        now = self._now = max(self._now, answered)
        window = self._window or self._open(sent)
        rtt = self._add(sent, answered)
        needed = min(self.settings.window_samples, max(1, _slots(self._limit)))
        if len(window.samples) < needed:
            return None
        # At least one round trip: calls sent together answer together, and a window shorter than their
        # period would count a fixed number of answers over it, not the rate.
        if now - window.start >= max(self.settings.window, self._min_rtt or 0.0):
            return self._close_window(now)
        if rtt is not None and self._min_rtt is not None:
            reference = self._min_rtt + self.settings.slack
            if _lower_quartile(window.samples) > self.settings.tolerance * reference:
                return self._close_window(now)  # clearly slower already: cut now, grow on schedule
        return None

    def on_throttle(self, sent: float, now: float) -> Decision | None:
        """The ENT said slow down (429, 503, 509): halve, once per flight of calls."""
        return self._cut(sent, now, 0.5, "throttle")

    def on_failure(self, sent: float, now: float) -> Decision | None:
        """A transport error or a 5xx: ease off by 30 %, once per flight of calls."""
        return self._cut(sent, now, 0.7, "failure")

    # -- internals ------------------------------------------------------------------------------------

    def _open(self, start: float) -> _Window:
        self._window = _Window(start)
        return self._window

    def _add(self, sent: float, answered: float) -> float | None:
        """Count an answer in the open window; its round trip, when it says something about the last cut."""
        assert self._window is not None
        rtt = answered - sent if sent >= self._floor else None
        self._window.add(rtt, self._slots_at(sent))
        return rtt

    def _slots_at(self, sent: float) -> int:
        """The limit in force when a call was sent (answers come back within seconds: look from the end)."""
        for changed, slots in reversed(self._history):
            if changed <= sent:
                return slots
        return self._history[0][1]

    def _cut(self, sent: float, now: float, factor: float, action: str) -> Decision | None:
        if sent < self._floor:
            return None
        now = self._now = max(self._now, now)
        before = self._limit
        self._limit = max(float(self.settings.minimum), self._limit * factor)
        self._after_cut(now, None, before)
        self._before = None
        return self._decision(now, action, before, None, 0, None)

    def _after_cut(self, now: float, cut_rtt: float | None, before: float) -> None:
        self._floor = now
        self._cut_rtt = cut_rtt
        # A queueing ENT answers faster in proportion to the calls removed; half that gain counts as relief.
        self._relief = 1 - (1 - max(1, _slots(self._limit)) / max(1, _slots(before))) / 2
        self._holding_since = None
        self._exploring = self._measured = False
        self.use.grew()  # a cut is judged on its own, not as a trim
        self._open(now)

    def _decision(
        self, now: float, action: str, before: float, sampled: float | None, samples: int, use: float | None
    ) -> Decision:
        if _slots(self._limit) != self._history[-1][1]:
            self._history.append((now, _slots(self._limit)))
        return Decision(now, action, before, self._limit, self._min_rtt, sampled, samples, use, self._ceiling)

    def _close_window(self, now: float) -> Decision:
        s = self.settings
        assert self._window is not None
        window, measured = self._window, self._measured
        self._open(now)
        self._measured = True
        sampled, smallest = _lower_quartile(window.samples), min(window.samples)
        cut_rtt, self._cut_rtt = self._cut_rtt, None
        before = self._limit

        def verdict(action: str, use: float | None = None) -> Decision:
            return self._decision(now, action, before, sampled, len(window.samples), use)

        if cut_rtt is not None and self._relief * cut_rtt <= sampled <= s.healthy * cut_rtt:
            # Fewer calls in flight did not make the ENT faster: it is slower, not queueing. New normal.
            # (Much slower than at the cut is a new rise: judged against the minimum below.)
            self._rebase_up(smallest)
            return verdict("rebase")
        if cut_rtt is not None and sampled < self._relief * cut_rtt:
            self._before = None  # the cut relieved the ENT: it was queueing, stay below that limit
        if self._min_rtt is not None and smallest * s.tolerance < self._min_rtt:
            # The ENT became much faster: this window mixes old slow answers with new fast ones, and calls
            # sent before now may still answer slowly: only later ones say what the new speed is.
            self._min_rtt, self._before, self._floor = smallest, None, now
            self._exploring = True  # as at the start: the run's level at this speed is not known yet
            self.use.reset()
            self._lift_ceiling(sampled)
            return verdict("rebase")
        self._min_rtt = smallest if self._min_rtt is None else min(self._min_rtt, smallest)
        ratio = sampled / (self._min_rtt + s.slack)
        if ratio > s.tolerance:
            self._rise(now, sampled, ratio)
            return verdict("decrease")
        if ratio > s.healthy:
            self.use.grew()  # a trim is checked on a healthy window only
            return verdict(self._hold(now, sampled))
        mean_rtt = window.mean()
        self._lift_ceiling(sampled)
        self.use.judge(self._limit, mean_rtt)
        use, fill = self.use.measure(window, now) if measured else (None, None)
        return verdict(self._follow_use(now, fill, mean_rtt), use)

    def _follow_use(self, now: float, fill: float | None, mean_rtt: float) -> str:
        """A healthy window: grow while the run fills the limit, trim what it leaves unused."""
        s = self.settings
        before = self._limit
        self._holding_since = None
        grown = self._grow()
        if self._ceiling is not None and self._exploring:
            # Climbing back after a rise: the run had these calls at the ENT before it slowed, and a slower
            # ENT leaves the client more time per call, so the ceiling alone bounds the climb.
            bound = min(float(s.maximum), self._ceiling)
            self._exploring = grown < bound  # (once there, the run's use bounds the limit again)
        else:
            ceiling = math.inf if self._ceiling is None else self._ceiling
            bound = min(float(s.maximum), ceiling, self.use.bound(fill, before, s.headroom))
        self._limit = max(float(s.minimum), min(grown, bound))
        if self._limit > before:
            self.use.grew()
            return "increase"
        if self._limit < before:
            self._exploring = False  # the run stopped filling its slots: one slot at a time from now on
            self._trimmed(now, before, mean_rtt)
            return "trim"
        return "hold"

    def _trimmed(self, now: float, before: float, mean_rtt: float) -> None:
        if self.use.trimmed(before, self._limit, mean_rtt):
            self._floor = now  # the check reads calls sent at the trimmed limit only

    def _rise(self, now: float, sampled: float, ratio: float) -> None:
        """The ENT slowed: at most ``rise_cut`` of the calls in use before, fewer the slower it answers."""
        s = self.settings
        before = self._limit
        if self._before is None:  # a further rise while a cut is judged keeps the first level
            level = self.use.level(rise=True)
            self._before = self._limit if level is None else level
        factor = max(s.max_cut, min(s.rise_cut, s.healthy / ratio))
        self._limit = max(float(s.minimum), min(self._limit, self._before * factor))
        self._after_cut(now, sampled, before)

    def _hold(self, now: float, sampled: float) -> str:
        """Between healthy and tolerance: hold (use measured at the usual speed says nothing of a slower
        ENT's); after ``remeasure`` seconds, a small cut asks whether the minimum is stale (no relief: the
        ENT is slower, the cut is judged like a rise's)."""
        s = self.settings
        self._exploring = False
        if self._holding_since is None:
            self._holding_since = now
        elif now - self._holding_since >= s.remeasure:
            before = self._limit
            if self._before is None:
                level = self.use.level()
                self._before = self._limit if level is None else level
            self._limit = max(float(s.minimum), self._limit * s.probe_cut)
            self._after_cut(now, sampled, before)
            return "probe"
        return "hold"

    def _rebase_up(self, smallest: float) -> None:
        """The slower ENT is the new normal: re-measure, and cap the limit at the calls in use before."""
        level = self._before if self._before is not None else self.use.level() or self._limit
        level = max(float(self.settings.minimum), round(level * self.settings.before_share))
        self._ceiling = level if self._ceiling is None else min(self._ceiling, level)
        if self._min_rtt is not None:
            fastest = self._min_rtt if self._ceiling_rtt is None else min(self._ceiling_rtt, self._min_rtt)
            self._ceiling_rtt = fastest
        self._min_rtt, self._before = smallest, None
        self.use.reset()
        self._limit = max(float(self.settings.minimum), min(self._limit, self._ceiling))
        self._exploring = True

    def _lift_ceiling(self, sampled: float) -> None:
        """The ENT answers as fast as before it slowed: the calls in use then no longer bound the limit."""
        fast = self._ceiling_rtt
        if fast is not None and sampled <= self.settings.healthy * (fast + self.settings.slack):
            self._ceiling = self._ceiling_rtt = None

    def _grow(self) -> float:
        """One slot per healthy window; half the limit while exploring (the start, after a re-measure)."""
        if self._exploring:
            return max(self._limit + 1.0, self._limit * 1.5)
        return self._limit + 1.0


def _slots(limit: float) -> int:
    """The calls a limit allows (a bound of 1.2 x 5 + 1 computed as 6.999... still allows 7)."""
    return int(limit + 1e-9)


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
