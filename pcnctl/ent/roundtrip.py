"""Send-to-answer timing of HTTP calls, handed from the HTTP client to the fan-out's limiter.

The limiter must see how long the ENT took, not how long the client took around the call (journal writes,
CPU contention): on a busy machine the latter hides a slower ENT. The HTTP client notes each call's send and
answer times here; a fan-out worker opens a recorder around each item and reads what its calls noted.
Recorders live in a context variable, so each worker thread sees only its own calls and the module keeps
no shared state between them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_RECORDER: ContextVar[list[tuple[float, float]] | None] = ContextVar("pcnctl_round_trips", default=None)


def note(sent: float, answered: float) -> None:
    """Called by the HTTP client for each answer (monotonic clock); a no-op outside a recorder."""
    trips = _RECORDER.get()
    if trips is not None:
        trips.append((sent, answered))


@contextmanager
def recording() -> Iterator[list[tuple[float, float]]]:
    """Collect the (sent, answered) pairs of the calls made in this context until the block exits."""
    trips: list[tuple[float, float]] = []
    token = _RECORDER.set(trips)
    try:
        yield trips
    finally:
        _RECORDER.reset(token)
