"""Where a run's time goes: planning reads, writes, verification, and the waiting inside them.

Containment is judged against its floor, the time its calls take at the ENT's full capacity. A run that
is far from its floor is either making calls it does not need or leaving the ENT idle between them; the
split says which phase does it. Each phase is measured on the HTTP client's own counters (calls made,
seconds slept in backoff, ``Retry-After`` or pacing), so it costs nothing to keep on for every run.

The phases are those of the one sequence (:mod:`pcnctl.ops.runner`): **planning** is what the door did
before the run started (the plan's reads; a command's confirmation at the terminal is left out),
**writes** the fan-out of the units, **verification** the follow-ups (``after``: re-reads, the platform's
own checks, the canary, the session revoke).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from pcnctl.records import Row


class Counters(Protocol):
    """What the HTTP client counts (:class:`pcnctl.ent.http.HttpStats`)."""

    requests: int
    waited_s: float


@dataclass(frozen=True)
class Mark:
    """The client's counters at one moment."""

    at: float
    calls: int
    waited_s: float

    @classmethod
    def now(cls, stats: Counters) -> Mark:
        return cls(time.monotonic(), stats.requests, stats.waited_s)


@dataclass(frozen=True)
class Phase:
    """One phase: its length, the calls made in it and the time spent waiting in it."""

    seconds: float = 0.0
    calls: int = 0
    waited_s: float = 0.0

    @classmethod
    def between(cls, start: Mark, end: Mark, *, less: float = 0.0) -> Phase:
        """From ``start`` to ``end``, without ``less`` seconds spent elsewhere (at the terminal)."""
        return cls(max(0.0, end.at - start.at - less), end.calls - start.calls, end.waited_s - start.waited_s)

    def __add__(self, other: Phase) -> Phase:
        return Phase(self.seconds + other.seconds, self.calls + other.calls, self.waited_s + other.waited_s)

    def floor(self, capacity: float) -> float:
        """The time these calls take at ``capacity`` requests per second: what no client can beat."""
        return self.calls / capacity if capacity > 0 else 0.0


@dataclass
class Timing:
    """A run's (or a playbook step's) time, phase by phase."""

    planning: Phase = field(default_factory=Phase)
    writes: Phase = field(default_factory=Phase)
    verification: Phase = field(default_factory=Phase)

    @property
    def total(self) -> Phase:
        return self.planning + self.writes + self.verification

    def text(self) -> str:
        """One line an operator reads under ``--debug``."""
        parts = [
            f"{name} {p.seconds:.1f} s ({p.calls} call{'' if p.calls == 1 else 's'})"
            for name, p in (
                ("planning", self.planning),
                ("writes", self.writes),
                ("verification", self.verification),
            )
        ]
        return "; ".join(parts) + f"; of which waiting {self.total.waited_s:.1f} s"

    def row(self, step: str, capacity: float | None = None) -> Row:
        """The step's row (the drill's report, the benchmarks): each phase's seconds and calls, the
        waiting, and the step's floor at ``capacity`` requests per second (its calls at full capacity)."""
        total = self.total
        row: Row = {"step": step, "seconds": round(total.seconds, 2), "calls": total.calls}
        for name, p in (
            ("planning", self.planning),
            ("writes", self.writes),
            ("verification", self.verification),
        ):
            row[f"{name}_s"] = round(p.seconds, 2)
            row[f"{name}_calls"] = p.calls
        row["waiting_s"] = round(total.waited_s, 2)
        row["floor_s"] = round(total.floor(capacity), 2) if capacity else None
        return row
