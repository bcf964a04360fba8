"""Bulk execution: bounded, adaptive concurrency over one ENT (design brief §6).

The server is the limit, so the executor runs as close to it as it can without making an outage worse:

* **AIMD.** Concurrency starts low and grows by about one slot per window of successful calls while
  latency stays near its baseline; a throttling answer (429, 503, 509) halves it, and latency above three
  times the baseline cuts it by 30 %.
* **Retry-After.** A throttling answer that says how long to wait pauses *every* worker until then, not
  only the one that was told.
* **Retries** happen only for work declared idempotent, and only for transient failures (throttling, 5xx,
  transport errors). Anything else is a final outcome for that item, reported, never retried blindly.
* **Ctrl-C** stops handing out new items, lets the calls in flight finish and report, then re-raises so
  the journal can be resumed.

The HTTP client is called with a single attempt (``RetryPolicy(attempts=1)``) so that pacing decisions are
made here, where the whole batch is visible.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pcnctl.errors import PcnError, ServerError, TransportError
from pcnctl.http import THROTTLE_STATUSES

T = TypeVar("T")


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

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


class Pacer:
    """The AIMD controller shared by the workers; all state behind one condition variable."""

    def __init__(self, initial: int = 4, maximum: int = 32, rate_limit: float | None = None) -> None:
        self.limit = float(max(1, min(initial, maximum)))
        self.maximum = maximum
        self.in_flight = 0
        self.pause_until = 0.0
        self.baseline: float | None = None
        self.peak = 0
        self.rate_limit = rate_limit
        self._next_slot = 0.0
        self._cond = threading.Condition()

    def acquire(self, cancel: threading.Event) -> bool:
        """Wait for a free slot (and the rate cap); False when cancelled meanwhile."""
        with self._cond:
            while True:
                if cancel.is_set():
                    return False
                now = time.monotonic()
                if self.in_flight < int(self.limit) and now >= self.pause_until and now >= self._next_slot:
                    self.in_flight += 1
                    self.peak = max(self.peak, self.in_flight)
                    if self.rate_limit:
                        self._next_slot = max(now, self._next_slot) + 1.0 / self.rate_limit
                    return True
                wake = max(self.pause_until, self._next_slot) - now
                self._cond.wait(timeout=min(max(wake, 0.005), 0.25))

    def release(
        self,
        latency: float | None,
        *,
        throttled: bool = False,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        with self._cond:
            self.in_flight -= 1
            if throttled:
                self.limit = max(1.0, self.limit / 2)
                wait = retry_after if retry_after is not None else 0.5
                self.pause_until = max(self.pause_until, time.monotonic() + min(wait, 60.0))
            elif transient:  # a 5xx or a reset: ease off; the item goes back to the end of the queue
                self.limit = max(1.0, self.limit * 0.7)
            elif latency is not None:
                if self.baseline is None:
                    self.baseline = latency
                elif latency > 3 * self.baseline and latency > 0.05:
                    self.limit = max(1.0, self.limit * 0.7)
                else:
                    # Additive increase: about +1 slot per `limit` successes.
                    self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
                    self.baseline = 0.95 * self.baseline + 0.05 * latency
            self._cond.notify_all()


def _transient(exc: PcnError) -> tuple[bool, bool, float | None]:
    """(retryable, throttled, retry_after) for an error raised by one call."""
    if isinstance(exc, TransportError):
        return True, False, None
    if isinstance(exc, ServerError):
        throttled = exc.status in THROTTLE_STATUSES
        return True, throttled, exc.retry_after
    return False, False, None


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
    ) -> None:
        self.fn = fn
        self.key = key
        self.idempotent = idempotent
        self.max_concurrency = max(1, max_concurrency)
        self.pacer = Pacer(initial_concurrency, self.max_concurrency, rate_limit)
        self.max_attempts = max_attempts
        self.on_outcome = on_outcome
        self.on_progress = on_progress
        self.cancel = threading.Event()
        self._lock = threading.Lock()

    def run(self, items: Sequence[T]) -> FanoutReport:
        report = FanoutReport()
        if not items:
            return report
        started = time.monotonic()
        work: queue.Queue[tuple[T, int]] = queue.Queue()
        for item in items:
            work.put((item, 1))
        remaining = [len(items)]
        done = threading.Event()

        def finish(result: Outcome | list[Outcome]) -> None:
            outcomes = result if isinstance(result, list) else [result]
            with self._lock:
                report.outcomes.extend(outcomes)
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()
            if self.on_outcome is not None:
                for outcome in outcomes:
                    self.on_outcome(outcome)
            if self.on_progress is not None:
                self.on_progress(len(outcomes))

        def failed(item: T, detail: str) -> list[Outcome]:
            keys = self.key(item)
            return [Outcome(k, "failed", detail) for k in (keys if isinstance(keys, list) else [keys])]

        def worker() -> None:
            while not done.is_set() and not self.cancel.is_set():
                try:
                    item, attempt = work.get(timeout=0.05)
                except queue.Empty:
                    continue
                if not self.pacer.acquire(self.cancel):
                    return
                t0 = time.monotonic()
                try:
                    outcome = self.fn(item)
                except PcnError as exc:
                    retryable, throttled, retry_after = _transient(exc)
                    self.pacer.release(
                        None, throttled=throttled, transient=retryable, retry_after=retry_after
                    )
                    with self._lock:
                        report.calls += 1
                        report.throttled += int(throttled)
                    if retryable and self.idempotent and attempt < self.max_attempts:
                        with self._lock:
                            report.retries += 1
                        work.put((item, attempt + 1))
                        continue
                    finish(failed(item, exc.message))
                    continue
                except Exception as exc:  # a bug in an operation must not hang the whole batch
                    self.pacer.release(None)
                    finish(failed(item, f"internal error: {type(exc).__name__}: {exc}"))
                    continue
                self.pacer.release(time.monotonic() - t0)
                with self._lock:
                    report.calls += 1
                finish(outcome)

        threads = [
            threading.Thread(target=worker, name=f"fanout-{i}", daemon=True)
            for i in range(min(self.max_concurrency, len(items)))
        ]
        for thread in threads:
            thread.start()
        try:
            while not done.wait(0.1):
                if not any(t.is_alive() for t in threads):
                    break
        except KeyboardInterrupt:
            self.cancel.set()
            report.interrupted = True
            for thread in threads:
                thread.join(timeout=30)
            report.elapsed = time.monotonic() - started
            report.peak_concurrency = self.pacer.peak
            raise
        for thread in threads:
            thread.join(timeout=5)
        report.elapsed = time.monotonic() - started
        report.peak_concurrency = self.pacer.peak
        return report
