"""The safety spine over real HTTP against the lab: incidents that must exist, one lock per incident, state
per ENT, kill -9 then resume then rollback back to the exact prior state, tamper evidence, and banners that
are never posted twice."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pcnctl.state.store import StateStore
from tests import state
from tests.conftest import Cli, Lab, driver_for


def home() -> Path:
    return Path(os.environ["PCNCTL_HOME"])


def blocked(lab: Lab) -> set[str]:
    return {r[0] for r in lab.sql("SELECT id FROM users WHERE blocked = 1")}


def students_of(lab: Lab, uais: list[str], n: int) -> list[str]:
    marks = ",".join("?" * len(uais))
    return [
        r[0]
        for r in lab.sql(
            "SELECT DISTINCT u.id FROM users u JOIN user_structures us ON us.user_id = u.id "
            "JOIN structures s ON s.id = us.structure_id "
            f"WHERE u.profile = 'Student' AND s.uai IN ({marks}) ORDER BY u.id LIMIT ?",
            *uais,
            n,
        )
    ]


def calls(lab: Lab) -> int:
    return int(lab.counters()["requests"])


# -- incidents are opened on purpose ---------------------------------------------------------------


def test_a_mistyped_incident_is_an_error_and_sends_nothing(admc: Cli, lab: Lab) -> None:
    admc.open_incidents("INC-2024-0327")
    target = students_of(lab, [lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 1")[0][0]], 1)[0]
    before = calls(lab)
    typo = admc("accounts", "block", target, "--yes", "--incident", "INC-2024-0372")
    assert (
        typo.exit_code == 2
        and "no incident 'INC-2024-0372'" in typo.stderr
        and "incident open" in typo.stderr
    )
    assert calls(lab) == before  # refused before any request
    lift = admc("messaging", "unblock", "--incident", "INC-2024-0372", "--yes")
    assert lift.exit_code == 2 and "no incident" in lift.stderr
    assert target not in blocked(lab)
    listed = admc("incident", "list", "-o", "json").json()
    assert [i["id"] for i in listed] == ["INC-2024-0327"]  # the typo opened nothing


def test_two_runs_on_one_incident_do_not_race(admc: Cli, lab: Lab) -> None:
    admc.open_incidents("INC-L")
    target = students_of(lab, [lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 1")[0][0]], 1)[0]
    store = StateStore(home())
    with store.lock("INC-L"):  # another pcnctl run holds the incident
        second = admc("accounts", "block", target, "--yes", "--incident", "INC-L")
    assert second.exit_code == 7 and "in use by another pcnctl run" in second.stderr
    assert target not in blocked(lab)
    assert admc("accounts", "block", target, "--yes", "--incident", "INC-L").exit_code == 0


# -- state per ENT ---------------------------------------------------------------------------------


def test_two_ents_in_one_home_never_see_each_others_state(admc: Cli, lab: Lab) -> None:
    """Two profiles whose base URLs differ are two ENTs (pre-production and production, two académies):
    blocks, status, lifts and rollbacks of one never touch the other's records."""
    other = lab.url.replace("127.0.0.1", "localhost")
    assert admc("profile", "add", "preprod", "--url", other, "--login", "admc.pcn").exit_code == 0
    admc.open_incidents("INC-A", "INC-B")
    uai = lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 1")[0][0]
    block = ("messaging", "block", "--profile", "Student", "--school", uai, "--yes", "--no-verify", "-q")
    assert admc(*block, "--incident", "INC-A", "--ent", "lab").exit_code == 0
    on_a = admc("messaging", "status", "--ent", "lab", "-o", "json").json()
    assert [b["incident"] for b in on_a] == ["INC-A"]
    assert admc("messaging", "status", "--ent", "preprod", "-o", "json").json() == []
    lift = admc("messaging", "unblock", "--incident", "INC-A", "--ent", "preprod", "--yes")
    assert lift.exit_code == 0 and "No messaging block in force matches" in lift.stderr
    assert [b["incident"] for b in admc("messaging", "status", "--ent", "lab", "-o", "json").json()] == [
        "INC-A"
    ]
    on_b = admc(*block, "--incident", "INC-B", "--ent", "preprod", "--dry-run", "-o", "json")
    assert on_b.exit_code == 0 and "already" not in on_b.json()[0]["change"]  # not A's block
    nothing = admc("rollback", "INC-A", "--ent", "preprod", "--dry-run")
    assert "nothing to undo" in nothing.stderr
    assert admc("rollback", "INC-A", "--ent", "lab", "--yes").exit_code == 0
    assert admc("messaging", "status", "--ent", "lab", "-o", "json").json() == []


# -- kill -9, resume, rollback ------------------------------------------------------------------------


def _block_in_background(
    ids: Path, incident: str, ent: str, extra: tuple[str, ...]
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    command = ["accounts", "block", "--from-file", str(ids), "--max", "500", "--yes", "--incident", incident]
    return subprocess.Popen(
        [sys.executable, "-m", "pcnctl", "--ent", ent, *command, *extra, "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _sent(incident: str) -> int:
    return sum(1 for r in state.journal(home(), incident) if r.get("phase") == "sending")


@pytest.mark.parametrize(("who", "seed"), [("admc", 11), ("admc", 12), ("adml", 13), ("adml", 14)])
def test_resume_then_rollback_returns_the_exact_prior_state(
    cli: Cli, lab: Lab, tmp_path: Path, who: str, seed: int
) -> None:
    """Killed at a seeded random point, resumed, rolled back: the accounts are exactly as before the
    incident (those blocked before stay blocked), and no account was blocked twice."""
    login = "admc.pcn" if who == "admc" else lab.info["accounts"]["adml"][0]["login"]
    assert cli("profile", "add", who, "--url", lab.url, "--login", login).exit_code == 0
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    uais = lab.info["accounts"]["adml"][0]["schools"]
    targets = students_of(lab, uais, 240)
    already = targets[:5]  # blocked before the incident: rollback must leave them blocked
    lab.write_sql(f"UPDATE users SET blocked = 1 WHERE id IN ({','.join('?' * len(already))})", *already)
    before = blocked(lab)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(targets) + "\n")
    cli.open_incidents("INC-K")
    lab.knobs(latency_ms=20)
    kill_at = random.Random(seed).randint(5, 150)
    extra = ("--batch-size", "10") if who == "admc" else ("--concurrency", "4")
    proc = _block_in_background(ids, "INC-K", who, extra)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and _sent("INC-K") < kill_at:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lab.knobs(latency_ms=0)
    assert blocked(lab) != before or _sent("INC-K") == 0  # the kill left work half done
    resumed = cli("incident", "resume", "INC-K", "--ent", who, "-q")
    assert resumed.exit_code == 0, resumed.stderr
    assert blocked(lab) == before | set(targets)
    counts = dict(
        lab.sql("SELECT user_id, count(*) FROM account_log WHERE action = 'block' GROUP BY user_id")
    )
    assert set(counts.values()) == {1}  # no account blocked twice, whatever the kill point
    undone = cli("rollback", "INC-K", "--ent", who, "--yes")
    assert undone.exit_code == 0, undone.stderr
    assert blocked(lab) == before


def test_rollback_lifts_a_profile_block_and_keeps_earlier_blocks(admc: Cli, lab: Lab) -> None:
    uai = lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 1")[0][0]
    earlier = students_of(lab, [uai], 2)
    lab.write_sql("UPDATE users SET blocked = 1 WHERE id IN (?, ?)", *earlier)
    admc.open_incidents("INC-P")
    made = admc(
        "accounts", "block-profile", "--school", uai, "--profile", "Student", "--yes", "--incident", "INC-P"
    )
    assert made.exit_code == 0, made.stderr
    undone = admc("rollback", "INC-P", "--yes", "-o", "json")
    assert undone.exit_code == 0, undone.stderr
    assert [r["kind"] for r in undone.json()] == ["profile"]
    still = blocked(lab)
    assert set(earlier) <= still and not set(students_of(lab, [uai], 50)[2:]) & still


# -- tamper evidence -------------------------------------------------------------------------------


def _some_audit(admc: Cli, lab: Lab) -> Path:
    admc.open_incidents("INC-T")
    uai = lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 1")[0][0]
    for target in students_of(lab, [uai], 3):
        assert admc("accounts", "block", target, "--yes", "--incident", "INC-T", "-q").exit_code == 0
    log = home() / "audit.log"
    assert admc("audit", "verify-log").exit_code == 0
    return log


def test_a_truncated_or_deleted_audit_log_is_detected(admc: Cli, lab: Lab) -> None:
    log = _some_audit(admc, lab)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-2]))  # the last two entries cut off: the chain alone still holds
    cut = admc("audit", "verify-log", "-o", "json")
    assert cut.exit_code == 11 and "cut off" in cut.json()["problem"]
    log.unlink()
    gone = admc("audit", "verify-log", "-o", "json")
    assert gone.exit_code == 11 and "gone" in gone.json()["problem"]


def test_a_rewritten_audit_log_is_detected_by_its_seal_and_its_key(admc: Cli, lab: Lab) -> None:
    from pcnctl.state.auditlog import GENESIS, _digest

    admc.setenv(PCNCTL_AUDIT_KEY="a secret kept apart from the home")
    log = _some_audit(admc, lab)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    entries[1]["result"] = "nothing happened"
    prev = GENESIS
    for entry in entries:  # recompute every hash, as someone covering their tracks would
        entry["prev"] = prev
        entry["hash"] = prev = _digest(prev, entry)
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    forged = admc("audit", "verify-log", "-o", "json")
    assert forged.exit_code == 11 and "MAC" in forged.json()["problem"]
    admc.setenv(PCNCTL_AUDIT_KEY="")
    unsigned = admc("audit", "verify-log", "-o", "json")  # without the key, the seal still catches it
    assert unsigned.exit_code == 11 and "rewritten" in unsigned.json()["problem"]


def test_a_torn_last_line_is_reported_then_repaired(admc: Cli, lab: Lab) -> None:
    log = _some_audit(admc, lab)
    with log.open("a") as fh:
        fh.write('{"seq": 99, "at": "2026-')  # a crash in the middle of a write
    torn = admc("audit", "verify-log", "-o", "json")
    assert torn.exit_code == 0 and "torn" in torn.json()["warnings"]
    target = students_of(lab, [lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 1")[0][0]], 4)[3]
    after = admc("accounts", "block", target, "--yes", "--incident", "INC-T")
    assert after.exit_code == 0, after.stderr  # no internal error
    repaired = admc("audit", "verify-log", "-o", "json").json()
    assert repaired["intact"] and not repaired["warnings"]
    assert any(json.loads(line)["action"] == "audit:repair" for line in log.read_text().splitlines())


def test_an_altered_snapshot_is_refused_on_unblock(admc: Cli, lab: Lab) -> None:
    admc.open_incidents("INC-S")
    uai = lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 1")[0][0]
    block = ("messaging", "block", "--profile", "Student", "--school", uai, "--yes", "--no-verify", "-q")
    assert admc(*block, "--incident", "INC-S").exit_code == 0
    db = sqlite3.connect(home() / "state.db")
    ((run, body),) = db.execute("SELECT run, body FROM snapshots").fetchall()
    data = json.loads(body)
    school = next(iter(data["schools"].values()))
    school["prior"]["forged"] = {"relation": ["everyone", "everyone"]}
    db.execute("UPDATE snapshots SET body = ? WHERE run = ?", (json.dumps(data), run))
    db.commit()
    db.close()
    lift = admc("messaging", "unblock", "--incident", "INC-S", "--yes")
    assert lift.exit_code == 7 and "altered" in lift.stderr
    assert [b["incident"] for b in admc("messaging", "status", "-o", "json").json()] == ["INC-S"]


def test_resume_refuses_a_plan_injected_into_the_journal(admc: Cli, lab: Lab) -> None:
    admc.open_incidents("INC-J")
    victims = students_of(lab, [lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 1")[0][0]], 3)
    forged = {"t": "run", "run": "accounts.block-forged", "op": "accounts.block", "params": {},
              "items": [{"key": v, "blocked": False} for v in victims],
              "meta": {"profile": "lab", "url": lab.url}}  # fmt: skip
    db = sqlite3.connect(home() / "state.db")
    db.execute(
        "INSERT INTO journal (incident, ent, run, kind, at, body) VALUES (?,?,?,?,?,?)",
        ("INC-J", lab.url, forged["run"], "run", "2026-12-01T07:00:00.000Z", json.dumps(forged)),
    )
    db.commit()
    db.close()
    resumed = admc("incident", "resume", "INC-J")
    assert resumed.exit_code == 7 and "not the one recorded" in resumed.stderr
    assert not set(victims) & blocked(lab)


# -- non-idempotent effects ---------------------------------------------------------------------------


def test_a_resumed_banner_run_never_posts_twice(admc: Cli, lab: Lab) -> None:
    """A banner whose answer was lost is reported, not posted again; the others are posted once."""
    from pcnctl.ops import banners
    from pcnctl.ops.context import RunContext
    from pcnctl.state.incidents import create_incident

    store = StateStore(home())
    driver = driver_for("lab")
    schools = sorted(driver.list_schools(), key=lambda s: s.uai)[:3]
    with RunContext.create(driver, create_incident(store, "INC-N"), store) as ctx:
        params = {"title": "Info", "message": "Ne les ouvrez pas", "profiles": ["Teacher"]}
        run = ctx.start(banners.OP, params, [{"key": s.id, "uai": s.uai} for s in schools])
        ctx.sending(run, schools[0].id)
        driver.flash_message(
            schools[0].id, "Info", "Ne les ouvrez pas", ["Teacher"]
        )  # answer lost, then killed
    store.close()
    resumed = admc("incident", "resume", "INC-N", "-o", "json")
    assert resumed.exit_code == 0, resumed.stderr
    assert {r["school"]: r["result"] for r in resumed.json()} == {
        schools[0].uai: "unknown",
        schools[1].uai: "done",
        schools[2].uai: "done",
    }
    posted = dict(lab.sql("SELECT structure_id, count(*) FROM flashmsg GROUP BY structure_id"))
    assert [posted.get(s.id, 0) for s in schools] == [1, 1, 1]
    again = admc("incident", "resume", "INC-N")
    assert again.exit_code == 0 and "nothing left to resume" in again.stderr


# -- a 0.1 home ------------------------------------------------------------------------------------


def test_a_home_written_by_0_1_is_migrated(admc: Cli, lab: Lab) -> None:
    root = home() / "incidents" / "INC-OLD"
    (root / "snapshots").mkdir(parents=True)
    meta = {"identity": "admc.pcn", "profile": "lab", "url": lab.url}
    opened = {"id": "INC-OLD", "title": "t", "opened_at": "2026-11-20T07:00:00Z", "opened_by": "admc.pcn",
              "status": "open", "closed_at": None, "profiles": ["lab"]}  # fmt: skip
    (root / "incident.json").write_text(json.dumps(opened))
    records = [
        {
            "t": "run",
            "run": "messaging.block-1",
            "op": "messaging.block",
            "params": {},
            "items": [],
            "meta": meta,
        },
        {"t": "end", "run": "messaging.block-1", "status": "completed", "counts": {}},
    ]
    (root / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"t": "ite')
    (root / "snapshots" / "messaging.block-1.json").write_text(
        json.dumps({"profile": "Student", "schools": {}})
    )
    block = {"id": "messaging.block-1:0750001A", "run": "messaging.block-1", "incident": "INC-OLD",
             "school_id": "x", "uai": "0750001A", "name": "n", "profile": "Student", "method": "roles",
             "group": "g", "since": "2026-11-20T07:00:00Z", "by": "admc.pcn", "auth": "cookie", "until": None,
             "reason": "", "status": "active",
             "snapshot": str(root / "snapshots" / "messaging.block-1.json")}  # fmt: skip
    (home() / "messaging-blocks.json").write_text(json.dumps([block]))
    listed = admc("incident", "list", "-o", "json")
    assert listed.exit_code == 0 and [i["id"] for i in listed.json()] == ["INC-OLD"]
    assert "Imported" in listed.stderr
    assert [b["school"] for b in admc("messaging", "status", "-o", "json").json()] == ["0750001A"]
    assert [r["op"] for r in admc("incident", "show", "INC-OLD", "-o", "json").json()] == ["messaging.block"]
    assert (root / "journal.jsonl.migrated").exists() and not (home() / "messaging-blocks.json").exists()
    assert admc("audit", "verify-log").exit_code == 0


# -- retries that cannot do harm ---------------------------------------------------------------------------


def test_lost_answers_end_with_every_account_done_and_no_account_blocked_twice(adml: Cli, lab: Lab) -> None:
    adml.open_incidents("INC-R")
    targets = students_of(lab, lab.info["accounts"]["adml"][0]["schools"], 120)
    lab.knobs(lose_rate=0.25)  # a quarter of the writes take effect and their answer is lost
    result = adml("accounts", "block", *targets, "--yes", "--max", "200", "--incident", "INC-R", "-o", "json")
    lost = lab.counters()["lost"]
    lab.knobs(lose_rate=0)
    assert lost > 0 and result.exit_code in (0, 6), result.stderr
    rows = result.json()
    assert {r["id"] for r in rows} == set(targets) and {r["result"] for r in rows} <= {"done", "failed"}
    if result.exit_code == 6:  # what the retries could not confirm is reported, and resumes
        assert adml("incident", "resume", "INC-R").exit_code == 0
    assert set(targets) <= blocked(lab)
    writes = dict(
        lab.sql("SELECT user_id, count(*) FROM account_log WHERE action = 'block' GROUP BY user_id")
    )
    assert set(writes) == set(targets) and set(writes.values()) == {1}  # re-read, never blocked twice


def test_an_outage_is_ridden_out_without_hammering_the_ent(adml: Cli, lab: Lab, tmp_path: Path) -> None:
    """The ENT goes away for 2 s in the middle of a run: the run backs off (or stops, resumable), every
    account ends blocked, and the ENT got a few calls a second, not thousands."""
    adml.open_incidents("INC-O")
    targets = students_of(lab, lab.info["accounts"]["adml"][0]["schools"], 120)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(targets) + "\n")
    lab.knobs(latency_ms=10)
    proc = _block_in_background(ids, "INC-O", "adml", ("--concurrency", "8"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and _sent("INC-O") < 20:
        time.sleep(0.005)
    lab.knobs(outage_until=time.time() + 2)
    code = proc.wait(timeout=120)
    dropped = lab.counters()["dropped"]
    lab.knobs(outage_until=0, latency_ms=0)
    assert code in (0, 5, 6), code
    assert 0 < dropped <= 80, dropped  # backoff and the breaker: a few tries a second, not thousands
    if code != 0:
        assert adml("incident", "resume", "INC-O").exit_code == 0
    assert set(targets) <= blocked(lab)
    writes = dict(
        lab.sql("SELECT user_id, count(*) FROM account_log WHERE action = 'block' GROUP BY user_id")
    )
    assert set(writes.values()) == {1}


def test_a_login_is_retried_on_a_transient_5xx(admc: Cli, lab: Lab) -> None:
    lab.knobs(fail_match="/auth/login", fail_count=2)  # an overloaded ENT answers 500 twice, then logs in
    result = admc("schools", "list", "-o", "json")
    assert result.exit_code == 0, result.stderr
    lab.knobs(fail_match="/auth/login", fail_count=-1)
    down = admc("schools", "list", "-o", "json", env={"PCNCTL_NO_SESSION_CACHE": "1"})
    assert down.exit_code != 0 and "Traceback" not in down.stderr


def test_a_school_blocked_by_two_incidents_stays_cut_until_both_let_go(admc: Cli, lab: Lab) -> None:
    def graph() -> list[list[tuple[object, ...]]]:
        return [
            lab.sql("SELECT * FROM groups ORDER BY id"),
            lab.sql("SELECT * FROM communique ORDER BY 1, 2"),
        ]

    admc.open_incidents("INC-1", "INC-2")
    uai = lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 1")[0][0]
    before = graph()
    block = ("messaging", "block", "--profile", "Student", "--school", uai, "--yes", "--no-verify", "-q")
    assert admc(*block, "--incident", "INC-1").exit_code == 0
    cut = graph()
    joined = admc(*block, "--incident", "INC-2", "-o", "json")
    assert joined.exit_code == 0 and "joins the block" in joined.json()[0]["detail"]
    assert sorted(b["incident"] for b in admc("messaging", "status", "-o", "json").json()) == [
        "INC-1",
        "INC-2",
    ]
    first = admc("messaging", "unblock", "--incident", "INC-1", "--yes", "-o", "json")
    assert first.exit_code == 0 and "another incident still holds it" in first.json()[0]["detail"]
    assert graph() == cut  # still cut: INC-2 holds it
    assert admc("messaging", "unblock", "--incident", "INC-2", "--yes").exit_code == 0
    assert graph() == before


def test_an_interrupted_lift_resumes_and_restores_every_school(admc: Cli, lab: Lab) -> None:
    from pcnctl.ops.context import RunContext
    from pcnctl.ops.messaging_lift import OP_UNBLOCK
    from pcnctl.state import blocks as registry
    from pcnctl.state.incidents import Incident

    def graph() -> list[list[tuple[object, ...]]]:
        return [
            lab.sql("SELECT * FROM groups ORDER BY id"),
            lab.sql("SELECT * FROM communique ORDER BY 1, 2"),
        ]

    admc.open_incidents("INC-U")
    uais = [r[0] for r in lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 2")]
    before = graph()
    block = (
        "messaging",
        "block",
        "--profile",
        "Student",
        "--yes",
        "--no-verify",
        "-q",
        "--incident",
        "INC-U",
    )
    assert admc(*block, "--school", uais[0], "--school", uais[1]).exit_code == 0
    store = StateStore(home())
    driver = driver_for("lab")
    held = registry.active_blocks(store, lab.url)
    with RunContext.create(driver, Incident.load(store, "INC-U"), store) as ctx:
        items = [{"key": b.id, "uai": b.uai, "method": b.method} for b in held]
        run = ctx.start(OP_UNBLOCK, {}, items)  # a lift journalled by 0.2: its items name the blocks
        ctx.sending(run, held[0].id)  # killed here: nothing restored yet
    store.close()
    resumed = admc("incident", "resume", "INC-U", "-o", "json")
    assert resumed.exit_code == 0, resumed.stderr
    assert sorted(r["school"] for r in resumed.json()) == sorted(uais)
    assert graph() == before and admc("messaging", "status", "-o", "json").json() == []


def test_an_item_injected_into_a_run_is_never_undone(admc: Cli, lab: Lab) -> None:
    """Someone adds a 'done' record for an account the run never planned: rollback must not unblock it."""
    admc.open_incidents("INC-I")
    uai = lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 1")[0][0]
    planned, bystander = students_of(lab, [uai], 2)
    lab.write_sql("UPDATE users SET blocked = 1 WHERE id = ?", bystander)  # blocked for its own reasons
    assert admc("accounts", "block", planned, "--yes", "--incident", "INC-I").exit_code == 0
    db = sqlite3.connect(home() / "state.db")
    (run,) = db.execute("SELECT run FROM journal WHERE kind = 'run' AND incident = 'INC-I'").fetchone()
    forged = {"t": "item", "run": run, "key": bystander, "phase": "done"}
    db.execute(
        "INSERT INTO journal (incident, ent, run, kind, at, body) VALUES (?,?,?,?,?,?)",
        ("INC-I", lab.url, run, "item", "2026-12-01T07:00:00.000Z", json.dumps(forged)),
    )
    db.commit()
    db.close()
    assert admc("rollback", "INC-I", "--yes").exit_code == 0
    assert bystander in blocked(lab) and planned not in blocked(lab)


def test_a_throttled_block_is_retried_without_a_re_read(adml: Cli, lab: Lab) -> None:
    """A 429 says nothing was done: the retry sends the block again, without reading the account first
    and without a second 'sending' record (which a lost answer, whose outcome is unknown, would get)."""
    adml.open_incidents("INC-TH")
    targets = students_of(lab, lab.info["accounts"]["adml"][0]["schools"], 20)
    lab.knobs(fail_match="/auth/block/", fail_count=2, fail_status=429)
    result = adml("accounts", "block", *targets, "--yes", "--incident", "INC-TH", "-o", "json")
    faults = lab.counters()["faults"]
    lab.knobs(fail_match="", fail_count=-1, fail_status=500)
    assert result.exit_code == 0, result.stderr
    assert faults == 2 and set(targets) <= blocked(lab)
    sent = [r["key"] for r in state.journal(home(), "INC-TH") if r.get("phase") == "sending"]
    assert sorted(sent) == sorted(targets)  # once each, the two refused ones included
