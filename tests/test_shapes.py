"""The driver's parsers on the platform's real shapes: the examples of the route contracts.

These payloads come from reading the platform's source, not from the lab, and include the awkward cases:
a profile list instead of a string, structure externalIds instead of objects, a login alias, functions as
``[code, scope]`` pairs, a userinfo without ``functions`` (version 1.0 with a bearer token).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from pcnctl.ent.edifice.auth import login_page_error
from pcnctl.ent.edifice.driver import login_name_guess
from pcnctl.ent.edifice.shapes import (
    SchoolIndex,
    mongo_date,
    parse_block_trace,
    parse_event,
    parse_group,
    parse_group_links,
    parse_identity,
    parse_relation_cut,
    parse_role,
    parse_user,
)
from pcnctl.models import PROFILES, Group, RelationCut
from tests.contract import load


def _index(rows: list[dict[str, Any]]) -> SchoolIndex:
    """Schools as ``/directory/structure/admin/list`` would list them for the structures in ``rows``."""
    index = SchoolIndex()
    for row in rows:
        for node in row.get("structureNodes") or []:
            index.add(node["id"], node.get("externalId"), node.get("UAI") or "")
        for ref in row.get("structures") or []:
            if isinstance(ref, dict):
                index.add(ref["id"], ref.get("externalId"), f"UAI-{ref['id'][:4]}")
    return index


def _user_examples(name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for example in load(name).examples(200):
        rows.extend(example if isinstance(example, list) else [example])
    return rows


@pytest.mark.parametrize(
    "name", ["directory/user-get", "directory/user-admin-list", "directory/structure-users"]
)
def test_users_parse_from_every_route_shape(name: str) -> None:
    rows = _user_examples(name)
    assert rows, f"{name} has no example"
    index = _index(rows)
    for row in rows:
        user = parse_user(row, index)
        assert user.id == row["id"] and user.profile in PROFILES
        assert user.login and user.login == (row.get("originalLogin") or row["login"])
        refs = row.get("structureNodes") or row.get("structures") or []
        assert len(user.schools) == len({index.uai(r) for r in refs}) > 0
        assert all(isinstance(code, str) for code in user.functions)


def test_user_detail_profile_list_external_ids_and_alias() -> None:
    detail = next(r for r in _user_examples("directory/user-get") if r.get("loginAlias"))
    user = parse_user(detail, _index([detail]))
    assert isinstance(detail["type"], list) and user.profile == detail["type"][0]
    assert all(isinstance(s, str) for s in detail["structures"])  # externalIds, not objects
    assert set(user.schools) == {n["UAI"] for n in detail["structureNodes"]}
    assert user.login == detail["login"] and user.alias == detail["loginAlias"]


def test_admin_list_alias_and_function_pairs() -> None:
    rows = _user_examples("directory/user-admin-list")
    aliased = next(r for r in rows if r["login"] != r["originalLogin"])
    user = parse_user(aliased, _index(rows))
    assert user.login == aliased["originalLogin"] and user.alias == aliased["login"]
    adml = next(r for r in rows if r["functions"] != [[None, None]])
    assert parse_user(adml, _index(rows)).functions == tuple(sorted(f[0] for f in adml["functions"]))
    plain = next(r for r in rows if r["functions"] == [[None, None]])
    assert parse_user(plain, _index(rows)).functions == ()


def test_userinfo_versions_and_an_unknown_role() -> None:
    contract = load("auth/oauth2-userinfo")
    cookie_v1, bearer_v1 = contract.examples(200, "default version")[:2]
    assert bearer_v1.get("functions") is None  # version 1.0 drops them for a bearer token
    assert parse_identity(bearer_v1, auth_mode="oauth-password", client_id="c").role == "unknown"
    admc = parse_identity(cookie_v1, auth_mode="cookie", client_id=None)
    assert admc.role == "ADMC" and admc.profile == "Personnel"  # PERSEDUCNAT read back
    (v2,) = contract.examples(200, "version=v2.0")
    adml = parse_identity(v2, auth_mode="oauth-password", client_id="c")
    assert adml.role == "ADML" and adml.adml_structures == tuple(v2["functions"]["ADMIN_LOCAL"]["scope"])


def test_block_traces_dates_from_mongodb() -> None:
    for trace in load("admin/block-traces").examples(200)[0]:
        parsed = parse_block_trace(trace)
        assert parsed.created.endswith("Z") and parsed.created[:2] == "20" and parsed.action
    assert mongo_date({"$date": 0}) == "1970-01-01T00:00:00.000Z"
    assert mongo_date("2026-01-02T03:04:05.000Z") == "2026-01-02T03:04:05.000Z"


def test_groups_of_the_admin_list_keep_profile_count_and_kind() -> None:
    rows = load("directory/group-admin-list").examples(200)[0]
    groups = [parse_group(r) for r in rows]
    assert [g.id for g in groups] == [r["id"] for r in rows]
    assert [g.users for g in groups] == [r["nbUsers"] for r in rows]
    class_group = next(g for g in groups if g.sub_type == "ClassGroup")
    assert class_group.profile == "Student" and class_group.type == "ProfileGroup"
    manual = next(g for g in groups if g.type == "ManualGroup")
    assert manual.profile is None  # filter is null outside profile groups
    assert Group.from_json(class_group.to_json()) == class_group  # as a messaging snapshot keeps it


def test_group_links_from_communique_with_nodes() -> None:
    sender, lone, no_link = load("communication/group-get").examples(200)
    links = parse_group_links(sender)
    assert links.users == "BOTH" and links.outgoing == tuple(
        sorted(g["id"] for g in sender["communiqueWith"])
    )
    head_teacher = next(g["id"] for g in sender["communiqueWith"] if "users" not in g)
    assert links.peers[head_teacher] is None  # a peer with no members' link at all
    assert parse_group_links(lone).outgoing == () and parse_group_links(no_link).users is None


def test_relation_removal_answers_null_when_a_link_was_cut() -> None:
    cuts = [parse_relation_cut(a) for a in load("communication/group-relations-delete").examples(200)]
    assert cuts == [
        RelationCut("BOTH", "OUTGOING"),
        RelationCut(None, "OUTGOING"),
        RelationCut("BOTH", None),
    ]


def test_roles_name_the_groups_holding_them() -> None:
    rows = load("appregistry/structure-application-groups-roles-get").examples(200)[0]
    roles = [parse_role(r) for r in rows]
    assert roles[0].groups == tuple(g["id"] for g in rows[0]["groups"]) and len(roles[0].groups) == 3
    assert roles[1].groups == ()


def test_events_with_the_platform_field_names() -> None:
    rows = load("infra/event-list").examples(200)[0]
    events = [parse_event(r) for r in rows]
    assert [(e.id, e.type, e.module, e.date) for e in events] == [
        (r["_id"], r["event-type"], r["module"], r["date"]) for r in rows
    ]
    login = events[0]
    assert login.profile == rows[0]["profil"] and login.ip == rows[0]["ip"] and login.ua == rows[0]["ua"]
    assert login.structures == tuple(rows[0]["structures"]) and login.user_id == rows[0]["userId"]


def _page(html: str) -> requests.Response:
    response = requests.Response()
    response._content = html.encode()
    response.status_code = 200
    return response


def test_refused_login_pages_are_read_in_the_platform_language() -> None:
    """The platform renders the translated message (escaped), never the key."""
    pages = load("auth/login-post").examples(200, "refused")
    keys = [login_page_error(_page(p)) for p in pages]
    assert keys == [
        "auth.error.authenticationFailed",
        "auth.error.blockedUser",
        "auth.error.blockedProfileType",
        "auth.error.ban",
    ]


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        ("jean.dupont", ("jean", "dupont")),
        ("jean.dupont12", ("jean", "dupont")),
        ("jeanpierre.delafontaine2", ("jeanpierre", "delafontaine")),
        ("admc", None),
        ("lea.nguyen.martin", None),
    ],
)
def test_generated_logins_give_name_search_terms(login: str, expected: tuple[str, str] | None) -> None:
    assert login_name_guess(login) == expected
