"""What a block really contains on the platform, over real HTTP against the lab (which does what 6.15.4
does): replies pass a communication cut and pcnctl says so; the login lever and the purge each close them;
an account the incident wants blocked stays blocked when a login block is lifted."""

from __future__ import annotations

import requests

from tests.conftest import Cli, Lab
from tests.test_messaging import SCHOOL, login, member

PUPILS_OF_A_CLASS = (
    "SELECT g.id, u.id, u.login FROM groups g JOIN group_members gm ON gm.group_id = g.id JOIN users u"
    " ON u.id = gm.user_id JOIN structures s ON s.id = g.structure_id WHERE s.uai = ? AND g.profile ="
    " 'Student' AND g.sub_type = 'ClassGroup' ORDER BY g.name, u.login LIMIT 2"
)


def _profile(lab: Lab, cli: Cli, *extra: str) -> None:
    made = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore",
               lab.info["mailstore"], *extra)  # fmt: skip
    assert made.exit_code == 0, made.stderr
    cli.setenv(
        PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code, PCNCTL_CANARY_PASSWORD=lab.password
    )


def _send(s: requests.Session, lab: Lab, to: list[str], reply_to: str | None = None) -> requests.Response:
    return s.post(
        lab.url + "/conversation/send",
        params={"In-Reply-To": reply_to} if reply_to else None,
        json={"subject": "Sortie", "body": "Rendez-vous à 8 h", "to": to},
        headers={"X-XSRF-TOKEN": s.cookies["XSRF-TOKEN"]},
        timeout=5,
    )


def _class_message(lab: Lab) -> tuple[str, str, str, str, str]:
    """A teacher's message to a class's pupils: (message, class group, teacher id, pupil id, pupil login)."""
    (group, pupil, pupil_login), _ = lab.sql(PUPILS_OF_A_CLASS, SCHOOL)
    teacher_id, teacher = member(lab, SCHOOL, "Teacher")
    sent = _send(login(lab, teacher), lab, [group])
    assert sent.status_code == 200, sent.text
    return str(sent.json()["id"]), group, teacher_id, pupil, pupil_login


def test_replies_pass_a_communication_cut_and_pcnctl_says_so(lab: Lab, cli: Cli) -> None:
    _profile(lab, cli)
    cli.open_incidents("INC-R1")
    message, group, teacher, _pupil, pupil_login = _class_message(lab)
    block = cli("messaging", "block", "--profile", "Student", "--school", SCHOOL, "--yes", "--incident",
                "INC-R1", "-o", "json")  # fmt: skip
    assert block.exit_code == 0, block.stderr
    assert "still open: replies" in block.stderr and "group message(s) held" in block.stderr
    assert "still open: drafts" in block.stderr
    pupil = login(lab, pupil_login)
    assert _send(pupil, lab, [teacher]).status_code == 401  # a new message: refused
    replied = _send(pupil, lab, [group, teacher], reply_to=message)
    assert replied.status_code == 200, replied.text  # a reply-all to the class: the platform lets it through


def test_the_login_lever_closes_replies(lab: Lab, cli: Cli) -> None:
    _profile(lab, cli)
    cli.open_incidents("INC-R2")
    _message, _group, _teacher, _pupil, pupil_login = _class_message(lab)
    block = cli("messaging", "block", "--profile", "Student", "--school", SCHOOL, "--method", "login",
                "--yes", "--incident", "INC-R2")  # fmt: skip
    assert block.exit_code == 0, block.stderr
    assert "still open: replies" not in block.stderr
    r = requests.post(lab.url + "/auth/login", data={"email": pupil_login, "password": lab.password},
                      allow_redirects=False, timeout=5)  # fmt: skip
    assert "oneSessionId" not in r.cookies  # no session: no reply either


def test_purging_a_message_closes_the_replies_to_it(lab: Lab, cli: Cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _profile(lab, cli)
    cli.open_incidents("INC-R3")
    message, group, teacher, _pupil, pupil_login = _class_message(lab)
    assert cli("messaging", "block", "--profile", "Student", "--school", SCHOOL, "--yes", "--no-verify",
               "--incident", "INC-R3").exit_code == 0  # fmt: skip
    saved = tmp_path / "m.json"
    assert cli("messages", "search", "--like", message, "--save", str(saved), "-q").exit_code == 0
    purged = cli("messages", "purge", "--from-search", str(saved), "--yes", "--incident", "INC-R3")
    assert purged.exit_code == 0, purged.stderr
    assert _send(login(lab, pupil_login), lab, [group, teacher], reply_to=message).status_code == 401


def test_the_canary_tries_a_reply_and_the_verdict_names_it(lab: Lab, cli: Cli) -> None:
    """The canary holds a message from its partner: after a communication cut its new message is refused,
    its reply goes through, and the verdict says the block stops new messages only."""
    (canary_id, canary), (partner_id, partner) = (
        member(lab, SCHOOL, "Student", 1),
        member(lab, SCHOOL, "Teacher"),
    )
    assert _send(login(lab, partner), lab, [canary_id]).status_code == 200
    _profile(lab, cli, "--canary", canary, "--canary-to", partner)
    cli.open_incidents("INC-R4")
    result = cli("messaging", "block", "--profile", "Student", "--school", SCHOOL, "--yes", "--incident",
                 "INC-R4")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert f"canary {canary} reply to a message it holds" in result.stderr
    assert "NOT against replies" in result.stderr and "effective against new messages" in result.stderr
    assert partner_id


def test_a_hunted_account_stays_blocked_when_a_login_block_is_lifted(lab: Lab, cli: Cli) -> None:
    """The login lever blocks every pupil; the hunt then blocks one of them in the same incident (it was
    already blocked: the incident wants it so); lifting the lever unblocks the others, not that one."""
    _profile(lab, cli)
    cli.open_incidents("INC-R5")
    (hijacked, hijacked_login), (other, _o) = (
        member(lab, SCHOOL, "Student"),
        member(lab, SCHOOL, "Student", 3),
    )
    assert cli("messaging", "block", "--profile", "Student", "--school", SCHOOL, "--method", "login", "--yes",
               "--no-verify", "--incident", "INC-R5").exit_code == 0  # fmt: skip
    hunted = cli("accounts", "block", hijacked_login, "--yes", "--incident", "INC-R5")
    assert hunted.exit_code == 0 and "already" in hunted.stdout
    lifted = cli("messaging", "unblock", "--incident", "INC-R5", "--yes")
    assert lifted.exit_code == 0, lifted.stderr
    assert "kept blocked" in lifted.stderr + lifted.stdout and "INC-R5" in lifted.stderr + lifted.stdout
    blocked = dict(lab.sql("SELECT id, coalesce(blocked, 0) FROM users WHERE id IN (?, ?)", hijacked, other))
    assert blocked == {hijacked: 1, other: 0}


def test_a_hunted_account_stays_blocked_when_a_profile_block_is_lifted(lab: Lab, cli: Cli) -> None:
    _profile(lab, cli)
    cli.open_incidents("INC-R6")
    (hijacked, hijacked_login), (other, _o) = (
        member(lab, SCHOOL, "Student"),
        member(lab, SCHOOL, "Student", 3),
    )
    assert cli("accounts", "block-profile", "--profile", "Student", "--school", SCHOOL, "--yes",
               "--incident", "INC-R6").exit_code == 0  # fmt: skip
    assert cli("accounts", "block", hijacked_login, "--yes", "--incident", "INC-R6").exit_code == 0
    lifted = cli("accounts", "block-profile", "--profile", "Student", "--school", SCHOOL, "--unblock",
                 "--yes", "--incident", "INC-R6")  # fmt: skip
    assert lifted.exit_code == 0, lifted.stderr
    assert "kept blocked" in lifted.stderr
    blocked = dict(lab.sql("SELECT id, coalesce(blocked, 0) FROM users WHERE id IN (?, ?)", hijacked, other))
    assert blocked == {hijacked: 1, other: 0}


def test_a_session_revoke_never_reopens_an_account_an_incident_wants_blocked(lab: Lab, cli: Cli) -> None:
    _profile(lab, cli)
    cli.open_incidents("INC-R7", "INC-R8")
    (hijacked, hijacked_login) = member(lab, SCHOOL, "Student")
    assert cli("accounts", "block", hijacked_login, "--yes", "--incident", "INC-R7").exit_code == 0
    lab.write_sql("UPDATE users SET blocked = 0 WHERE id = ?", hijacked)  # unblocked behind the incident
    revoked = cli("sessions", "revoke", hijacked_login, "--yes", "--incident", "INC-R8", "-o", "json")
    assert revoked.exit_code == 0, revoked.stderr
    assert "kept blocked" in revoked.json()[0]["detail"]
    assert lab.sql("SELECT coalesce(blocked, 0) FROM users WHERE id = ?", hijacked) == [(1,)]
