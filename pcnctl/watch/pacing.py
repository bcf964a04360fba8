"""How often the watcher may call the ENT: the fan-out's promise, for a loop that calls every few seconds.

The promise (README, "How bulk runs pace themselves"): pcnctl never holds more calls at a slower ENT. The
watcher makes a handful of calls a cycle, so what it controls is how often cycles come: the pause between
two cycles grows in proportion to the ENT's round trip against the fastest one seen (an ENT twice as slow
gets half as many cycles a second: never more calls in flight than before it slowed), doubles on each cycle
the ENT throttled (429, 503, 509) or failed (5xx, no answer), honours ``Retry-After``, and comes back
towards the base interval by a quarter per healthy cycle (never faster than the round trips allow). It is
pure: the watcher gives it what each cycle saw and sleeps what it answers, so tests replay sequences.
The round trip compared is a cycle's lower quartile (a busy client delays some answers, a slower ENT all of
them), against the fastest seen plus ``CLIENT_MS``, as the fan-out's limiter compares its windows.
"""

from __future__ import annotations

from dataclasses import dataclass

CLIENT_MS = 10.0  # what the client's own scheduling adds to a round trip (the fan-out's reference too)


@dataclass
class Pacer:
    """The pause before the next cycle, from what the ENT did during the last one."""

    base_s: float = 5.0
    max_s: float = 300.0
    fastest_ms: float | None = None  # the smallest round trip seen (the ENT at ease)
    pause_s: float = 0.0
    troubled: int = 0  # cycles in a row the ENT throttled or failed

    def __post_init__(self) -> None:
        self.pause_s = self.pause_s or self.base_s

    def next(
        self, round_trip_ms: float | None, *, trouble: bool = False, retry_after_s: float = 0.0
    ) -> float:
        """The pause after a cycle: ``round_trip_ms`` its ENT calls' typical round trip (None: no call
        answered), ``trouble`` a throttling or failed answer, ``retry_after_s`` what the ENT asked."""
        if trouble or round_trip_ms is None:
            self.troubled += 1
            self.pause_s = min(self.max_s, max(self.pause_s * 2, self.base_s * 2, retry_after_s))
            return self.pause_s
        self.troubled = 0
        if self.fastest_ms is None or round_trip_ms < self.fastest_ms:
            self.fastest_ms = max(round_trip_ms, 1.0)
        # Calls per second never above the base rate scaled by how much faster the ENT was at its best
        # (plus the client's own few milliseconds, which would make a loopback ENT look ten times slower).
        floor = self.base_s * max(1.0, (round_trip_ms + CLIENT_MS) / (self.fastest_ms + CLIENT_MS))
        relaxed = self.pause_s - (self.pause_s - floor) / 4 if self.pause_s > floor else floor
        self.pause_s = min(self.max_s, max(floor, relaxed, retry_after_s))
        return self.pause_s

    @property
    def slow(self) -> bool:
        """Whether the watcher is pausing longer than its base interval (the heartbeat says so)."""
        return self.pause_s > self.base_s * 1.5
