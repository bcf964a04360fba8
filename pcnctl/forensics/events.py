"""The event store: who created messages, when, from which IP (``GET /infra/v2/event/list/...``).

It gives no message id and no content (edifice-api.md §3), but it needs no database access, so it is the
first source during a wave: ``pcnctl senders`` reads it to find the accounts sending in bulk.

An event's ``ip`` is what the platform's ``Renders.getIp`` returned when the event was written: the raw
``X-Forwarded-For`` header whenever the request had a non-empty one, else the address of the TCP peer
(edificeio/web-utils ``Renders.java`` ``getIp``; the generic event store copies it as is,
``GenericEventStore`` ``generateEvent``). Behind proxies that is a comma list: each proxy appends the
address it received the request from. Only the hops the ENT's own proxies wrote can be trusted: the
entries to their left were written by the client or by proxies on its side (a school's filtering proxy
adding the pupil's LAN address, or an attacker writing whatever it likes). :func:`client_hop` keeps the
address the outermost trusted proxy saw, the one every comparison of addresses uses (hunt, baseline,
``--ip``, senders).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterator

from pcnctl.config import DEFAULT_TRUSTED_PROXIES
from pcnctl.ent.platform import EntDriver
from pcnctl.models import PlatformEvent


def client_hop(raw: str | None, trusted: int = DEFAULT_TRUSTED_PROXIES) -> str:
    """The client's address in a raw ``X-Forwarded-For`` value, as the outermost of ``trusted`` proxies saw
    it: the ``trusted``-th hop from the right. A list shorter than that (a request that reached the ENT
    through fewer proxies) gives its first hop; an address is written in its canonical form (no port, no
    brackets), anything else as it stands."""
    hops = [h.strip() for h in (raw or "").split(",") if h.strip()]
    if not hops:
        return ""
    return canonical(hops[-trusted] if len(hops) >= trusted else hops[0])


def canonical(address: str) -> str:
    """``185.220.101.47``, ``2001:db8::1``: an IP address without port or brackets; other text unchanged."""
    text = address.strip()
    candidates = [text]
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        candidates.append(text[1 : text.index("]")])
    elif text.count(":") == 1:  # 203.0.113.9:51234
        candidates.append(text.split(":")[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return text


def iter_events(
    driver: EntDriver,
    since_ms: int,
    until_ms: int,
    types: tuple[str, ...] = ("CREATE",),
    *,
    covered: Callable[[int], None] | None = None,
) -> Iterator[PlatformEvent]:
    """Events in ``[since, until)``, oldest first, following ``X-HAS-MORE`` pages, each ``ip`` reduced to
    the client's hop (the profile's ``trusted_proxies``); ``covered`` is told, page by page, how many more
    milliseconds of the window were read (a progress bar's advance)."""
    trusted = driver.profile.proxies
    epoch = since_ms
    seen: set[str] = set()
    while epoch < until_ms:
        if covered is not None and epoch > since_ms:
            covered(epoch - since_ms)
            since_ms = epoch
        rows, more = driver.list_events(epoch, until_ms - epoch, list(types))
        fresh = [r for r in rows if r.id not in seen]
        for event in fresh:
            yield dataclasses.replace(event, ip=client_hop(event.ip, trusted)) if event.ip else event
        if not more or not rows:
            return
        last = rows[-1].date
        # The next page starts at the last date seen; events at that very date are skipped by id.
        seen = {r.id for r in rows if r.date == last} | (seen if last == epoch else set())
        if last == epoch and not fresh:
            epoch += 1  # a full page of one millisecond already seen: move on rather than loop
        else:
            epoch = last
