"""The conversation module's background work, run by the lab as the platform runs it (or on demand).

* **The orphan job** (``DeleteOrphan``, scheduled by ``deleteOrphanCron``, ``0 45 4 * * ? *`` in the
  module's deployment template, and reachable as ``POST /conversation/api/internal/purge/orphans``): in
  batches of ``batch-size`` (template 500) and at most ``max-batches`` (10) batches each, it deletes the
  messages nobody holds a copy of, then the threads nobody follows (``userthreads``), then the attachments
  no copy links. It never touches ``originalmessages``, and a purge leaves the ``userthreads`` rows, so a
  purged message's thread (its subject) stays.
* **Scheduled messages**: the send writes only the sender's copy and the comment before the delivery step
  says the recipients are written when the date is reached; the component that does it is not part of
  entcore 6.15.4. The lab delivers a due ``SCHEDULE`` message as the send would have (the people its
  ``to``/``cc``/``cci`` name at that moment, groups expanded, each copy linked to the sender's attachments,
  state ``SENT``, the notification): this part is the lab's reading, not a platform fact. The messages row
  is all it reads, so a purged scheduled message still goes out unless the orphan job removed it first.

The lab runs both by itself as the clock passes (``tick``), and on demand through its control endpoints
``POST /__lab/jobs/orphans`` and ``POST /__lab/jobs/scheduled`` (tests and drills: before and after).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pcnctl.lab import mail
from pcnctl.lab.web import HttpError

if TYPE_CHECKING:
    from pcnctl.lab.app import LabApp

BATCH_SIZE = 500  # the deployment template's conversationDeleteOrphanBatchSize default (the code's is 100)
MAX_BATCHES = 10
ORPHAN_HOUR = (4, 45)  # deleteOrphanCron "0 45 4 * * ? *": every day at 04:45, server time
TICK_SECONDS = 10.0


@dataclass
class Clock:
    """When the lab last looked for due work (monotonic) and the wall time it looked at."""

    checked: float = 0.0
    wall: float = 0.0


def _orphans(db: sqlite3.Connection, select: str, deletes: tuple[str, ...], batch: int, batches: int) -> int:
    """Delete in batches: each batch is at most ``batch`` rows, at most ``batches`` batches, stopping at
    the first empty one."""
    done = 0
    for _ in range(batches):
        ids = [r[0] for r in db.execute(select, (batch,))]
        if not ids:
            break
        marks = ",".join("?" * len(ids))
        for delete in deletes:
            db.execute(delete.format(marks=marks), ids)
        done += len(ids)
    return done


def delete_orphans(
    db: sqlite3.Connection, batch: int = BATCH_SIZE, batches: int = MAX_BATCHES
) -> dict[str, int]:
    """``DeleteOrphan``: messages without a copy, threads without a follower, attachments without a link,
    in that order, each within the batch bound; ``originalmessages`` are never deleted."""
    messages = _orphans(
        db,
        "SELECT id FROM conversation.messages m WHERE NOT EXISTS"
        " (SELECT 1 FROM conversation.usermessages um WHERE um.message_id = m.id) LIMIT ?",
        (
            "UPDATE conversation.messages SET parent_id = NULL WHERE parent_id IN ({marks})",
            "DELETE FROM conversation.messages WHERE id IN ({marks})",
        ),
        batch,
        batches,
    )
    threads = _orphans(
        db,
        "SELECT id FROM conversation.threads t WHERE NOT EXISTS"
        " (SELECT 1 FROM conversation.userthreads ut WHERE ut.thread_id = t.id) ORDER BY t.date LIMIT ?",
        ("DELETE FROM conversation.threads WHERE id IN ({marks})",),
        batch,
        batches,
    )
    attachments = _orphans(
        db,
        "SELECT id FROM conversation.attachments a WHERE NOT EXISTS"
        " (SELECT 1 FROM conversation.usermessagesattachments uma WHERE uma.attachment_id = a.id) LIMIT ?",
        ("DELETE FROM conversation.attachments WHERE id IN ({marks})",),
        batch,
        batches,
    )
    return {"messages": messages, "threads": threads, "attachments": attachments}


def deliver_due(app: LabApp, db: sqlite3.Connection, now: float) -> list[str]:
    """The ``SCHEDULE`` messages whose date has come: their recipients' copies, state ``SENT``."""
    due = []
    for row in db.execute(
        'SELECT id, "from", "to", cc, cci, schedule_at FROM conversation.messages WHERE state = \'SCHEDULE\''
        " ORDER BY date"
    ).fetchall():
        moment = mail.schedule_time(str(row["schedule_at"] or ""))
        if moment is not None and moment <= now:
            due.append(row)
    delivered = []
    for row in due:
        db.execute("SAVEPOINT deliver")
        try:
            _deliver(app, db, row)
        except HttpError:  # a copy already there: this one fails alone, as its own send would
            db.execute("ROLLBACK TO deliver")
        else:
            delivered.append(row["id"])
        db.execute("RELEASE deliver")
    return delivered


def _deliver(app: LabApp, db: sqlite3.Connection, row: sqlite3.Row) -> None:
    """One scheduled message: the people its addressees are now, their copies, the state, the notice."""
    sender = db.execute("SELECT * FROM users WHERE id = ?", (row["from"],)).fetchone()
    body = {k: json.loads(row[k] or "[]") for k in ("to", "cc", "cci")}
    rec = mail.resolve(db, mail.addressed(body))
    thread = db.execute("SELECT thread_id FROM conversation.messages WHERE id = ?", (row["id"],)).fetchone()[
        0
    ]
    mail.transition(db, row["id"], "SENT")
    mail.copies(db, row["from"], row["id"], thread, [u for u in rec.users if u != row["from"]])
    if sender is not None:
        mail.notify(app, db, sender, row["id"], rec.users)


def _crossed_orphan_hour(since: float, now: float) -> bool:
    """Whether 04:45 (local time) fell in ``(since, now]``."""
    if since <= 0 or now <= since:
        return False
    start = datetime.fromtimestamp(since)
    moment = start.replace(hour=ORPHAN_HOUR[0], minute=ORPHAN_HOUR[1], second=0, microsecond=0)
    if moment.timestamp() <= since:
        moment += timedelta(days=1)
    return moment.timestamp() <= now


def tick(app: LabApp) -> None:
    """At most every ``TICK_SECONDS``: deliver the scheduled messages that are due and, when 04:45 went
    by since the last look, run the orphan job, as the platform's jobs would have."""
    clock = app.clock
    if time.monotonic() - clock.checked < TICK_SECONDS:
        return
    with app.store.lock:  # requests run in threads: one of them does the round
        if time.monotonic() - clock.checked < TICK_SECONDS:
            return
        clock.checked, last, clock.wall = time.monotonic(), clock.wall, time.time()
        with app.store.transaction() as db:
            deliver_due(app, db, clock.wall)
            if _crossed_orphan_hour(last, clock.wall):
                delete_orphans(db)


def _int(values: dict[str, Any], key: str, default: int) -> int:
    value = values.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise HttpError(400, {"error": f"{key} must be a whole number above 0"})
    return value


def control(app: LabApp, path: str, values: dict[str, Any]) -> Any:
    """``POST /__lab/jobs/orphans {"batch_size", "max_batches"}`` runs the orphan job now (the platform's
    bounds by default) and answers what it deleted; ``POST /__lab/jobs/scheduled {"now": ISO time}``
    delivers what is due at that time (default: now) and answers the ids delivered."""
    if path == "/__lab/jobs/orphans":
        batch, batches = _int(values, "batch_size", BATCH_SIZE), _int(values, "max_batches", MAX_BATCHES)
        with app.store.transaction() as db:
            return delete_orphans(db, batch, batches)
    if path == "/__lab/jobs/scheduled":
        when = values.get("now")
        now = mail.schedule_time(str(when)) if when is not None else time.time()
        if now is None:
            raise HttpError(400, {"error": "now must be an ISO time (a zone, or UTC)"})
        with app.store.transaction() as db:
            return {"delivered": deliver_due(app, db, now)}
    raise HttpError(404, {"error": "not.found"})
