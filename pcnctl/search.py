"""Finding the threat: filters over the mailstore, and near-duplicate matching of a templated text.

A wave reuses one text with small changes (hour, punctuation, case, a word, the ending). ``--like ID``
compares every candidate with the reference message on normalised text: tags stripped, accents and case
folded, digits and punctuation dropped, then word pairs (bigrams) compared with the Jaccard index. Variants
of one template score high (above 0.5 in the lab's waves; the default threshold is 0.4); ordinary
messages that share a word or two score near zero.

Time window and sender filters run in the database; text filters run here, on accent-folded text, because
French is typed with and without accents.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pcnctl import directory
from pcnctl.errors import UsageError
from pcnctl.fanout import Fanout, Outcome
from pcnctl.models import User, fold
from pcnctl.platform import EntDriver
from pcnctl.sources.mailstore import Mailstore, StoredMessage
from pcnctl.timespec import iso

_TAGS = re.compile(r"<[^>]+>")
_WORD = re.compile(r"[a-z]+")
SAVED_VERSION = 1


def tokens(text: str) -> list[str]:
    return _WORD.findall(fold(_TAGS.sub(" ", text)))


def shingles(text: str) -> set[tuple[str, str]]:
    words = tokens(text)
    return set(itertools.pairwise(words)) if len(words) > 1 else {(w, "") for w in words}


def similarity(a: set[tuple[str, str]], b: set[tuple[str, str]]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass
class Query:
    since: datetime | None = None
    until: datetime | None = None
    senders: list[str] = field(default_factory=list)  # as typed: ids, logins or UAIs
    subject: str | None = None
    body: str | None = None
    regex: str | None = None
    has_attachment: bool | None = None
    to_school: str | None = None
    like: str | None = None
    threshold: float = 0.4

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = iso(self.since) if self.since else None
        data["until"] = iso(self.until) if self.until else None
        return data


@dataclass
class Match:
    message: StoredMessage
    score: float | None
    sender_login: str
    sender_schools: list[str]
    recipient_schools: dict[str, list[str]]  # recipient id -> UAIs

    @property
    def schools(self) -> list[str]:
        return sorted({u for uais in self.recipient_schools.values() for u in uais})

    def to_row(self) -> dict[str, Any]:
        m = self.message
        return {
            "id": m.id,
            "date": iso(datetime.fromtimestamp(m.date / 1000, UTC)),
            "date_ms": m.date,
            "from": m.sender,
            "from_login": self.sender_login,
            "from_name": m.sender_name,
            "from_schools": self.sender_schools,
            "subject": m.subject,
            "recipients": m.recipients,
            "recipient_count": len(m.recipients),
            "copies": len(m.mailboxes),
            "schools": self.schools,
            "recipient_schools": self.recipient_schools,
            "has_attachment": m.has_attachment,
            "similarity": round(self.score, 3) if self.score is not None else None,
        }


@dataclass
class SearchResult:
    query: Query
    matches: list[Match]
    scanned: int

    def by_school(self) -> list[dict[str, Any]]:
        messages: Counter[str] = Counter()
        recipients: dict[str, set[str]] = {}
        for m in self.matches:
            for uai in m.schools:
                messages[uai] += 1
            for rid, uais in m.recipient_schools.items():
                for uai in uais:
                    recipients.setdefault(uai, set()).add(rid)
        return [
            {"school": s, "messages": n, "recipients": len(recipients.get(s, ()))}
            for s, n in sorted(messages.items())
        ]

    def by_sender(self) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for m in self.matches:
            row = rows.setdefault(
                m.message.sender,
                {
                    "sender": m.message.sender,
                    "login": m.sender_login,
                    "schools": m.sender_schools,
                    "messages": 0,
                    "recipients": set(),
                },
            )
            row["messages"] += 1
            row["recipients"].update(m.message.recipients)
        return [
            dict(r, recipients=len(r["recipients"]))
            for r in sorted(rows.values(), key=lambda r: -r["messages"])
        ]

    def save(self, path: Path, *, profile: str, url: str) -> None:
        from pcnctl.incident.store import utcnow, write_private

        data = {
            "version": SAVED_VERSION,
            "created_at": utcnow(),
            "profile": profile,
            "url": url,
            "query": self.query.to_json(),
            "scanned": self.scanned,
            "matches": [m.to_row() for m in self.matches],
            "counts": {"by_school": self.by_school(), "by_sender": self.by_sender()},
        }
        write_private(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def load_saved(path: Path) -> dict[str, Any]:
    """A saved search (``--save``), checked: ``purge`` and ``export`` act on it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise UsageError(
            f"{path} is not a saved search (not JSON)", hint="create one with messages search --save"
        ) from None
    if (
        not isinstance(data, dict)
        or data.get("version") != SAVED_VERSION
        or not isinstance(data.get("matches"), list)
    ):
        raise UsageError(
            f"{path} is not a saved search of this version", hint="run messages search --save again"
        )
    for n, match in enumerate(data["matches"]):
        if not isinstance(match, dict) or not isinstance(match.get("id"), str):
            raise UsageError(f"{path}: match {n} has no message id")
    return data


class Directory:
    """User lookups with a cache: sender logins and recipient schools for the matches."""

    def __init__(self, driver: EntDriver, max_concurrency: int = 16) -> None:
        self.driver = driver
        self.max_concurrency = max_concurrency
        self.users: dict[str, User | None] = {}

    def load(self, ids: Sequence[str]) -> None:
        missing = [i for i in dict.fromkeys(ids) if i and i not in self.users]
        if not missing:
            return

        def fetch(user_id: str) -> Outcome:
            from pcnctl.errors import NotFoundError, PermissionDeniedError

            try:
                self.users[user_id] = self.driver.get_user(user_id)
            except (NotFoundError, PermissionDeniedError):
                self.users[user_id] = None
            return Outcome(user_id, "done")

        Fanout(fetch, key=lambda i: i, idempotent=True, max_concurrency=self.max_concurrency).run(missing)

    def login(self, user_id: str) -> str:
        user = self.users.get(user_id)
        return user.login if user else ""

    def schools(self, user_id: str) -> list[str]:
        user = self.users.get(user_id)
        return list(user.schools) if user else []


def resolve_senders(driver: EntDriver, refs: Sequence[str]) -> list[str]:
    """Sender ids from ids, logins or school UAIs (every account of the school)."""
    ids: list[str] = []
    for ref in refs:
        ref = ref.strip()
        if re.match(r"^\d{7}[A-Za-z]$", ref):
            school = directory.resolve_school(driver, ref)
            ids += [u.id for u in driver.list_users(school.id)]
        else:
            ids.append(directory.find_user(driver, ref).id)
    return ids


def scan(
    store: Mailstore,
    query: Query,
    *,
    pattern: re.Pattern[str] | None = None,
    reference: set[tuple[str, str]] | None = None,
    senders: list[str] | None = None,
    school_members: set[str] | None = None,
    on_scan: Callable[[int], None] | None = None,
    counter: list[int] | None = None,
) -> Iterator[tuple[StoredMessage, float | None]]:
    """Stream the mailstore through the filters: the database narrows by time and sender, the rest here."""
    subject = fold(query.subject) if query.subject else None
    body = fold(query.body) if query.body else None
    since = int(query.since.timestamp() * 1000) if query.since else None
    until = int(query.until.timestamp() * 1000) if query.until else None
    scanned = 0
    for message in store.iter_messages(since_ms=since, until_ms=until, senders=senders):
        scanned += 1
        if counter is not None:
            counter[0] = scanned
        if on_scan is not None and scanned % 10_000 == 0:
            on_scan(scanned)
        if query.has_attachment is not None and message.has_attachment != query.has_attachment:
            continue
        if subject and subject not in fold(message.subject):
            continue
        if body and body not in fold(message.body):
            continue
        if pattern and not pattern.search(message.subject + "\n" + message.body):
            continue
        if school_members is not None and not set(message.recipients) & school_members:
            continue
        score = None
        if reference is not None:
            score = similarity(reference, shingles(message.subject + " " + message.body))
            if score < query.threshold:
                continue
        yield message, score


def run(
    driver: EntDriver,
    store: Mailstore,
    query: Query,
    *,
    on_scan: Callable[[int], None] | None = None,
) -> SearchResult:
    """Stream the mailstore through the query's filters; enrich the matches from the directory."""
    if query.since and query.until and query.until <= query.since:
        raise UsageError("--until must be after --since")
    if not 0 < query.threshold <= 1:
        raise UsageError("--similarity is a fraction between 0 and 1")
    pattern = None
    if query.regex:
        try:
            pattern = re.compile(query.regex, re.IGNORECASE)
        except re.error as exc:
            raise UsageError(f"invalid regular expression {query.regex!r}: {exc}") from None
    reference = None
    if query.like:
        ref = store.get(query.like)
        if ref is None:
            raise UsageError(
                f"no message {query.like} in the mailstore", hint="give the id of one threat copy"
            )
        reference = shingles(ref.subject + " " + ref.body)
    senders = resolve_senders(driver, query.senders) if query.senders else None
    school_members: set[str] | None = None
    if query.to_school:
        school = directory.resolve_school(driver, query.to_school)
        school_members = {u.id for u in driver.list_users(school.id)}
    counter = [0]
    found = list(
        scan(
            store,
            query,
            pattern=pattern,
            reference=reference,
            senders=senders,
            school_members=school_members,
            on_scan=on_scan,
            counter=counter,
        )
    )
    scanned = counter[0]
    copies = store.mailboxes([m.id for m, _ in found])
    people = Directory(driver)
    people.load([m.sender for m, _ in found] + [r for m, _ in found for r in m.recipients])
    matches = []
    for message, score in found:
        message.mailboxes = copies.get(message.id, [])
        matches.append(
            Match(
                message,
                score,
                people.login(message.sender),
                people.schools(message.sender),
                {r: people.schools(r) for r in message.recipients},
            )
        )
    return SearchResult(query, matches, scanned)
