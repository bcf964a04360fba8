"""The cron audit against the lab: findings after an attack, drift, expiry, --since last, the lock, exit
codes, the reports (one opened in a real headless browser), and the cron and systemd lines of docs/cron.md."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser import open_page
from tests.conftest import Cli, Lab, played_wave

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def wave(lab: Lab) -> dict[str, Any]:
    return played_wave(lab, senders=5, messages=30, schools=4, rate=0, noise=25, random_seed=9)


@pytest.fixture
def auditor(lab: Lab, cli: Cli) -> Cli:
    cli(
        "profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore", lab.info["mailstore"]
    )
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    return cli


def findings(result: Any) -> dict[str, dict[str, Any]]:
    return {f["check"]: f for f in json.loads(result.stdout)["findings"]}


def test_an_attack_triggers_mass_senders_and_watchlist(auditor: Cli, wave: dict[str, Any]) -> None:
    result = auditor("audit", "run", "--since", "1h", "--mass-messages", "4", "-o", "json")
    assert result.exit_code == 11, result.stderr
    found = findings(result)
    assert {r["id"] for r in found["mass_senders"]["rows"]} == set(wave["senders"])
    watchlist = found["watchlist"]
    # Every threat, those scheduled for later included; ordinary traffic not caught; drafts only counted.
    assert {r["id"] for r in watchlist["rows"]} == set(wave["messages"]) | set(wave["scheduled"])
    assert {r["id"] for r in watchlist["rows"] if r["state"] == "SCHEDULE"} == set(wave["scheduled"])
    assert f"{len(wave['scheduled'])} of them scheduled (not delivered yet)" in watchlist["summary"]
    assert f"also matching, left out: {len(wave['drafts'])} draft (never sent)" in watchlist["summary"]
    assert found["health"]["severity"] == "ok"
    fr = auditor(
        "audit", "run", "--since", "1h", "--checks", "mass_senders", "--lang", "fr", "--mass-messages", "4"
    )
    assert "Envois massifs" in fr.stdout and "critique" in fr.stdout


def test_since_last_does_not_report_a_finding_twice(auditor: Cli, wave: dict[str, Any]) -> None:
    first = auditor(
        "audit",
        "run",
        "--since",
        "last",
        "--checks",
        "watchlist,mass_senders",
        "--mass-messages",
        "4",
        "-o",
        "json",
    )
    threats = len(wave["messages"]) + len(wave["scheduled"])
    assert first.exit_code == 11 and findings(first)["watchlist"]["count"] == threats
    second = auditor("audit", "run", "--since", "last", "--checks", "watchlist,mass_senders", "--quiet")
    assert second.exit_code == 0 and second.stdout == ""


def test_drift_and_expired_blocks(auditor: Cli, lab: Lab, wave: dict[str, Any]) -> None:
    auditor.open_incidents("AUD-1")
    school = sorted(wave["schools"])[0]
    assert (
        auditor(
            "messaging",
            "block",
            "--profile",
            "Student",
            "--school",
            school,
            "--until",
            "1s",
            "--yes",
            "--no-verify",
            "--incident",
            "AUD-1",
        ).exit_code
        == 0
    )
    assert auditor("accounts", "block", wave["senders"][0], "--yes", "--incident", "AUD-1").exit_code == 0
    time.sleep(1.2)
    expired = auditor("audit", "run", "--since", "1h", "--checks", "blocks", "-o", "json")
    assert expired.exit_code == 10 and findings(expired)["blocks"]["rows"][0]["expired"] is True
    tolerant = auditor("audit", "run", "--since", "1h", "--checks", "blocks", "--fail-on", "critical", "-q")
    assert tolerant.exit_code == 0
    clean = auditor("audit", "run", "--since", "1h", "--checks", "drift", "-o", "json")
    assert clean.exit_code == 0 and findings(clean)["drift"]["count"] == 0
    # Behind the incident's back: the account is unblocked and the school's student link restored by hand.
    lab.write_sql("UPDATE users SET blocked = 0 WHERE id = ?", wave["senders"][0])
    lab.write_sql(
        "UPDATE groups SET users_dir = 'BOTH' WHERE profile = 'Student' AND structure_id ="
        " (SELECT id FROM structures WHERE uai = ?)",
        school,
    )
    drift = auditor("audit", "run", "--since", "1h", "--checks", "drift", "-o", "json")
    assert drift.exit_code == 11
    kinds = {(r["kind"], r["target"]) for r in findings(drift)["drift"]["rows"]}
    assert ("communication restored outside pcnctl", school) in kinds
    assert any(k == "account unblocked outside pcnctl" for k, _ in kinds)


def test_evidence_gaps(auditor: Cli, wave: dict[str, Any], tmp_path: Path) -> None:
    auditor.open_incidents("AUD-2")
    saved = tmp_path / "s.json"
    auditor("messages", "search", "--like", wave["messages"][0], "--save", str(saved))
    assert (
        auditor("messages", "purge", "--from-search", str(saved), "--yes", "--incident", "AUD-2").exit_code
        == 0
    )
    assert auditor("audit", "run", "--since", "1h", "--checks", "evidence").exit_code == 0
    bundle = next((Path(os.environ["PCNCTL_HOME"]) / "incidents" / "AUD-2" / "evidence").iterdir())
    (bundle / "messages.jsonl").write_text("")  # the evidence is lost or tampered with
    gap = auditor("audit", "run", "--since", "1h", "--checks", "evidence", "-o", "json")
    assert gap.exit_code == 11 and findings(gap)["evidence"]["rows"][0]["incident"] == "AUD-2"


def test_two_runs_never_overlap(auditor: Cli) -> None:
    lock = Path(os.environ["PCNCTL_HOME"]) / "audit.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        second = auditor("audit", "run", "--checks", "blocks")
        assert second.exit_code == 7 and "another audit run is in progress" in second.stderr
    finally:
        os.close(fd)
    assert auditor("audit", "run", "--checks", "blocks").exit_code == 0


def test_bad_input(auditor: Cli, tmp_path: Path) -> None:
    assert auditor("audit", "run", "--checks", "nope").exit_code == 2
    assert auditor("audit", "run", "--since", "tomorrow").exit_code == 2
    assert auditor("audit", "run", "-o", "pdf").exit_code == 2
    bad = tmp_path / "watch.txt"
    bad.write_text("broken: (unclosed\n")
    result = auditor("audit", "run", "--watchlist", str(bad))
    assert result.exit_code == 2 and f"{bad}:1" in result.stderr


def test_a_watchlist_pattern_that_can_backtrack_for_ever_is_refused_before_the_audit_reads(
    auditor: Cli, lab: Lab, tmp_path: Path
) -> None:
    from pcnctl.reports.audit.checks import DEFAULT_WATCHLIST, check_watchlist

    watch = tmp_path / "watch.txt"
    watch.write_text("bomb: bombe\nwords: (\\w+\\s?)+$\n")
    before = lab.counters()["requests"]
    result = auditor("audit", "run", "--watchlist", str(watch), "--since", "1h")
    assert result.exit_code == 2, result.stderr
    assert (
        f"{watch}:2: the regular expression of 'words' '(\\w+\\s?)+$' can take exponential" in result.stderr
    )
    assert "possessive" in result.stderr and "Traceback" not in result.stderr and result.stdout == ""
    assert lab.counters()["requests"] == before
    check_watchlist(DEFAULT_WATCHLIST)  # the shipped list passes the check it imposes
    watch.write_text("words: (\\w+\\s)*\\w+ explos\n")  # the rewrite the hint suggests
    fine = auditor(
        "audit", "run", "--watchlist", str(watch), "--since", "1h", "--checks", "watchlist", "-o", "json"
    )
    assert fine.exit_code in (0, 11) and findings(fine)["watchlist"]["rows"] is not None, fine.stderr


def test_the_html_report_opens_in_a_headless_browser(
    auditor: Cli, wave: dict[str, Any], tmp_path: Path
) -> None:
    page = tmp_path / "audit.html"
    result = auditor(
        "audit", "run", "--since", "1h", "--mass-messages", "4", "-o", "html", "--out", str(page)
    )
    assert result.exit_code == 11 and result.stdout == ""
    dom, png = open_page(page, tmp_path)
    assert dom.count("<table>") >= 4 and "Mass senders" in dom and "<svg" in dom
    assert png.startswith(b"\x89PNG") and len(png) > 20_000  # a rendered page with tables, not a blank one


def doc_block(kind: str) -> str:
    text = (ROOT / "docs" / "cron.md").read_text()
    blocks = re.findall(rf"```{kind}\n(.*?)```", text, re.S)
    return "\n".join(blocks)


def redirect(command: str, tmp: Path) -> str:
    pcnctl = str(Path(sys.executable).parent / "pcnctl")
    return (
        command.replace("/etc/pcnctl/audit.env", str(tmp / "audit.env"))
        .replace("/var/lib/pcnctl", str(tmp))
        .replace("/usr/local/bin/pcnctl", pcnctl)
    )


def cron_env(lab: Lab, tmp: Path) -> dict[str, str]:
    (tmp / "audit.env").write_text(
        f"PCNCTL_CONFIG={os.environ['PCNCTL_CONFIG']}\nPCNCTL_HOME={tmp / 'home'}\nPCNCTL_PROFILE=lab\n"
        f"PCNCTL_PASSWORD={lab.password}\nPCNCTL_MFA_CODE={lab.mfa_code}\n"
        # The test machine's kernel keyring is shared by every test: no session cached there.
        "PCNCTL_NO_KERNEL_KEYRING=1\n"
    )
    # What cron gives a job, and nothing else (Debian's cron: PATH=/usr/bin:/bin, the user's HOME).
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "SHELL": "/bin/sh", "LOGNAME": "pcnctl"}


def test_the_crontab_line_runs_as_written(
    auditor: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    line = next(li for li in doc_block("crontab").splitlines() if li and not li.startswith("#"))
    fields = line.split(None, 6)
    assert fields[:5] == ["*/15", "*", "*", "*", "*"] and fields[5] == "pcnctl"
    assert fields[6].split(" && ")[-1].startswith("/usr/local/bin/pcnctl ")  # cron's PATH has no pcnctl
    command = redirect(fields[6], tmp_path)
    result = subprocess.run(
        ["sh", "-c", command], env=cron_env(lab, tmp_path), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 11, result.stderr  # the wave is a critical finding
    assert result.stdout == "" and "critical" in result.stderr  # cron mails the summary
    time.sleep(1.1)  # reports are named to the second
    again = subprocess.run(
        ["sh", "-c", command], env=cron_env(lab, tmp_path), capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""  # nothing new: silence
    reports = sorted((tmp_path / "reports").glob("audit-*.md"))
    assert len(reports) == 2 and "Threat watchlist" in reports[0].read_text()  # the critical one is kept
    latest = tmp_path / "reports" / "latest.md"
    assert latest.is_symlink() and latest.resolve() == reports[1].resolve()


def test_the_systemd_unit_runs_as_written(
    auditor: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    unit = doc_block("ini")
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M)
    env_file = re.search(r"^EnvironmentFile=(.+)$", unit, re.M)
    success = re.search(r"^SuccessExitStatus=(.+)$", unit, re.M)
    assert exec_start and env_file and success and re.search(r"^OnCalendar=\*:0/15$", unit, re.M)
    assert re.search(r"^Wants=network-online.target$", unit, re.M)
    failed = re.search(r"^OnFailure=(.+)$", unit, re.M)
    assert failed and f"/etc/systemd/system/{failed.group(1)}" in unit  # the unit it names is given too
    cron_env(lab, tmp_path)
    env = {}  # systemd gives the service the environment file's variables and no PATH of its own
    for line in Path(redirect(env_file.group(1), tmp_path)).read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    argv = redirect(exec_start.group(1), tmp_path).split()
    assert os.path.isabs(argv[0])
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert (
        result.returncode == 11 and str(result.returncode) not in success.group(1).split()
    )  # the unit fails
    page = (tmp_path / "reports" / "latest.html").read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page


def test_fail_on_decides_what_a_quiet_run_prints(auditor: Cli, lab: Lab) -> None:
    config = Path(os.environ["PCNCTL_CONFIG"])
    config.write_text(config.read_text() + "audit:\n  latency_ms: 0.001\n")  # every route is slow
    warned = auditor("audit", "run", "--since", "1h", "--checks", "health", "--quiet")
    assert warned.exit_code == 10 and "warning" in warned.stderr
    quiet = auditor("audit", "run", "--since", "1h", "--checks", "health", "--quiet", "--fail-on", "critical")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_an_unwritable_report_path_is_refused_before_the_audit_runs(auditor: Cli, lab: Lab) -> None:
    before = lab.counters()["requests"]
    bad = auditor("audit", "run", "--checks", "health", "--out", "/proc/pcnctl/report.md")
    assert bad.exit_code == 2 and "cannot write" in bad.stderr
    both = auditor("audit", "run", "--out", "a.md", "--out-dir", "reports")
    assert both.exit_code == 2 and "exclusive" in both.stderr
    assert lab.counters()["requests"] == before


def test_thresholds_from_the_config_file(auditor: Cli, wave: dict[str, Any]) -> None:
    config = Path(os.environ["PCNCTL_CONFIG"])
    config.write_text(config.read_text() + "audit:\n  mass_messages: 4\n")
    flagged = auditor("audit", "run", "--since", "1h", "--checks", "mass_senders", "-o", "json")
    assert {r["id"] for r in findings(flagged)["mass_senders"]["rows"]} == set(wave["senders"])
    config.write_text(
        config.read_text().replace("mass_messages: 4", "mass_messages: 1000\n  mass_rate: 1000.0")
    )
    assert auditor("audit", "run", "--since", "1h", "--checks", "mass_senders").exit_code == 0
    config.write_text(config.read_text().replace("mass_messages: 1000", "mass_mesages: 4"))
    bad = auditor("audit", "run", "--checks", "blocks")
    assert bad.exit_code == 3 and "unknown audit setting 'mass_mesages'" in bad.stderr


def test_account_blocks_of_open_incidents_are_listed(auditor: Cli, wave: dict[str, Any]) -> None:
    auditor.open_incidents("AUD-3")
    assert auditor("accounts", "block", wave["senders"][0], "--yes", "--incident", "AUD-3").exit_code == 0
    result = auditor("audit", "run", "--since", "1h", "--checks", "blocks", "-o", "json")
    rows = findings(result)["blocks"]["rows"]
    assert [(r["kind"], r["target"], r["incident"]) for r in rows] == [
        ("account", wave["senders"][0], "AUD-3")
    ]


def test_the_french_audit_has_no_english_left(auditor: Cli, wave: dict[str, Any], tmp_path: Path) -> None:
    english = findings(auditor("audit", "run", "--since", "1h", "--mass-messages", "4", "-o", "json"))
    page = tmp_path / "audit-fr.html"
    made = auditor(
        "audit",
        "run",
        "--since",
        "1h",
        "--mass-messages",
        "4",
        "-o",
        "html",
        "--lang",
        "fr",
        "--out",
        str(page),
    )
    assert made.exit_code == 11
    text = page.read_text()
    summaries = [f["summary"] for f in english.values()]
    same = ("messages", "date", "route", "incident")  # the same word in both languages
    columns = {c for f in english.values() for row in f["rows"] for c in row if c not in same}
    assert {"login", "recipients", "subject"} <= columns
    labels = [
        "Mass senders",
        "Threat watchlist",
        "Window",
        "Overall",
        "Per school",
        "Summary",
        "nothing found",
    ]
    assert not [w for w in summaries + labels if w in text]
    assert not [c for c in columns if f"<th>{c}</th>" in text]
    assert "Envois massifs" in text and "comptes envoyant en masse parmi" in text
    assert re.search(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}", text)  # local times, French style
    chart = text[text.index("<svg") : text.index("</svg>")]
    assert "heure (Europe/Paris)" in chart and ">messages<" in chart and "<line" in chart  # axes and titles
    assert re.search(r">\d+</text>", chart)  # each bar says its count
