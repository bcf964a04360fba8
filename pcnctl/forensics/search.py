"""Finding the threat: filters over the mailstore, and near-duplicate matching of a templated text.

A wave reuses one text with small changes (hour, punctuation, case, a word, the ending). ``--like ID``
compares every candidate with the reference message on normalised text: tags stripped, accents and case
folded, digits and punctuation dropped, then word pairs (bigrams) compared with the Jaccard index. Variants
of one template score high (above 0.5 in the lab's waves; the default threshold is 0.4); ordinary
messages that share a word or two score near zero.

Where each filter runs: time window, senders, states and attachments in the database; the text filters
first as a full-text prefilter in the database (:func:`prefilter`: words every match must hold, derived so
that it never drops a message the exact filter keeps), then exactly here, on the visible text (tags
replaced by spaces) with accents folded, because French is typed with and without accents. Recipients and
schools come from the mailbox copies of the candidates (a group send reaches each member), read in
batches. The states searched are ``SENT``, ``RECALL`` and ``SCHEDULE`` unless ``states`` says otherwise
(a scheduled threat is delivered later: it belongs to the wave); drafts were never sent, so they are
reported, not returned. The states left out are read by the same query and only counted, so a search
says how many drafts (or scheduled messages) also match without a second scan, and the count is exact:
the same filters decide it.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Required, TypedDict

from pcnctl.ent import directory
from pcnctl.ent.fanout import Fanout, Outcome
from pcnctl.ent.platform import EntDriver
from pcnctl.errors import UsageError
from pcnctl.forensics.mailstore import SEARCHED, STATES, Mailstore, Prefilter, Scan, StoredMessage
from pcnctl.models import User
from pcnctl.records import JsonObject, Row
from pcnctl.timespec import iso

_TAGS = re.compile(r"<[^>]+>")
_ENTITIES = re.compile(r"&(?:[a-z]+|#[0-9]+|#x[0-9a-f]+);", re.IGNORECASE)
# A word is a run of letters, as the platform's index cuts it: a run holding digits (15h30, bombe2) is a
# number token there, and runs joined by . @ / (x.bombe.fr, a@b.fr, e.g) are host, e-mail or path tokens,
# so neither is a word here either.
_WORDS = re.compile(r"(?<![a-z0-9])(?<![a-z0-9][.@/])[a-z]+(?![a-z0-9])(?![.@/][a-z0-9])")
_LIGATURES = re.compile("[œæßøłđı]")
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_LETTERS = str.maketrans({"œ": "oe", "æ": "ae", "ß": "ss", "ø": "o", "ł": "l", "đ": "d", "ı": "i"})
# Characters at which both full-text indexes cut words exactly as tokens() does; a word next to another
# character (a dot, @, /, a digit) may be part of a longer token there.
_EDGES = frozenset(" \t\r\n,;!?()[]{}\"'«»")
MIN_WORD = 3
SAVED_VERSION = 2


def visible(text: str) -> str:
    """The text a reader sees: tags and entities replaced by spaces (the platform's index drops both)."""
    return _ENTITIES.sub(" ", _TAGS.sub(" ", text))


def folded(text: str) -> str:
    """Lower case without accents, ligatures spelt out (as ``unaccent`` does): ``models.fold`` at C speed
    (a scan folds every candidate's body)."""
    text = text.lower()
    if text.isascii():
        return text
    if _LIGATURES.search(text):
        text = text.translate(_LETTERS)
    return _MARKS.sub("", unicodedata.normalize("NFKD", text))


def tokens(text: str) -> list[str]:
    return words_of(folded(visible(text)))


def words_of(folded_text: str) -> list[str]:
    return _WORDS.findall(folded_text)


def pairs_of(words: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(words)) if len(words) > 1 else {(w, "") for w in words}


def shingles(text: str) -> set[tuple[str, str]]:
    return pairs_of(tokens(text))


def similarity(a: set[tuple[str, str]], b: set[tuple[str, str]]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class Terms:
    """What a literal text tells the indexes: whole words (any index), and its FTS5 terms."""

    words: tuple[str, ...] = ()  # letters only, edge characters on both sides
    fts: tuple[tuple[str, bool], ...] = ()  # (alphanumeric run, prefix?) cut by any other character


def literal_terms(text: str, *, left_edge: bool = False, right_edge: bool = False) -> Terms:
    """Terms of a literal text that hold wherever the text occurs.

    A word counts when an edge character stands on each side, or the start (``left_edge``) or end
    (``right_edge``) of the text when the match is known to be cut there: a word at an open end may be
    part of a longer one where it occurs. SQLite's FTS5 cuts at every character but letters and digits:
    a run open on the right only is a prefix there.
    """
    text = folded(text)
    words: list[str] = []
    fts: list[tuple[str, bool]] = []
    for m in re.finditer(r"[a-z0-9]+", text):
        before = text[m.start() - 1] if m.start() else ""
        after = text[m.end()] if m.end() < len(text) else ""
        left, right = (before in _EDGES if before else left_edge), (after in _EDGES if after else right_edge)
        if left and right and m.group().isalpha() and len(m.group()) >= MIN_WORD:
            words.append(m.group())
        if (before or left_edge) and len(m.group()) >= MIN_WORD:
            fts.append((m.group(), not (after or right_edge)))
    return Terms(tuple(dict.fromkeys(words)), tuple(dict.fromkeys(fts)))


def regex_terms(pattern: str) -> Terms:
    """Terms every match of the regular expression holds (from its mandatory literal runs).

    Only the top level of the pattern is read: a literal run is cut by anything else (classes, groups,
    repeats, alternatives); ``^`` and ``$`` close a run on an edge. An alternative at the top gives none.
    """
    from re import _constants as c  # type: ignore[attr-defined]
    from re import _parser  # type: ignore[attr-defined]

    try:
        parsed = _parser.parse(pattern)
    except re.error:
        return Terms()
    edges = (c.AT_BEGINNING, c.AT_BEGINNING_STRING, c.AT_END, c.AT_END_STRING)
    words: list[str] = []
    fts: list[tuple[str, bool]] = []
    run, left = "", False
    for op, arg in [*parsed, (None, None)]:
        if op is c.LITERAL:
            run += chr(arg)
            continue
        edge = op is c.AT and arg in edges
        terms = literal_terms(run, left_edge=left, right_edge=edge)
        words += terms.words
        fts += terms.fts
        run, left = "", edge
    return Terms(tuple(dict.fromkeys(words)), tuple(dict.fromkeys(fts)))


_SQL_REGEX = re.compile(r"[A-Za-z0-9 .*+?|()^'\",;:!\-\n]*")


def sql_regex(pattern: str) -> str | None:
    """``--regex`` for PostgreSQL's ``~*`` when that matches at least what Python matches, else None.

    Only ASCII patterns of literals, ``.``, ``*``, ``+``, ``?``, ``|``, groups and a leading ``^`` are
    translated: there both engines agree, except that PostgreSQL's ``.`` also takes a newline (a wider
    match, which the exact check then narrows). Classes, escapes, ``$``, counted and possessive repeats,
    and lookarounds are left to Python.
    """
    if not _SQL_REGEX.fullmatch(pattern) or re.search(r"[*+?]\+|\(\?(?!:)|.\^", pattern):
        return None
    try:
        re.compile(pattern)
    except re.error:
        return None
    return pattern


def like_words(
    reference: set[tuple[str, str]], threshold: float, frequency: Callable[[list[str]], dict[str, float]]
) -> tuple[tuple[str, ...], int]:
    """Words S and a count r: every near-duplicate holds r words of S (the ``--like`` prefilter).

    A message with similarity >= t shares at least m = ceil(t * |A|) of the reference's bigrams A (since
    |A ∩ B| >= t * |A ∪ B| >= t * |A|). A message holding none of a set S of words shares none of the
    bigrams S covers: if S covers |A| - m + 1 bigrams, every near-duplicate holds one word of S (r = 1).
    If S still covers that many without any one of its words, every near-duplicate holds two (r = 2).
    Only words the index can test (frequency >= 0: not too short, not a stop word) are used; of the
    sets found, the one expected to match fewest messages is returned; ``((), 0)`` when none exists.
    """
    if not reference:
        return (), 0
    need = len(reference) - math.ceil(threshold * len(reference) - 1e-9) + 1
    freq = frequency(sorted({w for pair in reference for w in pair if len(w) >= MIN_WORD}))
    pairs = {w: {p for p in reference if w in p} for w in freq if freq[w] >= 0}

    def covered(words: Iterable[str]) -> int:
        return len(set().union(*(pairs[w] for w in words)))

    def cost(w: str) -> float:
        return freq[w] + 0.001

    one: list[str] = []
    while covered(one) < need and len(one) < len(pairs):
        # Greedy weighted cover: the most bigrams newly covered per share of messages matched.
        done = set().union(*(pairs[w] for w in one))
        one.append(max(sorted(set(pairs) - set(one)), key=lambda w: len(pairs[w] - done) / cost(w)))
    options: list[tuple[float, tuple[str, ...], int]] = []
    if covered(one) >= need:
        options.append((sum(cost(w) for w in one), tuple(one), 1))
    two = set(pairs)

    def two_hold(words: set[str]) -> bool:
        return len(words) > 1 and all(covered(words - {w}) >= need for w in words)

    if two_hold(two):
        for word in sorted(two, key=lambda w: (-freq[w], w)):  # drop the most common words while it holds
            if two_hold(two - {word}):
                two.remove(word)
        pair_cost = sum(cost(a) * cost(b) for a, b in itertools.combinations(sorted(two), 2))
        options.append((pair_cost, tuple(sorted(two)), 2))
    if not options:
        return (), 0
    _cost, words, at_least = min(options)
    return words, at_least


def prefilter(store: Mailstore, query: Query, reference: set[tuple[str, str]] | None = None) -> Prefilter:
    """The terms the database's full-text index narrows the scan with; the exact filters still decide.

    ``--subject``/``--body`` match from the start of a word, so their first run is cut on the left.
    """
    parts = [literal_terms(t, left_edge=True) for t in (query.subject, query.body) if t]
    if query.regex:
        parts.append(regex_terms(query.regex))
    any_of: tuple[str, ...] = ()
    at_least = 1
    if reference is not None:
        any_of, at_least = like_words(reference, query.threshold, store.word_frequencies)
    return Prefilter(
        tuple(dict.fromkeys(w for t in parts for w in t.words)),
        any_of,
        tuple(dict.fromkeys(f for t in parts for f in t.fts)),
        max(at_least, 1),
        sql_regex(query.regex) if query.regex else None,
    )


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
    states: list[str] = field(default_factory=lambda: list(SEARCHED))

    def to_json(self) -> JsonObject:
        data: JsonObject = asdict(self)
        data["since"] = iso(self.since) if self.since else None
        data["until"] = iso(self.until) if self.until else None
        return data


def parse_states(values: Sequence[str]) -> list[str]:
    """``--state`` values: DRAFT, SENT, RECALL, SCHEDULE (any case, repeatable), or ``all``; none given:
    SENT, RECALL and SCHEDULE."""
    if not values:
        return list(SEARCHED)
    out: list[str] = []
    for value in values:
        for part in value.upper().replace(",", " ").split():
            if part == "ALL":
                out += STATES
            elif part in STATES:
                out.append(part)
            else:
                raise UsageError(f"unknown message state {part!r}", hint=f"use {', '.join(STATES)} or all")
    return list(dict.fromkeys(out))


STATE_NAMES = {"SENT": "sent", "RECALL": "recalled", "SCHEDULE": "scheduled", "DRAFT": "draft"}


def describe_left_out(left_out: Mapping[str, int]) -> str:
    """``14 scheduled, 14 draft``: the matches of the states a search left out (empty when none)."""
    return ", ".join(f"{left_out[s]} {STATE_NAMES[s]}" for s in STATES[::-1] if left_out.get(s))


@dataclass
class Match:
    message: StoredMessage
    score: float | None
    sender_login: str
    sender_name: str
    sender_schools: list[str]
    recipient_schools: dict[str, list[str]]  # recipient id -> UAIs

    @property
    def schools(self) -> list[str]:
        return sorted({u for uais in self.recipient_schools.values() for u in uais})

    def to_row(self) -> JsonObject:
        """Every field of the match (recipient_schools is an object): JSON output and saved searches."""
        m = self.message
        return {
            "id": m.id,
            "date": iso(datetime.fromtimestamp(m.date / 1000, UTC)),
            "date_ms": m.date,
            "state": m.state,
            "recalled": m.recalled,
            "from": m.sender,
            "from_login": self.sender_login,
            "from_name": self.sender_name,
            "from_schools": self.sender_schools,
            "subject": m.subject,
            "addressed": m.addressed,
            "groups": [m.group_names[g] for g in m.groups],
            "recipients": m.recipients,
            "recipient_count": len(m.recipients),
            "copies": len(m.mailboxes),
            "notifications": m.notified,
            "schools": self.schools,
            "recipient_schools": self.recipient_schools,
            "has_attachment": bool(m.has_attachment),
            "similarity": round(self.score, 3) if self.score is not None else None,
        }


@dataclass
class SearchResult:
    query: Query
    matches: list[Match]
    scanned: int
    left_out: dict[str, int] = field(default_factory=dict)  # state -> matches of the states left out

    def left_out_states(self) -> list[str]:
        """The states left out that hold matches, in the order --state takes them."""
        return [s for s in STATES if self.left_out.get(s)]

    def by_school(self) -> list[Row]:
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

    def by_sender(self) -> list[Row]:
        first: dict[str, Match] = {}
        messages: Counter[str] = Counter()
        recipients: dict[str, set[str]] = {}
        for m in self.matches:
            first.setdefault(m.message.sender, m)
            messages[m.message.sender] += 1
            recipients.setdefault(m.message.sender, set()).update(m.message.recipients)
        return [
            {
                "sender": sender,
                "login": m.sender_login,
                "schools": m.sender_schools,
                "messages": messages[sender],
                "recipients": len(recipients[sender]),
            }
            for sender, m in sorted(first.items(), key=lambda item: -messages[item[0]])
        ]

    def save(self, path: Path, *, profile: str, url: str) -> None:
        from pcnctl.files import write_private
        from pcnctl.timespec import utcnow

        data = {
            "version": SAVED_VERSION,
            "created_at": utcnow(),
            "profile": profile,
            "url": url,
            "query": self.query.to_json(),
            "scanned": self.scanned,
            "left_out": self.left_out,
            "matches": [m.to_row() for m in self.matches],
            "counts": {"by_school": self.by_school(), "by_sender": self.by_sender()},
        }
        write_private(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


# A match as a saved search keeps it (Match.to_row): the fields purge, evidence, export and hunt read back.
# An incident's evidence gives the same fields (export.matches_from_incident).
SavedMatch = TypedDict(
    "SavedMatch",
    {
        "id": Required[str],
        "date": str,
        "from": str,
        "from_schools": list[str],
        "schools": list[str],
        "recipient_schools": dict[str, list[str]],
    },
    total=False,
)


class SavedSearch(TypedDict, total=False):
    """A saved search (``messages search --save``); a resumed purge rebuilds one with its matches' ids."""

    version: int
    created_at: str
    profile: str
    url: str
    query: JsonObject
    scanned: int
    matches: Required[list[SavedMatch]]
    counts: JsonObject


def load_saved(path: Path) -> SavedSearch:
    """A saved search (``--save``), checked: ``purge`` and ``export`` act on it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise UsageError(
            f"{path} is not a saved search (not JSON)", hint="create one with messages search --save"
        ) from None
    _check_saved(path, data)
    saved: SavedSearch = data  # its shape checked just above
    return saved


def _check_saved(path: Path, data: object) -> None:
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


class Directory:
    """User lookups with a cache: sender logins and names, recipient schools for the matches."""

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

    def name(self, user_id: str) -> str:
        user = self.users.get(user_id)
        return user.display_name if user else ""

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


def from_word_start(text: str) -> re.Pattern[str]:
    """``--subject``/``--body``: the folded text, starting where a word starts."""
    return re.compile(r"(?<![a-z0-9])" + re.escape(folded(text)))


@dataclass
class Exact:
    """The filters confirmed here, on the candidates the database returned."""

    subject: re.Pattern[str] | None = None
    body: re.Pattern[str] | None = None
    pattern: re.Pattern[str] | None = None
    reference: set[tuple[str, str]] | None = None
    threshold: float = 0.4

    def score(self, message: StoredMessage) -> tuple[bool, float | None]:
        subject = folded(visible(message.subject))
        if self.subject and not self.subject.search(subject):
            return False, None
        text = visible(message.body)
        body = folded(text) if self.body or self.reference is not None else ""
        if self.body and not self.body.search(body):
            return False, None
        if self.pattern and not self.pattern.search(message.subject + "\n" + text):
            return False, None
        if self.reference is None:
            return True, None
        score = similarity(self.reference, pairs_of(words_of(subject + " " + body)))
        return score >= self.threshold, score


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
    use_index: bool = True,
    left_out: Counter[str] | None = None,
) -> Iterator[tuple[StoredMessage, float | None]]:
    """Stream the mailstore through the filters: the database narrows, the exact checks decide here.

    ``use_index=False`` skips the full-text prefilter (a full scan: the reference the prefilter is
    checked against). With ``left_out``, the same query also reads the states the query leaves out and
    counts their matches there (per state) instead of yielding them.
    """
    exact = Exact(
        from_word_start(query.subject) if query.subject else None,
        from_word_start(query.body) if query.body else None,
        pattern,
        reference,
        query.threshold,
    )
    since = int(query.since.timestamp() * 1000) if query.since else None
    until = int(query.until.timestamp() * 1000) if query.until else None
    words = prefilter(store, query, reference) if use_index else Prefilter()
    wanted = set(query.states)
    read = STATES if left_out is not None else tuple(query.states)
    rows = store.iter_messages(Scan(since, until, senders, read, query.has_attachment, words))
    scores: dict[str, float | None] = {}

    def confirmed() -> Iterable[StoredMessage]:
        for scanned, message in enumerate(rows, 1):
            if counter is not None:
                counter[0] = scanned
            if on_scan is not None and scanned % 10_000 == 0:
                on_scan(scanned)
            ok, score = exact.score(message)
            if ok:
                scores[message.id] = score
                yield message

    for message in store.with_copies(confirmed()):
        score = scores.pop(message.id, None)
        if school_members is not None and not set(message.recipients) & school_members:
            continue
        if message.state not in wanted:
            if left_out is not None:
                left_out[message.state] += 1
            continue
        yield message, score


def check_query(query: Query) -> None:
    """Refuse a query that cannot be right before anything is read: an empty window, a threshold out of
    range, a state unknown, a regular expression that does not compile or can backtrack for ever."""
    from pcnctl.forensics.patterns import check_regex

    if query.since and query.until and query.until <= query.since:
        raise UsageError("--until must be after --since")
    if not 0 < query.threshold <= 1:
        raise UsageError("--similarity is a fraction between 0 and 1")
    unknown = [s for s in query.states if s not in STATES]
    if unknown or not query.states:
        raise UsageError(f"unknown message state {(unknown or [''])[0]!r}", hint=f"use {', '.join(STATES)}")
    if query.regex:
        check_regex(query.regex, flags=re.IGNORECASE)


def run(
    driver: EntDriver,
    store: Mailstore,
    query: Query,
    *,
    on_scan: Callable[[int], None] | None = None,
) -> SearchResult:
    """Stream the mailstore through the query's filters; enrich the matches from the directory. The matches
    of the states the query leaves out are counted in the result's ``left_out``."""
    check_query(query)
    pattern = re.compile(query.regex, re.IGNORECASE) if query.regex else None
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
    left_out: Counter[str] = Counter()
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
            left_out=left_out,
        )
    )
    return SearchResult(query, enrich(driver, found), counter[0], dict(left_out))


def enrich(driver: EntDriver, found: Sequence[tuple[StoredMessage, float | None]]) -> list[Match]:
    """Sender logins, names and schools, recipients' schools, from the directory (cached)."""
    people = Directory(driver)
    people.load([m.sender for m, _ in found] + [r for m, _ in found for r in m.recipients])
    return [
        Match(
            message,
            score,
            people.login(message.sender),
            message.sender_name or people.name(message.sender),
            people.schools(message.sender),
            {r: people.schools(r) for r in message.recipients},
        )
        for message, score in found
    ]
