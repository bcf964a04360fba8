"""The audit checks. Each returns a :class:`Finding`: a severity, a count, and the rows behind it.

* ``mass_senders``: accounts that sent to many people, fast, or from several IPs (event store; mailstore);
* ``watchlist``: new messages matching threat patterns (French default list, case and accent insensitive)
  or near-duplicates of the threats preserved in past incidents;
* ``blocks``: messaging blocks in force, their age and incident, expiry passed;
* ``drift``: what an open incident blocked or purged and is no longer so (accounts unblocked, member links or
  relations restored outside pcnctl, purged messages back in mailboxes);
* ``evidence``: purges whose messages are in no verified evidence bundle;
* ``health``: latency and errors of the key routes, throttling and quota answers;
* ``watch``: the watcher's heartbeat on this ENT (``pcnctl watch``): a watcher that stopped beating pages
  nobody, so a stale one is critical.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pcnctl.ent.platform import EntDriver
from pcnctl.forensics import evidence
from pcnctl.forensics.mailstore import STATES, Mailstore, Scan, StoredMessage
from pcnctl.forensics.search import Directory, shingles, similarity, visible
from pcnctl.models import fold
from pcnctl.ops import intent, messaging_cut
from pcnctl.ops.messaging_verify import prior_of
from pcnctl.ops.purge import PURGE
from pcnctl.records import JsonObject, Row
from pcnctl.state import blocks as registry
from pcnctl.state.incidents import list_incidents
from pcnctl.state.journal import done_keys, read
from pcnctl.state.store import StateStore, ent_key
from pcnctl.timespec import iso

SEVERITIES = ("ok", "info", "warning", "critical")
# Threat patterns, written without accents: messages are folded (accents, case) before matching. Each needs
# a threat in context ("bombe" alone would catch a history homework on the atomic bomb).
DEFAULT_WATCHLIST: tuple[tuple[str, str], ...] = (
    (
        "bomb threat",
        r"\b(bombe|explosif|engin)\b[^.!?]{0,100}[.!?\s]*[^.!?]{0,100}\b(explos\w*|evacu\w*|"
        r"mort\w*|tuer|sauter)\b",
    ),
    (
        "blow up the school",
        r"\b(faire sauter|exploser|bruler) (l'|le |la |votre )?(college|lycee|ecole|"
        r"etablissement)",
    ),
    ("attack", r"\b(attentat|tuerie|fusillade|massacre)\b"),
    ("kill threat", r"\b(je vais|on va|nous allons) (tous )?(vous )?(tuer|egorger|decapiter|abattre)\b"),
    (
        "weapon at school",
        r"\b(arme|kalach\w*|pistolet|couteau)s? (dans|a) (l'|le |la )?(college|lycee|ecole|"
        r"etablissement)",
    ),
)


@dataclass
class Finding:
    check: str
    severity: str
    count: int
    summary: str
    rows: list[Row] = field(default_factory=list)
    columns: tuple[str, ...] = ()
    # The numbers the summary is made of, so that each language words it with its own plurals
    # (pcnctl.reports.audit.render); ``summary`` is the English for machines and logs.
    facts: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> JsonObject:
        return {
            "check": self.check,
            "severity": self.severity,
            "count": self.count,
            "summary": self.summary,
            "rows": self.rows,
        }


@dataclass
class Thresholds:
    mass_messages: int = 20
    mass_recipients: int = 40
    mass_rate: float = 5.0
    max_ips: int = 2
    similarity: float = 0.4
    latency_ms: float = 1500.0


@dataclass
class AuditEnv:
    driver: EntDriver
    mailstore: Mailstore | None
    since_ms: int
    until_ms: int
    thresholds: Thresholds
    watchlist: tuple[tuple[str, str], ...] = DEFAULT_WATCHLIST
    state: StateStore | None = None

    @property
    def store(self) -> StateStore:
        if self.state is None:  # pragma: no cover - every caller passes the home's store
            raise ValueError("an audit needs the state store")
        return self.state

    @property
    def ent(self) -> str:
        return ent_key(self.driver.profile.url)


def load_watchlist(path: Any) -> tuple[tuple[str, str], ...]:
    """``name: regular expression`` per line (``#`` comments); patterns apply to accent-folded text. A
    pattern that can backtrack for ever is refused here, before the audit reads anything."""
    from pcnctl.errors import UsageError

    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, pattern = line.partition(":")
        if not sep or not pattern.strip():
            raise UsageError(f"{path}:{number}: expected 'name: regular expression'")
        entries.append((name.strip(), pattern.strip()))
        try:
            check_watchlist(entries[-1:])
        except UsageError as exc:
            raise UsageError(f"{path}:{number}: {exc.message}", hint=exc.hint) from None
    if not entries:
        raise UsageError(f"{path} holds no pattern")
    return tuple(entries)


def check_watchlist(entries: Iterable[tuple[str, str]]) -> None:
    """Each pattern compiles and cannot backtrack for ever (the watchlist reads every new message)."""
    from pcnctl.forensics.patterns import check_regex

    for name, pattern in entries:
        check_regex(pattern, flags=re.IGNORECASE, label=f"regular expression of {name!r}")


def _open_incidents(env: AuditEnv) -> list[Any]:
    return [i for i in list_incidents(env.store) if i.status == "open"]


def mass_senders(env: AuditEnv) -> Finding:
    from pcnctl.forensics.senders import Thresholds as SenderThresholds
    from pcnctl.forensics.senders import senders

    t = env.thresholds
    rows = senders(
        env.driver,
        env.since_ms,
        env.until_ms,
        store=env.mailstore,
        thresholds=SenderThresholds(t.mass_messages, t.mass_recipients, t.mass_rate),
    )
    for row in rows:
        ips = row["ips"]  # the account's IPs, a list of texts
        if isinstance(ips, list) and len(ips) > t.max_ips:
            row["mass"] = True
            row["why"] = ", ".join(filter(None, [str(row["why"]), f"{len(ips)} IPs"]))
    flagged = [r for r in rows if r["mass"]]
    return Finding(
        "mass_senders",
        "critical" if flagged else "ok",
        len(flagged),
        f"{len(flagged)} account(s) sending in bulk among {len(rows)} sender(s)",
        flagged,
        ("login", "profile", "schools", "messages", "recipients", "per_minute", "ips", "why"),
        facts={"flagged": len(flagged), "senders": len(rows)},
    )


def watchlist(env: AuditEnv) -> Finding:
    if env.mailstore is None:
        return Finding(
            "watchlist",
            "info",
            0,
            "no mailstore configured: threat watchlist not checked",
            facts={"unchecked": 1},
        )
    hits, drafts = _watchlist_hits(env, env.mailstore, _templates(env.store))
    people = Directory(env.driver)  # fromName is NULL on the platform's send path
    people.load([m.sender for m, _hit, _like in hits if not m.sender_name])
    rows: list[Row] = [
        {
            "id": message.id,
            "date": iso(datetime.fromtimestamp(message.date / 1000, UTC)),
            "date_ms": message.date,
            "state": message.state,
            "from": message.sender,
            "from_name": message.sender_name or people.name(message.sender),
            "subject": message.subject,
            "recipients": len(message.recipients),
            "pattern": hit,
            "like_incident": like,
        }
        for message, hit, like in hits
    ]
    summary = f"{len(rows)} new message(s) match the threat watchlist or a past template"
    scheduled = sum(1 for r in rows if r["state"] == "SCHEDULE")
    if scheduled:
        summary += f", {scheduled} of them scheduled (not delivered yet)"
    if drafts:
        summary += f"; also matching, left out: {drafts} draft (never sent)"
    return Finding(
        "watchlist",
        "critical" if rows else "ok",
        len(rows),
        summary,
        rows,
        ("date", "from_name", "subject", "recipients", "pattern", "like_incident"),
        facts={"hits": len(rows), "scheduled": scheduled, "drafts": drafts},
    )


def _templates(store: StateStore) -> list[tuple[str, set[tuple[str, str]]]]:
    """The threats of past incidents (the first messages of each evidence bundle), as word pairs."""
    templates = []
    for incident in list_incidents(store):
        root = incident.path / "evidence"
        for path in sorted(root.glob("*/messages.jsonl")) if root.exists() else []:
            for line in path.read_text(encoding="utf-8").splitlines()[:20]:
                m = json.loads(line)
                templates.append((incident.id, shingles(m["subject"] + " " + m["body"])))
    return templates


def _watchlist_hits(
    env: AuditEnv, store: Mailstore, templates: list[tuple[str, set[tuple[str, str]]]]
) -> tuple[list[tuple[StoredMessage, str, str]], int]:
    """The new messages a pattern matches or that are like a past threat: (message, pattern, incident).
    As messages search does: sent, recalled and scheduled messages (a scheduled threat is delivered
    later), recipients from the copies; drafts (never sent) are read by the same query and only counted
    (the second value)."""
    patterns = [(name, re.compile(p, re.IGNORECASE)) for name, p in env.watchlist]
    found: dict[str, tuple[str, str]] = {}

    def matched() -> Iterator[StoredMessage]:
        for message in store.iter_messages(Scan(env.since_ms, env.until_ms, states=STATES)):
            text = fold(message.subject + " " + visible(message.body))
            hit = next((name for name, p in patterns if p.search(text)), None)
            like = _like(env, templates, message)
            if hit or like:
                found[message.id] = (hit or "", like or "")
                yield message

    hits, drafts = [], 0
    for message in store.with_copies(matched()):  # the copies of the hits only
        if message.state == "DRAFT":
            drafts += 1
        else:
            hits.append((message, *found[message.id]))
    return hits, drafts


def _like(env: AuditEnv, templates: list[tuple[str, set[tuple[str, str]]]], message: StoredMessage) -> str:
    """The past incident whose threat the message is like (with the similarity), or ''."""
    if not templates:
        return ""
    mine = shingles(message.subject + " " + message.body)
    best = max(((similarity(mine, t), inc) for inc, t in templates), default=(0.0, ""))
    return f"{best[1]} ({best[0]:.2f})" if best[0] >= env.thresholds.similarity else ""


def blocks(env: AuditEnv) -> Finding:
    now = datetime.now(UTC)
    rows: list[Row] = []
    for b in registry.listed(env.store, env.ent):
        since = datetime.fromisoformat(b.since.replace("Z", "+00:00"))
        rows.append(
            {
                **b.status_row(now),
                "kind": f"messaging ({b.method})",
                "age_hours": round((now - since).total_seconds() / 3600, 1),
            }
        )
    wanted = intent.wanted_blocked(env.store, env.ent)
    for incident in _open_incidents(env):
        opened = datetime.fromisoformat(incident.opened_at.replace("Z", "+00:00"))
        mine = sorted(a for a, held in wanted.by_account.items() if incident.id in held)
        for user_id in mine:
            rows.append(
                {
                    "school": "",
                    "profile": "",
                    "kind": "account",
                    "method": "login",
                    "target": user_id,
                    "since": incident.opened_at,
                    "by": incident.opened_by,
                    "incident": incident.id,
                    "until": None,
                    "expired": False,
                    "age_hours": round((now - opened).total_seconds() / 3600, 1),
                }
            )
    expired = [r for r in rows if r["expired"]]
    severity = "warning" if expired else ("info" if rows else "ok")
    return Finding(
        "blocks",
        severity,
        len(rows),
        f"{len(rows)} block(s) in force (messaging and accounts), {len(expired)} past their expiry",
        rows,
        ("kind", "school", "target", "profile", "since", "age_hours", "by", "incident", "until", "expired"),
        facts={"blocks": len(rows), "expired": len(expired)},
    )


def drift(env: AuditEnv) -> Finding:
    """Changes undone behind the incidents' back: accounts unblocked, purged messages back, blocks lifted."""
    rows: list[Row] = []
    wanted = intent.wanted_blocked(env.store, env.ent)
    for incident in _open_incidents(env):
        runs = read(env.store, incident.id, ent=env.ent)
        rows += _unblocked(env, incident.id, wanted)
        purged = sorted(done_keys(runs, PURGE.name))
        if purged and env.mailstore is not None:
            back = {k: v for k, v in env.mailstore.mailboxes(purged).items() if v}
            rows += [
                {
                    "incident": incident.id,
                    "kind": "purged message back in mailboxes",
                    "target": k,
                    "detail": f"{len(v)} copies",
                }
                for k, v in back.items()
            ]
    for b in registry.active_blocks(env.store, env.ent):
        row = _lifted(env, b)
        if row is not None:
            rows.append(row)
    return Finding(
        "drift",
        "critical" if rows else "ok",
        len(rows),
        f"{len(rows)} change(s) undone behind the incident's back",
        rows,
        ("incident", "kind", "target", "detail"),
        facts={"changes": len(rows)},
    )


def _unblocked(env: AuditEnv, incident: str, wanted: intent.Intent) -> list[Row]:
    """Accounts the incident wants blocked (blocked or found blocked, not released) that are not."""
    from pcnctl.errors import PcnError

    rows: list[Row] = []
    for user_id in sorted(a for a, held in wanted.by_account.items() if incident in held):
        try:
            user = env.driver.get_user(user_id)
        except PcnError:  # a deleted or unreachable account is reported elsewhere, not as drift
            continue
        if not user.blocked:
            kind = "account unblocked outside pcnctl"
            rows.append(
                {"incident": incident, "kind": kind, "target": user.login, "detail": ", ".join(user.schools)}
            )
    return rows


def _lifted(env: AuditEnv, b: registry.Block) -> Row | None:
    """A messaging block in force in the records that the ENT no longer applies, re-read as the
    verification does (every group a communication block cut; the Messagerie role of a roles block)."""
    if b.method == "communication":
        cut = messaging_cut.CutPlan.from_json(prior_of(env.store, b))
        reopened = [
            (name, seen) for name, _want, seen, ok in messaging_cut.check_cut(env.driver, cut) if not ok
        ]
        if reopened:
            detail = "; ".join(f"{name}: {seen}" for name, seen in reopened[:3])
            kind = "communication restored outside pcnctl"
            return {"incident": b.incident, "kind": kind, "target": b.uai, "detail": detail}
    elif b.method == "roles" and any(b.group in r.groups for r in env.driver.messaging_roles(b.school_id)):
        kind = "Messagerie role restored outside pcnctl"
        return {"incident": b.incident, "kind": kind, "target": b.uai, "detail": b.profile}
    return None


def evidence_gaps(env: AuditEnv) -> Finding:
    rows: list[Row] = []
    gaps = 0
    for incident in list_incidents(env.store):
        runs = read(env.store, incident.id, ent=env.ent)
        purged = done_keys(runs, PURGE.name)
        if not purged:
            continue
        covered = evidence.verified_ids(env.store, incident)
        missing = purged - covered
        if missing:
            gaps += len(missing)
            rows.append(
                {
                    "incident": incident.id,
                    "purged": len(purged),
                    "without_evidence": len(missing),
                    "example": sorted(missing)[0],
                }
            )
    return Finding(
        "evidence",
        "critical" if rows else "ok",
        gaps,
        f"{len(rows)} incident(s) purged messages with no verified evidence",
        rows,
        ("incident", "purged", "without_evidence", "example"),
        facts={"incidents": len(rows), "messages": gaps},
    )


def health(env: AuditEnv) -> Finding:
    http = env.driver.http
    samples = [(s, round(sorted(s.times_ms)[-1], 1)) for s in env.driver.health()]  # (sample, p95)
    rows: list[Row] = [
        {
            "route": sample.route,
            "median_ms": round(statistics.median(sample.times_ms), 1),
            "p95_ms": p95,
            "errors": sample.errors,
        }
        for sample, p95 in samples
    ]
    throttled = {s: http.stats.statuses[s] for s in (429, 503, 509) if http.stats.statuses[s]}
    slow = [s for s, p95 in samples if p95 > env.thresholds.latency_ms]
    failing = [s for s, _p95 in samples if s.errors]
    severity = "critical" if failing else ("warning" if slow or throttled else "ok")
    summary = (
        f"{len(failing)} route(s) failing, {len(slow)} slow (p95 > {env.thresholds.latency_ms:g} ms)"
        + (f", throttled: {throttled}" if throttled else "")
    )
    return Finding(
        "health",
        severity,
        len(failing) + len(slow),
        summary,
        rows,
        ("route", "median_ms", "p95_ms", "errors"),
        facts={
            "failing": len(failing),
            "slow": len(slow),
            "latency_ms": env.thresholds.latency_ms,
            **{f"throttled_{status}": n for status, n in throttled.items()},
        },
    )


def watcher(env: AuditEnv) -> Finding:
    """The watcher's heartbeat: alive, stopped, stale, or never run (a warning only when the profile names
    on-call channels or a response policy, which only a watcher uses)."""
    import time

    from pcnctl.watch.state import heartbeat

    profile = env.driver.profile
    beat = heartbeat(env.store, env.ent)
    expected = bool(profile.page_to or profile.page_webhook or profile.policy)
    now = int(time.time() * 1000)
    if beat is None:
        summary = "no watcher has run on this ENT" + (
            " though the profile pages on-call channels" if expected else ""
        )
        facts = {"never": 1.0, "expected": float(expected)}
        return Finding("watch", "warning" if expected else "ok", int(expected), summary, facts=facts)
    row: Row = {
        "watcher": beat.holder,
        "status": beat.status,
        "last_beat": beat.beat_at,
        "age_s": round(beat.age_s(now), 1),
        "cycles": beat.cycle,
        "detail": beat.detail,
    }
    if beat.status == "stopped":
        severity, summary = "warning", f"the watcher was stopped at {beat.beat_at}: nobody is paged"
        facts = {"stopped": 1.0}
    elif beat.stale(now):
        severity, summary = (
            "critical",
            f"the watcher has not beaten for {beat.age_s(now):.0f} s: nobody is paged",
        )
        facts = {"stale_s": beat.age_s(now)}
    else:
        trouble = beat.status not in ("ok", "slow")
        severity, summary = ("warning" if trouble else "ok"), f"the watcher is alive ({beat.status})"
        facts = {"trouble": float(trouble)}
    return Finding(
        "watch",
        severity,
        int(severity != "ok"),
        summary,
        [row],
        ("watcher", "status", "last_beat", "age_s", "detail"),
        facts=facts,
    )


CHECKS = {
    "mass_senders": mass_senders,
    "watchlist": watchlist,
    "blocks": blocks,
    "drift": drift,
    "evidence": evidence_gaps,
    "health": health,
    "watch": watcher,
}
