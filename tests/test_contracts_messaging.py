"""The communication, app-registry and conversation route contracts: well formed, examples valid against
their own schemas, and strict enough to refuse the shapes the lab used to answer before they were written."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest

from tests import contract

MODULES = ("communication", "appregistry", "conversation")
NAMES = [n for n in contract.all_names() if n.split("/")[0] in MODULES]
PREFIX = {
    "communication": "/communication/",
    "appregistry": "/appregistry/",
    "conversation": "/conversation/",
}
CITATION = re.compile(r"^\S+:\d+ \S")


def test_every_owned_module_has_contracts() -> None:
    assert {n.split("/")[0] for n in NAMES} == set(MODULES)


@pytest.mark.parametrize("name", NAMES)
def test_contract_is_well_formed(name: str) -> None:
    c = contract.load(name)
    keys = [k for k in c.data if k in contract.REQUIRED]
    assert keys == [k for k in contract.REQUIRED if k in keys], f"{name}: keys out of order"
    assert c.method in ("GET", "POST", "PUT", "DELETE")
    assert c.path.startswith(PREFIX[name.split("/")[0]])
    assert c.data["release"] == "6.15.4"
    assert isinstance(c.data["mfa"], bool) and isinstance(c.data["csrf"], bool)
    for line in c.data["source"]:
        assert CITATION.match(line), f"{name}: source {line!r} has no path:line"
    assert len({(a.status, a.when) for a in c.answers}) == len(c.answers)


@pytest.mark.parametrize("name", NAMES)
def test_examples_match_their_schemas(name: str) -> None:
    c = contract.load(name)
    for answer in c.answers:
        if answer.schema is None:
            continue
        jsonschema.Draft202012Validator.check_schema(answer.schema)
        assert answer.examples, f"{name} {answer.status}: a schema with no example"
        for example in answer.examples:
            c.check(answer.status, example, answer.when)
    body = c.data.get("request", {}).get("body")
    if body is not None:
        jsonschema.Draft202012Validator.check_schema(body)
        for example in body.get("examples", []):
            jsonschema.validate(example, body)


def refused(name: str, status: int, body: Any, when: str | None = None) -> bool:
    try:
        contract.load(name).check(status, body, when)
    except jsonschema.ValidationError:
        return True
    return False


def test_group_lists_peers_as_objects_and_link_values_only() -> None:
    peers_as_ids = {"id": "g1", "name": "6A-Student", "users": "BOTH", "communiqueWith": ["g2"]}
    assert refused("communication/group-get", 200, peers_as_ids)
    assert refused(
        "communication/group-get", 200, {"id": "g1", "name": "n", "users": "", "communiqueWith": []}
    )


def test_users_link_removal_answers_the_platform_texts() -> None:
    assert refused("communication/group-users-delete", 409, {"error": "IMPOSSIBLE_TO_CHANGE_DIRECTION"})
    assert refused("communication/group-users-delete", 200, {"users": "NONE"})
    assert not refused("communication/group-users-delete", 200, {"users": None})


def test_relation_routes_answer_directions() -> None:
    assert refused("communication/group-relations-delete", 200, {})
    assert refused("communication/group-communique-v2-post", 200, {})
    assert refused("communication/group-communique-v2-post", 200, {"g1": "NONE"})


def test_verify_never_answers_not_found() -> None:
    with pytest.raises(AssertionError, match="never answers 404"):
        contract.load("communication/verify-get").answer(404)


def test_send_answer_and_body_are_the_platform_ones() -> None:
    c = contract.load("conversation/send-post")
    assert refused("conversation/send-post", 200, {"id": "m1", "sent": 1})
    body = c.data["request"]["body"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"to": ["u1"], "attachments": [{"name": "a.pdf"}]}, body)
    jsonschema.validate({"to": []}, body)


def test_mass_role_changes_need_both_lists() -> None:
    body = contract.load("appregistry/structure-roles-delete").data["request"]["body"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"profiles": [], "roles": ["r1"]}, body)
    assert contract.load("appregistry/structure-roles-delete").answer(400).schema is None


def test_purge_refusal_of_an_empty_list_has_no_body() -> None:
    answer = contract.load("conversation/api-purge-messages-post").answer(400)
    assert answer.schema is None and answer.content_type is None


def test_applications_have_no_address() -> None:
    row = {
        "id": "a1",
        "displayName": "messagerie",
        "name": "Messagerie",
        "icon": None,
        "isExternal": False,
        "levelsOfEducation": [1, 2],
        "appType": "END_USER",
    }
    assert not refused("appregistry/applications-get", 200, [row])
    assert refused("appregistry/applications-get", 200, [{**row, "address": "/conversation"}])
