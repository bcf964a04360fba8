"""The lab answers as the platform does: every route it serves names a contract, and its live answers, over
real HTTP, validate against that contract's schema for the documented status.

The contracts (``tests/contracts/``) were written from the platform's source, not from the lab, so a lab
that drifts away from the platform fails here even when pcnctl and the lab still agree with each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from pcnctl.lab.app import LabApp
from pcnctl.lab.seed import MESSAGERIE_APP, MESSAGERIE_ROLE
from pcnctl.lab.store import Store
from tests.conftest import Lab
from tests.contract import CONTRACTS, load


def test_every_lab_route_names_a_contract_of_the_same_route(tmp_path: Path) -> None:
    app = LabApp(Store(tmp_path))
    served: dict[tuple[str, str], Any] = {}
    for route in app.router.routes:  # the first route of a method and path is the one that answers
        served.setdefault((route.method, route.path), route)
    tabled = list(served.values())
    assert len(tabled) >= 45
    for route in tabled:
        assert route.contract, f"{route.method} {route.path} names no contract"
        assert (CONTRACTS / f"{route.contract}.yaml").exists(), route.contract
        contract = load(route.contract)
        if contract.method != "ANY":
            assert (contract.method, contract.path) == (route.method, route.path), route.contract


def _session(lab: Lab, login: str, *, mfa: bool = True) -> requests.Session:
    """A cookie session as a browser holds it, with the anti-CSRF header and (for admins) MFA done."""
    s = requests.Session()
    r = s.post(
        lab.url + "/auth/login",
        data={"email": login, "password": lab.password},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302, r.text[:200]
    s.headers["X-XSRF-TOKEN"] = s.cookies["XSRF-TOKEN"]
    if mfa:
        assert s.post(lab.url + "/auth/user/mfa/code", json={"key": lab.mfa_code}, timeout=5).ok
    return s


def _token(lab: Lab, login: str, scope: str = "userinfo directory") -> str:
    client = lab.info["oauth"]["password_client"]
    r = requests.post(
        lab.url + "/auth/oauth2/token",
        data={"grant_type": "password", "username": login, "password": lab.password, "scope": scope},
        auth=(client["client_id"], client["client_secret"]),
        timeout=5,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@dataclass
class World:
    lab: Lab
    admc: requests.Session
    adml: requests.Session
    ids: dict[str, str]

    def url(self, path: str) -> str:
        return self.lab.url + path.format(**self.ids)


@pytest.fixture
def world(lab: Lab) -> World:
    adml = lab.info["accounts"]["adml"][0]
    mine, other = (
        lab.sql("SELECT id FROM structures WHERE uai = ?", adml["schools"][0])[0][0],
        lab.sql("SELECT id FROM structures WHERE uai NOT IN (?, ?) LIMIT 1", *adml["schools"])[0][0],
    )
    student = lab.sql(
        "SELECT u.id, u.login FROM users u JOIN user_structures us ON us.user_id = u.id"
        " WHERE us.structure_id = ? AND u.profile = 'Student' AND u.login_alias IS NULL LIMIT 1",
        mine,
    )[0]
    alias = lab.sql("SELECT id FROM users WHERE login_alias IS NOT NULL LIMIT 1")[0][0]
    ids = {"school": mine, "other": other, "student": student[0], "login": student[1], "alias": alias}
    klass = lab.sql("SELECT class_id FROM groups WHERE structure_id = ? AND class_id IS NOT NULL", mine)[0][0]
    for key, sql, arg in (
        ("cstudent", "class_id = ? AND profile = 'Student'", klass),
        ("cteacher", "class_id = ? AND profile = 'Teacher'", klass),
        ("crelative", "class_id = ? AND profile = 'Relative'", klass),
        ("sstudent", "structure_id = ? AND profile = 'Student' AND sub_type = 'StructureGroup'", mine),
        ("ostudent", "structure_id = ? AND profile = 'Student' AND sub_type = 'StructureGroup'", other),
    ):
        ids[key] = lab.sql(f"SELECT id FROM groups WHERE {sql}", arg)[0][0]
    ids["teacher"] = lab.sql(
        "SELECT user_id FROM group_members WHERE group_id = ? ORDER BY user_id", ids["cteacher"]
    )[0][0]
    ids["app"], ids["role"] = MESSAGERIE_APP, MESSAGERIE_ROLE
    return World(lab, _session(lab, lab.info["accounts"]["admc"]["login"]), _session(lab, adml["login"]), ids)


Call = Callable[[World], requests.Response]


def _get(who: str, path: str, **kwargs: Any) -> Call:
    return lambda w: getattr(w, who).get(w.url(path), allow_redirects=False, timeout=10, **kwargs)


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _send(who: str, method: str, path: str, **kwargs: Any) -> Call:
    def call(w: World) -> requests.Response:
        filled = {k: _fill(v, w.ids) for k, v in kwargs.items()}
        return getattr(w, who).request(method, w.url(path), allow_redirects=False, timeout=10, **filled)

    return call


def _anonymous(method: str, path: str, **kwargs: Any) -> Call:
    return lambda w: requests.request(method, w.url(path), allow_redirects=False, timeout=10, **kwargs)


def _bearer(path: str, **kwargs: Any) -> Call:
    def call(w: World) -> requests.Response:
        token = _token(w.lab, w.ids["login"])
        headers = {"Authorization": f"Bearer {token}"}
        return requests.get(w.url(path), headers=headers, allow_redirects=False, timeout=10, **kwargs)

    return call


def _token_call(**form: str) -> Call:
    def call(w: World) -> requests.Response:
        client = w.lab.info["oauth"]["password_client"]
        secret = form.pop("secret", client["client_secret"])
        data = {k: v.format(login=w.ids["login"], password=w.lab.password) for k, v in form.items()}
        return requests.post(
            w.lab.url + "/auth/oauth2/token", data=data, auth=(client["client_id"], secret), timeout=10
        )

    return call


FLASH = {
    "title": "Messagerie suspendue",
    "contents": {"fr": "La messagerie est suspendue pour les élèves."},
    "profiles": ["Student"],
    "color": "red",
    "startDate": "2026-12-01T07:00:00Z",
    "endDate": "2026-12-03T07:00:00Z",
}

CASES: list[tuple[str, str | None, Call]] = [
    # directory
    ("directory/structure-admin-list", None, _get("admc", "/directory/structure/admin/list")),
    ("directory/structure-admin-list", None, _get("adml", "/directory/structure/admin/list")),
    ("directory/structures", None, _get("admc", "/directory/structures")),
    ("directory/structures", "no structure.list.all", _get("adml", "/directory/structures")),
    ("directory/structure-users", None, _get("admc", "/directory/structure/{school}/users")),
    ("directory/structure-users", None, _get("adml", "/directory/structure/{other}/users")),
    ("directory/user-admin-list", None, _get("admc", "/directory/user/admin/list?structureId={school}")),
    (
        "directory/user-admin-list",
        None,
        _get("admc", "/directory/user/admin/list?firstName=adam&lastName=martin"),
    ),
    (
        "directory/user-admin-list",
        "shorter than 3",
        _get("admc", "/directory/user/admin/list?searchTerm=ab&searchType=displayName"),
    ),
    ("directory/user-get", None, _get("admc", "/directory/user/{student}")),
    ("directory/user-get", None, _get("admc", "/directory/user/{alias}")),
    ("directory/user-get", None, _get("adml", "/directory/user/{student}")),
    ("directory/user-get", None, _get("admc", "/directory/user/00000000-0000-4000-8000-000000000000")),
    ("directory/group-admin-list", None, _get("admc", "/directory/group/admin/list?structureId={school}")),
    (
        "directory/group-admin-list",
        None,
        _get("admc", "/directory/group/admin/list?structureId={school}&type=Nonsense"),
    ),
    # auth: login, token, userinfo, MFA
    ("auth/login-get", None, _anonymous("GET", "/auth/login")),
    ("auth/login-post", "refused", _anonymous("POST", "/auth/login", data={"email": "x", "password": "y"})),
    (
        "auth/oauth2-token",
        None,
        _token_call(grant_type="password", username="{login}", password="{password}"),
    ),
    (
        "auth/oauth2-token",
        "password grant refused",
        _token_call(grant_type="password", username="{login}", password="wrong", scope="userinfo"),
    ),
    (
        "auth/oauth2-token",
        "scope not allowed",
        _token_call(grant_type="password", username="{login}", password="{password}", scope="everything"),
    ),
    ("auth/oauth2-token", "client refused", _token_call(grant_type="password", secret="wrong")),
    ("auth/oauth2-token", None, _token_call(grant_type="implicit")),
    ("auth/oauth2-userinfo", "default version", _get("admc", "/auth/oauth2/userinfo")),
    ("auth/oauth2-userinfo", "version=v2.0", _get("adml", "/auth/oauth2/userinfo?version=v2.0")),
    ("auth/oauth2-userinfo", "default version", _bearer("/auth/oauth2/userinfo")),
    ("auth/oauth2-userinfo", "version=v2.0", _bearer("/auth/oauth2/userinfo?version=v2.0")),
    ("auth/oauth2-userinfo", None, _anonymous("GET", "/auth/oauth2/userinfo")),
    ("auth/mfa-code-get", None, _get("admc", "/auth/user/mfa/code")),
    ("auth/logout", None, _anonymous("GET", "/auth/logout")),
    # accounts
    ("auth/block-user", None, _send("admc", "PUT", "/auth/block/{student}", json={"block": False})),
    ("auth/block-user", None, _send("admc", "PUT", "/auth/block/nobody", json={"block": True})),
    ("auth/users-block", None, _send("admc", "PUT", "/auth/users/block", json={"users": ["{student}"]})),
    (
        "auth/force-change-password",
        None,
        _send("admc", "POST", "/auth/forceChangePassword", json={"userId": "x"}),
    ),
    ("auth/erase-password", None, _send("admc", "POST", "/auth/erasePassword", json={"userId": "nobody"})),
    (
        "auth/renewal-code",
        None,
        _send("admc", "POST", "/auth/generatePasswordRenewalCode", data={"login": "{login}"}),
    ),
    ("auth/renewal-code", None, _send("admc", "POST", "/auth/generatePasswordRenewalCode", data={})),
    (
        "auth/mass-renewal-code",
        None,
        _send(
            "admc", "POST", "/auth/massGeneratePasswordRenewalCode", json={"users": ["{student}", "nobody"]}
        ),
    ),
    (
        "directory/profile-block",
        None,
        _send(
            "admc",
            "PUT",
            "/directory/structure/{school}/profile/block",
            json={"profile": "Guest", "block": False},
        ),
    ),
    ("admin/block-traces", None, _get("admc", "/admin/api/block/traces/{school}")),
    # event store
    (
        "infra/event-list",
        None,
        _get("admc", "/infra/v2/event/list/events/0?duration=99999999999999&event-types=LOGIN&sorted=true"),
    ),
    ("infra/event-list", None, _get("admc", "/infra/v2/event/list/nonsense/0")),
    ("infra/event-list", None, _get("admc", "/infra/v2/event/list/events/soon")),
    ("infra/event-list", None, _get("adml", "/infra/v2/event/list/events/0")),
    # communication
    ("communication/group-get", None, _get("admc", "/communication/group/{cstudent}")),
    ("communication/group-get", None, _get("adml", "/communication/group/{sstudent}")),
    ("communication/group-get", "ADMC on a group id", _get("admc", "/communication/group/nobody")),
    ("communication/group-get", "the filter refuses", _get("adml", "/communication/group/{ostudent}")),
    ("communication/group-outgoing-get", None, _anonymous("GET", "/communication/group/{cstudent}/outgoing")),
    ("communication/group-incoming-get", None, _anonymous("GET", "/communication/group/{cteacher}/incoming")),
    ("communication/group-incoming-get", None, _anonymous("GET", "/communication/group/nobody/incoming")),
    (
        "communication/group-users-delete",
        "both sends",
        _send("admc", "DELETE", "/communication/group/{cstudent}/users"),
    ),
    (
        "communication/group-users-delete",
        "a side was cut",
        _send("adml", "DELETE", "/communication/group/{sstudent}/users"),
    ),
    (
        "communication/group-users-delete",
        "the filter refuses",
        _send("adml", "DELETE", "/communication/group/{ostudent}/users"),
    ),
    ("communication/group-users-post", None, _send("admc", "POST", "/communication/group/{cstudent}/users")),
    (
        "communication/group-direction-post",
        None,
        _send("admc", "POST", "/communication/group/{cstudent}?direction=INCOMING"),
    ),
    (
        "communication/group-relations-delete",
        "the relation is gone",
        _send("admc", "DELETE", "/communication/group/{cstudent}/relations/{cteacher}"),
    ),
    (
        "communication/group-communique-post",
        None,
        _send("adml", "POST", "/communication/group/{cstudent}/communique/{sstudent}"),
    ),
    (
        "communication/group-communique-v2-post",
        None,
        _send("adml", "POST", "/communication/v2/group/{sstudent}/communique/{cteacher}"),
    ),
    (
        "communication/group-communique-v2-post",
        None,
        _send("admc", "POST", "/communication/v2/group/{crelative}/communique/{cteacher}"),
    ),
    (
        "communication/relative-delete",
        None,
        _send("admc", "DELETE", "/communication/relative/{crelative}?direction=INCOMING"),
    ),
    (
        "communication/relative-post",
        None,
        _send("admc", "POST", "/communication/relative/{crelative}?direction=INCOMING"),
    ),
    (
        "communication/verify-get",
        "always for an ADMC",
        _get("admc", "/communication/verify/{student}/{teacher}"),
    ),
    ("communication/verify-get", "not ADMC", _get("adml", "/communication/verify/{student}/{teacher}")),
    ("communication/rules-get", None, _get("adml", "/communication/rules")),
    # app registry
    ("appregistry/applications-get", None, _get("adml", "/appregistry/applications?structureId={school}")),
    ("appregistry/applications-get", None, _get("adml", "/appregistry/applications")),
    (
        "appregistry/structure-application-groups-roles-get",
        None,
        _get("adml", "/appregistry/structure/{school}/application/{app}/groups/roles"),
    ),
    ("appregistry/roles-actions-get", None, _get("admc", "/appregistry/roles/actions")),
    ("appregistry/groups-roles-get", None, _get("adml", "/appregistry/groups/roles?structureId={school}")),
    (
        "appregistry/structure-roles-delete",
        None,
        _send(
            "adml",
            "DELETE",
            "/appregistry/structures/{other}/roles",
            json={"profiles": ["Student"], "roles": ["{role}"]},
        ),
    ),
    (
        "appregistry/structure-roles-delete",
        None,
        _send(
            "admc",
            "DELETE",
            "/appregistry/structures/{school}/roles",
            json={"profiles": [], "roles": ["{role}"]},
        ),
    ),
    (
        "appregistry/structure-roles-put",
        None,
        _send(
            "admc",
            "PUT",
            "/appregistry/structures/{school}/roles",
            json={"profiles": ["Student"], "roles": ["{role}"]},
        ),
    ),
    # banners
    (
        "timeline/flashmsg-structure",
        None,
        _send("admc", "POST", "/timeline/flashmsg/structure/{school}", json=dict(FLASH)),
    ),
    (
        "timeline/flashmsg-structure",
        None,
        _send("admc", "POST", "/timeline/flashmsg/structure/{school}", json=dict(FLASH, domain="x")),
    ),
    (
        "timeline/flashmsg-structure",
        None,
        _send("adml", "POST", "/timeline/flashmsg/structure/{other}", json=FLASH),
    ),
    # behaviours of every route
    ("common/session-missing", None, _anonymous("GET", "/directory/structure/admin/list")),
    ("common/action-denied", None, _get("adml", "/directory/structures")),
    (
        "common/csrf-refused",
        None,
        lambda w: w.admc.put(w.url("/auth/block/{student}"), headers={"X-XSRF-TOKEN": "x"}),
    ),
]


@pytest.mark.parametrize(("name", "when", "call"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_the_lab_answers_as_the_contract_says(world: World, name: str, when: str | None, call: Call) -> None:
    response = call(world)
    load(name).check_response(response, when)


def test_admin_list_ignores_an_unknown_search_type_like_the_platform(world: World) -> None:
    """``searchType=login`` is not a platform filter: the answer is the unfiltered list of the structure."""
    base = world.url("/directory/user/admin/list?structureId={school}")
    everyone = world.admc.get(base, timeout=10).json()
    login = world.admc.get(base + f"&searchTerm={world.ids['login']}&searchType=login", timeout=10).json()
    assert len(login) == len(everyone) > 50


def test_event_types_are_a_repeated_parameter(world: World) -> None:
    """One type per value, as the platform reads them; logins carry the address and agent, no login."""
    base = world.url("/infra/v2/event/list/events/0?duration=99999999999999&sorted=true")
    logins = world.admc.get(base + "&event-types=LOGIN", timeout=10).json()
    both = world.admc.get(base + "&event-types=LOGIN&event-types=CREATE", timeout=10).json()
    assert logins and {e["event-type"] for e in logins} == {"LOGIN"} and len(both) >= len(logins)
    assert all("ip" in e and "ua" in e and "login" not in e for e in logins)
    assert world.admc.get(base + "&event-types=LOGIN,CREATE", timeout=10).json() == []


def test_an_adml_outside_its_schools_gets_an_empty_list(world: World) -> None:
    rows = world.adml.get(world.url("/directory/user/admin/list?structureId={other}"), timeout=10)
    assert rows.status_code == 200 and rows.json() == []


def test_a_session_that_must_change_its_password_reaches_only_userinfo(world: World) -> None:
    lab = world.lab
    assert world.admc.post(
        world.url("/auth/forceChangePassword"), json={"userId": world.ids["student"]}, timeout=5
    ).ok
    pupil = _session(lab, world.ids["login"], mfa=False)
    blocked = pupil.get(world.url("/directory/user/{student}"), allow_redirects=False, timeout=5)
    load("common/force-change-password-redirect").check_response(blocked)
    assert "/auth/reset/forceChangePassword?callback=%2Fdirectory%2Fuser%2F" in blocked.headers["Location"]
    info = pupil.get(world.url("/auth/oauth2/userinfo?version=v2.0"), allow_redirects=False, timeout=5)
    assert info.status_code == 200 and info.json()["forceChangePassword"] is True


def test_an_mfa_code_of_the_wrong_length_is_refused(world: World) -> None:
    short = world.adml.post(world.url("/auth/user/mfa/code"), json={"key": "123"}, timeout=5)
    load("auth/mfa-code-post").check_response(short)
    assert short.status_code == 400
