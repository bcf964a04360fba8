"""The lab's communication graph behaves as the platform's communication module (docs/edifice-communication.md
§5), driven over real HTTP as an ADMC; the state is read back from the lab's database."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from pcnctl.lab.seed import MESSAGERIE_ROLE, seed
from pcnctl.lab.store import Store
from tests.conftest import Lab

COLLEGE = "0785226G"


@pytest.fixture
def admc(lab: Lab) -> requests.Session:
    s = requests.Session()
    r = s.post(
        lab.url + "/auth/login",
        data={"email": lab.info["accounts"]["admc"]["login"], "password": lab.password},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302
    s.headers["X-XSRF-TOKEN"] = s.cookies["XSRF-TOKEN"]
    assert s.post(lab.url + "/auth/user/mfa/code", json={"key": lab.mfa_code}, timeout=5).ok
    return s


def klass(lab: Lab, uai: str = COLLEGE) -> dict[str, str]:
    """The groups of the first class of a school by profile, and its head-teacher group as ``HT``."""
    class_id = lab.sql(
        "SELECT g.class_id FROM groups g JOIN structures s ON s.id = g.structure_id WHERE s.uai = ?"
        " AND g.class_id IS NOT NULL ORDER BY g.name LIMIT 1",
        uai,
    )[0][0]
    rows = lab.sql("SELECT coalesce(profile, 'HT'), id FROM groups WHERE class_id = ?", class_id)
    return dict(rows)


def link(lab: Lab, gid: str) -> tuple[object, ...]:
    return lab.sql("SELECT users_dir, member_in, member_out FROM groups WHERE id = ?", gid)[0]


def edges(lab: Lab, start: str) -> set[str]:
    return {r[0] for r in lab.sql("SELECT end_id FROM communique WHERE start_id = ?", start)}


def test_the_server_picks_the_side_and_refuses_a_group_that_sends_and_receives(
    lab: Lab, admc: requests.Session
) -> None:
    g = klass(lab)
    before = link(lab, g["Student"])
    refused = admc.delete(f"{lab.url}/communication/group/{g['Student']}/users", timeout=5)
    assert refused.status_code == 409 and refused.json() == {"error": "impossible to change direction"}
    assert link(lab, g["Student"]) == before == ("BOTH", 1, 1)
    for end in sorted(edges(lab, g["Student"])):
        admc.delete(f"{lab.url}/communication/group/{g['Student']}/relations/{end}", timeout=5)
    cut = admc.delete(f"{lab.url}/communication/group/{g['Student']}/users", timeout=5)
    assert cut.json() == {"users": "OUTGOING"}  # it still receives from the class's relatives
    assert link(lab, g["Student"]) == ("OUTGOING", 0, 1)


def test_a_head_teacher_target_answers_400_after_the_edge_is_gone(lab: Lab, admc: requests.Session) -> None:
    g = klass(lab)
    assert g["HT"] in edges(lab, g["Student"])
    r = admc.delete(f"{lab.url}/communication/group/{g['Student']}/relations/{g['HT']}", timeout=5)
    assert r.status_code == 400 and g["HT"] not in edges(lab, g["Student"])


def test_the_last_relation_to_an_outgoing_group_cuts_its_members(lab: Lab, admc: requests.Session) -> None:
    g = klass(lab)
    first = admc.delete(f"{lab.url}/communication/group/{g['Relative']}/relations/{g['Teacher']}", timeout=5)
    assert first.json() == {"sender": "BOTH", "receiver": "OUTGOING"}  # the students still send to it
    last = admc.delete(f"{lab.url}/communication/group/{g['Student']}/relations/{g['Teacher']}", timeout=5)
    assert last.json() == {"sender": "BOTH", "receiver": None}
    assert link(lab, g["Teacher"]) == (None, 0, 0)


def test_the_direction_route_sets_one_side_and_leaves_the_other_edges(
    lab: Lab, admc: requests.Session
) -> None:
    g = klass(lab)
    r = admc.post(f"{lab.url}/communication/group/{g['Student']}?direction=INCOMING", timeout=5)
    assert r.status_code == 200 and r.json()["number"] > 0
    assert link(lab, g["Student"]) == ("INCOMING", 1, 1)  # the Group->User edges stay


def test_v2_relation_raises_the_directions_v1_does_not(lab: Lab, admc: requests.Session) -> None:
    g = klass(lab)
    v1 = admc.post(f"{lab.url}/communication/group/{g['Teacher']}/communique/{g['HT']}", timeout=5)
    assert v1.json() == {"number": 1} and link(lab, g["Teacher"]) == ("OUTGOING", 0, 1)
    v2 = admc.post(f"{lab.url}/communication/v2/group/{g['Teacher']}/communique/{g['Guest']}", timeout=5)
    assert v2.json() == {g["Teacher"]: "BOTH", g["Guest"]: "OUTGOING"}
    assert link(lab, g["Teacher"])[0] == "BOTH" and link(lab, g["Guest"])[0] == "OUTGOING"


def test_a_role_granted_on_a_school_reaches_its_sub_structures(lab: Lab, admc: requests.Session) -> None:
    parent, child = lab.sql(
        "SELECT parent_id, structure_id FROM structure_parents ORDER BY parent_id LIMIT 1"
    )[0]
    held = (
        "SELECT count(*) FROM role_groups rg JOIN groups g ON g.id = rg.group_id WHERE g.structure_id = ?"
        " AND g.profile = 'Student' AND g.sub_type = 'StructureGroup'"
    )
    assert lab.sql(held, child) == [(0,)]
    body = {"profiles": ["Student"], "roles": [MESSAGERIE_ROLE]}
    assert admc.put(f"{lab.url}/appregistry/structures/{parent}/roles", json=body, timeout=5).json() == {}
    assert lab.sql(held, child) == [(1,)]
    assert admc.delete(f"{lab.url}/appregistry/structures/{child}/roles", json=body, timeout=5).ok
    assert lab.sql(held, child) == [(0,)] and lab.sql(held, parent) == [(1,)]


def test_a_rule_set_can_be_chosen_at_seeding(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        seed(store, "small", 1, rules={"*": "students-open"})
        rows = store.all(
            "SELECT DISTINCT users_dir FROM groups WHERE profile = 'Student' AND sub_type = 'StructureGroup'"
        )
        assert [r[0] for r in rows] == ["BOTH"]
        with pytest.raises(ValueError, match="rules need"):
            seed(store, "small", 1, rules={"lycee": "nonsense"})
    finally:
        store.close()
