"""The watcher's loop: one ENT, one watcher, a cycle every few seconds.

Each cycle reads what is new since its cursors (the event store's ``CREATE`` and ``LOGIN`` events, the
mailstore's messages with their copies), runs the detectors, records what they found in an incident (the
first detection opens one; later ones within ``rejoin_ms`` join it), pages the on-call channels, runs the
pre-approved response when the profile has a valid policy and a detection it names, lifts what an
unconfirmed response blocked once its hours have passed, and writes a heartbeat. Cursors live in the state
store: a restart reads on from where the last cycle stopped (a short overlap, deduplicated by id, covers
rows written late), never the history again.

One watcher per ENT: it holds a lock named for the ENT (the state store's lock, released by the system if
the process dies), and a second one refuses to start. The clock and the sleep are injected, and
``run(cycles=N)`` stops after N cycles, so tests drive the loop deterministically.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pcnctl.errors import ApiError, PcnError, RefusedError, TransportError
from pcnctl.forensics.mailstore import SEARCHED, Scan, StoredMessage
from pcnctl.models import PlatformEvent, fold
from pcnctl.state.store import StateStore, ent_key
from pcnctl.watch import paging
from pcnctl.watch.detectors import Detectors, Settings, Window, merge, signature
from pcnctl.watch.pacing import Pacer
from pcnctl.watch.records import Detection, Heartbeat, NewMessage, Page, Wave
from pcnctl.watch.response import Outcome, Responder
from pcnctl.watch.state import WatchState

if TYPE_CHECKING:
    from pcnctl.ent.platform import EntDriver
    from pcnctl.forensics.mailstore import Mailstore
    from pcnctl.playbooks.runner import StepReport
    from pcnctl.watch.policy import Policy

Clock = Callable[[], float]
T = TypeVar("T")


@dataclass(frozen=True)
class WatchSettings:
    interval_s: float = 5.0
    max_interval_s: float = 300.0
    overlap_ms: int = 60_000  # rows written late are read again, and skipped by id
    look_back_ms: int = 60_000  # the first cycle on an ENT starts this far back
    rejoin_ms: int = 2 * 3600 * 1000  # a detection within this of the last one joins its incident
    # The response runs once more this long after its start: its hunt then sees the logins the attacker's
    # other accounts made while the first run was under way (None: no second look).
    second_look_ms: int | None = 30_000
    page_interval_ms: int = 120_000  # news of one incident is paged at most this often
    detectors: Settings = field(default_factory=Settings)


@dataclass
class CycleReport:
    """What one cycle did (the command prints it; tests check it)."""

    cycle: int
    at_ms: int
    events: int = 0
    messages: int = 0
    detections: list[Detection] = field(default_factory=list)
    incident: str | None = None
    pages: list[Page] = field(default_factory=list)
    response: Outcome | None = None
    status: str = "ok"
    detail: str = ""
    pause_s: float = 0.0


def lock_name(ent: str) -> str:
    return "watch-" + hashlib.sha256(ent_key(ent).encode()).hexdigest()[:16]


@dataclass
class Watcher:
    """One ENT followed by one process (see the module docstring)."""

    driver: EntDriver
    mailstore: Mailstore | None
    store: StateStore
    watchlist: Sequence[tuple[str, str]]
    channels: paging.Channels = field(default_factory=paging.Channels)
    settings: WatchSettings = field(default_factory=WatchSettings)
    policy: Policy | None = None
    signers: list[str] = field(default_factory=list)
    policy_problem: str = ""  # why a configured policy does not let the watcher act
    playbook: str = "playbooks/bomb-threat-wave.yaml"  # named in the pages' commands
    clock: Clock = time.time
    sleep: Callable[[float], None] = time.sleep
    on_step: Callable[[StepReport], None] | None = None
    on_detect: Callable[[list[Detection]], None] | None = None  # told as soon as a cycle finds something
    holder: str = ""
    cycles: int = 0
    _past: list[tuple[str, list[int]]] = field(default_factory=list)
    _reached_incident: str = ""  # the incident whose response the guard is checking

    def __post_init__(self) -> None:
        self.ent = ent_key(self.driver.profile.url)
        self.watch = WatchState(self.store, self.ent)
        self.pacer = Pacer(self.settings.interval_s, self.settings.max_interval_s)
        self.holder = self.holder or f"{socket.gethostname()} pid {os.getpid()}"  # the CLI names the user
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._past = past_threats(self.store)

    # -- the loop -----------------------------------------------------------------------------------------

    def run(
        self,
        cycles: int | None = None,
        on_cycle: Callable[[CycleReport], None] | None = None,
        until: Callable[[], bool] | None = None,
    ) -> None:
        """Cycle until stopped (Ctrl-C, SIGTERM, ``until()`` true) or, with ``cycles``, that many times; one
        watcher per ENT."""
        with self._held():
            try:
                self._resume_responses()
                done = 0
                while (cycles is None or done < cycles) and not (until is not None and until()):
                    report = self.cycle()
                    done += 1
                    if on_cycle is not None:
                        on_cycle(report)
                    if cycles is None or done < cycles:
                        self.sleep(report.pause_s)
            finally:
                self._beat("stopped", "the watcher stopped")

    @contextmanager
    def _held(self) -> Iterator[None]:
        """The ENT's watcher lock (the state store's: released by the system if the process dies)."""
        try:
            lock = self.store.lock(lock_name(self.ent))
            lock.__enter__()
        except RefusedError as exc:
            holder = exc.message.split("(")[-1].rstrip(")")
            raise RefusedError(
                f"a watcher already follows {self.ent} ({holder}): one watcher per ENT",
                hint="stop it first (systemctl stop pcnctl-watch), or look at it: pcnctl watch status",
            ) from None
        try:
            yield
        finally:
            lock.__exit__(None, None, None)

    def cycle(self) -> CycleReport:
        """One look at the ENT: read, detect, record, page, respond, expire, beat."""
        self.cycles += 1
        now = int(self.clock() * 1000)
        report = CycleReport(self.cycles, now)
        stats = self.driver.http.stats
        before, seen = stats.requests, len(stats.latency_ms)
        throttled = sum(stats.statuses[s] for s in (429, 503, 509))
        events = self._guarded(report, "ent-unavailable", lambda: self._read_events(now))
        messages = self._guarded(report, "mailstore-unavailable", lambda: self._read_messages(now))
        report.events, report.messages = len(events or []), len(messages or [])
        detectors = Detectors(self.settings.detectors, self.watchlist, self._past, self._window())
        report.detections = detectors.feed(
            events or [], messages or [], now, sends_from_events=self.mailstore is None
        )
        self.watch.set_cursor("window", now, detectors.window.to_json())
        if report.detections:
            report.incident = self._record(report.detections, now)
            if self.on_detect is not None:
                self.on_detect(report.detections)
        report.pages = self._page_and_respond(report, now)
        self._second_look(report, now)
        self._expire(report, now)
        trouble = (
            sum(stats.statuses[s] for s in (429, 503, 509)) > throttled or report.status == "ent-unavailable"
        )
        rtt = sorted(stats.latency_ms[seen:])
        report.pause_s = self.pacer.next(rtt[len(rtt) // 4] if rtt else None, trouble=trouble)
        if stats.requests == before and not trouble:
            report.pause_s = self.pacer.base_s  # no call made: nothing to pace
        if report.status == "ok" and self.pacer.slow:
            report.status, report.detail = (
                "slow",
                f"the ENT answers slowly: next look in {report.pause_s:.0f} s",
            )
        self._beat(report.status, report.detail, report.pause_s)
        return report

    def _guarded(self, report: CycleReport, status: str, read: Callable[[], list[T]]) -> list[T] | None:
        try:
            return read()
        except (TransportError, ApiError, PcnError) as exc:
            report.status, report.detail = status, exc.message
            return None

    # -- reading ------------------------------------------------------------------------------------------

    def _since(self, name: str, now: int) -> tuple[int, dict[str, int]]:
        cursor = self.watch.cursor(name)
        if cursor is None:
            return now - self.settings.look_back_ms, {}
        position, seen = cursor
        return position - self.settings.overlap_ms, {str(k): int(v) for k, v in dict(seen).items()}

    def _keep(self, name: str, now: int, seen: dict[str, int]) -> None:
        floor = now - self.settings.overlap_ms * 2
        self.watch.set_cursor(name, now, {k: v for k, v in seen.items() if v >= floor})

    def _read_events(self, now: int) -> list[PlatformEvent]:
        from pcnctl.forensics.events import iter_events

        since, seen = self._since("events", now)
        fresh = [e for e in iter_events(self.driver, since, now, ("CREATE", "LOGIN")) if e.id not in seen]
        seen.update({e.id: e.date for e in fresh})
        self._keep("events", now, seen)
        return list(fresh)

    def _read_messages(self, now: int) -> list[NewMessage]:
        from pcnctl.forensics.search import visible

        if self.mailstore is None:
            return []
        since, seen = self._since("messages", now)
        found = self.mailstore.iter_messages(Scan(since, now, states=SEARCHED))
        fresh = list(self.mailstore.with_copies(m for m in found if m.id not in seen))
        seen.update({m.id: m.date for m in fresh})
        self._keep("messages", now, seen)
        return [
            NewMessage(
                m.id,
                m.sender,
                m.date,
                m.state,
                m.subject,
                fold(m.subject + " " + visible(m.body)),
                tuple(m.recipients),
            )
            for m in fresh
        ]

    def _window(self) -> Window:
        cursor = self.watch.cursor("window")
        return Window.from_json(cursor[1]) if cursor else Window()

    # -- incidents and pages ------------------------------------------------------------------------------

    def _record(self, found: list[Detection], now: int) -> str:
        """Keep the detections in the current incident (opening one when none is recent)."""
        from pcnctl.state.incidents import Incident, create_incident

        last = self.watch.last_incident()
        incident = None
        if last is not None and now - last[1] <= self.settings.rejoin_ms:
            current = Incident.load(self.store, last[0])
            incident = current.id if current.status == "open" else None
        if incident is None:
            what = found[0].what
            made = create_incident(
                self.store, title=f"veille : {what}"[:120], operator=f"watch ({self.holder})"
            )
            incident = made.id
        for d in found:
            kept = self.watch.detection(incident, d.key)
            self.watch.keep(incident, merge(kept[0], d) if kept else d)
        return incident

    def wave(self, incident: str) -> Wave:
        kept = self.watch.detections(incident)
        opened = min((d.first_ms for d, _p in kept), default=0)
        return Wave(incident, opened, {d.key: d for d, _p in kept})

    def _current(self, now: int) -> str | None:
        """The incident detections still join (its last one within ``rejoin_ms``)."""
        last = self.watch.last_incident()
        return last[0] if last is not None and now - last[1] <= self.settings.rejoin_ms else None

    def _page_and_respond(self, report: CycleReport, now: int) -> list[Page]:
        current = self._current(now)
        if current is not None:
            self._page_news(current, now)  # news held back by the rate limit goes out once it may
        incident = report.incident
        if incident is not None:
            wave = self.wave(incident)
            if self._should_act(wave) and self.watch.response(incident) is None:
                sent = paging.deliver(self.watch, self.channels, now)  # the on-call hears before it acts
                report.response = self._respond(incident, now)
                return sent + paging.deliver(self.watch, self.channels, int(self.clock() * 1000))
        return paging.deliver(self.watch, self.channels, now)

    def _page_news(self, incident: str, now: int) -> None:
        unpaged = [d for d, paged in self.watch.detections(incident) if not paged]
        last = self.watch.last_page_ms(incident)
        if not unpaged or (last is not None and now - last < self.settings.page_interval_ms):
            return
        wave = self.wave(incident)
        note = self._plan_note(wave)
        self._queue(wave, unpaged, note, now)
        self.watch.mark_paged(incident, [d.key for d in unpaged])

    def _queue(self, wave: Wave, new: Sequence[Detection], note: str, now: int) -> None:
        context = self._page_context(wave)
        subject, body = paging.compose(context, wave, new, self.watch.response(wave.incident), note)
        paging.queue(self.watch, self.channels, wave.incident, subject, body, now)

    def _plan_note(self, wave: Wave) -> str:
        if self.policy is None:
            return (
                self.policy_problem or "aucune réponse pré-approuvée sur ce profil : un opérateur doit agir"
            )
        if not self._should_act(wave):
            kinds = ", ".join(sorted(wave.kinds))
            return f"la politique de réponse ne couvre pas ces détections ({kinds}) : un opérateur doit agir"
        return "la réponse pré-approuvée démarre (politique signée par " + " et ".join(self.signers) + ")"

    def _should_act(self, wave: Wave) -> bool:
        if self.policy is None:
            return False
        return any(
            d.severity == "critical" and d.kind in self.policy.triggers for d in wave.detections.values()
        )

    def _page_context(self, wave: Wave) -> paging.Context:
        from pcnctl.forensics.search import Directory

        senders = sorted(wave.senders)[:50]
        people = Directory(self.driver)
        try:
            people.load(senders)
            schools = sorted({s for uid in senders for s in people.schools(uid)})
        except PcnError:
            schools = []
        logins = {uid: people.login(uid) or uid for uid in senders}
        return paging.Context(
            self.ent, self.driver.profile.name, self.playbook, logins=logins, schools=tuple(schools)
        )

    # -- the response -------------------------------------------------------------------------------------

    def responder(self) -> Responder | None:
        if self.policy is None:
            return None
        return Responder(
            self.driver, self.store, self.watch, self.policy, self.signers, self.mailstore,
            self._reached_by(), on_step=self.on_step,
        )  # fmt: skip

    def _respond(self, incident: str, now: int) -> Outcome | None:
        from pcnctl.state.incidents import Incident

        responder = self.responder()
        if responder is None:
            return None
        self._reached_incident = incident
        outcome = responder.run(Incident.load(self.store, incident), now)
        self._queue(self.wave(incident), [], outcome.note, int(self.clock() * 1000))
        return outcome

    def _second_look(self, report: CycleReport, now: int) -> None:
        """The response's playbook once more, ``second_look_ms`` after its start, in the same incident and
        within the same limits: accounts that logged in during the first run are found by its hunt."""
        from pcnctl.state.incidents import Incident

        wait, current = self.settings.second_look_ms, self._current(now)
        response = self.watch.response(current) if current else None
        if wait is None or response is None or response.passes != 1 or response.status != "done":
            return
        responder = self.responder()
        if responder is None or response.confirmed_by or now < response.started_ms + wait:
            return
        self._reached_incident = response.incident
        report.response = responder.run(Incident.load(self.store, response.incident), now, again=True)
        self._queue(self.wave(response.incident), [], report.response.note, int(self.clock() * 1000))
        report.pages += paging.deliver(self.watch, self.channels, int(self.clock() * 1000))

    def _resume_responses(self) -> None:
        """A response a kill interrupted is continued first, before anything new is read."""
        for response in self.watch.responses():
            if response.status == "running":
                self._respond(response.incident, int(self.clock() * 1000))
                paging.deliver(self.watch, self.channels, int(self.clock() * 1000))

    def _expire(self, report: CycleReport, now: int) -> None:
        responder = self.responder()
        if responder is None:
            return
        for response in self.watch.responses():
            outcome = responder.expire(response, now)
            if outcome is not None:
                report.response = outcome
                self._queue(self.wave(response.incident), [], outcome.note, now)
                report.pages += paging.deliver(self.watch, self.channels, now)

    def _reached_by(self) -> Callable[[set[str]], set[str]]:
        """Which of some schools the incident's detected messages reached (their recipients' schools, from
        the directory), for the policy's guard: the first recipient of each message, then all of them, and
        only as far as needed to answer."""
        from pcnctl.forensics.search import Directory

        people, confirmed = Directory(self.driver), set[str]()

        def reached(wanted: set[str]) -> set[str]:
            if wanted - confirmed:
                messages = list(self._detected_messages(self._reached_incident))
                for batch in ([m.recipients[:1] for m in messages], [m.recipients for m in messages]):
                    ids = sorted({uid for group in batch for uid in group})
                    people.load(ids)
                    confirmed.update(s for uid in ids for s in people.schools(uid))
                    if not wanted - confirmed:
                        break
            return wanted & confirmed

        return reached

    def _detected_messages(self, incident: str) -> Iterator[StoredMessage]:
        """The incident's detected messages, and those since that match the watchlist or are like them."""
        if self.mailstore is None:
            return iter(())
        wave = self.wave(incident)
        ids = wave.messages
        patterns = Detectors(self.settings.detectors, self.watchlist).patterns
        known: list[list[int]] = []
        picked: list[StoredMessage] = []
        scan = Scan(wave.first_ms - self.settings.overlap_ms, int(self.clock() * 1000) + 1, states=SEARCHED)
        from pcnctl.forensics.search import visible

        for m in self.mailstore.iter_messages(scan):
            text = fold(m.subject + " " + visible(m.body))
            sig = signature(text)
            similar = any(_jaccard(sig, k) >= self.settings.detectors.similarity for k in known)
            if m.id in ids:
                known.append(sig)
            if m.id in ids or similar or any(p.search(text) for _n, p in patterns):
                picked.append(m)
        return self.mailstore.with_copies(picked)

    # -- heartbeat ----------------------------------------------------------------------------------------

    def _beat(self, status: str, detail: str, pause_s: float | None = None) -> None:
        now = self.clock()
        self.watch.beat(
            Heartbeat(
                self.ent,
                self.holder,
                self.started_at,
                datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
                int(now * 1000),
                self.cycles,
                pause_s if pause_s is not None else self.pacer.pause_s,
                status,
                detail[:300],
            )
        )


def _jaccard(a: list[int], b: list[int]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa and sb else 0.0


def past_threats(store: StateStore) -> list[tuple[str, list[int]]]:
    """The threats preserved in past incidents' evidence (the first messages of each bundle), as the
    detectors compare new messages with them."""
    from pcnctl.forensics.search import visible
    from pcnctl.state.incidents import list_incidents

    found = []
    for incident in list_incidents(store):
        root = incident.path / "evidence"
        for path in sorted(root.glob("*/messages.jsonl")) if root.exists() else []:
            for line in _head(path, 20):
                m = json.loads(line)
                found.append((incident.id, signature(fold(f"{m['subject']} {visible(m['body'])}"))))
    return found


def _head(path: Path, count: int) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()[:count]
    except OSError:
        return []
