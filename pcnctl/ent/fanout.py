"""Bulk execution: bounded, adaptive concurrency over one ENT (design brief §6).

The server is the limit, so the executor runs as close to it as it can without making an outage worse:

* **A limit that follows the ENT and the run's use** (:class:`pcnctl.ent.limiter.Limiter`): round trips
  timed from send to answer are compared, once per sampling window, with the minimum round trip; the limit
  stays close to the calls the run actually keeps at the ENT, a rise halves them, and a slower ENT never
  gets more than it had before it slowed. The state is logged at debug level per window.
* **Throttling** (429, 503, 509) halves the limit; a ``Retry-After`` pauses *every* worker until then, not
  only the one that was told.
* **Failures** (transport errors, 5xx) pause every worker with exponential backoff and jitter, and while
  they last a single probe is in flight. After repeated failures (:class:`pcnctl.ent.limiter.Breaker`) the
  circuit opens: nothing more is sent, every unfinished item is reported as failed with the reason, and
  :class:`CircuitOpenError` (exit 5) is raised so the run can be resumed once the ENT is back.
* **Retries** happen only for work declared idempotent, and only for transient failures. Anything else is a
  final outcome for that item, reported, never retried blindly.
* **Ctrl-C** stops handing out new items, lets the calls in flight finish and report, then re-raises so
  the journal can be resumed.

The HTTP client is called with a single attempt (``RetryPolicy(attempts=1)``) so that pacing decisions are
made here, where the whole batch is visible.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pcnctl.ent import roundtrip
from pcnctl.ent.http import THROTTLE_STATUSES
from pcnctl.ent.limiter import Breaker, BreakerSettings, Decision, Limiter, LimiterSettings, RateCap
from pcnctl.errors import PcnError, ServerError, TransportError

T = TypeVar("T")

log = logging.getLogger("pcnctl.ent.fanout")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one item: ``done``, ``already`` (was in the wanted state), ``refused``, ``failed``."""

    key: str
    status: str
    detail: str = ""


@dataclass(slots=True)
class FanoutReport:
    outcomes: list[Outcome] = field(default_factory=list)
    calls: int = 0
    throttled: int = 0
    retries: int = 0
    peak_concurrency: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    stopped: str | None = None  # why the circuit opened, when it did
    decisions: list[Decision] = field(default_factory=list)  # the limiter's, window by window
    waited_s: float = 0.0  # wall time every worker held back: Retry-After, backoff, the rate cap

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


class CircuitOpenError(TransportError):
    """The ENT kept failing: the fan-out stopped sending; unfinished items were reported as failed."""

    def __init__(self, reason: str, report: FanoutReport, unfinished: int) -> None:
        super().__init__(
            f"stopped sending to the ENT after repeated failures ({reason}); {unfinished} item(s) not done "
            "were reported as failed",
            hint="check that the ENT is up ('pcnctl doctor'), then resume: 'pcnctl incident resume ID' "
            "re-runs only what is not done",
        )
        self.report = report


@dataclass(frozen=True, slots=True)
class Failure:
    """How one call failed, as the pacing sees it."""

    retryable: bool
    throttled: bool = False
    breaks: bool = False  # counts toward the circuit breaker (transport error, 5xx other than 509)
    retry_after: float | None = None


class Pacer:
    """Slots, pauses and the optional rate cap, shared by the workers behind one condition variable.

    The decisions themselves are the :class:`Limiter`'s and the :class:`Breaker`'s; this class only applies
    them under the lock and wakes the workers.
    """

    def __init__(
        self,
        limiter: LimiterSettings | None = None,
        breaker: BreakerSettings | None = None,
        *,
        rate_limit: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.limiter = Limiter(limiter)
        self.breaker = Breaker(breaker, clock=clock, rng=rng or random.Random())
        self.rate_cap = RateCap(clock=clock)
        self.in_flight = 0
        self.pause_until = 0.0
        self.peak = 0
        self.rate_limit = rate_limit
        self.decisions: list[Decision] = []
        self.waited_s = 0.0  # wall time the pauses and the rate cap held sending back (counted once)
        self._counted_to = 0.0
        self._next_slot = 0.0
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        return 1 if self.breaker.probing else self.limiter.limit

    def acquire(self, cancel: threading.Event) -> bool:
        """Wait for a free slot (and the rate cap); False when cancelled or the circuit opened meanwhile."""
        with self._cond:
            while True:
                if cancel.is_set() or self.breaker.open:
                    return False
                now = self.clock()
                if self.in_flight < self.limit and now >= self.pause_until and now >= self._next_slot:
                    self.in_flight += 1
                    self.peak = max(self.peak, self.in_flight)
                    rate = min(r for r in (self.rate_limit, self.rate_cap.rate(), math.inf) if r)
                    if rate < math.inf:
                        self._next_slot = max(now, self._next_slot) + 1.0 / rate
                    return True
                # Without a free slot, the answer that frees one wakes a worker: idle workers polling on a
                # short timeout would take the interpreter from those reading answers (a busy client
                # inflates every round trip it times).
                free = self.in_flight < self.limit
                if free:
                    self._held(now, max(self.pause_until, self._next_slot))
                wake = max(self.pause_until, self._next_slot) - now if free else 0.25
                self._cond.wait(timeout=min(max(wake, 0.001), 0.25))

    def _held(self, now: float, until: float) -> None:
        """A free slot held back until ``until`` (a pause, the rate cap): counted once whatever the number
        of workers waiting, so that it is wall time the ENT was left alone."""
        start = max(now, self._counted_to)
        if until > start:
            self.waited_s += until - start
            self._counted_to = until

    def answered(self, trips: Sequence[tuple[float, float]]) -> None:
        """The ENT answered the item's calls (success or a final refusal): feed the round trips."""
        with self._cond:
            self.in_flight -= 1
            self.breaker.on_success()
            for sent, answered in trips:
                self.rate_cap.on_answer()
                self._note(self.limiter.on_answer(sent, answered))
            free = self.limit - self.in_flight
            if free > 0:
                self._cond.notify(free)  # as many workers as slots are free, not every idle one

    def failed(self, sent: float, failure: Failure, detail: str, item: str = "") -> None:
        """A call failed: throttling pauses as asked; failures back off and may open the circuit."""
        with self._cond:
            self.in_flight -= 1
            now = self.clock()
            if failure.throttled:
                self._note(self.limiter.on_throttle(sent, now))
                # A call sent while an earlier throttle's pause holds (an item's next call, its slot
                # taken before) is refused by the same dry bucket: it says nothing of the rate accepted.
                cap = self.rate_cap.on_throttle(sent) if sent >= self.pause_until else None
                if cap is not None:
                    log.debug("throttled: sending capped at %.1f calls/s", cap)
                wait = failure.retry_after if failure.retry_after is not None else 0.5
                self.pause_until = max(self.pause_until, now + min(wait, 60.0))
            elif failure.retryable:
                self._note(self.limiter.on_failure(sent, now))
            if failure.breaks:
                delay = self.breaker.on_failure(sent, detail, item)
                self.pause_until = max(self.pause_until, now + delay)
                if self.breaker.open:
                    log.debug("circuit open: %s", self.breaker.reason)
            self._cond.notify_all()

    def release(self) -> None:
        """A slot given back without anything learnt (an internal error in the operation)."""
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def _note(self, decision: Decision | None) -> None:
        if decision is not None:
            if len(self.decisions) < 100_000:  # about two hours of windows: enough for any report
                self.decisions.append(decision)
            log.debug("%s", decision.describe())


def classify(exc: PcnError) -> Failure:
    """How the pacing treats an error raised by one call."""
    if isinstance(exc, TransportError):
        return Failure(retryable=True, breaks=True)
    if isinstance(exc, ServerError):
        status = exc.status or 500
        return Failure(
            retryable=True,
            throttled=status in THROTTLE_STATUSES,
            breaks=status >= 500 and status != 509,
            retry_after=exc.retry_after,
        )
    return Failure(retryable=False)


def _sent_at(exc: PcnError, trips: Sequence[tuple[float, float]], started: float) -> float:
    """When the call that failed was sent: an error answer was noted last; a lost one never was."""
    if isinstance(exc, ServerError) and trips:
        return trips[-1][0]
    return trips[-1][1] if trips else started


@dataclass(slots=True)
class _Task(Generic[T]):
    item: T
    attempt: int = 1
    last_error: str = ""


class Fanout(Generic[T]):
    """Run ``fn`` over items with the pacing above; outcomes go to ``on_outcome`` as they arrive.

    An item may stand for several targets (a batch call): ``fn`` then returns one outcome per target, and
    ``key`` names them all, so a batch that fails reports each of its targets.
    """

    def __init__(
        self,
        fn: Callable[[T], Outcome | list[Outcome]],
        *,
        key: Callable[[T], str | list[str]],
        idempotent: bool,
        max_concurrency: int = 32,
        initial_concurrency: int = 4,
        rate_limit: float | None = None,
        max_attempts: int = 8,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
        limiter: LimiterSettings | None = None,
        breaker: BreakerSettings | None = None,
    ) -> None:
        self.fn = fn
        self.key = key
        self.idempotent = idempotent
        maximum = max(1, max_concurrency)
        settings = limiter or LimiterSettings(
            initial=max(1, min(initial_concurrency, maximum)), maximum=maximum
        )
        self.max_concurrency = max(1, settings.maximum)
        self.pacer = Pacer(settings, breaker, rate_limit=rate_limit)
        self.max_attempts = max_attempts
        self.on_outcome = on_outcome
        self.on_progress = on_progress
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._work: queue.Queue[_Task[T]] = queue.Queue()
        self._remaining = 0
        self._done = threading.Event()
        self._report = FanoutReport()

    def run(self, items: Sequence[T]) -> FanoutReport:
        self._report = report = FanoutReport()
        if not items:
            return report
        started = time.monotonic()
        self._work = queue.Queue()
        for item in items:
            self._work.put(_Task(item))
        self._remaining = len(items)
        self._done = threading.Event()
        threads = [
            threading.Thread(target=self._worker, name=f"fanout-{i}", daemon=True)
            for i in range(min(self.max_concurrency, len(items)))
        ]
        for thread in threads:
            thread.start()
        try:
            while not self._done.wait(0.1):
                if not any(t.is_alive() for t in threads):
                    break
        except KeyboardInterrupt:
            self.cancel.set()
            report.interrupted = True
            self._join(threads, started, 30)
            raise
        self._join(threads, started, 5)
        if self.pacer.breaker.open:
            self._stop_unfinished()
        return report

    def _join(self, threads: list[threading.Thread], started: float, timeout: float) -> None:
        for thread in threads:
            thread.join(timeout=timeout)
        self._report.elapsed = time.monotonic() - started
        self._report.peak_concurrency = self.pacer.peak
        self._report.decisions = list(self.pacer.decisions)
        self._report.waited_s = self.pacer.waited_s

    def _stop_unfinished(self) -> None:
        """The circuit opened: report what is left, then raise so the caller exits 5 and can resume."""
        reason = self.pacer.breaker.reason or "the ENT kept failing"
        self._report.stopped = reason
        unfinished = 0
        while True:
            try:
                task = self._work.get_nowait()
            except queue.Empty:
                break
            unfinished += 1
            if task.attempt == 1:
                detail = f"not attempted: the ENT kept failing ({reason})"
            else:
                detail = f"{task.last_error}; not retried: the ENT kept failing"
            self._finish(self._failed(task.item, detail))
        raise CircuitOpenError(reason, self._report, unfinished)

    def _finish(self, result: Outcome | list[Outcome]) -> None:
        outcomes = result if isinstance(result, list) else [result]
        with self._lock:
            self._report.outcomes.extend(outcomes)
            self._remaining -= 1
            if self._remaining == 0:
                self._done.set()
        if self.on_outcome is not None:
            for outcome in outcomes:
                self.on_outcome(outcome)
        if self.on_progress is not None:
            self.on_progress(len(outcomes))

    def _failed(self, item: T, detail: str) -> list[Outcome]:
        keys = self.key(item)
        return [Outcome(k, "failed", detail) for k in (keys if isinstance(keys, list) else [keys])]

    def _worker(self) -> None:
        while not self._done.is_set() and not self.cancel.is_set() and not self.pacer.breaker.open:
            try:
                task = self._work.get(timeout=0.05)
            except queue.Empty:
                continue
            if not self.pacer.acquire(self.cancel):
                self._work.put(task)  # left for the report of unfinished items (or the journal's resume)
                return
            self._attempt(task)

    def _attempt(self, task: _Task[T]) -> None:
        """One call of ``fn`` for one item, its round trips fed to the pacer, its outcome routed."""
        with roundtrip.recording() as trips:
            t0 = time.monotonic()
            try:
                outcome = self.fn(task.item)
            except PcnError as exc:
                self._on_error(task, exc, _sent_at(exc, trips, t0), list(trips))
                return
            except Exception as exc:  # a bug in an operation must not hang the whole batch
                self.pacer.release()
                self._finish(self._failed(task.item, f"internal error: {type(exc).__name__}: {exc}"))
                return
        self.pacer.answered(trips or [(t0, time.monotonic())])
        with self._lock:
            self._report.calls += 1
        self._finish(outcome)

    def _on_error(self, task: _Task[T], exc: PcnError, sent: float, trips: list[tuple[float, float]]) -> None:
        failure = classify(exc)
        if failure.retryable:
            self.pacer.failed(sent, failure, exc.message, str(self.key(task.item)))
        elif trips:
            self.pacer.answered(trips)  # the ENT answered: a final refusal is not a sign of overload
        else:
            self.pacer.release()  # refused before anything was sent
        with self._lock:
            self._report.calls += 1
            self._report.throttled += int(failure.throttled)
        if failure.retryable and self.idempotent and task.attempt < self.max_attempts:
            with self._lock:
                self._report.retries += 1
            self._work.put(_Task(task.item, task.attempt + 1, exc.message))
            return
        self._finish(self._failed(task.item, exc.message))
