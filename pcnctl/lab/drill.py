"""``pcnctl lab drill``: a wave on a fresh lab, answered by the reviewed playbook, unattended, and scored.

It starts a lab, plays a wave in the background, waits for the first threats to land, then runs
``bomb-threat-wave.yaml`` with every approval given (as an unattended run would be), and compares the result
with the lab's ground truth: every hijacked account blocked (the silent ones too), no innocent account
blocked, no threat delivered once the response had blocked the accounts and student messaging, every copy
purged, and the affected-schools export equal to the schools that really received the threat. It passes
only when the wave is contained. It also says what the response cost the ENT: its calls, the 429s and
faults it met, against the calls that did the work.

Named scenarios give the scale (``small``, the default; ``reference``: the paris preset, 200 hijacked
accounts in 50 schools, a server with 20 ms latency and a capacity of 300 requests/s) or the attacker's
behaviour (``reply-all``: the small scale, and a sender whose fresh send is refused, its class or school
messaging cut, replies to all of a message its school sent to every pupil, which no communication cut
stops); any option overrides the scenario's value. Latency, capacity and faults are the lab server's own
knobs (``lab serve``).
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pcnctl.env import child_environ
from pcnctl.lab.attack import TruthJson
from pcnctl.lab.process import child_failed
from pcnctl.lab.reading import Readers
from pcnctl.playbooks import SHIPPED
from pcnctl.playbooks.params import StepParams
from pcnctl.records import JsonObject, Row

if TYPE_CHECKING:
    from pcnctl.config import Profile
    from pcnctl.ent.credentials import Secrets
    from pcnctl.playbooks import runner
    from pcnctl.state.incidents import Incident

PLAYBOOK = SHIPPED / "bomb-threat-wave.yaml"
CONTAINMENT_STEPS = ("block-senders", "block-student-messaging")


@dataclass(frozen=True)
class Scenario:
    preset: str = "small"
    senders: int = 8
    hijacked: int = 16
    schools: int = 6
    messages: int = 150
    rate: float = 15.0
    innocent: int = 40
    latency_ms: float = 0.0
    capacity: float = 0.0
    fault_rate: float = 0.0
    start_after: int = 12
    reply_after_cut: bool = False
    unattended: bool = False  # the watcher and a signed policy answer, nobody else (docs/watch.md)
    reading: bool = False  # recipients open their messages over time (pcnctl.lab.reading)
    interval: float = 5.0  # the watcher's pause between two looks (its default)
    seed: int = 1  # the reading model's seed


REFERENCE = Scenario(
    preset="paris",
    senders=100,
    hijacked=200,
    schools=50,
    messages=600,
    rate=20.0,
    innocent=300,
    latency_ms=20.0,
    capacity=300.0,
)
SCENARIOS = {
    "small": Scenario(),
    "reference": REFERENCE,
    "reply-all": Scenario(reply_after_cut=True),
    # Nobody awake: the watcher follows the lab from before the first threat and runs the signed policy.
    "unattended": Scenario(unattended=True, reading=True, start_after=0),
    "unattended-reference": replace(REFERENCE, unattended=True, reading=True, start_after=0),
}


def scenario(name: str, **overrides: Any) -> Scenario:
    """A named scenario with the options given on top (None: the scenario's value)."""
    from pcnctl.errors import UsageError
    from pcnctl.lab.seed import PRESETS

    if name not in SCENARIOS:
        raise UsageError(f"unknown drill scenario {name!r}", hint=f"choose from {', '.join(SCENARIOS)}")
    chosen = replace(SCENARIOS[name], **{k: v for k, v in overrides.items() if v is not None})
    if chosen.preset not in PRESETS:
        raise UsageError(f"unknown lab preset {chosen.preset!r}", hint=f"choose from {', '.join(PRESETS)}")
    if chosen.hijacked and chosen.hijacked < chosen.senders:
        raise UsageError("--hijacked counts every hijacked account: it cannot be below --senders")
    if not 0 <= chosen.fault_rate <= 1:
        raise UsageError("--fault-rate is a fraction between 0 and 1")
    if min(chosen.senders, chosen.schools, chosen.messages) < 1 or chosen.rate <= 0:
        raise UsageError("--senders, --schools, --messages and --rate must be above 0")
    if chosen.latency_ms < 0 or chosen.capacity < 0 or chosen.innocent < 0:
        raise UsageError("--latency-ms, --capacity and --innocent cannot be negative")
    return chosen


@dataclass
class DrillReport:
    started_at: float
    response_started_at: float = 0.0
    contained_at: float | None = None
    threats_before_response: int = 0
    threats_after_response: int = 0
    threats_after_containment: int = 0
    threats_total: int = 0
    threats_as_replies: int = 0
    senders: int = 0
    senders_blocked: int = 0
    hijacked: int = 0
    hijacked_blocked: int = 0
    silent: int = 0
    silent_blocked: int = 0
    innocents_blocked: int = 0
    accounts_blocked: int = 0
    calls: int = 0
    calls_throttled: int = 0
    calls_failed: int = 0
    calls_to_containment: int = 0
    lab_requests: int = 0
    lab_throttled: int = 0
    scenario: Scenario = field(default_factory=Scenario)
    messages_purged: int = 0
    copies_left: int = 0
    export_file: str = ""
    schools_expected: list[str] = field(default_factory=list)
    schools_exported: list[str] = field(default_factory=list)
    steps: list[Row] = field(default_factory=list)
    # Where each step's time went: planning reads, writes, verification, waiting, and each phase's floor
    # at the ENT's capacity (pcnctl.ops.timing).
    phases: list[Row] = field(default_factory=list)
    blocked_before: set[str] = field(default_factory=set)
    # From the first threat (the unattended scenario, and any drill with the reading model):
    first_threat_at: float | None = None
    detected_at: float | None = None
    paged_at: float | None = None
    copies_delivered: int = 0
    copies_opened: int = 0
    schools_cut_outside: int = 0
    response: str = ""  # the watcher's response: done, refused, failed (unattended)
    passes: int = 0  # runs of the playbook the watcher made (the first look, the second)
    blocked_later: int = 0  # accounts the second look blocked
    first_contained_at: float | None = None  # the first run's containment (the senders it knew, the cut)

    def since_first(self, moment: float | None) -> str:
        if moment is None or self.first_threat_at is None:
            return "never"
        return f"{moment - self.first_threat_at:.1f} s"

    @property
    def opened_share(self) -> float:
        return self.copies_opened / self.copies_delivered if self.copies_delivered else 0.0

    @property
    def time_to_containment(self) -> float | None:
        return None if self.contained_at is None else self.contained_at - self.response_started_at

    @property
    def overhead(self) -> str:
        useful = self.calls - self.calls_throttled - self.calls_failed
        return f"{self.calls / useful:.2f}" if useful > 0 else "n/a"

    @property
    def floor(self) -> str:
        """How long the containment's calls take at the server's capacity: the time no client can beat."""
        capacity = self.scenario.capacity
        return f"{self.calls_to_containment / capacity:.1f} s" if capacity else "no limit"

    @property
    def contained(self) -> bool:
        return (
            self.contained_at is not None
            and self.response in ("", "done")
            and self.schools_cut_outside == 0
            and self.threats_after_containment == 0
            and self.senders_blocked == self.senders
            and self.hijacked_blocked == self.hijacked
            and self.innocents_blocked == 0
            and self.copies_left == 0
            and self.schools_exported == self.schools_expected
        )

    def rows(self) -> list[Row]:
        ttc = self.time_to_containment
        match = "match" if self.schools_exported == self.schools_expected else "MISMATCH"
        return [
            {
                "measure": "time from response start to containment",
                "value": f"{ttc:.1f} s" if ttc else "never",
            },
            {"measure": "threats delivered before the response", "value": self.threats_before_response},
            {"measure": "threats delivered after the response started", "value": self.threats_after_response},
            {"measure": "threats delivered after containment", "value": self.threats_after_containment},
            {"measure": "threats sent as replies (reply-all)", "value": self.threats_as_replies},
            {"measure": "hijacked accounts blocked", "value": f"{self.hijacked_blocked}/{self.hijacked}"},
            {"measure": "senders blocked", "value": f"{self.senders_blocked}/{self.senders}"},
            {"measure": "silent accounts blocked", "value": f"{self.silent_blocked}/{self.silent}"},
            {"measure": "innocent accounts blocked", "value": self.innocents_blocked},
            {"measure": "accounts blocked by the playbook", "value": self.accounts_blocked},
            {"measure": "messages purged", "value": f"{self.messages_purged}/{self.threats_total}"},
            {"measure": "copies left in mailboxes", "value": self.copies_left},
            {
                "measure": "affected schools (export = ground truth)",
                "value": f"{len(self.schools_exported)} ({match})",
            },
            {"measure": "affected-schools file", "value": self.export_file},
            {
                "measure": "calls by the response (to containment)",
                "value": f"{self.calls} ({self.calls_to_containment})",
            },
            {
                "measure": "calls answered 429 / failed (5xx)",
                "value": f"{self.calls_throttled} / {self.calls_failed}",
            },
            {"measure": "calls made / calls that did the work", "value": self.overhead},
            {"measure": "containment calls at the ENT's capacity (lower bound)", "value": self.floor},
            {
                "measure": "requests the ENT served (wave included), 429s",
                "value": f"{self.lab_requests}, {self.lab_throttled}",
            },
            *self.harm_rows(),
            {"measure": "verdict", "value": "CONTAINED" if self.contained else "NOT CONTAINED"},
        ]

    def harm_rows(self) -> list[Row]:
        """The measures from the first threat (only for the scenarios that take them: the others' reports
        stay as they were)."""
        plan = self.scenario
        if not (plan.unattended or plan.reading):
            return []
        rows: list[Row] = []
        if plan.unattended:
            rows += [
                {
                    "measure": "watcher's response",
                    "value": f"{self.response or 'none'} ({self.passes} run(s))",
                },
                {
                    "measure": "time from the first threat to the first run's containment",
                    "value": self.since_first(self.first_contained_at),
                },
                {
                    "measure": "time from the first threat to detection",
                    "value": self.since_first(self.detected_at),
                },
                {
                    "measure": "time from the first threat to the page",
                    "value": self.since_first(self.paged_at),
                },
            ]
        rows += [
            {
                "measure": "time from the first threat to containment",
                "value": self.since_first(self.contained_at),
            },
            {"measure": "threat copies delivered in all", "value": self.copies_delivered},
            {
                "measure": "threat copies opened before the purge",
                "value": f"{self.copies_opened} ({self.opened_share:.1%})",
            },
            {"measure": "schools cut outside those the threat reached", "value": self.schools_cut_outside},
        ]
        return rows


def _truth(data: Path) -> TruthJson:
    try:
        # The file the wave wrote (Truth.to_json).
        return cast(TruthJson, dict(json.loads((data / "attack-truth.json").read_text())))
    except (OSError, ValueError):
        return {"messages": [], "senders": [], "hijacked": [], "silent": [], "schools": []}


def run(
    root: Path,
    plan: Scenario = Scenario(),
    *,
    environ: Mapping[str, str],
    playbook: Path = PLAYBOOK,
    on_step: Any = None,
) -> DrillReport:
    """A fresh lab in ``root``, the wave played on it, the playbook's response timed and scored. The lab
    and the wave run in ``environ`` (the caller's, pcnctl's own variables left out); the responder works
    in an environment of its own under ``root`` (nothing of the caller's home, config or secrets)."""
    from pcnctl.lab.process import LabProcess

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, mode=0o700)
    data = root / "lab"
    knobs = [
        f"--latency-ms={plan.latency_ms}",
        f"--capacity={plan.capacity}",
        f"--fail-rate={plan.fault_rate}",
    ]
    log = (root / "lab.log").open("wb")
    lab = LabProcess(data, "--seed", plan.preset, *knobs, environ=environ, log=log, timeout=900)
    wave: subprocess.Popen[bytes] | None = None
    report = DrillReport(started_at=time.time(), scenario=plan)
    readers: Readers | None = None
    try:
        profile, secrets = _drill_profile(root, lab.info)
        if plan.reading:
            readers = Readers(data, plan.seed, int(time.time() * 1000)).start()
        if plan.unattended:
            incident, steps, wave = _unattended(
                report, root, data, profile, secrets, environ, lab, playbook, on_step
            )
        else:
            wave = _start_wave(root, data, plan, environ)
            blocked_before = _blocked(data)
            before = lab.control("/__lab/state")["counters"]
            report.response_started_at = time.time()  # the on-call response starts now
            incident, steps = _respond(report, root, profile, secrets, playbook, on_step)
            wave.wait(timeout=900)
            after = lab.control("/__lab/state")["counters"]
            report.lab_requests = after["requests"] - before["requests"]
            report.lab_throttled = after["throttled"] - before["throttled"]
            report.blocked_before = blocked_before
        if readers is not None:
            readers.stop()  # the last look: what was due by now is opened, nothing later
        truth = _truth(data)
        _score(report, data, truth, report.blocked_before, {s.id: s.result for s in steps})
        report.accounts_blocked += report.blocked_later
        if readers is not None or plan.unattended:
            _harm(report, data, truth, readers, root / "state", profile.url)
        _write_report(root / "drill-report.json", report, incident)
        return report
    finally:
        if readers is not None:
            readers.halt()
        if wave is not None and wave.poll() is None:
            wave.send_signal(signal.SIGTERM)
            wave.wait(timeout=30)
        lab.stop()


def _drill_profile(root: Path, info: dict[str, Any]) -> tuple[Profile, Secrets]:
    """The responder's profile on the lab (its ADMC, the mailstore) in a home and config of its own under
    ``root``, with its password and MFA code given as a responder's cron would (no session cached)."""
    from pcnctl.config import Config, make_profile, save_config
    from pcnctl.ent.credentials import Secrets
    from pcnctl.env import Environment

    profile = make_profile(
        "drill", url=info["base_url"], login=info["accounts"]["admc"]["login"], mailstore=info["mailstore"]
    )
    save_config(Config(path=root / "config.yaml", profiles={"drill": profile}, current="drill"))
    env = Environment(
        config=root / "config.yaml",
        home=root / "state",
        profile="drill",
        secrets={"PCNCTL_PASSWORD": info["accounts"]["user_password"], "PCNCTL_MFA_CODE": info["mfa_code"]},
        session_cache=False,
    )
    return profile, Secrets(env)


def _start_wave(
    root: Path, data: Path, plan: Scenario, environ: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """``lab attack`` in its own process, returned once ``plan.start_after`` threats are delivered."""
    from pcnctl.lab.attack import command

    options = {
        "messages": plan.messages,
        "rate": plan.rate,
        "senders": plan.senders,
        "schools": plan.schools,
        "hijacked": plan.hijacked,
        "innocent": plan.innocent,
    }
    if plan.reply_after_cut:
        options["reply_after_cut"] = True
    log = (root / "attack.log").open("w")
    wave = subprocess.Popen(
        command(data, **options), stdout=subprocess.DEVNULL, stderr=log, env=child_environ(environ)
    )
    deadline = time.monotonic() + 300
    while len(_truth(data)["messages"]) < plan.start_after:
        if wave.poll() is not None or time.monotonic() > deadline:
            raise child_failed("the wave", root / "attack.log", wave.poll())
        time.sleep(0.05)
    return wave


def _respond(
    report: DrillReport, root: Path, profile: Profile, secrets: Secrets, playbook: Path, on_step: Any
) -> tuple[Incident, list[runner.StepReport]]:
    """The response: a new incident, the playbook with every approval given; containment is timed when
    its steps are done, the calls are counted."""
    from pcnctl.ent.edifice.driver import EdificeDriver
    from pcnctl.forensics.mailstore import Mailstore
    from pcnctl.ops.context import RunContext
    from pcnctl.playbooks import runner
    from pcnctl.playbooks.model import load
    from pcnctl.state.incidents import open_incident
    from pcnctl.state.store import StateStore

    driver = EdificeDriver.open(profile, secrets, use_cache=False)
    state = StateStore(root / "state")
    incident, _ = open_incident(state, None, title="drill: bomb-threat wave", operator="drill")
    book, problems = load(playbook)
    if book is None:
        raise RuntimeError("; ".join(str(p) for p in problems))
    done_steps: set[str] = set()

    def step_done(step: runner.StepReport) -> None:
        done_steps.add(step.id)
        if report.contained_at is None and all(s in done_steps for s in CONTAINMENT_STEPS):
            report.contained_at = time.time()
            report.calls_to_containment = driver.http.stats.requests
        if on_step is not None:
            on_step(step)

    ctx = RunContext.create(driver, incident, state, show_progress=False)
    store = Mailstore(str(profile.mailstore))
    try:
        steps = runner.run(
            book, runner.coerce_inputs(book, {}), ctx, store, approve_all=True, on_step=step_done
        )
    finally:
        ctx.close()
        store.close()
    report.steps = [s.to_row() for s in steps]
    report.phases = _phases(steps, report.scenario.capacity)
    stats = driver.http.stats
    report.calls, report.calls_throttled = stats.requests, stats.throttled
    report.calls_failed = sum(n for status, n in stats.statuses.items() if status >= 500)
    return incident, steps


# -- the unattended scenario: the watcher and a signed policy, nobody awake ---------------------------------


class _Hook:
    """The on-call chat's incoming webhook, on loopback: when the first page arrived."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hook = self
        self.first_at: float | None = None
        self.pages = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.first_at = hook.first_at or time.time()
                hook.pages += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/drill"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _signed_policy(root: Path, profile: Profile, playbook: Path, plan: Scenario) -> tuple[Profile, Path]:
    """Two administrators' keys, the allowed-signers file naming them, and a policy for the lab's ENT
    signed by both (limits: twice the wave's accounts, schools and messages; blocks for 8 hours)."""
    from dataclasses import replace as with_

    from pcnctl.files import write_private
    from pcnctl.watch import policy

    keys = root / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    lines = []
    for name in ("admc.dupont", "admc.martin"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name)], check=True
        )
        lines.append(f'{name} namespaces="pcnctl-approval" {(keys / f"{name}.pub").read_text().strip()}')
    allowed = keys / "allowed_signers"
    allowed.write_text("\n".join(lines) + "\n")
    limits = policy.Limits(2 * plan.hijacked, 2 * plan.schools, 2 * plan.messages, 8)
    path = root / "policy.yaml"
    until = datetime.now(UTC) + timedelta(days=1)
    write_private(path, policy.render(profile.url, playbook.resolve(), limits, until))
    for name in ("admc.dupont", "admc.martin"):
        policy.sign(path, keys / name)
    return with_(profile, approvers=str(allowed), policy=str(path)), path


def _unattended(
    report: DrillReport,
    root: Path,
    data: Path,
    profile: Profile,
    secrets: Secrets,
    environ: Mapping[str, str],
    lab: Any,
    playbook: Path,
    on_step: Any,
) -> tuple[Incident, list[runner.StepReport], subprocess.Popen[bytes]]:
    """The watcher follows the lab from before the wave, pages a webhook and runs the signed policy; the
    wave starts once it has looked once. Returns the response's incident, its steps and the wave."""
    from pcnctl.ent.edifice.driver import EdificeDriver
    from pcnctl.forensics.mailstore import Mailstore
    from pcnctl.reports.audit.checks import DEFAULT_WATCHLIST
    from pcnctl.state.incidents import Incident
    from pcnctl.state.store import StateStore
    from pcnctl.watch import policy as policies
    from pcnctl.watch.paging import Channels
    from pcnctl.watch.watcher import CycleReport, Watcher, WatchSettings

    plan = report.scenario
    profile, path = _signed_policy(root, profile, playbook, plan)
    found = policies.load(path)
    signers = policies.signers(found, profile.approvers, str(profile.login))
    hook, stop, looked = _Hook(), threading.Event(), threading.Event()
    driver = EdificeDriver.open(profile, secrets, use_cache=False)
    state, store = StateStore(root / "state"), Mailstore(str(profile.mailstore))
    outcome: list[list[runner.StepReport]] = []  # the steps of each run of the watcher's playbooks
    failures: list[BaseException] = []

    def cycle(r: CycleReport) -> None:
        looked.set()
        if r.response is not None:
            report.response, report.passes = r.response.response.status, r.response.response.passes
            outcome.append(r.response.steps)

    def detected(_found: object) -> None:
        report.detected_at = report.detected_at or time.time()

    def pause(seconds: float) -> None:
        stop.wait(seconds)

    channels, settings = Channels(webhook_url=hook.url), WatchSettings(interval_s=plan.interval)
    watcher = Watcher(
        driver,
        store,
        state,
        DEFAULT_WATCHLIST,
        channels,
        settings,
        found,
        signers,
        playbook=str(playbook),
        sleep=pause,
        on_step=_containment(report, driver, on_step),
        on_detect=detected,
    )

    def follow() -> None:
        try:
            watcher.run(None, on_cycle=cycle, until=stop.is_set)
        except BaseException as exc:  # told to the drill below, not lost in the thread
            failures.append(exc)
            looked.set()

    thread = threading.Thread(target=follow, name="watcher", daemon=True)
    thread.start()
    try:
        looked.wait(300)
        report.blocked_before = _blocked(data)
        before = lab.control("/__lab/state")["counters"]
        wave = _start_wave(root, data, plan, environ)
        deadline, over = time.monotonic() + 900, 0.0
        looks = 1 if watcher.settings.second_look_ms is None else 2

        def answered() -> bool:
            return report.passes >= looks or report.response not in ("", "done")

        while not answered() and not failures and time.monotonic() < deadline:
            if wave.poll() is not None:  # over: three more looks at most, then scored as never contained
                over = (
                    over
                    or time.monotonic()
                    + 3 * plan.interval
                    + 5
                    + (watcher.settings.second_look_ms or 0) / 1000
                )
                if time.monotonic() > over:
                    break
            time.sleep(0.1)
        wave.wait(timeout=900)
    finally:
        stop.set()
        thread.join(timeout=900)
        hook.close()
        store.close()
    if failures:
        raise failures[0]
    after = lab.control("/__lab/state")["counters"]
    report.lab_requests = after["requests"] - before["requests"]
    report.lab_throttled = after["throttled"] - before["throttled"]
    report.paged_at, report.response_started_at = hook.first_at, report.detected_at or time.time()
    stats = driver.http.stats
    report.calls, report.calls_throttled = stats.requests, stats.throttled
    report.calls_failed = sum(n for status, n in stats.statuses.items() if status >= 500)
    report.steps = [s.to_row() for steps in outcome for s in steps]
    report.phases = _phases([s for steps in outcome for s in steps], report.scenario.capacity)
    later = [s for steps in outcome[1:] for s in steps if s.id == "block-senders"]
    report.blocked_later = sum(StepParams(s.result).integer("count") or 0 for s in later)
    last = watcher.watch.last_incident()
    incident = Incident.load(state, last[0]) if last else None
    state.close()
    if incident is None:
        raise RuntimeError(f"the watcher detected nothing (see {root / 'lab.log'})")
    return incident, outcome[0] if outcome else [], wave


def _containment(report: DrillReport, driver: Any, on_step: Any) -> Any:
    """The step callback that times containment (the senders blocked and student messaging cut), at each
    run of the playbook: the last one's is when every account it blocked was blocked."""
    done_steps: set[str] = set()

    def step_done(step: runner.StepReport) -> None:
        done_steps.add(step.id)
        first = report.first_contained_at is None and all(s in done_steps for s in CONTAINMENT_STEPS)
        more = (
            report.first_contained_at is not None and step.id == "block-senders" and step.result.get("count")
        )
        if first or more:
            # The first run's containment, then a later run's block of more accounts (the second look).
            report.first_contained_at = report.first_contained_at or time.time()
            report.contained_at = time.time()
            report.calls_to_containment = driver.http.stats.requests
        if on_step is not None:
            on_step(step)

    return step_done


def _harm(
    report: DrillReport, data: Path, truth: TruthJson, readers: Readers | None, home: Path, ent: str
) -> None:
    """The measures from the first threat: when it landed, copies delivered and opened before the purge
    (the readers' own record), and schools cut outside those the threat reached."""
    from pcnctl.state import blocks
    from pcnctl.state.store import StateStore, ent_key

    threats = list(truth["messages"])
    db = _db(data)
    try:
        marks = ",".join("?" * len(threats)) or "''"
        first = db.execute(f"SELECT min(date) FROM conversation.messages WHERE id IN ({marks})", threats)
        first_ms = first.fetchone()[0]
    finally:
        db.close()
    report.first_threat_at = first_ms / 1000 if first_ms is not None else None
    if readers is not None:
        report.copies_delivered = readers.delivered_of(set(threats))
        report.copies_opened = readers.opened_of(set(threats))
    state = StateStore(home)
    try:
        cut = {b.uai for b in blocks.listed(state, ent_key(ent), include_lifted=True)}
    finally:
        state.close()
    report.schools_cut_outside = len(cut - set(truth["schools"]))


def _phases(steps: list[runner.StepReport], capacity: float) -> list[Row]:
    """Each step's time by phase, with the phase's floor (its calls at the ENT's capacity)."""
    return [s.timing.row(s.id, capacity) for s in steps if s.status == "done"]


def _write_report(path: Path, report: DrillReport, incident: Incident) -> None:
    measures = {r["measure"]: r["value"] for r in report.rows()}
    body = {
        **measures,
        "time by step and phase": report.phases,
        "contained": report.contained,
        "incident": incident.id,
        "scenario": asdict(report.scenario),
    }
    path.write_text(json.dumps(body, indent=1, ensure_ascii=False))


def _db(data: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{data / 'lab.sqlite'}?mode=ro", uri=True, timeout=30)
    db.execute("ATTACH DATABASE ? AS conversation", (f"file:{data / 'conversation.sqlite'}?mode=ro",))
    return db


def _blocked(data: Path) -> set[str]:
    db = _db(data)
    try:
        return {uid for (uid,) in db.execute("SELECT id FROM users WHERE blocked = 1")}
    finally:
        db.close()


def _result(results: dict[str, JsonObject], step: str) -> StepParams:
    """A step's result, read with the same typed accessors as its parameters."""
    return StepParams(results.get(step, {}))


def _score(
    report: DrillReport,
    data: Path,
    truth: TruthJson,
    blocked_before: set[str],
    results: dict[str, JsonObject],
) -> None:
    """The response against the ground truth: accounts, threats by time, copies, the export."""
    threats = truth["messages"]
    hijacked = set(truth.get("hijacked") or truth["senders"])
    senders, silent = set(truth["senders"]), set(truth.get("silent") or [])
    report.threats_total = len(threats)
    report.threats_as_replies = len(truth.get("replies") or [])
    db = _db(data)
    try:
        marks = ",".join("?" * len(threats)) or "''"
        dates = [
            d for (d,) in db.execute(f"SELECT date FROM conversation.messages WHERE id IN ({marks})", threats)
        ]
        report.copies_left = db.execute(
            f"SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({marks})", threats
        ).fetchone()[0]
        blocked = {uid for (uid,) in db.execute("SELECT id FROM users WHERE blocked = 1")}
    finally:
        db.close()
    start_ms, contained_ms = report.response_started_at * 1000, (report.contained_at or 1e18) * 1000
    report.threats_before_response = sum(1 for d in dates if d < start_ms)
    report.threats_after_response = sum(1 for d in dates if d >= start_ms)
    report.threats_after_containment = sum(1 for d in dates if d >= contained_ms)
    report.senders, report.senders_blocked = len(senders), len(senders & blocked)
    report.hijacked, report.hijacked_blocked = len(hijacked), len(hijacked & blocked)
    report.silent, report.silent_blocked = len(silent), len(silent & blocked)
    report.innocents_blocked = len(blocked - blocked_before - hijacked)
    report.accounts_blocked = _result(results, "block-senders").integer("count") or 0
    report.messages_purged = _result(results, "purge").integer("purged") or 0
    report.export_file = _result(results, "export").text("file") or ""
    report.schools_exported = sorted(_result(results, "export").texts("schools"))
    report.schools_expected = sorted(truth["schools"])
