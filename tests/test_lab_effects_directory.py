"""The lab's directory, auth and communication routes do what the platform does where pcnctl's records and
the platform's disagree: a profile block is a blanket write, a relatives' delete sweeps hand-made links
the POST never brings back, the staff groups relate to the school's head-teacher group only, the admin list
answers classes and honours groupId, and the visible route is broken on 6.15.4. Over real HTTP; the stores
are read back and the answers checked against the contracts.
"""

from __future__ import annotations

import requests

from tests.conftest import Lab
from tests.contract import load
from tests.test_lab_effects import School, admc, college, copies, cut, login, members, send

PROFILE_BLOCK = load("directory/profile-block")
RELATIVE_DELETE = load("communication/relative-delete")
RELATIVE_POST = load("communication/relative-post")
ERASE = load("auth/erase-password")
ADMIN_LIST = load("directory/user-admin-list")
VISIBLE = load("communication/visible-get")


def blocked(lab: Lab, user_id: str) -> object:
    return lab.sql("SELECT blocked FROM users WHERE id = ?", user_id)[0][0]


def sessions(lab: Lab, user_id: str) -> int:
    return int(lab.sql("SELECT count(*) FROM sessions WHERE user_id = ?", user_id)[0][0])


# -- the profile block ---------------------------------------------------------------------------------------


def profile_block(lab: Lab, admin: requests.Session, school: School, profile: str, block: bool) -> None:
    r = admin.put(
        f"{lab.url}/directory/structure/{school.id}/profile/block",
        json={"profile": profile, "block": block},
        timeout=10,
    )
    PROFILE_BLOCK.check_response(r)
    assert r.status_code == 204


def test_lifting_a_profile_block_unblocks_an_account_blocked_on_its_own(lab: Lab) -> None:
    school = college(lab)
    admin = admc(lab)
    assert admin.put(f"{lab.url}/auth/block/{school.pupil}", json={"block": True}, timeout=10).ok
    profile_block(lab, admin, school, "Student", True)
    assert blocked(lab, school.pupil) == 1
    profile_block(lab, admin, school, "Student", False)
    assert blocked(lab, school.pupil) == 0  # no memory of the block made one by one before
    PROFILE_BLOCK.effect("User.blocked (Neo4j)", "keep")
    traces = admin.get(f"{lab.url}/admin/api/block/traces/{school.id}", timeout=10).json()
    assert [t["action"] for t in traces] == ["BLOCK", "UNBLOCK"]


def test_an_unblock_drops_the_members_sessions_too(lab: Lab) -> None:
    school = college(lab)
    login(lab, school.teacher)
    assert sessions(lab, school.teacher) == 1
    profile_block(lab, admc(lab), school, "Teacher", False)  # nobody was blocked: still a drop for all
    assert sessions(lab, school.teacher) == 0 and blocked(lab, school.teacher) == 0
    PROFILE_BLOCK.effect("sessions (cache and permanent)", "delete")


def test_the_profile_is_matched_as_the_end_of_the_group_name(lab: Lab) -> None:
    """``ent`` ends the name of the Student group only: its members are blocked, nobody else."""
    school = college(lab)
    profile_block(lab, admc(lab), school, "ent", True)
    assert blocked(lab, school.pupil) == 1 and blocked(lab, school.teacher) is None
    assert lab.sql(
        "SELECT count(*) FROM group_members WHERE group_id = ? AND user_id NOT IN"
        " (SELECT id FROM users WHERE blocked = 1)",
        school.students,
    ) == [(0,)]


def test_a_single_unblock_drops_the_sessions_too(lab: Lab) -> None:
    school = college(lab)
    login(lab, school.teacher)
    r = admc(lab).put(f"{lab.url}/auth/block/{school.teacher}", json={"block": False}, timeout=10)
    load("auth/block-user").check_response(r)
    assert r.status_code == 200 and sessions(lab, school.teacher) == 0


# -- relatives' direct links ---------------------------------------------------------------------------------


def manual_link(lab: Lab) -> tuple[str, str, str]:
    """A teacher's hand-made link to a parent: (teacher, parent, the parent's class relative group)."""
    teacher, parent = lab.sql(
        "SELECT start_id, end_id FROM communique_direct WHERE source = 'MANUAL' ORDER BY 1, 2 LIMIT 1"
    )[0]
    group = lab.sql(
        "SELECT g.id FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE gm.user_id = ?"
        " AND g.profile = 'Relative' AND g.sub_type = 'ClassGroup' AND g.relative_student IS NOT NULL",
        parent,
    )[0][0]
    return teacher, parent, group


def test_a_relatives_delete_loses_a_manual_link_and_the_post_does_not_bring_it_back(lab: Lab) -> None:
    teacher, parent, group = manual_link(lab)
    children = lab.sql("SELECT child_id FROM related WHERE relative_id = ?", parent)
    admin = admc(lab)
    deleted = admin.delete(f"{lab.url}/communication/relative/{group}?direction=INCOMING", timeout=10)
    RELATIVE_DELETE.check_response(deleted)
    assert deleted.status_code == 200 and deleted.json()["number"] > 0
    assert lab.sql("SELECT count(*) FROM communique_direct WHERE end_id = ?", parent) == [(0,)]
    back = admin.post(f"{lab.url}/communication/relative/{group}?direction=INCOMING", timeout=10)
    RELATIVE_POST.check_response(back)
    edges = set(lab.sql("SELECT start_id, source FROM communique_direct WHERE end_id = ?", parent))
    assert edges == {(c, None) for (c,) in children}  # the children's edges only
    assert (teacher, "MANUAL") not in edges
    RELATIVE_POST.effect("COMMUNIQUE_DIRECT (Neo4j)", "keep")


def test_a_manual_link_lets_its_teacher_write_to_the_parent(lab: Lab) -> None:
    teacher, parent, _group = manual_link(lab)
    r = send(login(lab, teacher), lab, {"to": [parent]})
    assert r.status_code == 200 and parent in copies(lab, r.json()["id"])


# -- smaller facts ----------------------------------------------------------------------------------------


def test_erase_password_answers_200_for_an_unknown_id_and_keeps_live_sessions(lab: Lab) -> None:
    admin = admc(lab)
    unknown = admin.post(f"{lab.url}/auth/erasePassword", json={"userId": "no-such-user"}, timeout=10)
    ERASE.check_response(unknown)
    assert unknown.json() == {"status": "OK", "result": "Failed to erase user's password: user not found"}
    school = college(lab)
    pupil = login(lab, school.pupil)
    erased = admin.post(f"{lab.url}/auth/erasePassword", json={"userId": school.pupil}, timeout=10)
    ERASE.check_response(erased)
    assert erased.json()["result"] == "User's password erased successfully"
    assert pupil.get(f"{lab.url}/auth/oauth2/userinfo", allow_redirects=False, timeout=10).status_code == 200
    again = requests.post(
        lab.url + "/auth/login",
        data={
            "email": lab.sql("SELECT login FROM users WHERE id = ?", school.pupil)[0][0],
            "password": lab.password,
        },
        allow_redirects=False,
        timeout=10,
    )
    assert "oneSessionId" not in again.cookies  # the next password login fails


def test_staff_groups_relate_to_the_schools_head_teacher_group_only(lab: Lab) -> None:
    school = college(lab)
    top = lab.sql(
        "SELECT id FROM groups WHERE structure_id = ? AND type = 'HTGroup' AND class_id IS NULL", school.id
    )[0][0]
    classes = {
        g
        for (g,) in lab.sql(
            "SELECT id FROM groups WHERE structure_id = ? AND type = 'HTGroup' AND class_id IS NOT NULL",
            school.id,
        )
    }
    assert classes and {
        p
        for (p,) in lab.sql(
            f"SELECT parent_id FROM groups WHERE id IN ({','.join('?' * len(classes))})", *classes
        )
    } == {top}
    admin = admc(lab)
    for profile in ("Teacher", "Personnel"):
        gid = lab.sql(
            "SELECT id FROM groups WHERE structure_id = ? AND profile = ? AND sub_type = 'StructureGroup'",
            school.id,
            profile,
        )[0][0]
        node = admin.get(f"{lab.url}/communication/group/{gid}", timeout=10).json()
        peers = {p["id"] for p in node["communiqueWith"]}
        assert top in peers and not peers & classes
    # A class's head-teacher group depends on the school's: staff still reach it as a whole.
    r = send(login(lab, school.teacher), lab, {"to": [sorted(classes)[0]]})
    assert r.status_code == 200


def test_the_admin_list_answers_a_pupils_classes_and_honours_group_id(lab: Lab) -> None:
    school = college(lab)
    admin = admc(lab)
    rows = admin.get(f"{lab.url}/directory/user/admin/list?structureId={school.id}", timeout=10)
    ADMIN_LIST.check_response(rows)
    pupil = next(r for r in rows.json() if r["id"] == school.pupil)
    klass = lab.sql(
        "SELECT c.id, c.name FROM classes c JOIN groups g ON g.class_id = c.id JOIN group_members gm"
        " ON gm.group_id = g.id WHERE gm.user_id = ? AND g.profile = 'Student'",
        school.pupil,
    )[0]
    assert pupil["allClasses"] == [{"id": klass[0], "name": klass[1]}] and pupil["hasClass"] is True
    assert pupil["allClassesSubject"] == [{"name": klass[1]}]
    guest = [r for r in rows.json() if r["type"] == "Guest"]
    assert all(g["allClasses"] == [{"id": None, "name": None}] and g["hasClass"] is False for g in guest)
    group = admin.get(f"{lab.url}/directory/user/admin/list?groupId={school.students}", timeout=10)
    ADMIN_LIST.check_response(group)
    assert {r["id"] for r in group.json()} == members(lab, school.students)


def test_an_adml_lists_another_schools_group_with_group_id(lab: Lab) -> None:
    adml = lab.info["accounts"]["adml"][0]
    mine = {u for (u,) in lab.sql("SELECT id FROM structures WHERE uai IN (?, ?)", *adml["schools"])}
    other = lab.sql(
        f"SELECT id FROM groups WHERE structure_id NOT IN ({','.join('?' * len(mine))})"
        " AND profile = 'Student' AND sub_type = 'StructureGroup' ORDER BY id LIMIT 1",
        *mine,
    )[0][0]
    uid = lab.sql("SELECT id FROM users WHERE login = ?", adml["login"])[0][0]
    r = login(lab, uid, mfa=True).get(f"{lab.url}/directory/user/admin/list?groupId={other}", timeout=10)
    ADMIN_LIST.check_response(r)
    assert {row["id"] for row in r.json()} == members(lab, other)  # the scope is not applied with groupId


def test_the_visible_route_is_broken_on_6_15_and_answers_before_6_10(lab: Lab) -> None:
    school = college(lab)
    admin = admc(lab)
    broken = admin.get(f"{lab.url}/communication/visible/{school.pupil}", timeout=10)
    VISIBLE.check_response(broken, "6.10.0 and later")
    assert broken.status_code == 500 and broken.content == b""
    refused = admin.get(f"{lab.url}/communication/visible/{school.pupil}?schoolId={school.id}", timeout=10)
    VISIBLE.check_response(refused)
    assert refused.status_code == 400
    lab.knobs(release="6.9.0")
    listed = admin.get(f"{lab.url}/communication/visible/{school.pupil}", timeout=10)
    VISIBLE.check_response(listed, "releases from 5.3.0")
    ids = {r["id"] for r in listed.json()}
    own = lab.sql(
        "SELECT g.id FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE gm.user_id = ?"
        " AND g.users_dir = 'BOTH' AND g.class_id IS NOT NULL AND g.profile = 'Student'",
        school.pupil,
    )[0][0]
    assert school.teacher in ids and school.pupil not in ids
    assert own not in ids  # its own BOTH group is not listed, unlike the send check, which counts it
    cut(lab, admin, school.pupil)
    assert school.teacher not in {
        r["id"] for r in admin.get(f"{lab.url}/communication/visible/{school.pupil}").json()
    }
    users = admin.get(f"{lab.url}/communication/visible/{school.pupil}?expectedType=User", timeout=10).json()
    assert all(r["profiles"] for r in users)


def test_a_guest_writes_through_its_manual_group(lab: Lab) -> None:
    guest, group = lab.sql(
        "SELECT gm.user_id, g.id FROM group_members gm JOIN groups g ON g.id = gm.group_id JOIN users u"
        " ON u.id = gm.user_id WHERE g.type = 'ManualGroup' AND u.profile = 'Guest' ORDER BY 1 LIMIT 1"
    )[0]
    r = send(login(lab, guest), lab, {"to": [group]})
    assert r.status_code == 200 and copies(lab, r.json()["id"]) == members(lab, group)
    listed = (
        admc(lab)
        .get(
            f"{lab.url}/directory/group/admin/list?structureId="
            + lab.sql("SELECT structure_id FROM groups WHERE id = ?", group)[0][0],
            timeout=10,
        )
        .json()
    )
    row = next(g for g in listed if g["id"] == group)
    assert (
        row["type"] == "ManualGroup"
        and row["filter"] == "Manual"
        and row["internalCommunicationRule"] == "BOTH"
    )
