"""Messaging blocks over real HTTP against the lab: the real send route decides what each lever stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from pcnctl.ent.edifice.auth import login_page_error
from pcnctl.models import RelationCut
from tests import state
from tests.conftest import Cli, Lab, driver_for


def login(lab: Lab, user: str) -> requests.Session:
    s = requests.Session()
    r = s.post(
        lab.url + "/auth/login",
        data={"email": user, "password": lab.password},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302, f"login of {user} failed"
    return s


def send(lab: Lab, s: requests.Session, to_id: str) -> int:
    r = s.post(
        lab.url + "/conversation/send",
        json={"subject": "test", "body": "hello", "to": [to_id]},
        headers={"X-XSRF-TOKEN": s.cookies["XSRF-TOKEN"]},
        timeout=5,
    )
    return r.status_code


def member(lab: Lab, uai: str, profile: str, n: int = 0) -> tuple[str, str]:
    rows = lab.sql(
        "SELECT u.id, u.login FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
        " ON s.id = us.structure_id WHERE s.uai = ? AND u.profile = ? ORDER BY u.login LIMIT 1 OFFSET ?",
        uai,
        profile,
        n,
    )
    return rows[0][0], rows[0][1]


def graph(lab: Lab, uai: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The communication state of a school: group link directions and group->group edges."""
    groups = lab.sql(
        "SELECT g.id, g.profile, g.users_dir FROM groups g JOIN structures s ON s.id = g.structure_id"
        " WHERE s.uai = ? ORDER BY g.id",
        uai,
    )
    edges = lab.sql(
        "SELECT c.start_id, c.end_id FROM communique c JOIN groups g ON g.id = c.start_id"
        " JOIN structures s ON s.id = g.structure_id WHERE s.uai = ? ORDER BY 1, 2",
        uai,
    )
    return groups, edges


SCHOOL = "0782268S"
OTHER = "0948617F"
COLLEGE = "0785226G"


def test_communication_block_stops_students_not_teachers(lab: Lab, admc: Cli) -> None:
    admc.open_incidents("INC-M1")
    (student_id, student), (teacher_id, teacher) = (
        member(lab, SCHOOL, "Student"),
        member(lab, SCHOOL, "Teacher"),
    )
    other_student, other_teacher = member(lab, OTHER, "Student")[1], member(lab, OTHER, "Teacher")[0]
    pupil = login(lab, student)  # a session opened before the block
    assert send(lab, pupil, teacher_id) == 200
    dry = admc("messaging", "block", "--profile", "Student", "--school", SCHOOL, "--dry-run")
    assert dry.exit_code == 0 and dry.stdout.count("method") == 1  # the plan once, as the data
    assert "Plan: block Student messaging" in dry.stderr and " method " not in dry.stderr  # no table
    assert send(lab, pupil, teacher_id) == 200
    result = admc(
        "messaging",
        "block",
        "--profile",
        "Student",
        "--school",
        SCHOOL,
        "--yes",
        "--reason",
        "vague",
        "--incident",
        "INC-M1",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    assert result.json()[0]["result"] == "done" and "block effective" in result.stderr
    assert send(lab, pupil, teacher_id) == 401  # the real send route refuses, live session or not
    assert send(lab, login(lab, student), teacher_id) == 401
    assert send(lab, login(lab, teacher), student_id) == 200  # teachers still write to students
    assert send(lab, login(lab, other_student), other_teacher) == 200  # other schools unaffected
    status = admc("messaging", "status", "-o", "json").json()
    assert [(s["school"], s["method"], s["incident"], s["reason"]) for s in status] == [
        (SCHOOL, "communication", "INC-M1", "vague")
    ]
    assert status[0]["by"].startswith("admc.pcn")


def test_unblock_restores_exactly_the_snapshot(lab: Lab, admc: Cli) -> None:
    admc.open_incidents("INC-M2")
    before = graph(lab, SCHOOL)
    assert (
        admc(
            "messaging", "block", "--profile", "Student", "--school", SCHOOL, "--yes", "--incident", "INC-M2"
        ).exit_code
        == 0
    )
    assert graph(lab, SCHOOL) != before
    lifted = admc("messaging", "unblock", "--incident", "INC-M2", "--yes", "-o", "json")
    assert lifted.exit_code == 0, lifted.stderr
    assert graph(lab, SCHOOL) == before
    assert admc("messaging", "status", "-o", "json").json() == []
    (_student_id, student), (teacher_id, _t) = member(lab, SCHOOL, "Student"), member(lab, SCHOOL, "Teacher")
    assert send(lab, login(lab, student), teacher_id) == 200


def test_a_hand_change_between_block_and_unblock_is_reported_and_kept(lab: Lab, admc: Cli) -> None:
    admc.open_incidents("INC-M3")
    klass = lab.sql(
        "SELECT g.class_id FROM groups g JOIN structures s ON s.id = g.structure_id WHERE s.uai = ?"
        " AND g.class_id IS NOT NULL LIMIT 1",
        SCHOOL,
    )[0][0]
    ids = dict(lab.sql("SELECT profile, id FROM groups WHERE class_id = ? AND profile IS NOT NULL", klass))
    _groups, edges = graph(lab, SCHOOL)
    assert (
        admc(
            "messaging", "block", "--profile", "Student", "--school", SCHOOL, "--yes", "--incident", "INC-M3"
        ).exit_code
        == 0
    )
    # An administrator restores one relation and adds a new one by hand, through the ENT's own API.

    driver = driver_for("lab")
    driver.add_relation(ids["Student"], ids["Teacher"])
    driver.add_relation(ids["Student"], ids["Guest"])
    lifted = admc("messaging", "unblock", "--school", SCHOOL, "--yes", "-o", "json")
    assert lifted.exit_code == 0, lifted.stderr
    detail = lifted.json()[0]["detail"]
    assert (
        "restored by hand): kept" in detail and "1 relation(s) added by hand during the block: kept" in detail
    )
    _groups, after = graph(lab, SCHOOL)
    assert set(after) == set(edges) | {(ids["Student"], ids["Guest"])}


def test_roles_lever_shows_its_documented_gap(lab: Lab, admc: Cli) -> None:
    admc.open_incidents("INC-M4")
    (_student_id, student), (teacher_id, _t) = member(lab, SCHOOL, "Student"), member(lab, SCHOOL, "Teacher")
    live = login(lab, student)
    assert live.get(lab.url + "/conversation/conversation", timeout=5).status_code == 200
    result = admc(
        "messaging",
        "block",
        "--profile",
        "Student",
        "--school",
        SCHOOL,
        "--method",
        "roles",
        "--yes",
        "--incident",
        "INC-M4",
    )
    assert result.exit_code == 0, result.stderr
    assert "scripted POST /conversation/send still works" in result.stderr
    assert "live sessions keep their rights" in result.stderr and "--revoke-sessions" in result.stderr
    assert "can send (roles gap)" in result.stderr
    fresh = login(lab, student)
    assert fresh.get(lab.url + "/conversation/conversation", timeout=5).status_code == 401  # app hidden
    assert live.get(lab.url + "/conversation/conversation", timeout=5).status_code == 200  # cached rights
    assert send(lab, fresh, teacher_id) == 200  # and a scripted send still goes through
    assert admc("messaging", "unblock", "--incident", "INC-M4", "--yes").exit_code == 0
    assert login(lab, student).get(lab.url + "/conversation/conversation", timeout=5).status_code == 200


def test_login_lever_and_canary(lab: Lab, cli: Cli) -> None:
    cli.open_incidents("INC-M5", "INC-M6")
    (student_id, student), (_tid, teacher) = member(lab, SCHOOL, "Student"), member(lab, SCHOOL, "Teacher")
    _canary_id, canary = member(lab, SCHOOL, "Student", 1)
    already = member(lab, SCHOOL, "Student", 2)[0]
    lab.write_sql("UPDATE users SET blocked = 1 WHERE id = ?", already)
    cli(
        "profile",
        "add",
        "lab",
        "--url",
        lab.url,
        "--login",
        "admc.pcn",
        "--canary",
        canary,
        "--canary-to",
        teacher,
    )
    cli.setenv(
        PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code, PCNCTL_CANARY_PASSWORD=lab.password
    )
    verify_plain = cli(
        "messaging", "block", "--profile", "Student", "--school", SCHOOL, "--yes", "--incident", "INC-M5"
    )
    assert verify_plain.exit_code == 0, verify_plain.stderr
    assert (
        f"canary {canary} real send" in verify_plain.stderr
        and "refused (PermissionDeniedError)" in verify_plain.stderr
    )
    assert cli("messaging", "unblock", "--incident", "INC-M5", "--yes").exit_code == 0
    result = cli(
        "messaging",
        "block",
        "--profile",
        "Student",
        "--school",
        SCHOOL,
        "--method",
        "login",
        "--yes",
        "--incident",
        "INC-M6",
    )
    assert result.exit_code == 0, result.stderr
    assert "block effective" in result.stderr
    r = requests.post(
        lab.url + "/auth/login",
        data={"email": student, "password": lab.password},
        allow_redirects=False,
        timeout=5,
    )
    assert login_page_error(r) == "auth.error.blockedUser"
    assert cli("messaging", "unblock", "--incident", "INC-M6", "--yes").exit_code == 0
    assert lab.sql("SELECT coalesce(blocked, 0) FROM users WHERE id = ?", student_id) == [(0,)]
    assert lab.sql("SELECT coalesce(blocked, 0) FROM users WHERE id = ?", already) == [
        (1,)
    ]  # blocked before: kept


def test_expire_lifts_only_expired_blocks(lab: Lab, admc: Cli) -> None:
    assert (
        admc(
            "messaging",
            "block",
            "--profile",
            "Student",
            "--school",
            SCHOOL,
            "--until",
            "1s",
            "--yes",
            "--no-verify",
        ).exit_code
        == 0
    )
    assert (
        admc(
            "messaging",
            "block",
            "--profile",
            "Student",
            "--school",
            OTHER,
            "--until",
            "2h",
            "--yes",
            "--no-verify",
        ).exit_code
        == 0
    )
    time.sleep(1.2)
    status = {s["school"]: s["expired"] for s in admc("messaging", "status", "-o", "json").json()}
    assert status == {SCHOOL: True, OTHER: False}
    expire = admc("messaging", "expire", "-o", "json")
    assert expire.exit_code == 0, expire.stderr
    assert [r["school"] for r in expire.json()] == [SCHOOL]
    assert [s["school"] for s in admc("messaging", "status", "-o", "json").json()] == [OTHER]
    assert admc("messaging", "expire", "-q").stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "Student", "--school", SCHOOL, "--method", "switch"], "unknown method 'switch'"),
        (["--profile", "Student", "--school", SCHOOL, "--all-schools"], "not both"),
        (["--profile", "Student"], "not both and not neither"),
        (["--profile", "Pupil", "--school", SCHOOL], "unknown profile 'Pupil'"),
        (["--profile", "Student", "--school", SCHOOL, "--until", "lundi"], "not a date"),
        (["--profile", "Student", "--school", SCHOOL, "--until", "2020-01-01T08:00"], "already past"),
        (["--profile", "Student", "--school", "0750654E"], "check letter"),
    ],
)
def test_bad_input_changes_nothing(lab: Lab, admc: Cli, args: list[str], message: str) -> None:
    before = graph(lab, SCHOOL)
    result = admc("messaging", "block", *args, "--yes")
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert graph(lab, SCHOOL) == before


def test_all_schools_completes_and_a_killed_run_resumes(lab: Lab, admc: Cli) -> None:
    """``--all-schools`` killed between schools, then resumed. The session's ``small`` lab is enough: 20
    schools of three kinds, a sub-structure and students-open lycées, and nothing checked here (the kill
    lands mid-run, the resume does only the schools not done, every student path is cut, one block per
    school) depends on their number; the académie-sized run is benchmarks/bench_messaging.py's."""
    schools = lab.sql("SELECT count(*) FROM structures")[0][0]
    kinds = {k for (k,) in lab.sql("SELECT DISTINCT kind FROM structures")}
    assert schools == 20 and kinds == {"ecole", "college", "lycee"}
    assert lab.sql("SELECT count(*) FROM structure_parents")[0][0] >= 1
    admc.open_incidents("INC-ALL")
    home = Path(os.environ["PCNCTL_HOME"])
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    lab.knobs(latency_ms=20)  # a few seconds of run, so the kill lands between schools
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcnctl", "messaging", "block", "--profile", "Student", "--all-schools",
         "--yes", "--incident", "INC-ALL", "--no-verify", "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state.journal_text(home, "INC-ALL").count('"phase":"done"') >= 5:
            # The ENT stops answering, then the run dies: calls in flight get no answer, none is retried.
            lab.knobs(outage_until=time.time() + 60)
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lab.knobs(outage_until=0, latency_ms=0)
    done = state.journal(home, "INC-ALL")
    done_before = {r["key"] for r in done if r.get("phase") == "done"}
    assert proc.stderr is not None
    assert 5 <= len(done_before) < schools, proc.stderr.read().decode()[-800:]
    resumed = admc("incident", "resume", "INC-ALL", "-o", "json")
    assert resumed.exit_code == 0, resumed.stderr
    assert not {r["school"] for r in resumed.json()} & set(
        lab.sql(f"SELECT uai FROM structures WHERE id IN ({','.join('?' * len(done_before))})", *done_before)
    )
    open_groups = lab.sql(
        "SELECT count(*) FROM groups WHERE profile = 'Student' AND (member_in = 1 OR users_dir IN"
        " ('INCOMING', 'BOTH'))"
    )
    assert open_groups == [(0,)]
    edges = lab.sql(
        "SELECT count(*) FROM communique c JOIN groups g ON g.id = c.start_id WHERE g.profile = 'Student'"
    )
    assert edges == [(0,)]
    status = admc("messaging", "status", "-o", "json").json()
    assert len(status) == schools and {s["incident"] for s in status} == {"INC-ALL"}


def school_state(lab: Lab, uai: str) -> list[list[tuple[object, ...]]]:
    """Every communication row of a school: groups with their link property, edges and relatives'
    setting, group relations, direct edges of its users."""
    sid = lab.sql("SELECT id FROM structures WHERE uai = ?", uai)[0][0]
    return [
        lab.sql(
            "SELECT id, users_dir, member_in, member_out, relative_student FROM groups WHERE structure_id = ?"
            " ORDER BY id",
            sid,
        ),
        lab.sql(
            "SELECT c.* FROM communique c JOIN groups g ON g.id = c.start_id WHERE g.structure_id = ?"
            " ORDER BY 1, 2",
            sid,
        ),
        lab.sql(
            "SELECT d.* FROM communique_direct d JOIN user_structures us ON us.user_id = d.end_id"
            " WHERE us.structure_id = ? AND d.source IS NOT 'MANUAL' ORDER BY 1, 2",
            sid,
        ),
    ]


def manual_links(lab: Lab, uai: str) -> list[tuple[object, ...]]:
    """The hand-made direct links into a school's users (a relatives' cut deletes them for good)."""
    return lab.sql(
        "SELECT d.* FROM communique_direct d JOIN user_structures us ON us.user_id = d.end_id"
        " JOIN structures s ON s.id = us.structure_id WHERE s.uai = ? AND d.source = 'MANUAL'"
        " ORDER BY 1, 2",
        uai,
    )


def pupil_paths(lab: Lab, uai: str, n: int = 0) -> dict[str, str]:
    """A student of a class of the school, and what he can write to under the platform's default rules:
    a classmate, a teacher of the class, his relative, the class groups."""
    sid = lab.sql("SELECT id FROM structures WHERE uai = ?", uai)[0][0]
    gid, klass = lab.sql(
        "SELECT id, class_id FROM groups WHERE structure_id = ? AND sub_type = 'ClassGroup'"
        " AND profile = 'Student' ORDER BY name LIMIT 1 OFFSET ?",
        sid,
        n,
    )[0]
    groups = dict(lab.sql("SELECT profile, id FROM groups WHERE class_id = ? AND profile IS NOT NULL", klass))
    pupils = [r[0] for r in lab.sql("SELECT user_id FROM group_members WHERE group_id = ? ORDER BY 1", gid)]
    first = lambda sql, *a: lab.sql(sql, *a)[0][0]  # noqa: E731
    student = next(p for p in pupils if lab.sql("SELECT 1 FROM related WHERE child_id = ?", p))
    return {
        "student": student,
        "login": first("SELECT login FROM users WHERE id = ?", student),
        "classmate": next(p for p in pupils if p != student),
        "teacher": first(
            "SELECT user_id FROM group_members WHERE group_id = ? ORDER BY 1", groups["Teacher"]
        ),
        "relative": first("SELECT relative_id FROM related WHERE child_id = ?", student),
        "class_students": groups["Student"],
        "class_teachers": groups["Teacher"],
    }


def test_a_student_block_stops_every_path_of_the_real_graph(lab: Lab, admc: Cli) -> None:
    """A collège: several classes, head-teacher groups (a relation whose removal answers 400) and
    functional groups mixing students and teachers."""
    admc.open_incidents("INC-G")
    paths = [pupil_paths(lab, COLLEGE, n) for n in (0, 1)]
    before, other_before = school_state(lab, COLLEGE), school_state(lab, OTHER)
    for p in paths:
        pupil = login(lab, p["login"])
        for target in ("classmate", "teacher", "relative", "class_students", "class_teachers"):
            assert send(lab, pupil, p[target]) == 200, target  # the paths exist before the block
    result = admc(
        "messaging", "block", "--profile", "Student", "--school", COLLEGE, "--yes", "--incident", "INC-G"
    )
    assert result.exit_code == 0, result.stderr
    assert "block effective" in result.stderr
    for p in paths:
        pupil = login(lab, p["login"])
        for target in ("classmate", "teacher", "relative", "class_students", "class_teachers"):
            assert send(lab, pupil, p[target]) == 401, target
        teacher = lab.sql("SELECT login FROM users WHERE id = ?", p["teacher"])[0][0]
        assert send(lab, login(lab, teacher), p["student"]) == 200  # teachers still write to students
    assert school_state(lab, OTHER) == other_before  # other schools untouched
    assert manual_links(lab, COLLEGE) == []  # the relatives' cut took the hand-made links too...
    assert "hand-made direct link" in result.stderr  # ...as the plan said it would
    lifted = admc("messaging", "unblock", "--incident", "INC-G", "--yes", "-o", "json")
    assert lifted.exit_code == 0, lifted.stderr
    assert school_state(lab, COLLEGE) == before  # exactly the graph the snapshot was taken on...
    assert "hand-made links into the parents are not" in lifted.json()[0]["detail"]  # ...but those


def test_keep_relatives_leaves_the_hand_made_links_and_restores_exactly(lab: Lab, admc: Cli) -> None:
    admc.open_incidents("INC-KR")
    before, manual = school_state(lab, COLLEGE), manual_links(lab, COLLEGE)
    assert manual  # the seed's teachers made links to parents in every collège
    block = ("messaging", "block", "--profile", "Student", "--school", COLLEGE, "--yes", "--no-verify")
    result = admc(*block, "--keep-relatives", "--incident", "INC-KR")
    assert result.exit_code == 0, result.stderr
    assert "hand-made direct link" not in result.stderr
    assert manual_links(lab, COLLEGE) == manual
    assert admc("messaging", "unblock", "--incident", "INC-KR", "--yes").exit_code == 0
    assert school_state(lab, COLLEGE) == before and manual_links(lab, COLLEGE) == manual


def test_a_school_with_other_rules_is_cut_and_restored_exactly(lab: Lab, admc: Cli) -> None:
    admc.open_incidents("INC-O")
    lycee = lab.sql("SELECT uai FROM structures WHERE kind = 'lycee' ORDER BY uai LIMIT 1")[0][0]
    a, b = pupil_paths(lab, lycee, 0), pupil_paths(lab, lycee, 1)
    before = school_state(lab, lycee)
    pupil = login(lab, a["login"])
    assert send(lab, pupil, b["student"]) == 200  # another class's student: the operator's students-open rule
    result = admc(
        "messaging", "block", "--profile", "Student", "--school", lycee, "--yes", "--incident", "INC-O"
    )
    assert result.exit_code == 0, result.stderr
    assert send(lab, pupil, b["student"]) == 401 and send(lab, pupil, a["classmate"]) == 401
    assert admc("messaging", "unblock", "--incident", "INC-O", "--yes").exit_code == 0
    assert school_state(lab, lycee) == before
    assert send(lab, pupil, b["student"]) == 200


def test_an_interrupted_block_resumes_from_the_state_before_it(lab: Lab, admc: Cli) -> None:
    admc.open_incidents("INC-R")
    before = school_state(lab, SCHOOL)
    # The block dies after cutting the class groups: the ENT refuses the relatives step (a final 403, so
    # the run stops at once instead of after every retry of a 500; where it stops is what matters here).
    lab.knobs(fail_match="/communication/relative/", fail_status=403)
    failed = admc(
        "messaging", "block", "--profile", "Student", "--school", SCHOOL, "--yes", "--incident", "INC-R"
    )
    assert failed.exit_code != 0
    assert school_state(lab, SCHOOL) != before  # half cut
    lab.knobs(fail_match="")
    resumed = admc("incident", "resume", "INC-R", "-o", "json")
    assert resumed.exit_code == 0, resumed.stderr
    p = pupil_paths(lab, SCHOOL)
    assert send(lab, login(lab, p["login"]), p["relative"]) == 401
    assert admc("messaging", "unblock", "--incident", "INC-R", "--yes").exit_code == 0
    assert school_state(lab, SCHOOL) == before  # the snapshot was the state before the first attempt


def test_roles_on_a_school_with_a_sub_structure_are_restored_exactly(lab: Lab, admc: Cli) -> None:
    admc.open_incidents("INC-SUB")
    parent, child = lab.sql(
        "SELECT p.uai, c.uai FROM structure_parents sp JOIN structures p ON p.id = sp.parent_id"
        " JOIN structures c ON c.id = sp.structure_id ORDER BY p.uai LIMIT 1"
    )[0]
    roles = "SELECT role_id, group_id FROM role_groups ORDER BY 1, 2"
    before = lab.sql(roles)
    held = (
        "SELECT count(*) FROM role_groups rg JOIN groups g ON g.id = rg.group_id JOIN structures s"
        " ON s.id = g.structure_id WHERE s.uai = ? AND g.profile = 'Student'"
    )
    assert lab.sql(held, child) == [(0,)]  # the sub-structure's students never had Messagerie
    _sid, student = member(lab, parent, "Student")
    live = login(lab, student)
    result = admc(
        "messaging", "block", "--profile", "Student", "--school", parent, "--method", "roles",
        "--revoke-sessions", "--yes", "--incident", "INC-SUB",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "also in 1 sub-structure(s) attached below" in result.stderr
    assert "block not effective against scripted sends" in result.stderr
    assert (
        live.get(lab.url + "/conversation/conversation", allow_redirects=False, timeout=5).status_code == 302
    )
    assert lab.sql(held, parent) == [(0,)]
    assert admc("messaging", "unblock", "--incident", "INC-SUB", "--yes").exit_code == 0
    assert lab.sql(roles) == before  # the grant on the parent reached the sub-structure: taken back


def test_an_adml_block_is_verified_without_the_admc_only_route(lab: Lab, cli: Cli) -> None:
    cli.open_incidents("INC-L")
    adml = lab.info["accounts"]["adml"][0]
    cli("profile", "add", "lab", "--url", lab.url, "--login", adml["login"])
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    school = adml["schools"][0]
    before = school_state(lab, school)
    result = cli(
        "messaging", "block", "--profile", "Student", "--school", school, "--yes", "--incident", "INC-L"
    )
    assert result.exit_code == 0, result.stderr
    assert "block effective on what could be checked" in result.stderr and "ADMC-only" in result.stderr
    assert "cannot write through it" in result.stderr  # the cut groups were re-read by the ADML
    assert cli("messaging", "unblock", "--incident", "INC-L", "--yes").exit_code == 0
    assert school_state(lab, school) == before


def test_a_guest_block_cuts_the_guests_manual_group_and_says_who_else(lab: Lab, admc: Cli) -> None:
    """A guest's usual way to write is a manual group: a Guest block cuts it, for all its members, and the
    plan names the member of staff it silences too; the lift puts it back."""
    admc.open_incidents("INC-GU")
    (uai, guest, guest_login, group) = lab.sql(
        "SELECT s.uai, u.id, u.login, g.id FROM users u JOIN group_members gm ON gm.user_id = u.id"
        " JOIN groups g ON g.id = gm.group_id JOIN structures s ON s.id = g.structure_id"
        " WHERE u.profile = 'Guest' AND g.type = 'ManualGroup' ORDER BY s.uai, u.login LIMIT 1"
    )[0]
    before = school_state(lab, uai)
    assert send(lab, login(lab, guest_login), group) == 200  # the guests write through their group
    result = admc(
        "messaging", "block", "--profile", "Guest", "--school", uai, "--yes", "--incident", "INC-GU"
    )
    assert result.exit_code == 0, result.stderr
    assert "1 shared" in result.stderr and "also silence 1 Personnel" in result.stderr
    assert send(lab, login(lab, guest_login), group) == 401
    assert guest  # the guest account itself is untouched: only its group's link
    assert lab.sql("SELECT coalesce(blocked, 0) FROM users WHERE id = ?", guest) == [(0,)]
    assert admc("messaging", "unblock", "--incident", "INC-GU", "--yes").exit_code == 0
    assert school_state(lab, uai) == before
    assert send(lab, login(lab, guest_login), group) == 200


def test_a_student_block_leaves_the_staff_manual_group_alone(lab: Lab, admc: Cli) -> None:
    """Shared groups are cut only when the blocked profile is in them: the teaching staff's manual group
    has no pupil, and a Student block does not silence it."""
    admc.open_incidents("INC-ST")
    team = lab.sql(
        "SELECT g.id, g.users_dir FROM groups g JOIN structures s ON s.id = g.structure_id WHERE s.uai = ?"
        " AND g.type = 'ManualGroup' AND g.name LIKE '%Équipe%'",
        SCHOOL,
    )
    assert team
    block = ("messaging", "block", "--profile", "Student", "--school", SCHOOL, "--yes", "--no-verify")
    assert admc(*block, "--incident", "INC-ST").exit_code == 0
    assert lab.sql("SELECT g.id, g.users_dir FROM groups g WHERE g.id = ?", team[0][0]) == [team[0]]


def test_incoming_only_groups_and_side_effects_come_back_exactly(lab: Lab, admc: Cli) -> None:
    """A class group left INCOMING by an administrator, and a teachers' group that only the students'
    group still sends to (so the server cuts its members' link with that relation): both restored as
    they were, whatever the server did in between."""
    admc.open_incidents("INC-I")

    p = pupil_paths(lab, COLLEGE)
    relatives = lab.sql(
        "SELECT g.id FROM groups g JOIN groups s ON s.class_id = g.class_id WHERE s.id = ?"
        " AND g.profile = 'Relative'",
        p["class_students"],
    )[0][0]
    driver = driver_for("lab")  # the profile the admc fixture set up
    driver.set_users_link(p["class_students"], "INCOMING")  # Group->User edges stay, as on the platform
    assert driver.remove_relation(relatives, p["class_teachers"]) == RelationCut("BOTH", "OUTGOING")
    before = school_state(lab, COLLEGE)
    assert lab.sql(
        "SELECT users_dir, member_in, member_out FROM groups WHERE id = ?", p["class_students"]
    ) == [("INCOMING", 1, 1)]
    result = admc(
        "messaging", "block", "--profile", "Student", "--school", COLLEGE, "--yes", "--incident", "INC-I"
    )
    assert result.exit_code == 0, result.stderr
    assert lab.sql("SELECT users_dir FROM groups WHERE id = ?", p["class_teachers"]) == [
        (None,)
    ]  # side effect
    assert send(lab, login(lab, p["login"]), p["classmate"]) == 401
    assert admc("messaging", "unblock", "--incident", "INC-I", "--yes").exit_code == 0
    assert school_state(lab, COLLEGE) == before


def test_after_a_block_no_student_of_the_school_sends_to_anyone(lab: Lab, admc: Cli) -> None:
    """Every student of the collège, through the real send route, to people and groups of every kind."""
    sid = lab.sql("SELECT id FROM structures WHERE uai = ?", COLLEGE)[0][0]
    targets = [
        r[0]
        for r in lab.sql(
            "SELECT min(gm.user_id) FROM group_members gm JOIN groups g ON g.id = gm.group_id"
            " WHERE g.structure_id = ? GROUP BY g.id ORDER BY g.id",
            sid,
        )
    ]
    groups = [r[0] for r in lab.sql("SELECT id FROM groups WHERE structure_id = ? ORDER BY id", sid)]
    pupils = lab.sql(
        "SELECT u.id, u.login FROM users u JOIN user_structures us ON us.user_id = u.id"
        " WHERE us.structure_id = ? AND u.profile = 'Student' ORDER BY u.login",
        sid,
    )
    relatives = dict(lab.sql("SELECT child_id, min(relative_id) FROM related GROUP BY child_id"))
    assert len(pupils) > 100 and len(groups) > 40

    def attempts() -> list[tuple[str, str, int]]:
        out = []
        for n, (uid, user) in enumerate(pupils):
            pupil = login(lab, user)
            own = [relatives[uid]] if uid in relatives else []
            for to in [
                *own,
                targets[n % len(targets)],
                groups[n % len(groups)],
                pupils[(n + 1) % len(pupils)][0],
            ]:
                out.append((user, to, send(lab, pupil, to)))
        return out

    assert sum(status == 200 for *_, status in attempts()) > len(pupils)  # many of them go through before
    result = admc("messaging", "block", "--profile", "Student", "--school", COLLEGE, "--yes", "--no-verify")
    assert result.exit_code == 0, result.stderr
    assert [a for a in attempts() if a[2] != 401] == []
