"""The event store: who created messages, when, from which IP (``GET /infra/v2/event/list/...``).

It gives no message id and no content (edifice-api.md §3), but it needs no database access, so it is the
first source during a wave: ``pcnctl senders`` reads it to find the accounts sending in bulk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pcnctl.ent.platform import EntDriver
from pcnctl.models import PlatformEvent


def iter_events(
    driver: EntDriver,
    since_ms: int,
    until_ms: int,
    types: tuple[str, ...] = ("CREATE",),
    *,
    covered: Callable[[int], None] | None = None,
) -> Iterator[PlatformEvent]:
    """Events in ``[since, until)``, oldest first, following ``X-HAS-MORE`` pages; ``covered`` is told,
    page by page, how many more milliseconds of the window were read (a progress bar's advance)."""
    epoch = since_ms
    seen: set[str] = set()
    while epoch < until_ms:
        if covered is not None and epoch > since_ms:
            covered(epoch - since_ms)
            since_ms = epoch
        rows, more = driver.list_events(epoch, until_ms - epoch, list(types))
        fresh = [r for r in rows if r.id not in seen]
        yield from fresh
        if not more or not rows:
            return
        last = rows[-1].date
        # The next page starts at the last date seen; events at that very date are skipped by id.
        seen = {r.id for r in rows if r.date == last} | (seen if last == epoch else set())
        if last == epoch and not fresh:
            epoch += 1  # a full page of one millisecond already seen: move on rather than loop
        else:
            epoch = last
