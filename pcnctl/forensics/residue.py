"""What a purge leaves of the threat on the platform, counted from the mailstore, and a reviewed SQL script
for the hosting team to finish the removal once the evidence is sealed.

``POST /conversation/api/purge/messages`` deletes the mailbox copies only (conversation
``SqlConversationService.purgeMessages``, 6.15.4 lines 1981-1986; their attachment links go with them by
cascade). What stays:

* the **message rows** (subject, body, ``text_searchable``): the nightly ``DeleteOrphan`` job deletes
  messages left without a copy, at most ``batch-size`` × ``max-batches`` a night for the whole platform
  (500 × 10 in the deployment template, ``deleteOrphanCron`` 04:45), in no set order
  (``DeleteOrphan.java`` lines 51-55, 107-125; conversation ``template.j2`` lines 26-30);
* the **attachments**, deleted by the same job once no copy links them (lines 46-49, 64-65);
* the **threads** and their subject (listed when ``optimized-thread-list`` is on): the job deletes a
  thread only when no ``userthreads`` row names it (lines 57-62), and the purge leaves those rows, so a
  purged message's thread stays;
* the **original bodies** (``originalmessages``): nothing deletes them;
* the **timeline notifications** ``messagerie.send-message``, which quote the subject and a preview: the
  timeline keeps one per send, but none for a sender who had one in the previous 3 s (``antiFloodDelay``,
  timeline ``TimelineController`` lines 131, 902-907); pcnctl replays that rule on the senders' send times.

pcnctl stays read-only on the database: the script is for the hosting team to review and run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pcnctl.forensics.mailstore import CHUNK, Mailstore
from pcnctl.records import Row

ANTI_FLOOD_MS = 3000  # the timeline's default antiFloodDelay
ORPHAN_JOB = "the platform's nightly orphan job (04:45 by default, at most 5,000 orphan messages a night)"
NIGHTLY = "jusqu'au nettoyage nocturne de la plateforme (04 h 45, au plus 5 000 messages par nuit)"
# Each kind of residue, in the order reports list them: what (en), until when (en), and in French.
KINDS = (
    ("mailbox copies", "none may remain", "copies dans les boîtes", "aucune ne doit rester"),
    ("message rows (subject, body, search index)", f"until {ORPHAN_JOB}", "messages (objet, corps, index)",
     NIGHTLY),
    ("attachments", f"until {ORPHAN_JOB}", "pièces jointes", NIGHTLY),
    ("thread subjects", "for good: the job keeps a thread whose readers' rows remain", "objets des fils",
     "définitivement : le nettoyage garde les fils"),
    ("original bodies", "for good: nothing deletes them", "corps d'origine", "définitivement"),
    ("timeline notifications quoting it", "until deleted in the timeline store (no HTTP route)",
     "notifications qui le citent", "jusqu'à leur suppression dans la timeline (aucune route HTTP)"),
)  # fmt: skip


@dataclass(frozen=True)
class Residue:
    """What the platform still holds of purged messages, each kind counted."""

    copies: int
    messages: int
    threads: int
    originals: int
    attachments: int
    notifications: int

    def rows(self, lang: str = "en") -> list[Row]:
        """One row per kind: what, how many, until when (in English or French)."""
        counts = [getattr(self, key) for key in FIELDS]
        fr = lang == "fr"
        return [
            {"what": kind[2] if fr else kind[0], "count": n, "until": kind[3] if fr else kind[1]}
            for kind, n in zip(KINDS, counts, strict=True)
        ]

    @property
    def clean(self) -> bool:
        return not any((self.copies, self.messages, self.threads, self.originals, self.attachments))

    def counts(self) -> dict[str, int]:
        """The counts by a stable key (the fields' names), as the incident report's JSON keeps them."""
        return {key: getattr(self, key) for key in FIELDS}


# The fields in the order of KINDS, and how a purge verdict names each kind (its English "what").
FIELDS = ("copies", "messages", "attachments", "threads", "originals", "notifications")


def from_verdict(kept: Mapping[str, object]) -> Residue:
    """A purge run's residue from what its verdict kept (counts by the English "what" of each kind)."""
    by_what = {kind[0]: key for kind, key in zip(KINDS, FIELDS, strict=True)}
    counts = {key: 0 for key in FIELDS}
    for what, n in kept.items():
        if what in by_what and isinstance(n, int):
            counts[by_what[what]] = n
    return Residue(**counts)


def total(parts: Iterable[Residue]) -> Residue:
    """Several purge runs' residue together (each run counts its own messages)."""
    sums = {key: 0 for key in FIELDS}
    for part in parts:
        for key, n in part.counts().items():
            sums[key] += n
    return Residue(**sums)


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


def _count(store: Mailstore, sql: str, ids: Sequence[str]) -> int:
    total = 0
    for chunk in _chunks(ids):
        rows = store.query(sql.replace("{ids}", ",".join("?" * len(chunk))), chunk)
        total += int(rows[0][0] or 0) if rows else 0
    return total


def attachment_ids(store: Mailstore, ids: Sequence[str]) -> list[str]:
    """The attachments the messages' copies link (read before the purge: the links go with the copies)."""
    found: set[str] = set()
    for chunk in _chunks(ids):
        rows = store.query(
            "SELECT DISTINCT attachment_id FROM conversation.usermessagesattachments WHERE message_id IN"
            f" ({','.join('?' * len(chunk))})",
            chunk,
        )
        found.update(str(r[0]) for r in rows)
    return sorted(found)


def thread_ids(store: Mailstore, ids: Sequence[str]) -> list[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        rows = store.query(
            "SELECT DISTINCT thread_id FROM conversation.messages WHERE thread_id IS NOT NULL AND id IN"
            f" ({','.join('?' * len(chunk))})",
            chunk,
        )
        found.update(str(r[0]) for r in rows)
    return sorted(found)


def notifications(store: Mailstore, ids: Sequence[str]) -> int:
    """Timeline notifications the sends of these messages left (one per recipient of each notified send):
    the platform's anti-flood replayed on every send of the same senders around them."""
    sends = store.query(
        'SELECT m.id, m."from", m.date FROM conversation.messages m WHERE m.state IN (\'SENT\', \'RECALL\')'
        f" AND m.id IN ({','.join('?' * len(ids))})",
        list(ids),
    ) if ids else []  # fmt: skip
    if not sends:
        return 0
    senders = sorted({str(r[1]) for r in sends})
    start, end = min(int(r[2]) for r in sends) - ANTI_FLOOD_MS, max(int(r[2]) for r in sends)
    marks = ",".join("?" * len(senders))
    history = store.query(
        "SELECT m.id, m.\"from\", m.date FROM conversation.messages m WHERE m.state IN ('SENT', 'RECALL')"
        f' AND m."from" IN ({marks}) AND m.date >= ? AND m.date <= ? ORDER BY m.date, m.id',
        [*senders, start, end],
    )
    notified = _replay((str(r[0]), str(r[1]), int(r[2])) for r in history)
    mine = [i for i in ids if i in notified]
    copies = (
        "SELECT count(*) FROM conversation.usermessages um JOIN conversation.messages m"
        ' ON m.id = um.message_id WHERE um.user_id != m."from" AND um.message_id IN ({ids})'
    )
    return _count(store, copies, mine) if mine else 0


def _replay(sends: Iterable[tuple[str, str, int]]) -> set[str]:
    """The sends a notification was kept for: a sender's first, then each one 3 s or more after the last
    kept (the kept one's time starts the window; refused ones do not extend it)."""
    last: dict[str, int] = {}
    kept: set[str] = set()
    for message, sender, date in sends:
        if sender not in last or date - last[sender] >= ANTI_FLOOD_MS:
            last[sender] = date
            kept.add(message)
    return kept


def residue(store: Mailstore, ids: Sequence[str], attachments: Sequence[str], notified: int) -> Residue:
    """What is left of purged messages now (``attachments`` and ``notified``: as read before the purge)."""
    copies = _count(store, "SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({ids})", ids)
    messages = _count(store, "SELECT count(*) FROM conversation.messages WHERE id IN ({ids})", ids)
    threads = _count(
        store, "SELECT count(*) FROM conversation.threads WHERE id IN ({ids})", thread_ids(store, ids)
    )
    originals = _count(
        store, "SELECT count(*) FROM conversation.originalmessages WHERE message_id IN ({ids})", ids
    )
    kept = _count(store, "SELECT count(*) FROM conversation.attachments WHERE id IN ({ids})", attachments)
    return Residue(copies, messages, threads, originals, kept, notified)


def script(
    incident: str,
    run: str,
    evidence: str,
    ids: Sequence[str],
    attachments: Sequence[str],
    threads: Sequence[str],
) -> str:
    """The SQL that finishes the removal, for the hosting team: guarded so that it deletes only what no
    mailbox copy still needs, in one transaction, after the evidence is sealed."""

    def listed(values: Sequence[str]) -> str:
        return ", ".join("'" + v.replace("'", "''") + "'" for v in values) or "NULL"

    return f"""-- pcnctl: finish removing the messages purged by run {run} of incident {incident}.
-- Review before running. Run it only once the evidence bundle is sealed and verified:
--     pcnctl incident verify {incident}      (bundle: {evidence})
-- pcnctl itself never writes the database; this is for the hosting team (PostgreSQL, conversation schema).
-- Each DELETE keeps what a remaining mailbox copy still needs; the whole script is one transaction.
BEGIN;
DELETE FROM conversation.originalmessages WHERE message_id IN ({listed(ids)});
DELETE FROM conversation.messages m WHERE m.id IN ({listed(ids)})
    AND NOT EXISTS (SELECT 1 FROM conversation.usermessages um WHERE um.message_id = m.id);
DELETE FROM conversation.attachments a WHERE a.id IN ({listed(attachments)})
    AND NOT EXISTS (SELECT 1 FROM conversation.usermessagesattachments uma WHERE uma.attachment_id = a.id);
DELETE FROM conversation.threads t WHERE t.id IN ({listed(threads)})
    AND NOT EXISTS (SELECT 1 FROM conversation.messages m WHERE m.thread_id = t.id);
COMMIT;
-- The timeline notifications are in the platform's MongoDB (collection timeline), not here:
--     db.timeline.deleteMany({{"resource": {{"$in": [{listed(ids).replace("'", '"')}]}}}})
"""  # fmt: skip
