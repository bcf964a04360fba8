"""Four-eyes approvals: on a profile with approvers, a purge waits for a second administrator's signature.

The keys are real OpenSSH keys and the signatures real ``ssh-keygen -Y`` signatures (openssh-client, which
``.ci/run`` installs); the purge runs against the lab over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pcnctl.lab import attack
from tests.conftest import Cli, Lab


def keys(folder: Path) -> tuple[Path, Path, Path]:
    """The operator's and the approver's SSH keys, and the allowed-signers file naming both by ENT login."""
    lines = []
    for name, login in (("operator", "admc.pcn"), ("approver", "approver.pcn")):
        key = folder / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
        )
        lines.append(f'{login} namespaces="pcnctl-approval" {(folder / f"{name}.pub").read_text().strip()}')
    allowed = folder / "allowed_signers"
    allowed.write_text("\n".join(lines) + "\n")
    return folder / "operator", folder / "approver", allowed


@pytest.fixture
def four_eyes(lab: Lab, cli: Cli, tmp_path: Path) -> tuple[Cli, Path, Path]:
    operator, approver, allowed = keys(tmp_path)
    made = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn",
               "--mailstore", lab.info["mailstore"], "--approvers", str(allowed))  # fmt: skip
    assert made.exit_code == 0, made.stderr
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    cli.open_incidents("INC-4E")
    return cli, operator, approver


def copies(lab: Lab, messages: list[str]) -> int:
    marks = ",".join("?" * len(messages))
    found = lab.sql(
        f"SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({marks})", *messages
    )
    return int(found[0][0])


def request_file() -> Path:
    """The approval request the refused run wrote into incident INC-4E."""
    return next((Path(os.environ["PCNCTL_HOME"]) / "incidents" / "INC-4E" / "approvals").glob("*.json"))


def threat_purge(cli: Cli, lab: Lab, tmp_path: Path, **wave: int) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A wave played, its threat searched and saved, and the purge command of that search in INC-4E."""
    played = dict(attack.run(lab.data_dir, rate=0, **wave))
    saved = tmp_path / "threat.json"
    assert cli("messages", "search", "--like", played["messages"][0], "--save", str(saved)).exit_code == 0
    return played, ("messages", "purge", "--from-search", str(saved), "--yes", "--incident", "INC-4E")


def audit_entries() -> list[dict[str, Any]]:
    log = Path(os.environ["PCNCTL_HOME"]) / "audit.log"
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_purge_waits_for_a_second_administrator(
    four_eyes: tuple[Cli, Path, Path], lab: Lab, tmp_path: Path
) -> None:
    cli, operator, approver = four_eyes
    wave, purge = threat_purge(cli, lab, tmp_path, senders=3, messages=12, schools=3, noise=5, random_seed=4)
    before = copies(lab, wave["messages"])
    waiting = cli(*purge)
    assert (
        waiting.exit_code == 7
        and "second administrator's approval: a purge cannot be undone" in waiting.stderr
    )
    assert copies(lab, wave["messages"]) == before  # nothing purged, no evidence taken
    request = request_file()
    asked = json.loads(request.read_text())
    threats = len(wave["messages"]) + len(wave["scheduled"])  # a search finds the scheduled ones too
    assert asked["op"] == "messages.purge" and asked["count"] == threats
    assert asked["params"]["query"]["like"] == wave["messages"][0] and asked["requested_by"].startswith(
        "admc"
    )

    assert cli("approve", str(request), "--key", str(operator), "--yes").exit_code == 0
    own = cli(*purge)
    assert own.exit_code == 7 and "signed by the operator's own key" in own.stderr
    assert copies(lab, wave["messages"]) == before

    shown = cli("approve", str(request), "--key", str(approver), "--yes", "-o", "json")
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["operation"] == "messages.purge" and shown.json()["items"] == threats
    done = cli(*purge)
    assert done.exit_code == 0, done.stderr
    assert copies(lab, wave["messages"]) == 0
    assert not request.with_name(request.name + ".sig").exists()  # used once
    assert request.with_name(request.name + ".sig.used").exists()
    started = [e for e in audit_entries() if e.get("action") == "messages.purge:start"]
    assert [e.get("approved_by") for e in started] == ["approver.pcn"]
    report = cli("incident", "report", "INC-4E", "--offline")
    assert report.exit_code == 0 and "approved by approver.pcn" in report.stdout
    rapport = cli("incident", "report", "INC-4E", "--offline", "--lang", "fr")
    assert "approuvé par approver.pcn" in rapport.stdout


def test_a_request_changed_after_its_signature_is_refused_and_small_runs_need_none(
    four_eyes: tuple[Cli, Path, Path], lab: Lab, tmp_path: Path
) -> None:
    cli, _operator, approver = four_eyes
    wave, purge = threat_purge(cli, lab, tmp_path, senders=2, messages=6, schools=2, noise=3, random_seed=6)
    assert cli(*purge).exit_code == 7
    request = request_file()
    assert cli("approve", str(request), "--key", str(approver), "--yes").exit_code == 0
    request.write_text(request.read_text().replace('"count": ', '"count": 1'))  # another count, after signing
    changed = cli(*purge)
    assert changed.exit_code == 7 and "does not describe this run's plan" in changed.stderr
    assert cli("approve", str(request), "--key", str(approver), "--yes").exit_code == 0  # signs what it sees
    forged = cli(*purge)  # what the approver saw is not the plan: refused all the same
    assert forged.exit_code == 7 and "does not describe this run's plan" in forged.stderr
    assert copies(lab, wave["messages"]) > 0
    gone = cli("approve", str(tmp_path / "nothing.json"), "--key", str(approver), "--yes")
    assert gone.exit_code == 2 and "no such approval request" in gone.stderr
    one = wave["sender_logins"][0]  # one account: below the four-eyes threshold
    blocked = cli("accounts", "block", one, "--yes", "--incident", "INC-4E")
    assert blocked.exit_code == 0, blocked.stderr
    assert lab.sql("SELECT blocked FROM users WHERE login = ?", one) == [(1,)]


def test_a_playbook_stops_at_the_purge_and_resumes_once_it_is_approved(
    four_eyes: tuple[Cli, Path, Path], lab: Lab
) -> None:
    cli, _operator, approver = four_eyes
    wave = attack.run(lab.data_dir, senders=2, messages=8, schools=2, rate=0, noise=3, random_seed=8)
    login, sender = wave["sender_logins"][0], wave["senders"][0]
    sent = [r[0] for r in lab.sql('SELECT id FROM conversation.messages WHERE "from" = ?', sender)]
    assert set(wave["scheduled"]) & set(sent)  # a threat it scheduled for later, only its own copy so far
    stopped = cli("accounts", "quarantine", login, "--incident", "INC-4E", "--yes")
    assert stopped.exit_code == 8 and "second administrator's approval" in stopped.stderr
    assert "pcnctl approve" in stopped.stderr and "pcnctl playbook resume INC-4E" in stopped.stderr
    assert lab.sql("SELECT blocked FROM users WHERE id = ?", sender) == [(1,)]  # one account: no approval
    assert copies(lab, sent) > 0
    request = request_file()
    assert cli("approve", str(request), "--key", str(approver), "--yes").exit_code == 0
    resumed = cli("playbook", "resume", "INC-4E", "--approve-all", "-o", "json")
    assert resumed.exit_code == 0, resumed.stderr
    marks = ",".join("?" * len(sent))
    left = lab.sql(
        "SELECT m.state FROM conversation.usermessages u JOIN conversation.messages m ON m.id = u.message_id"
        f" WHERE u.message_id IN ({marks})",
        *sent,
    )
    assert {state for (state,) in left} <= {"DRAFT"}  # sent and scheduled gone; the owner's drafts stay
    assert lab.sql("SELECT password FROM users WHERE id = ?", sender) == [("ERASED",)]


def test_doctor_checks_the_approvers_file(four_eyes: tuple[Cli, Path, Path], tmp_path: Path) -> None:
    cli = four_eyes[0]
    allowed = tmp_path / "allowed_signers"
    allowed.chmod(0o644)
    ready = cli("doctor", "-o", "json")
    checks = {r["check"]: r for r in ready.json()}
    assert ready.exit_code == 0 and checks["approvals"]["status"] == "ok"
    assert (
        "2 approver(s)" in checks["approvals"]["detail"] and "approver.pcn" in checks["approvals"]["detail"]
    )
    allowed.chmod(0o666)
    loose = {r["check"]: r for r in cli("doctor", "-o", "json").json()}
    assert loose["approvals"]["status"] == "warn" and "approve their own runs" in loose["approvals"]["detail"]
    allowed.write_text(
        allowed.read_text().splitlines()[0] + "\n"
    )  # one approver left: no second pair of eyes
    alone = cli("doctor", "-o", "json")
    assert alone.exit_code == 3 and "four eyes need two at least" in alone.stderr


def _plan(operator: str = "admc.pcn", count: int = 3) -> Any:
    from pcnctl.ops.approvals import Plan

    items = [{"key": f"m{i}"} for i in range(count)]
    return Plan(
        "http://ent", "INC-U", "messages.purge", {"query": {"like": "m0"}}, items, operator, "admc.pcn"
    )


def test_patterns_other_principals_and_pipes_never_stand_for_a_second_administrator(tmp_path: Path) -> None:
    """Signed by the operator's key listed under a pattern, a list or another case of their login; a
    request that is a pipe; an operator with no login: all refused."""
    from pcnctl.errors import RefusedError, UsageError
    from pcnctl.ops.approvals import IRREVERSIBLE, check, sign

    operator, _approver, allowed = keys(tmp_path)
    folder = tmp_path / "approvals"
    with pytest.raises(RefusedError, match="needs a second administrator"):
        check(_plan(), IRREVERSIBLE, str(allowed), folder)
    request = next(folder.glob("*.json"))
    operator_pub = (tmp_path / "operator.pub").read_text().strip()
    for name in ("admc.*", "ADMC.PCN", "other.pcn,admc.pcn"):
        allowed.write_text(f'{name} namespaces="pcnctl-approval" {operator_pub}\n')
        sign(request, operator)
        with pytest.raises(RefusedError):
            check(_plan(), IRREVERSIBLE, str(allowed), folder)
    with pytest.raises(RefusedError, match="operator's ENT login"):
        check(_plan(operator=""), IRREVERSIBLE, str(allowed), folder)
    for bad in ("[]", '{"kind": "pcnctl-approval-request", "expires_at": "tomorrow"}'):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(UsageError, match="is not a pcnctl approval request"):
            sign(tmp_path / "bad.json", operator)
    request.unlink()
    os.mkfifo(request)
    with pytest.raises(UsageError, match="not a regular file"):
        check(_plan(), IRREVERSIBLE, str(allowed), folder)
