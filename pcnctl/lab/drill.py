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
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pcnctl.env import child_environ
from pcnctl.lab.attack import TruthJson
from pcnctl.lab.process import child_failed
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


SCENARIOS = {
    "small": Scenario(),
    "reference": Scenario(
        preset="paris",
        senders=100,
        hijacked=200,
        schools=50,
        messages=600,
        rate=20.0,
        innocent=300,
        latency_ms=20.0,
        capacity=300.0,
    ),
    "reply-all": Scenario(reply_after_cut=True),
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
            {"measure": "verdict", "value": "CONTAINED" if self.contained else "NOT CONTAINED"},
        ]


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
    try:
        profile, secrets = _drill_profile(root, lab.info)
        wave = _start_wave(root, data, plan, environ)
        blocked_before = _blocked(data)
        before = lab.control("/__lab/state")["counters"]
        report.response_started_at = time.time()  # the on-call response starts now
        incident, steps = _respond(report, root, profile, secrets, playbook, on_step)
        wave.wait(timeout=900)
        after = lab.control("/__lab/state")["counters"]
        report.lab_requests = after["requests"] - before["requests"]
        report.lab_throttled = after["throttled"] - before["throttled"]
        _score(report, data, _truth(data), blocked_before, {s.id: s.result for s in steps})
        _write_report(root / "drill-report.json", report, incident)
        return report
    finally:
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
    stats = driver.http.stats
    report.calls, report.calls_throttled = stats.requests, stats.throttled
    report.calls_failed = sum(n for status, n in stats.statuses.items() if status >= 500)
    return incident, steps


def _write_report(path: Path, report: DrillReport, incident: Incident) -> None:
    measures = {r["measure"]: r["value"] for r in report.rows()}
    body = {
        **measures,
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
