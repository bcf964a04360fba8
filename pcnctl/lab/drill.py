"""``pcnctl lab drill``: a wave on a fresh lab, answered by the reviewed playbook, unattended, and scored.

It starts a lab, plays a wave in the background, waits for the first threats to land, then runs
``bomb-threat-wave.yaml`` with every approval given (as an unattended run would be), and compares the result
with the lab's ground truth: every hijacked account blocked, no threat delivered once the response had
blocked the senders and student messaging, every copy purged, and the affected-schools export equal to the
schools that really received the threat. It passes only when the wave is contained.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLAYBOOK = Path(__file__).resolve().parent.parent.parent / "playbooks" / "bomb-threat-wave.yaml"
CONTAINMENT_STEPS = ("block-senders", "block-student-messaging")


@dataclass
class DrillReport:
    started_at: float
    response_started_at: float = 0.0
    contained_at: float | None = None
    threats_before_response: int = 0
    threats_after_response: int = 0
    threats_after_containment: int = 0
    threats_total: int = 0
    senders: int = 0
    senders_blocked: int = 0
    accounts_blocked: int = 0
    messages_purged: int = 0
    copies_left: int = 0
    export_file: str = ""
    schools_expected: list[str] = field(default_factory=list)
    schools_exported: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def time_to_containment(self) -> float | None:
        return None if self.contained_at is None else self.contained_at - self.response_started_at

    @property
    def contained(self) -> bool:
        return (
            self.contained_at is not None
            and self.threats_after_containment == 0
            and self.senders_blocked == self.senders
            and self.copies_left == 0
            and self.schools_exported == self.schools_expected
        )

    def rows(self) -> list[dict[str, Any]]:
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
            {"measure": "hijacked accounts blocked", "value": f"{self.senders_blocked}/{self.senders}"},
            {"measure": "accounts blocked by the playbook", "value": self.accounts_blocked},
            {"measure": "messages purged", "value": f"{self.messages_purged}/{self.threats_total}"},
            {"measure": "copies left in mailboxes", "value": self.copies_left},
            {
                "measure": "affected schools (export = ground truth)",
                "value": f"{len(self.schools_exported)} ({match})",
            },
            {"measure": "affected-schools file", "value": self.export_file},
            {"measure": "verdict", "value": "CONTAINED" if self.contained else "NOT CONTAINED"},
        ]


def _truth(data: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((data / "attack-truth.json").read_text()))
    except (OSError, ValueError):
        return {"messages": [], "senders": [], "schools": []}


def run(
    root: Path,
    *,
    seed: str = "small",
    messages: int = 150,
    rate: float = 15.0,
    senders: int = 8,
    schools: int = 6,
    start_after: int = 12,
    playbook: Path = PLAYBOOK,
    on_step: Any = None,
) -> DrillReport:
    from pcnctl import credentials
    from pcnctl.config import Config, make_profile, save_config
    from pcnctl.edifice.driver import EdificeDriver
    from pcnctl.incident import open_incident
    from pcnctl.incident.run import RunContext
    from pcnctl.lab.attack import command
    from pcnctl.lab.process import LabProcess
    from pcnctl.playbooks import runner
    from pcnctl.playbooks.model import load
    from pcnctl.sources.mailstore import Mailstore
    from pcnctl.state.store import StateStore

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, mode=0o700)
    data = root / "lab"
    os.environ.update(
        PCNCTL_CONFIG=str(root / "config.yaml"), PCNCTL_HOME=str(root / "state"), PCNCTL_NO_SESSION_CACHE="1"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCNCTL_")}
    lab = LabProcess(data, "--seed", seed, log=(root / "lab.log").open("wb"))
    wave: subprocess.Popen[bytes] | None = None
    report = DrillReport(started_at=time.time())
    try:
        info = lab.info
        profile = make_profile(
            "drill",
            url=info["base_url"],
            login=info["accounts"]["admc"]["login"],
            mailstore=info["mailstore"],
        )
        save_config(Config(path=root / "config.yaml", profiles={"drill": profile}, current="drill"))
        credentials.provide(profile, "password", info["accounts"]["user_password"])
        os.environ["PCNCTL_MFA_CODE"] = info["mfa_code"]
        wave = subprocess.Popen(
            command(data, messages=messages, rate=rate, senders=senders, schools=schools),
            stdout=subprocess.DEVNULL,
            stderr=(root / "attack.log").open("w"),
            env=env,
        )
        deadline = time.monotonic() + 60
        while len(_truth(data)["messages"]) < start_after:
            if wave.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the wave did not start (see {root / 'attack.log'})")
            time.sleep(0.05)
        # The on-call response starts now.
        report.response_started_at = time.time()
        driver = EdificeDriver.open(profile, use_cache=False)
        state = StateStore(root / "state")
        incident, _ = open_incident(state, None, title="drill: bomb-threat wave", operator="drill")
        ctx = RunContext.create(driver, incident, state, show_progress=False)
        book, problems = load(playbook)
        if book is None:
            raise RuntimeError("; ".join(str(p) for p in problems))
        store = Mailstore(info["mailstore"])
        done_steps: set[str] = set()

        def step_done(step: runner.StepReport) -> None:
            done_steps.add(step.id)
            if report.contained_at is None and all(s in done_steps for s in CONTAINMENT_STEPS):
                report.contained_at = time.time()
            if on_step is not None:
                on_step(step)

        try:
            steps = runner.run(
                book, runner.coerce_inputs(book, {}), ctx, store, approve_all=True, on_step=step_done
            )
        finally:
            ctx.close()
        report.steps = [s.to_row() for s in steps]
        wave.wait(timeout=300)
        truth = _truth(data)
        threats = truth["messages"]
        report.threats_total = len(threats)
        report.senders = len(set(truth["senders"]))
        db = sqlite3.connect(f"file:{data / 'lab.sqlite'}?mode=ro", uri=True)
        db.execute("ATTACH DATABASE ? AS conversation", (f"file:{data / 'conversation.sqlite'}?mode=ro",))
        marks = ",".join("?" * len(threats)) or "''"
        dates = [
            d for (d,) in db.execute(f"SELECT date FROM conversation.messages WHERE id IN ({marks})", threats)
        ]
        start_ms, contained_ms = report.response_started_at * 1000, (report.contained_at or 1e18) * 1000
        report.threats_before_response = sum(1 for d in dates if d < start_ms)
        report.threats_after_response = sum(1 for d in dates if d >= start_ms)
        report.threats_after_containment = sum(1 for d in dates if d >= contained_ms)
        report.copies_left = db.execute(
            f"SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({marks})", threats
        ).fetchone()[0]
        smarks = ",".join("?" * len(set(truth["senders"]))) or "''"
        report.senders_blocked = db.execute(
            f"SELECT count(*) FROM users WHERE blocked = 1 AND id IN ({smarks})",
            sorted(set(truth["senders"])),
        ).fetchone()[0]
        db.close()
        results = {s.id: s.result for s in steps}
        report.accounts_blocked = int(results.get("block-senders", {}).get("count", 0))
        report.messages_purged = int(results.get("purge", {}).get("purged", 0))
        report.export_file = str(results.get("export", {}).get("file", ""))
        report.schools_exported = sorted(results.get("export", {}).get("schools", []))
        report.schools_expected = sorted(truth["schools"])
        store.close()
        (root / "drill-report.json").write_text(
            json.dumps(
                {
                    **{r["measure"]: r["value"] for r in report.rows()},
                    "contained": report.contained,
                    "incident": incident.id,
                },
                indent=1,
                ensure_ascii=False,
            )
        )
        return report
    finally:
        if wave is not None and wave.poll() is None:
            wave.send_signal(signal.SIGTERM)
            wave.wait(timeout=30)
        lab.stop()
