"""The audit log: every action pcnctl takes, one JSON line each, chained by SHA-256 so edits show.

Each entry carries ``prev`` (the previous entry's hash) and ``hash`` = SHA-256 of ``prev`` and the entry's
canonical JSON without ``hash`` and ``mac``. Editing, deleting or reordering a line breaks the chain from
there. What the chain alone cannot show (the last lines cut off, the whole file deleted or rewritten with
recomputed hashes, entries appended with a recomputed chain) the seal shows: each append is written inside
the state store's transaction that records the new entry count and head hash, so only a crash between the
write and the commit leaves one entry beyond the seal. Entries an append finds beyond the seal are recorded
in the store before they are chained over, and ``verify`` reports them from then on: one as a warning, more
as forged. With a key (``PCNCTL_AUDIT_KEY`` or the keyring) each entry also carries an HMAC of its hash that
nobody without the key can recompute. A torn last line (a crash mid-write) is cut off by the next append,
which records that it did so. Appends take an exclusive ``flock`` so two pcnctl processes never interleave
or fork the chain. The file is ``$PCNCTL_HOME/audit.log`` (0600).

On a shared state store (PostgreSQL) the chain lives in the database instead, one row per entry holding
the entry's JSON line exactly as a file would (table ``audit_log``, chain ``shared``), written in the same
transaction as its seal, under the store's write lock: operators on several machines extend one chain.
The roles that write it may insert and never update or delete (:func:`pcnctl.state.postgres.grants`), so
what a superuser changes or deletes shows as in the file: a row edited breaks its hash, a row removed
breaks the chain or falls short of the seal. A home moved into the store (``pcnctl state migrate``) keeps
its chain whole as a chain of its own (``home:...``), verified with the others; its MACs were made with
that home's key and are not checked against the team's.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict, Unpack

from pcnctl.errors import UsageError
from pcnctl.files import private_dir
from pcnctl.state.backend import Row, Seal
from pcnctl.timespec import utcnow

GENESIS = "0" * 64
SEAL = "audit-log"
# What an append found where the log should have ended at its seal: one record each, named after the
# sealed count and the last entry found (the record holds that entry's number and the head sealed before).
UNSEALED = "audit-log:unsealed:"
SHARED_CHAIN = "shared"  # the chain a shared store's operators extend (the others were imported)


def seal_name(chain: str | None) -> str:
    """The seal of a chain: ``audit-log`` for the home's file and the shared chain, ``audit-log@CHAIN``
    for a chain imported into a shared store (its unsealed ranges add ``:unsealed:`` to either)."""
    return SEAL if chain in (None, SHARED_CHAIN) else f"{SEAL}@{chain}"


class AuditDetails(TypedDict, total=False):
    """What an entry may add to who did what: the details of some actions."""

    target_label: str  # the login or UAI of the target
    detail: str
    plan: str  # "<op>:start": the digest of the run's plan
    digest: str  # "snapshot": the digest of the snapshot
    messages: int  # "messages.purge:evidence": how many messages the bundle holds
    approved_by: str  # "<op>:start" on a four-eyes profile: the second administrator who signed the plan


class AuditEntry(AuditDetails, total=False):
    """One line of the log: who acted (identity, authentication, profile and ENT), in which incident and
    run, what on which target with which result, and the chain's own fields."""

    seq: int
    at: str
    actor: str
    auth: str
    profile: str
    url: str
    incident: str
    run: str
    action: str
    target: str
    result: str
    prev: str
    hash: str
    mac: str


def _digest(prev: str, entry: Mapping[str, object]) -> str:
    body = json.dumps(
        {k: v for k, v in entry.items() if k not in ("hash", "mac")},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256((prev + body).encode()).hexdigest()


def _mac(key: bytes, digest: str) -> str:
    return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()


def _last_entry(fd: int) -> tuple[AuditEntry | None, int]:
    """The last complete entry, and how many bytes of a torn line follow it (0 when none)."""
    size = os.lseek(fd, 0, os.SEEK_END)
    chunk = 4096
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        lines = data.split(b"\n")
        complete = lines[:-1] if start == 0 else lines[1:-1]
        torn = len(lines[-1])
        for line in reversed(complete):
            try:
                entry: AuditEntry = json.loads(line)
            except ValueError:
                torn += len(line) + 1  # a torn line in the middle is not repaired: verify reports it
                continue
            return entry, torn
        if start == 0:
            return None, torn
        chunk *= 4


class SealingStore(Protocol):
    """What the audit log needs of the state store (:class:`pcnctl.state.store.StateStore`, which opens
    it): its seals, and on a shared store the ``audit_log`` table the chain lives in."""

    @property
    def where(self) -> str: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def execute(self, sql: str, *args: Any) -> int: ...

    def rows(self, sql: str, *args: Any) -> list[Row]: ...

    def seal(self, name: str) -> Seal | None: ...

    def seals(self, prefix: str) -> list[Seal]: ...

    def set_seal(self, name: str, count: int, head: str, at: str) -> None: ...


class AuditLog:
    """The chain of one home (``chain`` None: the file at ``path``) or of a shared store (``chain``: the
    name of the chain in its ``audit_log`` table, which ``state`` must then be)."""

    def __init__(
        self,
        path: Path,
        state: SealingStore | None = None,
        key: bytes | None = None,
        *,
        chain: str | None = None,
    ) -> None:
        self.path = path
        self.state = state
        self.key = key
        self.chain = chain
        if chain is None:
            private_dir(self.path.parent)
        self._lock = threading.Lock()
        # What entries() parsed so far, and where it stopped: resume, unblock and the report look up seals
        # many times a run, and only what was appended since is read again.
        self._read: tuple[int, int] = (0, 0)  # (inode, offset) of the file; (1, last seq) of the table
        self._parsed: list[AuditEntry] = []

    @property
    def where(self) -> str:
        """What an operator is told the log is: its file, or the shared store's table."""
        if self.chain is None or self.state is None:
            return str(self.path)
        return f"{self.state.where} (audit_log)"

    def append(self, **entry: Unpack[AuditEntry]) -> AuditEntry:
        """Write one entry and seal it in the same step: the write happens inside the store's transaction
        that records the new seal, so only a crash between the two can leave an entry beyond the seal (on
        a shared store, where the entry is a row of that transaction, nothing can)."""
        with self._lock, self._sealing():
            if self.chain is not None:
                previous = self._note_unsealed(self._insert, self._last_row())
                return self._put(self._insert, previous, entry)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                previous, torn = _last_entry(fd)
                if torn:
                    os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_END) - torn)
                sink = functools.partial(_write_line, fd)
                previous = self._note_unsealed(sink, previous)
                if torn:
                    repair: AuditEntry = {
                        "action": "audit:repair",
                        "target": "audit.log",
                        "result": f"torn {torn} byte(s)",
                    }
                    previous = self._put(sink, previous, repair)
                return self._put(sink, previous, entry)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    @contextmanager
    def _sealing(self) -> Iterator[None]:
        """The store's write transaction (its own API, whatever the database), when the log is sealed."""
        if self.state is None:
            yield
            return
        with self.state.transaction():
            yield

    def _last_row(self) -> AuditEntry | None:
        """The newest readable entry of the chain in the shared store."""
        assert self.state is not None
        rows = self.state.rows(
            "SELECT body FROM audit_log WHERE chain = ? ORDER BY seq DESC LIMIT 20", self.chain
        )
        for row in rows:
            try:
                entry: AuditEntry = json.loads(row["body"])
            except ValueError:
                continue  # a row edited into nonsense: verify reports it; the chain goes on after it
            return entry
        return None

    def _insert(self, record: AuditEntry) -> None:
        assert self.state is not None
        self.state.execute(
            "INSERT INTO audit_log (chain, seq, body) VALUES (?, ?, ?)",
            self.chain,
            record["seq"],
            _line(record),
        )

    def _note_unsealed(self, sink: Sink, previous: AuditEntry | None) -> AuditEntry | None:
        """A log that does not end at the sealed head (entries beyond it, its end cut off, the file deleted
        or rewritten) is never chained over in silence: what the append found and the head sealed before
        it are recorded in the store (``verify`` reports them from then on), and an ``audit:unsealed``
        entry says so in the log. A log never sealed (written before seals existed) is adopted."""
        name = seal_name(self.chain)
        seal = self.state.seal(name) if self.state is not None else None
        last, head = (int(previous["seq"]), previous["hash"]) if previous else (0, GENESIS)
        if seal is None or (last, head) == (seal.count, seal.head):
            return previous
        assert self.state is not None
        self.state.set_seal(f"{name}:unsealed:{seal.count:09d}:{last:09d}", last, seal.head, utcnow())
        if last > seal.count:
            what = f"entries {seal.count + 1}-{last}" if last > seal.count + 1 else f"entry {last}"
            result = f"{what} unsealed"
        else:
            result = f"the log does not end at the sealed entry {seal.count}"
        note: AuditEntry = {"action": "audit:unsealed", "target": "audit.log", "result": result}
        return self._put(sink, previous, note)

    def _put(self, sink: Sink, previous: AuditEntry | None, entry: AuditEntry) -> AuditEntry:
        """Chain ``entry`` after ``previous``, hand it to ``sink`` (the file or the table) and seal it."""
        prev, seq = (previous["hash"], int(previous["seq"])) if previous else (GENESIS, 0)
        record: AuditEntry = {"seq": seq + 1, "at": utcnow(), **entry, "prev": prev}
        record["hash"] = _digest(prev, record)
        if self.key:
            record["mac"] = _mac(self.key, record["hash"])
        sink(record)
        if self.state is not None:
            self.state.set_seal(seal_name(self.chain), record["seq"], record["hash"], record["at"])
        return record

    def entries(self) -> list[AuditEntry]:
        """Every readable entry, oldest first (a torn line is skipped: :func:`verify` reports it); on a
        shared store, the chains imported into it first, then the shared one."""
        with self._lock:
            if self.chain is not None:
                return self._table_entries()
            try:
                with self.path.open("rb") as fh:
                    inode, offset = os.fstat(fh.fileno()).st_ino, self._read[1]
                    if inode != self._read[0] or os.fstat(fh.fileno()).st_size < offset:
                        self._parsed, offset = [], 0  # replaced or cut: read it all again
                    fh.seek(offset)
                    data = fh.read()
            except FileNotFoundError:
                self._read, self._parsed = (0, 0), []
                return []
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
            for line in complete.splitlines():
                try:
                    self._parsed.append(json.loads(line))
                except ValueError:
                    continue
            self._read = (inode, offset + len(complete))
            return list(self._parsed)

    def _table_entries(self) -> list[AuditEntry]:
        """The table's entries: all of them the first time, then only the shared chain's new ones (a chain
        is imported by ``state migrate`` alone, never while a run reads)."""
        assert self.state is not None
        if self._read[0]:
            sql = "SELECT seq, body FROM audit_log WHERE chain = ? AND seq > ? ORDER BY seq"
            rows = self.state.rows(sql, SHARED_CHAIN, self._read[1])
        else:
            sql = "SELECT chain, seq, body FROM audit_log ORDER BY chain = ?, chain, seq"
            rows = self.state.rows(sql, SHARED_CHAIN)
        last = self._read[1]
        for row in rows:
            try:
                self._parsed.append(json.loads(row["body"]))
            except ValueError:
                continue
            if row.get("chain", SHARED_CHAIN) == SHARED_CHAIN:
                last = int(row["seq"])
        self._read = (1, last)
        return list(self._parsed)

    def head(self) -> tuple[int, str]:
        """The sealed entry count and head hash (what an incident report prints)."""
        seal = self.state.seal(SEAL) if self.state is not None else None
        return (seal.count, seal.head) if seal else (0, GENESIS)


Sink = Callable[[AuditEntry], None]


def _line(record: AuditEntry) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _write_line(fd: int, record: AuditEntry) -> None:
    os.write(fd, (_line(record) + "\n").encode())


def readable_log(path: Path) -> Path:
    """``path`` when it is a regular file this user can read, else a :class:`UsageError` saying what it is
    (a directory, nothing, a device) and what to give instead."""
    hint = "give the audit log file itself, e.g. $PCNCTL_HOME/audit.log (or a copy of it)"
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not an audit log", hint=hint)
    if not path.exists():
        raise UsageError(f"{path} does not exist", hint=hint)
    if not path.is_file():
        raise UsageError(f"{path} is not a regular file", hint=hint)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", hint=hint) from None
    return path


@dataclass(frozen=True, slots=True)
class Verification:
    entries: int
    ok: bool
    line: int | None = None
    problem: str = ""
    warnings: tuple[str, ...] = ()
    sealed: int | None = None  # the entry count the state store recorded, if it has a seal


@dataclass
class _Walk:
    key: bytes | None = None  # the key the MACs are checked with (None: not checked)
    prev: str = GENESIS
    seq: int = 0
    count: int = 0
    unsigned: int = 0
    signed: bool = False
    foreign: int = 0  # entries with a MAC that no key here checks
    warnings: list[str] = field(default_factory=list)
    hashes: dict[int, str] = field(default_factory=dict)  # the hash of each entry, by sequence number
    lines: dict[int, int] = field(default_factory=dict)  # the line of each entry, by sequence number


def verify(log: AuditLog) -> Verification:
    """Recompute the chain and the MACs; compare the end with the seal; report the first problem."""
    if log.chain is not None:
        return _verify_table(log)
    seal = log.state.seal(SEAL) if log.state is not None else None
    sealed = seal.count if seal else None
    if not log.path.exists():
        if seal and seal.count:
            return Verification(
                0, False, 1, f"the audit log is gone: {seal.count} entries were sealed", (), sealed
            )
        return Verification(0, True, sealed=sealed)
    walk = _Walk(key=log.key)
    found = _walk_chain(log, walk, log.path.read_bytes().split(b"\n"), SEAL, torn_last=True)
    if found is not None:
        line, problem = found
        return Verification(walk.count, False, line, problem, tuple(walk.warnings), sealed)
    return Verification(walk.count, True, warnings=tuple(walk.warnings), sealed=sealed)


def _walk_chain(
    log: AuditLog, walk: _Walk, lines: list[bytes], seal: str, *, torn_last: bool
) -> tuple[int, str] | None:
    """Walk one chain's lines; the line and problem of the first fault, None when it holds and agrees
    with its seal (and the ranges appends found beyond it)."""
    for number, raw in enumerate(lines, start=1):
        if not raw:
            continue
        problem = _check_line(walk, raw, last=torn_last and number == len(lines))
        if problem == "torn":
            walk.warnings.append(
                f"line {number}: torn last line (an interrupted write), cut off at the next append"
            )
            continue
        if problem:
            return number, problem
        walk.hashes[walk.seq], walk.lines[walk.seq] = walk.prev, number
    if walk.unsigned:
        walk.warnings.append(f"{walk.unsigned} entries carry no MAC (written without the key)")
    sealed = log.state.seal(seal) if log.state is not None else None
    return _against_seals(log, walk, sealed, seal) if sealed is not None else None


def _verify_table(log: AuditLog) -> Verification:
    """Every chain of a shared store: those imported from homes first, then the shared one. A fault is
    told at its place in that order (its "line"), naming the imported chain it is in."""
    assert log.state is not None
    imported = {str(r["chain"]): str(r["home"]) for r in log.state.rows("SELECT chain, home FROM imports")}
    names = {str(r["chain"]) for r in log.state.rows("SELECT DISTINCT chain FROM audit_log")}
    chains = [*sorted((names | set(imported)) - {SHARED_CHAIN}), SHARED_CHAIN]
    total, before, sealed_total = 0, 0, None
    warnings: list[str] = []
    for chain in chains:
        label = "" if chain == SHARED_CHAIN else f"the chain imported from {imported.get(chain, chain)}: "
        seal = log.state.seal(seal_name(chain))
        if seal is not None:
            sealed_total = (sealed_total or 0) + seal.count
        rows = log.state.rows("SELECT body FROM audit_log WHERE chain = ? ORDER BY seq", chain)
        if not rows and seal is not None and seal.count:
            gone = f"{label}the audit log is gone: {seal.count} entries were sealed"
            return Verification(total, False, before + 1, gone, tuple(warnings), sealed_total)
        walk = _Walk(key=log.key if chain == SHARED_CHAIN else None)
        found = _walk_chain(
            log, walk, [str(r["body"]).encode() for r in rows], seal_name(chain), torn_last=False
        )
        warnings += [label + w for w in walk.warnings]
        if walk.foreign and chain != SHARED_CHAIN:
            warnings.append(f"{label}{walk.foreign} entries carry MACs of that home's key, not checked here")
        total += walk.count
        if found is not None:
            return Verification(
                total, False, before + found[0], label + found[1], tuple(warnings), sealed_total
            )
        before += len(rows)
    return Verification(total, True, warnings=tuple(warnings), sealed=sealed_total)


def _against_seals(log: AuditLog, walk: _Walk, seal: Seal, name: str) -> tuple[int, str] | None:
    """Compare an intact chain with what the store sealed: the end cut off, the sealed head rewritten,
    entries beyond the seal now or found beyond it by an earlier append. One entry beyond is what a crash
    between a write and its seal leaves (a warning); more were written around pcnctl (tampering)."""
    after = walk.count + 1
    if walk.seq < seal.count:
        cut = f"the log ends at entry {walk.seq}, but {seal.count} entries were sealed: its end was cut off"
        return after, cut
    if walk.hashes.get(seal.count, GENESIS) != seal.head:
        rewritten = "the entry sealed last is not the one in the log: it was rewritten"
        return walk.lines.get(seal.count, after), rewritten
    assert log.state is not None
    prefix = f"{name}:unsealed:"
    ranges = [(int(r.name[len(prefix) :].split(":")[0]), r.count, r.head) for r in log.state.seals(prefix)]
    for start, end, head in [*sorted(ranges), (seal.count, walk.seq, seal.head)]:
        if end < start:
            cut = f"the log was cut back to entry {end} after entry {start} was sealed"
            return walk.lines.get(end + 1, after), cut
        if walk.hashes.get(start, GENESIS) != head:
            return walk.lines.get(start, after), f"entry {start} was rewritten after it was sealed"
        current = end == walk.seq and start == seal.count
        if end - start > 1:
            when = "after the last seal" if current else "beyond the seal, found by a later append"
            return walk.lines[start + 1], f"entries {start + 1}-{end} were written {when}: forged entries"
        if end - start == 1:
            walk.warnings.append(
                f"entry {end} is not sealed yet (an append in progress, or a crash before its seal)"
                if current
                else f"entry {end} was written but never sealed (a crash between its write and its seal)"
            )
    return None


def _check_line(walk: _Walk, raw: bytes, *, last: bool) -> str:
    try:
        entry = json.loads(raw)
    except ValueError:
        return "torn" if last else "not valid JSON"
    if not isinstance(entry, dict):
        return "not an audit entry"
    if entry.get("prev") != walk.prev:
        return "does not chain to the previous entry"
    if entry.get("seq") != walk.seq + 1:
        return f"sequence {entry.get('seq')} after {walk.seq}"
    if entry.get("hash") != _digest(walk.prev, entry):
        return "content changed after it was written"
    if walk.key is not None:
        if "mac" not in entry:
            if walk.signed:
                return "no MAC after signed entries: the entry was forged"
            walk.unsigned += 1
        elif not hmac.compare_digest(entry["mac"], _mac(walk.key, entry["hash"])):
            return "its MAC does not match the key: the entry was forged"
        else:
            walk.signed = True
    elif "mac" in entry:
        walk.foreign += 1
    walk.prev, walk.seq, walk.count = entry["hash"], entry["seq"], walk.count + 1
    return ""
