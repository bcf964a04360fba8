"""Exposure: per school, who received the threat, who opened it before the purge, who never saw it.

What the platform records (edificeio/entcore 6.15.4, conversation module):

* Each mailbox copy is a ``conversation.usermessages`` row with ``unread BOOLEAN NOT NULL DEFAULT TRUE``
  (``conversation/backend/src/main/resources/sql/001-conversation-schema.sql:45``).
* A send writes the recipients' copies without the column, so every recipient's copy starts unread
  (``SqlConversationService.java:344`` and ``:359-363``, the batched ``INSERT`` of
  ``addRecipientStatements``); the sender's own copy is set read, unless the sender is among the
  recipients (``:287-299``).
* Opening a message marks the reader's copy read and takes one off the thread's unread count, in the same
  transaction as the read (``SqlConversationService.get``, ``:839-887``). That ``get`` serves
  ``GET /conversation/api/messages/:id`` (``ApiController.java:102``, through ``getAndFormat`` at
  ``SqlConversationService.java:917``) and the older ``GET /conversation/message/:id``
  (``ConversationController.java:996-1009``); a reply's draft or send reads its parent the same way
  (``ConversationController.java:240`` and ``:548``, with ``In-Reply-To``), and so does forwarding a
  message's attachments (``:1725``).
* ``POST /conversation/toggleUnread`` (``ConversationController.java:1169``, ``toggleUnread`` at
  ``SqlConversationService.java:1228-1255``) sets the flag to whatever its holder asks: a copy opened and
  then marked unread again reads as unread. Moving a copy to the trash sets ``trashed`` only
  (``SqlConversationService.java:1756``): the flag stays as it was.
* The purge deletes the copies (``POST /conversation/api/purge/messages``): after it, nothing says who
  had opened them. So the flags are read **before** the purge: :mod:`pcnctl.forensics.evidence` records
  each copy's flag and the time it read it, and exposure is computed from the incident's evidence
  afterwards (:func:`from_evidence`), or from the mailstore while the copies are there
  (:func:`from_mailstore`).

What it cannot say: the subject shows in the folder list and, with the start of the text, in the
timeline notification and its push, all without opening the message; a copy its holder deleted before the
evidence was taken is gone and not counted. "Opened" means the copy was marked read.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Required, TypedDict

from pcnctl.forensics.evidence import PARTIAL, unread_flags
from pcnctl.forensics.mailstore import Mailstore
from pcnctl.timespec import iso


class Status(StrEnum):
    """What a recipient's copies say, the worst first: one opened copy is an opened threat."""

    OPENED = "opened"
    UNKNOWN = "unknown"  # the flag was not recorded (evidence written before pcnctl kept it)
    UNREAD = "unread"  # not opened when read, and a copy is still delivered (no purge yet)
    PURGED_UNREAD = "purged-unread"  # never opened, every copy purged


@dataclass(frozen=True, slots=True)
class Copy:
    """One recipient's copy of one threat, as the mailstore showed it at ``read_at``."""

    message_id: str
    user_id: str
    unread: bool | None  # None: not recorded
    read_at: str  # UTC, ISO 8601: when the flag was read
    delivered_at: str  # UTC, ISO 8601: the message's date
    schools: tuple[str, ...] = ()  # the recipient's schools (UAIs) as the search saw them


@dataclass(frozen=True, slots=True)
class RecipientExposure:
    """One recipient in one school: the threats they held, which of them they had opened."""

    user_id: str
    messages: tuple[str, ...]
    opened: tuple[str, ...]
    unknown: tuple[str, ...]
    purged: bool  # every copy they held was purged
    first_delivered: str
    read_at: str  # the latest time one of their flags was read

    @property
    def status(self) -> Status:
        if self.opened:
            return Status.OPENED
        if self.unknown:
            return Status.UNKNOWN
        return Status.PURGED_UNREAD if self.purged else Status.UNREAD


@dataclass(frozen=True, slots=True)
class SchoolExposure:
    """The recipients of one school (``uai`` is "" for recipients whose school is not known)."""

    uai: str
    recipients: tuple[RecipientExposure, ...]

    def count(self, status: Status) -> int:
        return sum(1 for r in self.recipients if r.status is status)

    @property
    def copies(self) -> int:
        return sum(len(r.messages) for r in self.recipients)

    @property
    def read_at(self) -> str:
        return max((r.read_at for r in self.recipients), default="")


class EvidenceCopy(TypedDict, total=False):
    user: str
    folder: str
    unread: bool  # absent from bundles written before pcnctl recorded it


# The fields of an evidence bundle's message line that exposure and the exports read ("from" is a Python
# keyword, hence the functional form); collected_at is absent from bundles written before pcnctl kept it.
EvidenceRecord = TypedDict(
    "EvidenceRecord",
    {
        "id": Required[str],
        "date": str,
        "from": str,
        "from_schools": list[str],
        "collected_at": str,
        "recipients": list[str],
        "recipient_schools": dict[str, list[str]],
        "mailboxes": list[EvidenceCopy],
    },
    total=False,
)


# -- reading ----------------------------------------------------------------------------------------------


def evidence_records(incident_dir: Path) -> list[EvidenceRecord]:
    """The messages of an incident's complete evidence bundles; a message collected twice keeps its
    latest record (the closest to the purge). Interrupted collections (``.partial-``) are not evidence."""
    root = incident_dir / "evidence"
    latest: dict[str, tuple[str, EvidenceRecord]] = {}
    if not root.exists():
        return []
    for bundle in sorted(root.iterdir()):
        path = bundle / "messages.jsonl"
        if bundle.name.startswith(PARTIAL) or not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            record: EvidenceRecord = json.loads(line)
            when = record.get("collected_at") or ""
            previous = latest.get(record["id"])
            if previous is None or when >= previous[0]:
                latest[record["id"]] = (when, record)
    return [record for _when, record in latest.values()]


def copies_in_evidence(records: Iterable[EvidenceRecord]) -> list[Copy]:
    """Every recipient's copy the evidence holds, with the flag it recorded (None for older bundles)."""
    out: list[Copy] = []
    for record in records:
        flags = {b["user"]: b.get("unread") for b in record.get("mailboxes") or []}
        schools = record.get("recipient_schools") or {}
        for user in record.get("recipients") or []:
            out.append(
                Copy(
                    record["id"],
                    user,
                    flags.get(user),
                    record.get("collected_at") or "",
                    record.get("date") or "",
                    tuple(schools.get(user) or ()),
                )
            )
    return out


def copies_in_store(
    store: Mailstore, message_ids: Sequence[str], schools_of: Mapping[str, Sequence[str]] | None = None
) -> list[Copy]:
    """The recipients' copies of the messages as the mailstore holds them now (the sender's own copy is
    not a recipient's, unless the sender addressed themself); ``schools_of``: user id -> UAIs."""
    read_at = iso(datetime.now(UTC))
    flags = unread_flags(store, message_ids)
    out: list[Copy] = []
    for message_id in message_ids:
        message = store.get(message_id)
        if message is None:
            continue  # purged already (or never sent): nobody holds a copy to read
        delivered = iso(datetime.fromtimestamp(message.date / 1000, UTC))
        for user in message.recipients:
            unread = flags.get(message_id, {}).get(user)
            schools = tuple((schools_of or {}).get(user) or ())
            out.append(Copy(message_id, user, unread, read_at, delivered, schools))
    return out


# -- exposure ---------------------------------------------------------------------------------------------


def by_school(copies: Iterable[Copy], purged: Collection[str] = ()) -> list[SchoolExposure]:
    """Recipients per school (a recipient of several schools counts in each), in UAI order; ``purged``
    holds the ids of the messages the purge removed."""
    held: dict[tuple[str, str], list[Copy]] = {}
    for copy in copies:
        for uai in copy.schools or ("",):
            held.setdefault((uai, copy.user_id), []).append(copy)
    schools: dict[str, list[RecipientExposure]] = {}
    for (uai, user), theirs in sorted(held.items()):
        schools.setdefault(uai, []).append(_recipient(user, theirs, purged))
    return [SchoolExposure(uai, tuple(people)) for uai, people in sorted(schools.items())]


def _recipient(user: str, copies: list[Copy], purged: Collection[str]) -> RecipientExposure:
    messages = tuple(dict.fromkeys(c.message_id for c in copies))
    return RecipientExposure(
        user,
        messages,
        tuple(c.message_id for c in copies if c.unread is False),
        tuple(c.message_id for c in copies if c.unread is None),
        all(m in purged for m in messages),
        min(c.delivered_at for c in copies),
        max(c.read_at for c in copies),
    )


def from_evidence(incident_dir: Path, purged: Collection[str] = ()) -> list[SchoolExposure]:
    """Exposure per school from an incident's evidence (the flags as they were before the purge)."""
    return by_school(copies_in_evidence(evidence_records(incident_dir)), purged)


def from_mailstore(
    store: Mailstore, message_ids: Sequence[str], schools_of: Mapping[str, Sequence[str]] | None = None
) -> list[SchoolExposure]:
    """Exposure per school read from the mailstore now, while the copies are there (nothing purged)."""
    return by_school(copies_in_store(store, message_ids, schools_of))
