"""The watcher's tables in the state store: cursors, heartbeats, detections, pages and responses.

They live in the same store as the incidents (SQLite by default, or the team's shared database), created
with the store's other tables (:func:`pcnctl.state.backend.watch_tables`; ``pcnctl state init`` on a
shared one, which also grants them to the operators' role), written with portable SQL (``?`` marks,
``INSERT ... ON CONFLICT``, no SQLite-only syntax), each write one statement: a kill between two of them
leaves every row whole. Every row names its ENT, so two watchers of two ENTs share a store without seeing
each other's cursors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pcnctl.state.store import StateStore
from pcnctl.watch.records import Detection, Heartbeat, Page, Response


class WatchState:
    """The watcher's records of one ENT in a state store."""

    def __init__(self, store: StateStore, ent: str) -> None:
        self.store = store
        self.ent = ent

    # -- cursors ------------------------------------------------------------------------------------------

    def cursor(self, name: str) -> tuple[int, Any] | None:
        """Where a source was read up to (epoch ms) and what the source's reader kept with it."""
        found = self.store.rows(
            "SELECT position, body FROM watch_cursors WHERE ent = ? AND name = ?", self.ent, name
        )
        return (int(found[0]["position"]), json.loads(found[0]["body"])) if found else None

    def set_cursor(self, name: str, position: int, body: object) -> None:
        self.store.execute(
            "INSERT INTO watch_cursors (ent, name, position, body) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (ent, name) DO UPDATE SET position = excluded.position, body = excluded.body",
            self.ent,
            name,
            position,
            json.dumps(body, separators=(",", ":")),
        )

    # -- heartbeat ----------------------------------------------------------------------------------------

    def beat(self, beat: Heartbeat) -> None:
        self.store.execute(
            "INSERT INTO watch_heartbeats (ent, holder, started_at, beat_at, beat_ms, cycle, interval_s,"
            " status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ent) DO UPDATE SET"
            " holder = excluded.holder, started_at = excluded.started_at, beat_at = excluded.beat_at,"
            " beat_ms = excluded.beat_ms, cycle = excluded.cycle, interval_s = excluded.interval_s,"
            " status = excluded.status, detail = excluded.detail",
            beat.ent,
            beat.holder,
            beat.started_at,
            beat.beat_at,
            beat.beat_ms,
            beat.cycle,
            beat.interval_s,
            beat.status,
            beat.detail,
        )

    # -- detections ---------------------------------------------------------------------------------------

    def detection(self, incident: str, key: str) -> tuple[Detection, bool] | None:
        """A detection kept for the incident, and whether it was paged already."""
        found = self.store.rows(
            "SELECT body, paged FROM watch_detections WHERE ent = ? AND key = ? AND incident = ?",
            self.ent,
            key,
            incident,
        )
        return (_detection(found[0]["body"]), bool(found[0]["paged"])) if found else None

    def detections(self, incident: str) -> list[tuple[Detection, bool]]:
        rows = self.store.rows(
            "SELECT body, paged FROM watch_detections WHERE ent = ? AND incident = ? ORDER BY first_ms, key",
            self.ent,
            incident,
        )
        return [(_detection(r["body"]), bool(r["paged"])) for r in rows]

    def keep(self, incident: str, found: Detection) -> None:
        """Record a detection, or update the one of the same key in this incident (never its paged flag)."""
        self.store.execute(
            "INSERT INTO watch_detections (ent, key, incident, kind, first_ms, last_ms, body, paged)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (ent, key, incident) DO UPDATE SET"
            " last_ms = excluded.last_ms, body = excluded.body",
            self.ent,
            found.key,
            incident,
            found.kind,
            found.first_ms,
            found.last_ms,
            json.dumps(_detection_json(found), ensure_ascii=False),
        )

    def mark_paged(self, incident: str, keys: Sequence[str]) -> None:
        for key in keys:
            self.store.execute(
                "UPDATE watch_detections SET paged = 1 WHERE ent = ? AND key = ? AND incident = ?",
                self.ent,
                key,
                incident,
            )

    def last_incident(self) -> tuple[str, int] | None:
        """The incident of the newest detection on this ENT, and that detection's time."""
        found = self.store.rows(
            "SELECT incident, last_ms FROM watch_detections WHERE ent = ? ORDER BY last_ms DESC LIMIT 1",
            self.ent,
        )
        return (str(found[0]["incident"]), int(found[0]["last_ms"])) if found else None

    # -- pages --------------------------------------------------------------------------------------------

    def queue_page(self, page_id: str, incident: str, channel: str, subject: str, body: str, at: int) -> None:
        self.store.execute(
            "INSERT INTO watch_pages (id, ent, incident, channel, subject, body, status, attempts,"
            " created_ms, sent_ms, error) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, NULL, '')"
            " ON CONFLICT (id) DO NOTHING",
            page_id,
            self.ent,
            incident,
            channel,
            subject,
            body,
            at,
        )

    def pending_pages(self, max_attempts: int) -> list[Page]:
        rows = self.store.rows(
            "SELECT * FROM watch_pages WHERE ent = ? AND status = 'pending' AND attempts < ?"
            " ORDER BY created_ms, id",
            self.ent,
            max_attempts,
        )
        return [_page(r) for r in rows]

    def page_result(self, page_id: str, sent_ms: int | None, error: str) -> None:
        status = "sent" if sent_ms is not None else "pending"
        self.store.execute(
            "UPDATE watch_pages SET status = ?, attempts = attempts + 1, sent_ms = ?, error = ? WHERE id = ?",
            status,
            sent_ms,
            error,
            page_id,
        )

    def last_page_ms(self, incident: str) -> int | None:
        found = self.store.rows(
            "SELECT max(created_ms) AS at FROM watch_pages WHERE ent = ? AND incident = ?",
            self.ent,
            incident,
        )
        at = found[0]["at"] if found else None
        return int(at) if at is not None else None

    def pages(self, incident: str | None = None) -> list[Page]:
        rows = self.store.rows("SELECT * FROM watch_pages WHERE ent = ? ORDER BY created_ms, id", self.ent)
        return [_page(r) for r in rows if incident is None or r["incident"] == incident]

    # -- responses ----------------------------------------------------------------------------------------

    def response(self, incident: str) -> Response | None:
        found = self.store.rows(
            "SELECT * FROM watch_responses WHERE ent = ? AND incident = ?", self.ent, incident
        )
        return _response(found[0]) if found else None

    def responses(self) -> list[Response]:
        rows = self.store.rows("SELECT * FROM watch_responses WHERE ent = ? ORDER BY started_ms", self.ent)
        return [_response(r) for r in rows]

    def set_response(self, response: Response) -> None:
        self.store.execute(
            "INSERT INTO watch_responses (ent, incident, policy, status, started_ms, expires_ms, detail,"
            " confirmed_by, passes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ent, incident) DO UPDATE"
            " SET status = excluded.status, detail = excluded.detail, confirmed_by = excluded.confirmed_by,"
            " passes = excluded.passes",
            response.ent,
            response.incident,
            response.policy,
            response.status,
            response.started_ms,
            response.expires_ms,
            response.detail,
            response.confirmed_by,
            response.passes,
        )


def heartbeat(store: StateStore, ent: str) -> Heartbeat | None:
    """The watcher's heartbeat on ``ent``, or None when no watcher ever ran there (doctor, the audit)."""
    WatchState(store, ent)  # the table exists once anyone asked
    found = store.rows("SELECT * FROM watch_heartbeats WHERE ent = ?", ent)
    if not found:
        return None
    r = found[0]
    return Heartbeat(
        str(r["ent"]),
        str(r["holder"]),
        str(r["started_at"]),
        str(r["beat_at"]),
        int(r["beat_ms"]),
        int(r["cycle"]),
        float(r["interval_s"]),
        str(r["status"]),
        str(r["detail"]),
    )


def _detection_json(d: Detection) -> dict[str, object]:
    return {
        "kind": d.kind,
        "key": d.key,
        "severity": d.severity,
        "what": d.what,
        "first_ms": d.first_ms,
        "last_ms": d.last_ms,
        "messages": list(d.messages),
        "senders": list(d.senders),
        "recipients": d.recipients,
        "subject": d.subject,
    }


def _detection(body: str) -> Detection:
    data = json.loads(body)
    return Detection(
        str(data["kind"]),
        str(data["key"]),
        str(data["severity"]),
        str(data["what"]),
        int(data["first_ms"]),
        int(data["last_ms"]),
        tuple(str(m) for m in data["messages"]),
        tuple(str(s) for s in data["senders"]),
        int(data["recipients"]),
        str(data["subject"]),
    )


def _response(r: Any) -> Response:
    return Response(
        str(r["ent"]),
        str(r["incident"]),
        str(r["policy"]),
        str(r["status"]),
        int(r["started_ms"]),
        int(r["expires_ms"]),
        str(r["detail"]),
        str(r["confirmed_by"]),
        int(r["passes"]),
    )


def _page(r: Any) -> Page:
    sent = r["sent_ms"]
    return Page(
        str(r["id"]),
        str(r["incident"]),
        str(r["channel"]),
        str(r["subject"]),
        str(r["body"]),
        str(r["status"]),
        int(r["attempts"]),
        int(r["created_ms"]),
        int(sent) if sent is not None else None,
        str(r["error"]),
    )
