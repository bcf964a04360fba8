"""``pcnctl hunt``: every account the attacker holds, grown from what the operator already knows.

Seeds are what an operator has during a wave: threat message ids, a saved search, sender accounts, IP
addresses, user agents. The event store (``GET /infra/v2/event/list``, read only) gives, for the window, the
auth module's ``LOGIN``, ``ACTIVATION`` and ``SMS`` events and the conversation module's ``CREATE`` events,
each with the account, ``ip`` and ``ua``. An account that used a trace of a seed (an address, an agent) is
linked to it; once it is a suspect its own traces link further accounts, round after round, until a round
finds nobody new.

Ordinary traffic must not look like the attacker: a school network's address is shared by hundreds of
pupils. So a trace weighs ``1 / (1 + n)``, ``n`` being the ordinary accounts seen with it in a baseline
window just before the incident (the attacker's new addresses weigh 1, a school proxy almost nothing).
That only works if the baseline saw the ordinary traffic: a baseline with too few ordinary accounts for
the window (:func:`check_baseline`) is refused rather than letting every shared address weigh 1.

Addresses are compared as the client's hop of the raw ``X-Forwarded-For`` the event store holds (the
profile's ``trusted_proxies``, :func:`pcnctl.forensics.events.client_hop`): the same machine behind the
same proxies is one trace, whatever the client wrote into the header before them.
Corroboration (a send, a first login from a new device before a send, an activation or SMS, a forward of
the threat) adds at most ``CORROBORATION`` to an account that has a link, never to one that has none; a
suspect needs ``min_score`` (1 by default). docs/hunt.md explains the rule with examples.

The platform records no password change in the event store (only ``ACTIVATION`` when an account is
activated): that trace is the activation. Nothing here writes: the result feeds ``accounts block
--from-file`` and the playbook operation ``hunt``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcnctl.ent.platform import EntDriver
from pcnctl.errors import AuthError, PermissionDeniedError, RefusedError, UsageError
from pcnctl.forensics.events import canonical, iter_events
from pcnctl.forensics.mailstore import Mailstore, Scan
from pcnctl.models import PlatformEvent
from pcnctl.records import JsonObject, Row
from pcnctl.timespec import iso

if TYPE_CHECKING:
    from pcnctl.playbooks.params import StepParams

WINDOW_TYPES = ("LOGIN", "ACTIVATION", "SMS", "CREATE")
CORROBORATION = 0.5  # the most that corroboration adds to a linked account
NEW_DEVICE_MS = 30 * 60 * 1000  # a first login from a new device counts when a send follows within this
BURST_MS = 10 * 60 * 1000  # logins of distinct accounts through one trace within this are a burst
FORWARD_SIMILARITY = 0.4
BONUS = {"send": 0.5, "new-device": 0.5, "activation": 0.5, "sms": 0.25, "forward": 0.5}
SEED_KINDS = ("message", "search", "account", "ip", "ua")
SEED_REASONS = 3  # seed reasons listed per account
# A baseline must have seen one ordinary account for every BASELINE_SHARE accounts active in the window:
# below that, most of the window's shared addresses were never seen before and each weighs as if new.
BASELINE_SHARE = 4

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Seed:
    kind: str  # message | search | account | ip | ua
    value: str
    account: str | None = None  # the account it names (a message's or a search's sender, an account)

    @property
    def label(self) -> str:
        return f"{self.kind} {_short(self.value)}"


@dataclass(frozen=True)
class Trace:
    kind: str  # ip | ua
    value: str

    @property
    def label(self) -> str:
        return f"{self.kind} {_short(self.value)}"


@dataclass
class TraceInfo:
    """A trace linked to the attacker: who brought it in, how common it was before, who used it since."""

    trace: Trace
    origin: str
    baseline: int  # ordinary accounts seen with it in the baseline window
    accounts: set[str] = field(default_factory=set)
    burst: int = 0  # most distinct accounts logging in with it within BURST_MS

    @property
    def weight(self) -> float:
        return 1.0 / (1 + self.baseline)

    def to_row(self) -> Row:
        return {
            "kind": self.trace.kind,
            "value": self.trace.value,
            "origin": self.origin,
            "baseline_accounts": self.baseline,
            "weight": round(self.weight, 4),
            "accounts": len(self.accounts),
            "burst": self.burst,
        }


@dataclass(frozen=True)
class Reason:
    kind: str  # seed | trace | send | new-device | activation | sms | forward
    weight: float
    text: str


@dataclass
class Suspect:
    id: str
    score: float
    round: int
    reasons: list[Reason]
    seed: bool = False
    sent: int = 0
    first_seen: int = 0
    login: str = ""
    name: str = ""
    profile: str = ""
    schools: list[str] = field(default_factory=list)

    def to_row(self) -> Row:
        seen = iso(datetime.fromtimestamp(self.first_seen / 1000, UTC)) if self.first_seen else ""
        return {
            "id": self.id,
            "login": self.login,
            "name": self.name,
            "profile": self.profile,
            "schools": self.schools,
            "score": round(self.score, 3),
            "round": self.round,
            "seed": self.seed,
            "sent": self.sent,
            "first_seen": seen,
            "reasons": "; ".join(r.text for r in self.reasons),
        }


@dataclass
class HuntQuery:
    since_ms: int
    until_ms: int
    baseline_ms: int
    messages: list[str] = field(default_factory=list)
    search: Path | None = None
    accounts: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    min_score: float = 1.0
    max_rounds: int = 20


@dataclass
class Activity:
    """One account's events in the window."""

    profile: str = ""
    structures: set[str] = field(default_factory=set)
    logins: list[tuple[int, str, str]] = field(default_factory=list)  # (date, ip, ua)
    sends: list[tuple[int, str, str]] = field(default_factory=list)
    other: list[tuple[str, int]] = field(default_factory=list)  # (ACTIVATION | SMS, date)

    def traces(self) -> set[Trace]:
        found = set()
        for _date, ip, ua in self.logins + self.sends:
            if ip:
                found.add(Trace("ip", ip))
            if ua:
                found.add(Trace("ua", ua))
        return found

    @property
    def first_seen(self) -> int:
        dates = [d for d, _i, _u in self.logins + self.sends] + [d for _k, d in self.other]
        return min(dates) if dates else 0


@dataclass
class Baseline:
    """Who used which trace, and which devices each account had, before the window."""

    users: dict[Trace, set[str]] = field(default_factory=dict)
    devices: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    events: int = 0

    def ordinary(self, known: set[str]) -> int:
        """Accounts that logged in during the baseline, those already known to be the attacker's aside."""
        return len(self.devices.keys() - known)


@dataclass
class HuntResult:
    query: HuntQuery
    seeds: list[Seed]
    suspects: list[Suspect]
    traces: list[TraceInfo]
    rounds: int
    events: int
    baseline_events: int
    baseline_accounts: int = 0  # ordinary accounts the baseline saw log in
    window_accounts: int = 0  # accounts active in the window, the seeds' aside
    out_of_scope: int = 0
    warnings: list[str] = field(default_factory=list)

    def accounts(self) -> list[str]:
        return [s.id for s in self.suspects]

    def rows(self) -> list[Row]:
        return [s.to_row() for s in self.suspects]

    def to_json(self) -> JsonObject:
        return {
            "window": {
                "since": _iso_ms(self.query.since_ms),
                "until": _iso_ms(self.query.until_ms),
                "baseline_from": _iso_ms(self.query.since_ms - self.query.baseline_ms),
            },
            "seeds": [{"kind": s.kind, "value": s.value, "account": s.account} for s in self.seeds],
            "suspects": [{**s.to_row(), "reasons": [vars(r) for r in s.reasons]} for s in self.suspects],
            "traces": [t.to_row() for t in self.traces],
            "rounds": self.rounds,
            "events": self.events,
            "baseline_events": self.baseline_events,
            "baseline_accounts": self.baseline_accounts,
            "window_accounts": self.window_accounts,
            "out_of_scope": self.out_of_scope,
            "warnings": self.warnings,
        }


COLUMNS = ("id", "login", "profile", "schools", "score", "round", "sent", "first_seen", "reasons")


# -- input ------------------------------------------------------------------------------------------------


def validate(query: HuntQuery) -> None:
    """Refuse bad input before any request: no seed, a bad address, an empty window, a bad threshold."""
    if not (query.messages or query.search or query.accounts or query.ips or query.agents):
        raise UsageError(
            "no seed to hunt from",
            hint="give --message ID, --from-search FILE, --account ID|LOGIN, --ip ADDRESS or --ua AGENT",
        )
    for ip in query.ips:
        try:
            ipaddress.ip_address(ip.strip())
        except ValueError:
            raise UsageError(f"{ip!r} is not an IP address", hint="e.g. --ip 185.220.101.47") from None
    if any(not a.strip() for a in query.agents):
        raise UsageError("an empty --ua matches nothing: give the user agent as the event store shows it")
    if query.since_ms >= query.until_ms:
        raise UsageError("the window is empty: --since must be before --until")
    if query.baseline_ms < 0:
        raise UsageError("--baseline must be a duration (e.g. 1d), or 0 for none")
    if query.min_score <= 0:
        raise UsageError("--min-score must be above 0")
    if query.search is not None:
        from pcnctl.forensics.search import load_saved

        load_saved(query.search)  # a clear error now rather than after the first request


def resolve_seeds(driver: EntDriver, store: Mailstore | None, query: HuntQuery) -> list[Seed]:
    """The seeds, with the accounts they name; an account outside an ADML's schools is refused here."""
    from pcnctl.ent import directory
    from pcnctl.forensics.search import load_saved

    seeds = [Seed("ip", canonical(ip)) for ip in query.ips] + [Seed("ua", ua) for ua in query.agents]
    for ref in query.accounts:
        try:
            user = directory.find_user(driver, ref)
        except PermissionDeniedError:  # the directory answers 401 for an account outside an ADML's schools
            raise RefusedError(
                f"account {ref} is outside the schools this ADML administers (or this identity's scope)",
                hint="an ADML may only hunt inside its own schools; nothing was read",
            ) from None
        seeds.append(Seed("account", ref, user.id))
    for message_id in query.messages:
        message = store.get(message_id) if store is not None else None
        if message is None:
            raise UsageError(f"no message {message_id} in the mailstore")
        seeds.append(Seed("message", message_id, message.sender))
    if query.search is not None:
        for match in load_saved(query.search)["matches"]:
            if match.get("from"):
                seeds.append(Seed("search", str(match["id"]), str(match["from"])))
    return seeds


# -- the event store ------------------------------------------------------------------------------------


def _events(
    driver: EntDriver, since: int, until: int, types: tuple[str, ...], label: str, progress: Progress | None
) -> Iterable[PlatformEvent]:
    """Events of the window, with a progress line every few thousand (long scans on a large ENT)."""
    try:
        for n, event in enumerate(iter_events(driver, since, until, types), start=1):
            if progress is not None and n % 5000 == 0:
                progress(f"{label}: {n} events read")
            yield event
    except (PermissionDeniedError, AuthError) as exc:
        raise RefusedError(
            f"the event store refused this identity ({exc})",
            hint="the event store is readable by an ADMC (or a service client with "
            "EventStoreController|listEventsPartial) only: hunt with such a profile",
        ) from None


def read_window(
    driver: EntDriver, since: int, until: int, progress: Progress | None = None
) -> tuple[dict[str, Activity], int]:
    activity: dict[str, Activity] = {}
    count = 0
    for event in _events(driver, since, until, WINDOW_TYPES, "window", progress):
        count += 1
        user, kind = event.user_id, event.type
        if not user or (kind == "CREATE" and event.module != "Conversation"):
            continue
        act = activity.setdefault(user, Activity())
        act.profile = act.profile or (event.profile or "")
        act.structures.update(event.structures)
        row = (event.date, event.ip or "", event.ua or "")
        if kind == "LOGIN":
            act.logins.append(row)
        elif kind == "CREATE":
            act.sends.append(row)
        else:
            act.other.append((str(kind), row[0]))
    return activity, count


def read_baseline(driver: EntDriver, start: int, end: int, progress: Progress | None = None) -> Baseline:
    base = Baseline()
    if end <= start:
        return base
    for event in _events(driver, start, end, ("LOGIN",), "baseline", progress):
        base.events += 1
        user = event.user_id
        if not user:
            continue
        ip, ua = event.ip or "", event.ua or ""
        for trace in (Trace("ip", ip), Trace("ua", ua)):
            if trace.value:
                base.users.setdefault(trace, set()).add(user)
        base.devices.setdefault(user, set()).add((ip, ua))
    return base


# -- growth ---------------------------------------------------------------------------------------------


def corroboration(user: str, act: Activity, base: Baseline, forwards: dict[str, str]) -> list[Reason]:
    """What else points at an account that already has a link (it never creates a link by itself)."""
    reasons = []
    if act.sends:
        reasons.append(Reason("send", BONUS["send"], f"sent {len(act.sends)} message(s) in the window"))
    known = base.devices.get(user, set())
    for date, ip, ua in sorted(act.logins):
        if (ip, ua) not in known and any(0 <= s - date <= NEW_DEVICE_MS for s, _i, _u in act.sends):
            reasons.append(
                Reason(
                    "new-device", BONUS["new-device"], f"first login from a new device ({ip}) before a send"
                )
            )
            break
    kinds = {k for k, _d in act.other}
    if "ACTIVATION" in kinds:
        reasons.append(
            Reason("activation", BONUS["activation"], "account activated (password set) in the window")
        )
    if "SMS" in kinds:
        reasons.append(Reason("sms", BONUS["sms"], "an SMS (forgotten login or password) in the window"))
    if user in forwards:
        reasons.append(Reason("forward", BONUS["forward"], f"sent on the threat ({forwards[user]})"))
    return reasons


def _score(
    user: str,
    act: Activity,
    linked: dict[Trace, TraceInfo],
    base: Baseline,
    suspects: dict[str, Suspect],
    forwards: dict[str, str],
) -> tuple[float, list[Reason]]:
    links = []
    for trace in sorted(act.traces() & linked.keys(), key=lambda t: (t.kind, t.value)):
        info = linked[trace]
        users = base.users.get(trace, set())
        # Ordinary accounts: not this one, not those already found to be the attacker's.
        n = len(users) - len(users & suspects.keys()) - (user in users)
        weight = 1.0 / (1 + n)
        common = f"{n} ordinary account(s) before" if n else "never seen before"
        links.append(Reason("trace", weight, f"{trace.label} of {info.origin} ({common})"))
    if not links:
        return 0.0, []
    extra = corroboration(user, act, base, forwards)
    bonus = min(CORROBORATION, sum(r.weight for r in extra))
    return sum(r.weight for r in links) + bonus, links + extra


def _link(linked: dict[Trace, TraceInfo], traces: Iterable[Trace], origin: str, base: Baseline) -> None:
    for trace in traces:
        if trace not in linked:
            linked[trace] = TraceInfo(trace, origin, len(base.users.get(trace, set())))


def grow(
    seeds: list[Seed],
    activity: dict[str, Activity],
    base: Baseline,
    query: HuntQuery,
    forwards: dict[str, str],
) -> tuple[dict[str, Suspect], dict[Trace, TraceInfo], int]:
    """Rounds of linking until a fixed point: a round's suspects bring their traces to the next one."""
    suspects: dict[str, Suspect] = {}
    linked: dict[Trace, TraceInfo] = {}
    for seed in seeds:
        if seed.kind in ("ip", "ua"):
            _link(linked, [Trace(seed.kind, seed.value)], f"seed {seed.label}", base)
        elif seed.account:
            reason = Reason("seed", 1.0, f"seed: {seed.label}")
            found = suspects.setdefault(seed.account, Suspect(seed.account, 1.0, 0, [], seed=True))
            if len(found.reasons) < SEED_REASONS and reason not in found.reasons:
                found.reasons.append(reason)
            elif len(found.reasons) == SEED_REASONS:  # a sender of forty threats: the first few say it
                found.reasons.append(Reason("seed", 0.0, "and other seeds"))
    for user in suspects:
        act = activity.get(user)
        if act is not None:
            _link(linked, act.traces(), f"seed account {user[:8]}", base)
    rounds = 0
    while rounds < query.max_rounds:
        rounds += 1
        fresh = {}
        for user, act in activity.items():
            if user in suspects:
                continue
            score, reasons = _score(user, act, linked, base, suspects, forwards)
            if score >= query.min_score:
                fresh[user] = Suspect(user, score, rounds, reasons)
        if not fresh:
            break
        suspects.update(fresh)
        for user in fresh:
            _link(linked, activity[user].traces(), f"suspect {user[:8]} (round {rounds})", base)
    for user, suspect in suspects.items():
        act = activity.get(user)
        if act is not None:
            suspect.sent, suspect.first_seen = len(act.sends), act.first_seen
    for trace, info in linked.items():
        info.accounts = {u for u, a in activity.items() if trace in a.traces()}
        info.burst = _burst(trace, activity)
    return suspects, linked, rounds


def _burst(trace: Trace, activity: dict[str, Activity]) -> int:
    """The most distinct accounts that logged in with a trace within BURST_MS of each other."""
    logins = sorted(
        (date, user)
        for user, act in activity.items()
        for date, ip, ua in act.logins
        if (ip if trace.kind == "ip" else ua) == trace.value
    )
    best, start = 0, 0
    for end in range(len(logins)):
        while logins[end][0] - logins[start][0] > BURST_MS:
            start += 1
        best = max(best, len({u for _d, u in logins[start : end + 1]}))
    return best


def find_forwards(
    store: Mailstore | None, seeds: list[Seed], activity: dict[str, Activity], query: HuntQuery
) -> dict[str, str]:
    """Accounts that sent on a seed threat (a forward, or a copy of its text) in the window."""
    from pcnctl.forensics.search import shingles, similarity

    messages = [s.value for s in seeds if s.kind in ("message", "search")]
    if store is None or not messages:
        return {}
    refs = []
    for message_id in messages[:20]:  # a few references are enough: the variants are alike
        message = store.get(message_id)
        if message is not None:
            refs.append((message_id, shingles(f"{message.subject} {message.body}")))
    senders = {s.account for s in seeds if s.account}
    candidates = [u for u, a in activity.items() if a.sends and u not in senders]
    found: dict[str, str] = {}
    if not candidates or not refs:
        return found
    for message in store.iter_messages(Scan(query.since_ms, query.until_ms, candidates)):
        words = shingles(f"{message.subject} {message.body}")
        for ref_id, ref in refs:
            if message.sender not in found and similarity(words, ref) >= FORWARD_SIMILARITY:
                found[message.sender] = f"message {_short(message.id)} like {_short(ref_id)}"
    return found


# -- the whole hunt -------------------------------------------------------------------------------------


def hunt(
    driver: EntDriver, store: Mailstore | None, query: HuntQuery, *, progress: Progress | None = None
) -> HuntResult:
    validate(query)
    if query.messages and store is None:
        raise UsageError(
            "--message needs the mailstore to find who sent it", hint="set --mailstore on the profile"
        )
    from pcnctl.ent import directory

    mine = directory.adml_schools(driver)
    seeds = resolve_seeds(driver, store, query)
    activity, events = read_window(driver, query.since_ms, query.until_ms, progress)
    base = read_baseline(driver, query.since_ms - query.baseline_ms, query.since_ms, progress)
    known = {s.account for s in seeds if s.account}
    window_accounts, ordinary = len(activity.keys() - known), base.ordinary(known)
    check_baseline(query, window_accounts, ordinary)
    forwards = find_forwards(store, seeds, activity, query)
    suspects, linked, rounds = grow(seeds, activity, base, query, forwards)
    result = HuntResult(
        query, seeds, [], list(linked.values()), rounds, events, base.events, ordinary, window_accounts
    )
    if not query.baseline_ms:
        result.warnings.append(
            "no baseline (--baseline 0): every address and agent weighs as if never seen before, so an "
            "address shared with the attacker (a school network) links everyone behind it"
        )
    _describe(driver, suspects, activity, mine, result)
    return result


def check_baseline(query: HuntQuery, window_accounts: int, ordinary: int) -> None:
    """Refuse to link on a baseline too thin for the window (``--baseline 0``, an explicit choice, aside).

    The rule: the baseline must have seen at least one ordinary account for every ``BASELINE_SHARE``
    accounts active in the window. A trace weighs ``1 / (1 + n)`` with ``n`` counted in the baseline; if
    the baseline saw few of the people the window holds, a school network's address shared by hundreds
    of pupils and the attacker looks new, weighs 1, and links every pupil behind it (a baseline window
    with no login at all linked a third of an académie). A quarter still weighs such an address a few
    hundredths, and leaves room for a quieter baseline (a night, a Sunday) than the window.
    """
    if not query.baseline_ms or ordinary * BASELINE_SHARE >= window_accounts:
        return
    start, end = _iso_ms(query.since_ms - query.baseline_ms), _iso_ms(query.since_ms)
    raise RefusedError(
        f"the baseline ({start} to {end}) saw {ordinary} ordinary account(s) log in, for "
        f"{window_accounts} account(s) active in the window: too few to tell an address shared by "
        f"ordinary users (a school network) from the attacker's (it needs one for every {BASELINE_SHARE})",
        hint="give a --baseline that reaches ordinary traffic before --since (e.g. --baseline 7d; it ends "
        "where the window starts), or hunt a shorter window (--since 2h); nothing was linked",
    )


def _describe(
    driver: EntDriver,
    suspects: dict[str, Suspect],
    activity: dict[str, Activity],
    mine: set[str] | None,
    result: HuntResult,
) -> None:
    """Logins, names and schools of the suspects; an ADML keeps only those inside its schools."""
    from pcnctl.forensics.search import Directory

    people = Directory(driver)
    people.load(list(suspects))
    me = driver.whoami().user_id
    for user, suspect in sorted(suspects.items(), key=lambda kv: (kv[1].round, -kv[1].score, kv[0])):
        known = people.users.get(user)
        if known is not None:
            suspect.login, suspect.name, suspect.profile = known.login, known.display_name, known.profile
            suspect.schools = list(known.schools)
        else:
            act = activity.get(user)
            suspect.profile = act.profile if act is not None else ""
        if mine is not None and not set(suspect.schools) & mine:
            result.out_of_scope += 1
            continue
        if user == me:
            result.warnings.append("the account pcnctl acts as shares the attacker's traces: left out")
            continue
        result.suspects.append(suspect)
    if result.out_of_scope:
        result.warnings.append(
            f"{result.out_of_scope} suspect(s) outside the schools this ADML administers were left out"
        )


def _short(value: str, width: int = 40) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def _iso_ms(ms: int) -> str:
    return iso(datetime.fromtimestamp(ms / 1000, UTC))


# -- the playbook operation -----------------------------------------------------------------------------


def write_csv(result: HuntResult, path: Path) -> None:
    """The suspects as CSV with an ``id`` column: what ``accounts block --from-file`` reads."""
    import io

    from pcnctl.files import write_private
    from pcnctl.output import render

    buffer = io.StringIO()
    render(result.rows(), "csv", COLUMNS, stream=buffer)
    write_private(path, buffer.getvalue())


def op_hunt(env: Any, p: StepParams) -> JsonObject:
    """``op: hunt``: the suspects' ids for a following ``block_accounts`` step (read only, so it also runs
    in check mode); the CSV is kept in the incident's directory. A step feeds a block: it never hunts
    without a baseline, and stops on a thin one or above ``max`` suspects rather than feed a mass block."""
    import time

    from pcnctl.timespec import parse_when

    now = datetime.now(UTC)
    since = parse_when(p.text("since") or "2h", now=now, future=False)
    until = parse_when(text, now=now, future=False) if (text := p.text("until")) else now
    given = (p.text("baseline") or "1d").strip()
    if given == "0":
        raise RefusedError(
            "a playbook's hunt feeds a block: it needs a baseline of ordinary traffic (baseline: 0 given)",
            hint="give a duration (1d, 7d), or hunt by hand with pcnctl hunt --baseline 0 and read the "
            "traces before blocking",
        )
    baseline = parse_when(given, now=now, future=False)
    query = HuntQuery(
        since_ms=int(since.timestamp() * 1000),
        until_ms=int(until.timestamp() * 1000),
        baseline_ms=int((now - baseline).total_seconds() * 1000),
        messages=p.texts("messages"),
        search=Path(search) if (search := p.text("search")) else None,
        accounts=p.texts("accounts"),
        ips=p.texts("ips"),
        agents=p.texts("agents"),
        min_score=p.number("min_score") or 1.0,
    )
    result = hunt(env.driver, env.mailstore, query)
    cap = p.integer("max") or 1000
    if len(result.suspects) > cap:
        raise RefusedError(
            f"the hunt found {len(result.suspects)} accounts, above its max of {cap}: nothing was blocked",
            hint="read the traces with pcnctl hunt -o json before raising max",
        )
    env.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = env.workdir / f"hunt-{int(time.time() * 1000)}.csv"
    write_csv(result, path)
    env.notes.extend(result.warnings)
    env.notes.append(
        f"{len(result.suspects)} account(s) in {result.rounds} round(s), "
        f"{sum(1 for s in result.suspects if not s.seed)} beyond the seeds; the baseline saw "
        f"{result.baseline_accounts} ordinary account(s) for {result.window_accounts} in the window"
    )
    return {
        "accounts": result.accounts(),
        "count": len(result.suspects),
        "silent": [s.id for s in result.suspects if not s.sent],
        "file": str(path),
    }
