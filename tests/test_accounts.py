"""Compromised accounts over real HTTP against the lab: block, revoke, reset, codes, scope, resume, audit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from pcnctl.ent.edifice.auth import login_page_error
from tests import state
from tests.conftest import Cli, Lab


def students(lab: Lab, n: int, exclude_uais: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(id, login) of n students, spread over the schools."""
    marks = ",".join("?" * len(exclude_uais)) or "''"
    return [
        (r[0], r[1])
        for r in lab.sql(
            "SELECT u.id, u.login FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
            f" ON s.id = us.structure_id WHERE u.profile = 'Student' AND s.uai NOT IN ({marks})"
            " ORDER BY u.login LIMIT ?",
            *exclude_uais,
            n,
        )
    ]


def log_counts(lab: Lab, action: str) -> dict[str, int]:
    return dict(
        lab.sql("SELECT user_id, count(*) FROM account_log WHERE action = ? GROUP BY user_id", action)
    )


def student_session(lab: Lab, login: str) -> requests.Session:
    s = requests.Session()
    r = s.post(
        lab.url + "/auth/login",
        data={"email": login, "password": lab.password},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302 and s.cookies.get("oneSessionId")
    return s


def session_alive(lab: Lab, s: requests.Session) -> bool:
    return s.get(lab.url + "/auth/oauth2/userinfo", allow_redirects=False, timeout=5).status_code == 200


def journal(home: Path, incident: str) -> list[dict[str, object]]:
    return state.journal(home, incident)


def test_block_1000_accounts_in_one_call(lab: Lab, admc: Cli, tmp_path: Path) -> None:
    admc.open_incidents("INC-T1")
    targets = students(lab, 1000)
    ids = tmp_path / "ids.csv"
    ids.write_text("id,login\n" + "".join(f"{i},{login}\n" for i, login in targets))
    result = admc(
        "accounts",
        "block",
        "--from-file",
        str(ids),
        "--max",
        "1000",
        "--yes",
        "--incident",
        "INC-T1",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    rows = result.json()
    assert len(rows) == 1000 and {r["result"] for r in rows} == {"done"}
    wanted = {i for i, _ in targets}
    blocked = {r[0] for r in lab.sql("SELECT id FROM users WHERE blocked = 1")}
    assert blocked == wanted
    assert set(log_counts(lab, "block").values()) == {1} and set(log_counts(lab, "block")) == wanted
    assert "(20 calls" in result.stderr  # an ADMC blocks through PUT /auth/users/block, 50 at a time
    # Again: nothing to do, nothing sent.
    again = admc("accounts", "block", "--from-file", str(ids), "--max", "1000", "--yes")
    assert again.exit_code == 0 and "already in the wanted state" in again.stderr
    assert set(log_counts(lab, "block").values()) == {1}


def test_a_session_opened_before_the_block_is_dead_after(lab: Lab, admc: Cli) -> None:
    ((uid, login),) = students(lab, 1)
    victim = student_session(lab, login)
    token = requests.post(
        lab.url + "/auth/oauth2/token",
        data={"grant_type": "password", "username": login, "password": lab.password, "scope": "userinfo"},
        auth=("pcnctl-lab", lab.info["oauth"]["password_client"]["client_secret"]),
        timeout=5,
    ).json()["access_token"]
    assert session_alive(lab, victim)
    result = admc("accounts", "block", login, "--yes")
    assert result.exit_code == 0, result.stderr
    assert not session_alive(lab, victim)
    bearer = requests.get(
        lab.url + "/auth/oauth2/userinfo",
        headers={"Authorization": f"Bearer {token}"},
        allow_redirects=False,
        timeout=5,
    )
    assert bearer.status_code == 302 and "/auth/login" in bearer.headers["Location"]  # no session any more
    again = requests.post(
        lab.url + "/auth/login",
        data={"email": login, "password": lab.password},
        allow_redirects=False,
        timeout=5,
    )
    # The platform re-renders its login page with the translated message, not the key.
    assert again.status_code == 200 and "a bloqué votre accès" in again.text
    assert login_page_error(again) == "auth.error.blockedUser"
    assert admc("accounts", "unblock", uid, "--yes").exit_code == 0
    assert session_alive(lab, student_session(lab, login))


def test_sessions_revoke_kills_old_sessions_but_leaves_login_possible(lab: Lab, admc: Cli) -> None:
    (uid, login), (uid2, login2) = students(lab, 2)
    old = student_session(lab, login)
    lab.write_sql("UPDATE users SET blocked = 1 WHERE id = ?", uid2)  # blocked for another reason
    result = admc("sessions", "revoke", login, login2, "--yes", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert "Edifice cannot end sessions without a block" in result.stderr
    by_login = {r["login"]: r["result"] for r in result.json()}
    assert by_login == {login: "done", login2: "already"}
    assert not session_alive(lab, old)
    assert session_alive(lab, student_session(lab, login))
    assert lab.sql("SELECT coalesce(blocked, 0) FROM users WHERE id = ?", uid2) == [
        (1,)
    ]  # revoking did not unblock it
    assert [a for (a,) in lab.sql("SELECT action FROM account_log WHERE user_id = ? ORDER BY seq", uid)] == [
        "block",
        "unblock",
    ]


def test_adml_cannot_touch_another_school(lab: Lab, adml: Cli) -> None:
    mine = tuple(lab.info["accounts"]["adml"][0]["schools"])
    ((uid, _login),) = students(lab, 1, exclude_uais=mine)
    for args in (
        ["accounts", "block", uid],
        ["accounts", "reset-password", uid],
        ["sessions", "revoke", uid],
    ):
        result = adml(*args, "--yes", "-p", "adml")
        assert result.exit_code == 7, (args, result.stderr)
        assert "outside this identity's scope" in result.stderr
    other = lab.sql("SELECT uai FROM structures WHERE uai NOT IN (?, ?) LIMIT 1", *mine)[0][0]
    by_school = adml("accounts", "block", "--school", other, "--profile", "Student", "--yes", "-p", "adml")
    assert by_school.exit_code == 7
    assert lab.sql("SELECT count(*) FROM account_log") == [(0,)]  # nothing reached the ENT
    inside = students(
        lab, 1, exclude_uais=tuple(u for (u,) in lab.sql("SELECT uai FROM structures") if u not in mine[:1])
    )
    ok = adml("accounts", "block", inside[0][1], "--yes", "-p", "adml")
    assert ok.exit_code == 0, ok.stderr


def test_unattended_run_without_yes_is_refused(lab: Lab, admc: Cli) -> None:
    ((uid, _login),) = students(lab, 1)
    result = admc("accounts", "block", uid)
    assert result.exit_code == 7 and "needs --yes" in result.stderr
    assert lab.sql("SELECT coalesce(blocked, 0) FROM users WHERE id = ?", uid) == [(0,)]


def test_acting_on_yourself_and_unknown_accounts_are_refused(lab: Lab, admc: Cli, tmp_path: Path) -> None:
    me = admc("accounts", "block", "admc.pcn", "--yes")
    assert me.exit_code == 7 and "acting as" in me.stderr
    unknown = admc("accounts", "block", "no.such.user", students(lab, 1)[0][1], "--yes")
    assert unknown.exit_code == 2 and "not found" in unknown.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("name,school\nx,y\n")
    assert admc("accounts", "block", "--from-file", str(bad), "--yes").exit_code == 2
    assert lab.sql("SELECT count(*) FROM account_log") == [(0,)]


def test_partial_failure_exit_code_and_retry_file(lab: Lab, adml: Cli) -> None:
    """An ADML blocks account by account (PUT /auth/block/:id): one failing account fails alone."""
    adml.open_incidents("INC-P")
    mine = lab.info["accounts"]["adml"][0]["schools"]
    others = tuple(u for (u,) in lab.sql("SELECT uai FROM structures") if u not in mine)
    targets = students(lab, 5, exclude_uais=others)
    failing = targets[2][0]
    lab.knobs(fail_match=f"/auth/block/{failing}")
    result = adml(
        "accounts",
        "block",
        *(i for i, _ in targets),
        "--yes",
        "--incident",
        "INC-P",
        "-o",
        "json",
        "-p",
        "adml",
    )
    assert result.exit_code == 6
    assert {r["id"]: r["result"] for r in result.json()}[failing] == "failed"
    failures = Path(os.environ["PCNCTL_HOME"]) / "incidents" / "INC-P" / "failures"
    (path,) = list(failures.iterdir())
    assert failing in path.read_text() and "--from-file" in result.stderr
    lab.knobs(fail_match="")
    retry = adml("accounts", "block", "--from-file", str(path), "--yes", "--incident", "INC-P", "-p", "adml")
    assert retry.exit_code == 0, retry.stderr
    assert lab.sql("SELECT count(*) FROM users WHERE blocked = 1") == [(5,)]


def test_capacity_limit_is_absorbed_without_loss_or_repeat(lab: Lab, admc: Cli) -> None:
    targets = students(lab, 100)
    lab.knobs(capacity=40)
    result = admc("sessions", "revoke", *(i for i, _ in targets), "--max", "200", "--yes", "-o", "json")
    state = lab.counters()
    lab.knobs(capacity=0)
    assert result.exit_code == 0, result.stderr
    assert {r["result"] for r in result.json()} == {"done"} and len(result.json()) == 100
    counts = log_counts(lab, "block")
    assert set(counts) == {i for i, _ in targets} and set(counts.values()) == {1}
    assert set(log_counts(lab, "unblock").values()) == {1}
    assert state["throttled"] > 0, state  # the lab did push back, and nothing was lost


def test_injected_5xx_are_absorbed_without_loss_or_repeat(lab: Lab, admc: Cli) -> None:
    """100 accounts, two calls each, one call in seven answered 500: a few dozen faults, each retried
    (the fan-out then paces at one call in flight, so more accounts only make the run longer)."""
    targets = students(lab, 100)
    lab.knobs(fail_rate=0.15)
    result = admc("sessions", "revoke", *(i for i, _ in targets), "--max", "200", "--yes", "-o", "json")
    state = lab.counters()
    lab.knobs(fail_rate=0)
    assert result.exit_code == 0, result.stderr
    assert {r["result"] for r in result.json()} == {"done"} and len(result.json()) == 100
    counts = log_counts(lab, "block")
    assert set(counts) == {i for i, _ in targets} and set(counts.values()) == {1}
    assert set(log_counts(lab, "unblock")) == {i for i, _ in targets}
    assert state["faults"] >= 10, state


def test_a_killed_run_resumes_and_does_each_account_once(lab: Lab, admc: Cli, tmp_path: Path) -> None:
    admc.open_incidents("INC-KILL")
    targets = students(lab, 400)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(i for i, _ in targets) + "\n")
    lab.knobs(latency_ms=15)
    home = Path(os.environ["PCNCTL_HOME"])
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pcnctl",
            "accounts",
            "block",
            "--from-file",
            str(ids),
            "--max",
            "400",
            "--yes",
            "--incident",
            "INC-KILL",
            "--concurrency",
            "4",
            "-q",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(1 for r in journal(home, "INC-KILL") if r.get("phase") == "done") >= 60:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lab.knobs(latency_ms=0)
    done_before = {r["key"] for r in journal(home, "INC-KILL") if r.get("phase") == "done"}
    assert 60 <= len(done_before) < 400
    result = admc("incident", "resume", "INC-KILL", "-o", "json")
    assert result.exit_code == 0, result.stderr
    resumed = {r["id"] for r in result.json() if r["result"] == "done"}
    assert not resumed & done_before  # nothing done twice
    counts = log_counts(lab, "block")
    assert set(counts) == {i for i, _ in targets} and set(counts.values()) == {1}
    assert admc("incident", "resume", "INC-KILL").stderr.strip().endswith("nothing left to resume")
    show = admc("incident", "show", "INC-KILL", "-o", "json").json()
    assert show[0]["done"] + show[0]["already"] == 400 and show[0]["identity"].startswith("admc.pcn")


def test_audit_log_chain_detects_an_edited_line(lab: Lab, admc: Cli) -> None:
    assert admc("accounts", "block", *(i for i, _ in students(lab, 3)), "--yes").exit_code == 0
    ok = admc("audit", "verify-log", "-o", "json")
    assert ok.exit_code == 0 and ok.json()["entries"] == 4 and ok.json()["intact"] is True
    log = Path(os.environ["PCNCTL_HOME"]) / "audit.log"
    lines = log.read_text().splitlines()
    entry = json.loads(lines[2])
    assert entry["auth"] == "cookie" and entry["actor"].startswith("admc.pcn") and entry["result"] == "done"
    lines[2] = lines[2].replace('"result":"done"', '"result":"already"')
    log.write_text("\n".join(lines) + "\n")
    bad = admc("audit", "verify-log", "-o", "json")
    assert bad.exit_code == 11 and bad.json()["first_bad_line"] == 3
    del lines[2]
    log.write_text("\n".join(lines) + "\n")
    assert admc("audit", "verify-log").exit_code == 11


def test_reset_password_and_renewal_codes(lab: Lab, admc: Cli, tmp_path: Path) -> None:
    admc.open_incidents("INC-C")
    (uid, login), (_uid2, login2) = students(lab, 2)
    live = student_session(lab, login)
    forced = admc("accounts", "reset-password", login, "--yes")
    assert forced.exit_code == 0, forced.stderr
    assert lab.sql("SELECT change_pw, coalesce(blocked, 0) FROM users WHERE id = ?", uid) == [(1, 0)]
    assert not session_alive(lab, live)  # revoked first: the reset alone would not end it
    erased = admc("accounts", "reset-password", login2, "--mode", "erase", "--yes")
    assert erased.exit_code == 0
    refused = requests.post(
        lab.url + "/auth/login",
        data={"email": login2, "password": lab.password},
        allow_redirects=False,
        timeout=5,
    )
    assert refused.status_code == 200 and login_page_error(refused) == "auth.error.authenticationFailed"
    out = tmp_path / "codes.csv"
    codes = admc(
        "accounts", "renewal-codes", login2, "--yes", "--out", str(out), "-o", "csv", "--incident", "INC-C"
    )
    assert codes.exit_code == 0, codes.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    code = out.read_text().splitlines()[1].split(",")[-1]
    assert len(code) == 8 and code not in codes.stdout  # never on stdout (cron logs) unless asked
    home = Path(os.environ["PCNCTL_HOME"])
    assert code not in state.journal_text(home, "INC-C")
    assert code not in (home / "audit.log").read_text()
    assert code not in (home / "audit.log").read_text()
    # The code typed as a password leads the legitimate user to the page that sets a new password.
    first = requests.post(
        lab.url + "/auth/login", data={"email": login2, "password": code}, allow_redirects=False, timeout=5
    )
    assert first.status_code == 302 and first.headers["Location"] == f"/auth/reset/{code}?login={login2}"


def test_block_profile_restores_exactly_and_leaves_traces(lab: Lab, admc: Cli) -> None:
    admc.open_incidents("INC-BP")
    uai = lab.info["accounts"]["adml"][0]["schools"][0]
    pupils = lab.sql(
        "SELECT u.id FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
        " ON s.id = us.structure_id WHERE s.uai = ? AND u.profile = 'Student' ORDER BY u.id",
        uai,
    )
    already = pupils[0][0]
    lab.write_sql("UPDATE users SET blocked = 1 WHERE id = ?", already)
    dry = admc(
        "accounts", "block-profile", "--school", uai, "--profile", "Student", "--dry-run", "-o", "json"
    )
    assert dry.exit_code == 0 and dry.json()[0]["already"] == 1
    block = admc(
        "accounts", "block-profile", "--school", uai, "--profile", "Student", "--yes", "--incident", "INC-BP"
    )
    assert block.exit_code == 0, block.stderr
    assert lab.sql(
        "SELECT count(*) FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
        " ON s.id = us.structure_id WHERE s.uai = ? AND u.profile = 'Student' AND coalesce(u.blocked, 0) = 0",
        uai,
    ) == [(0,)]
    lift = admc(
        "accounts",
        "block-profile",
        "--school",
        uai,
        "--profile",
        "Student",
        "--unblock",
        "--yes",
        "--incident",
        "INC-BP",
    )
    assert lift.exit_code == 0, lift.stderr
    blocked_now = lab.sql(
        "SELECT u.id FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
        " ON s.id = us.structure_id WHERE s.uai = ? AND u.profile = 'Student' AND u.blocked = 1",
        uai,
    )
    assert blocked_now == [(already,)]  # exactly the state before the incident
    traces = admc("accounts", "block-traces", "--school", uai, "-o", "json").json()
    assert [t["action"] for t in traces] == ["BLOCK", "UNBLOCK"] and traces[0]["by"]


def test_guard_rails_refuse_before_anything_changes(lab: Lab, admc: Cli, tmp_path: Path) -> None:
    uai = lab.info["accounts"]["adml"][0]["schools"][0]
    login = lab.info["accounts"]["student"]["login"]
    before = lab.counters()["requests"]
    everyone = admc("accounts", "block", "--school", uai, "--yes")
    assert everyone.exit_code == 2 and "teachers, staff and parents too" in everyone.stderr
    negative = admc("accounts", "block", login, "--max", "-5", "--yes")
    assert negative.exit_code == 2 and "--max" in negative.stderr
    unwritable = admc("accounts", "renewal-codes", login, "--out", "/proc/codes.csv", "--yes")
    assert unwritable.exit_code == 2 and "cannot write /proc/codes.csv" in unwritable.stderr
    assert lab.counters()["requests"] == before  # refused before even logging in
    assert lab.sql("SELECT count(*) FROM renewal_codes") == [(0,)]
    other = lab.info["accounts"]["adml"][1]["schools"][0]  # not the school of the ADMC's own account
    wide = admc("accounts", "block", "--school", other, "--all-profiles", "--dry-run", "-o", "json")
    assert wide.exit_code == 0 and {r["profile"] for r in wide.json()} >= {"Student", "Teacher"}
    table = admc("accounts", "block", "--school", other, "--profile", "Student", "--dry-run")
    assert table.exit_code == 0 and table.stdout.count("to_change") == 1  # the plan once, as the data
    assert "Plan: block" in table.stderr and "to_change" not in table.stderr
    shown = admc("accounts", "renewal-codes", login, "--yes", "--stdout", "-o", "json")
    assert shown.exit_code == 0 and len(shown.json()[0]["code"]) == 8


def test_incident_open_names_who_opened_it(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)  # as under cron or sudo -u
    opened = cli("incident", "open", "--id", "INC-WHO")
    assert opened.exit_code == 0, opened.stderr
    listed = {i["id"]: i for i in cli("incident", "list", "-o", "json").json()}
    by = str(listed["INC-WHO"].get("opened_by"))
    assert "unknown" not in by and "@" in by
