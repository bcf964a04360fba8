"""Evidence for the complaint: the messages in full, how they were found, who collected them, hashed.

A bundle is a directory in the incident (``evidence/<time>-<n>/``) holding ``messages.jsonl`` (one message a
line: content, sender, recipients and their schools, dates, mailbox copies with each copy's read flag and
the time the copies were read, attachment metadata),
``query.json`` (the search that found them, the ENT and the profile) and ``manifest.json`` (SHA-256 of each
file, message count, operator, identity and authentication mode, tool version, UTC times), itself hashed in
``manifest.sha256``. Files are 0600. ``pcnctl incident verify`` recomputes every hash.

A bundle is written in a ``.partial-`` directory and renamed when its manifest is complete, so an
interrupted collection never leaves a bundle that looks finished (nor an empty one that fails every later
check). The manifest's hash is then sealed in the state store: deleting a bundle, or rewriting a manifest
together with its ``manifest.sha256``, is detected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pcnctl import __version__
from pcnctl.files import write_private
from pcnctl.forensics.mailstore import CHUNK, Mailbox, Mailstore, StoredMessage
from pcnctl.models import Identity
from pcnctl.progress import progress_bar
from pcnctl.records import JsonObject, Row
from pcnctl.state.incidents import Incident
from pcnctl.state.store import StateStore
from pcnctl.timespec import iso, utcnow

PARTIAL = ".partial-"


def _seal_name(incident: Incident, bundle: str) -> str:
    return f"evidence:{incident.id}/{bundle}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def collect(
    state: StateStore,
    incident: Incident,
    store: Mailstore,
    message_ids: Sequence[str],
    *,
    query: JsonObject,
    identity: Identity,
    profile: str,
    url: str,
    recipient_schools: dict[str, dict[str, list[str]]] | None = None,
    sender_schools: dict[str, list[str]] | None = None,
    progress: bool = False,
) -> tuple[Path, int]:
    """Write a bundle for the messages still in the mailstore; returns its path and how many it holds.
    It is written in a ``.partial-`` directory renamed when complete, then sealed in the state store."""
    started = utcnow()
    final, bundle = _new_bundle(incident.subdir("evidence"))
    copies = store.mailboxes(list(message_ids))
    # Who had opened the threat, read now: the purge removes the copies and their flags with them.
    flags, read_at = unread_flags(store, message_ids), utcnow()
    lines = []
    with progress_bar(len(message_ids), "evidence", enabled=progress) as advance:
        for message_id in message_ids:
            advance(1)
            message = store.get(message_id)
            if message is not None:
                held = copies.get(message.id, [])
                record = _record(message, held, store.attachments(message.id), flags.get(message.id, {}))
                record["collected_at"] = read_at
                record["recipient_schools"] = (recipient_schools or {}).get(message.id, {})
                record["from_schools"] = (sender_schools or {}).get(message.id, [])
                lines.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    write_private(bundle / "messages.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    write_private(
        bundle / "query.json",
        json.dumps({"query": query, "profile": profile, "url": url}, indent=1, ensure_ascii=False) + "\n",
    )
    manifest = {
        "files": {name: _sha256(bundle / name) for name in ("messages.jsonl", "query.json")},
        "messages": len(lines),
        "incident": incident.id,
        "operator": identity.label,
        "identity": identity.to_row(),
        "tool": f"pcnctl {__version__}",
        "mailstore": store.kind,
        "started_at": started,
        "completed_at": utcnow(),
    }
    write_private(bundle / "manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    head = _sha256(bundle / "manifest.json")
    write_private(bundle / "manifest.sha256", f"{head}  manifest.json\n")
    bundle.rename(final)
    state.set_seal(_seal_name(incident, final.name), len(lines), head, str(manifest["completed_at"]))
    return final, len(lines)


def _new_bundle(root: Path) -> tuple[Path, Path]:
    """A bundle's final name (UTC time and a counter) and the ``.partial-`` directory it is written in."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    n = 1
    while (root / f"{stamp}-{n}").exists() or (root / f"{PARTIAL}{stamp}-{n}").exists():
        n += 1
    final = root / f"{stamp}-{n}"
    bundle = root / f"{PARTIAL}{final.name}"
    bundle.mkdir(mode=0o700)
    return final, bundle


def _record(
    message: StoredMessage,
    copies: Sequence[Mailbox],
    attachments: list[JsonObject],
    unread: Mapping[str, bool],
) -> JsonObject:
    """One message as the bundle keeps it: content, recipients, every mailbox that holds a copy and
    whether that copy was still unread (absent when the copy appeared after the flags were read)."""
    return {
        "id": message.id,
        "date": iso(datetime.fromtimestamp(message.date / 1000, UTC)),
        "date_ms": message.date,
        "from": message.sender,
        "from_name": message.sender_name,
        "subject": message.subject,
        "body": message.body,
        "to": message.to,
        "cc": message.cc,
        "cci": message.cci,
        "state": message.state,
        "mailboxes": [_copy(b, unread) for b in copies],
        "groups": message.group_names,
        "recipients": message.recipients,
        "attachments": attachments,
    }


def _copy(box: Mailbox, unread: Mapping[str, bool]) -> JsonObject:
    copy: JsonObject = {"user": box.user, "folder": box.folder}
    if box.user in unread:
        copy["unread"] = unread[box.user]
    return copy


def unread_flags(store: Mailstore, message_ids: Sequence[str]) -> dict[str, dict[str, bool]]:
    """Message id -> {holder: unread} for every copy present: ``usermessages.unread``, true until the
    holder opens the message (see :mod:`pcnctl.forensics.exposure` for what sets and clears it)."""
    out: dict[str, dict[str, bool]] = {}
    ids = list(message_ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = store.query(
            "SELECT message_id, user_id, unread FROM conversation.usermessages"
            f" WHERE message_id IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        for message_id, user_id, unread in rows:
            out.setdefault(str(message_id), {})[str(user_id)] = bool(unread)
    return out


@dataclass(frozen=True)
class BundleCheck:
    bundle: str
    file: str
    ok: bool
    problem: str = ""

    def to_row(self) -> Row:
        return {"bundle": self.bundle, "file": self.file, "ok": self.ok, "problem": self.problem}


def verify(state: StateStore, incident: Incident) -> list[BundleCheck]:
    """Recompute every hash of every evidence bundle of the incident, and compare with the seals."""
    root = incident.path / "evidence"
    checks: list[BundleCheck] = []
    sealed = {s.name.rsplit("/", 1)[1]: s for s in state.seals(_seal_name(incident, ""))}
    present = sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []
    for name in sorted(set(sealed) - {p.name for p in present}):
        checks.append(BundleCheck(name, "(bundle)", False, "bundle deleted after it was sealed"))
    for bundle in present:
        if bundle.name.startswith(PARTIAL):
            continue  # an interrupted collection: never part of the evidence (purge collects again)
        checks += _check_bundle(bundle, sealed.get(bundle.name))
    return checks


def _check_bundle(bundle: Path, seal: Any) -> list[BundleCheck]:
    name = bundle.name
    try:
        expected = (bundle / "manifest.sha256").read_text().split()[0]
        manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, IndexError):
        return [BundleCheck(name, "manifest", False, "manifest missing or unreadable")]
    actual = _sha256(bundle / "manifest.json")
    problem = "" if actual == expected else "manifest changed after it was written"
    if not problem and seal is not None and seal.head != actual:
        problem = "manifest rewritten: its hash is not the one sealed when the bundle was written"
    checks = [BundleCheck(name, "manifest.json", not problem, problem)]
    files: dict[str, str] = manifest.get("files", {})
    for file, digest in files.items():
        path = bundle / file
        if not path.exists():
            checks.append(BundleCheck(name, file, False, "file missing"))
            continue
        ok = _sha256(path) == digest
        checks.append(BundleCheck(name, file, ok, "" if ok else "content changed after it was written"))
    return checks + _planted(bundle, set(files))


def _planted(bundle: Path, listed: set[str]) -> list[BundleCheck]:
    """Anything in a bundle that its manifest does not list was put there afterwards: a bundle is written
    whole in its ``.partial-`` directory, so every file it holds is hashed in the manifest or is the
    manifest's own hash."""
    known = listed | {"manifest.json", "manifest.sha256"}
    extra = sorted(p for p in bundle.iterdir() if p.name not in known or not p.is_file())
    problem = "not in the manifest: added after the bundle was sealed"
    return [BundleCheck(bundle.name, p.name + ("/" if p.is_dir() else ""), False, problem) for p in extra]


def verified_ids(state: StateStore, incident: Incident) -> set[str]:
    """Message ids held by bundles whose hashes all check out (an evidence gap is a purge outside them)."""
    bad = {c.bundle for c in verify(state, incident) if not c.ok}
    ids: set[str] = set()
    root = incident.path / "evidence"
    if not root.exists():
        return ids
    for bundle in root.iterdir():
        usable = not bundle.name.startswith(PARTIAL) and bundle.name not in bad
        if bundle.is_dir() and usable and (bundle / "messages.jsonl").exists():
            for line in (bundle / "messages.jsonl").read_text(encoding="utf-8").splitlines():
                ids.add(json.loads(line)["id"])
    return ids
