"""Times typed by an operator: ISO 8601 dates and times, or durations from now (``90m``, ``2h``, ``3d``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pcnctl.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, now: datetime | None = None, future: bool = True) -> datetime:
    """A UTC datetime from ``2024-04-08T08:00`` (local time unless it names a zone), a date, or a duration
    (``2h`` = in two hours when ``future``, two hours ago otherwise)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text)
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return now + delta if future else now - delta
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is not a date, a time or a duration",
            hint="use ISO 8601 (2024-04-08T08:00, 2024-04-08, with an optional +02:00) or 90m, 2h, 3d",
        ) from None
    if value.tzinfo is None:
        value = value.astimezone()  # the operator's local time zone
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utcnow() -> str:
    """UTC time as ISO 8601 with milliseconds and a Z: the one time format of journals and logs."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
