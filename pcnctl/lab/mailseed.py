"""The seeded lab's mail history: a few days of ordinary messages, written as the platform writes them.

So that the mailstore is never a clean room: sends to users and to whole groups, drafts nobody received,
messages scheduled for later (only the sender's copy), one recalled message, attachments, and older
messages whose content the platform converted to its current format (the original kept in
``originalmessages``, which no job ever deletes). All of it is dated days before the seed, so a wave
played later stands out by time; none of it uses the wave's words.
"""

from __future__ import annotations

import random
import sqlite3
import time
from typing import Any

from pcnctl.lab.mail import Recipients, attach, create_draft, deliver
from pcnctl.lab.store import Store

DAY_MS = 24 * 3600 * 1000
HISTORY = (
    (
        "Réunion parents-professeurs",
        "<p>Bonjour,</p><p>La réunion parents-professeurs aura lieu mardi à 18h.</p>",
    ),
    ("Cantine", "<p>Le menu de la cantine de la semaine prochaine est affiché dans le hall.</p>"),
    ("Bulletin", "<p>Les bulletins du trimestre sont disponibles sur l'ENT.</p><p>Cordialement</p>"),
    ("Voyage scolaire", "<p>Le voyage scolaire en Espagne : merci de rendre les autorisations.</p>"),
    ("Absence", "<p>Madame, mon fils sera absent demain pour un rendez-vous médical.</p>"),
    ("Club théâtre", "<p>Le club théâtre reprend jeudi en salle polyvalente, ouvert à tous.</p>"),
)
ATTACHMENT = ("document.pdf", "application/pdf", 182_044)


Groups = dict[str, list[tuple[str, str, str]]]


def _people(db: sqlite3.Connection) -> tuple[dict[str, list[dict[str, Any]]], Groups]:
    """Staff by school, and the schools' groups ((group id, profile, name))."""
    staff: dict[str, list[dict[str, Any]]] = {}
    for sid, uid, name, profile in db.execute(
        "SELECT us.structure_id, u.id, u.display_name, u.profile FROM users u JOIN user_structures us"
        " ON us.user_id = u.id WHERE u.profile IN ('Teacher', 'Personnel') ORDER BY us.structure_id, u.id"
    ):
        staff.setdefault(sid, []).append({"id": uid, "display_name": name, "profile": profile})
    groups: dict[str, list[tuple[str, str, str]]] = {}
    for gid, sid, profile, name in db.execute(
        "SELECT id, structure_id, profile, name FROM groups ORDER BY id"
    ):
        groups.setdefault(sid, []).append((gid, profile, name))
    return staff, groups


def _members(db: sqlite3.Connection, sid: str, profile: str) -> list[str]:
    return [
        r[0]
        for r in db.execute(
            "SELECT u.id FROM users u JOIN user_structures us ON us.user_id = u.id"
            " WHERE us.structure_id = ? AND u.profile = ? ORDER BY u.id",
            (sid, profile),
        )
    ]


def seed_messages(store: Store, rng: random.Random, schools: int = 4, per_school: int = 6) -> int:
    """Write the history into the lab's conversation tables; returns how many messages it wrote."""
    now = int(time.time() * 1000)
    written = 0
    with store.transaction() as db:
        staff, groups = _people(db)
        for sid in sorted(staff)[:schools]:
            people = staff[sid]
            if len(people) < 2:
                continue
            for n in range(per_school):
                sender = people[n % len(people)]
                subject, body = HISTORY[(n + written) % len(HISTORY)]
                date = now - rng.randrange(2 * DAY_MS, 9 * DAY_MS)
                by_profile = {p: (g, name) for g, p, name in groups.get(sid, [])}
                if n % 3 == 0 and "Teacher" in by_profile:  # a send to the whole teachers' group
                    gid, name = by_profile["Teacher"]
                    to = [gid]
                    rec = Recipients(_members(db, sid, "Teacher"), {gid: name}, {})
                else:
                    to = [p["id"] for p in rng.sample(people, min(3, len(people))) if p["id"] != sender["id"]]
                    rec = Recipients(to, {}, {})
                message: dict[str, Any] = {"subject": subject, "body": body, "to": to}
                message_id = create_draft(db, sender, message, rec, date)
                if n % 4 == 1:
                    attach(db, sender["id"], message_id, *ATTACHMENT)
                written += 1
                if n == 5:
                    continue  # a draft, never sent
                deliver(db, sender, message_id, rec, "2030-01-01T08:00:00Z" if n == 4 else None)
                if n == 3:
                    db.execute(
                        "UPDATE conversation.messages SET state = 'RECALL' WHERE id = ?", (message_id,)
                    )
                if n == 2:
                    _converted(db, message_id, body)
    return written


def _converted(db: sqlite3.Connection, message_id: str, original: str) -> None:
    """A message written in the editor's old format and converted since: the original HTML is kept in
    ``originalmessages`` and the message carries the content version it was converted to."""
    db.execute("UPDATE conversation.messages SET content_version = 1 WHERE id = ?", (message_id,))
    db.execute("INSERT INTO conversation.originalmessages VALUES (?, ?)", (message_id, original))
