"""The route contracts themselves: each loads, is complete, cites real source lines, and its examples fit.

A contract is only worth something if its citations point at the platform's code and its examples are of the
shape its schemas describe; otherwise the lab and the driver would be checked against a made-up platform.
The source check reads a local bare copy of edificeio/entcore (HEAD = release 6.15.4; ``common/`` and
``session/`` at the commit before they left the repository) and skips when that copy is absent, as on CI.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests import contract

MIRRORS = Path(os.environ.get("EDIFICE_MIRRORS", "/work/.mirror"))
ENTCORE = "edificeio/entcore"
# The shared libraries were moved out of entcore by this commit; they are read at its parent.
LIBS_LEFT_AT = "bfeee774ea^"
LIB_DIRS = ("common", "session")
METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "ANY"}
# "owner/repo:" (optional, entcore by default), a path, ":line", then what is there.
SOURCE = re.compile(r"^(?:(?P<repo>[\w.-]+/[\w.-]+):)?(?P<path>[^\s:]+\.[\w.]+):(?P<line>\d+)\s+\S")

NAMES = contract.all_names()


def _sources(name: str) -> list[re.Match[str]]:
    """Every citation of the contract: its ``source`` list, then each effect's ``source``."""
    entries = contract.load(name).data["source"]
    assert isinstance(entries, list) and entries, f"{name}: source must be a non-empty list"
    entries = [*entries, *(e.get("source") for e in contract.load(name).data.get("effects") or [])]
    matches = []
    for entry in entries:
        # An unquoted ": " inside an entry makes YAML read a mapping instead of the intended text.
        assert isinstance(entry, str), f"{name}: source entry {entry!r} is not a string (quote it)"
        match = SOURCE.match(entry)
        assert match, f"{name}: source {entry!r} is not 'path:line what is there'"
        matches.append(match)
    return matches


def _mirror(repo: str) -> Path:
    return MIRRORS / repo.replace("/", "+") / "repo"


@cache
def _lines(repo: str, rev: str, path: str) -> tuple[str, ...] | None:
    """The lines of ``path`` at ``rev`` in the local copy of ``repo`` (None when the file is not there)."""
    done = subprocess.run(
        ["git", "-C", str(_mirror(repo)), "show", f"{rev}:{path}"], capture_output=True, check=False
    )
    if done.returncode != 0:
        return None
    return tuple(done.stdout.decode("utf-8", "replace").splitlines())


def _revision(repo: str, path: str) -> str:
    return LIBS_LEFT_AT if repo == ENTCORE and path.split("/", 1)[0] in LIB_DIRS else "HEAD"


def test_there_are_contracts_for_every_module_of_this_set() -> None:
    modules = {name.split("/", 1)[0] for name in NAMES}
    assert {"auth", "directory", "admin", "infra", "timeline", "common"} <= modules


@pytest.mark.parametrize("name", NAMES)
def test_contract_is_complete(name: str) -> None:
    c = contract.load(name)
    data = c.data
    assert c.method in METHODS, f"{name}: method {c.method!r}"
    assert c.path.startswith("/"), f"{name}: path {c.path!r}"
    assert data["release"] == "6.15.4", f"{name}: release {data['release']!r}"
    assert isinstance(data["mfa"], bool) and isinstance(data["csrf"], bool), f"{name}: mfa/csrf not booleans"
    for key in ("summary", "filter", "pcnctl"):
        assert isinstance(data[key], str) and data[key].strip(), f"{name}: {key} is empty"
    module = name.split("/", 1)[0]
    if module == "common":
        assert (c.method, c.path) == ("ANY", "/*"), f"{name}: common contracts are ANY /*"
    else:
        prefix = "" if module == "portal" else module  # the portal module is mounted at the root
        assert c.path.split("/")[1] == prefix, f"{name}: {c.path} does not belong in {module}/"
    assert c.answers, f"{name}: no responses"
    _sources(name)


@pytest.mark.parametrize("name", NAMES)
def test_answers_are_well_formed(name: str) -> None:
    for answer in contract.load(name).answers:
        assert 100 <= answer.status <= 599, f"{name}: status {answer.status}"
        assert answer.when.strip(), f"{name}: a {answer.status} answer does not say when"
        if answer.schema is None:
            # Without a schema the examples are raw bodies (HTML pages, redirect targets).
            assert all(isinstance(e, str) for e in answer.examples), f"{name}: {answer.status} examples"
            assert answer.content_type != "application/json" or not answer.examples, (
                f"{name}: JSON examples for {answer.status} need a schema"
            )
            continue
        jsonschema.Draft202012Validator.check_schema(answer.schema)


@pytest.mark.parametrize("name", NAMES)
def test_examples_fit_their_schema(name: str) -> None:
    checked = 0
    for answer in contract.load(name).answers:
        if answer.schema is None:
            continue
        validator = jsonschema.Draft202012Validator(answer.schema)
        for example in answer.examples:
            errors = sorted(validator.iter_errors(example), key=lambda e: list(e.path))
            assert not errors, f"{name} {answer.status}: {errors[0].message} at {list(errors[0].path)}"
            checked += 1
    request_body: Any = (contract.load(name).data.get("request") or {}).get("body")
    if request_body is not None:
        jsonschema.Draft202012Validator.check_schema(request_body)
    if any(a.schema is not None for a in contract.load(name).answers):
        assert checked, f"{name}: schemas but no example to check them against"


EFFECTS = [n for n in NAMES if "effects" in contract.load(n).data]


def _effect_problems(entry: Any) -> list[str]:
    """What is wrong with one entry of ``effects`` (nothing: an empty list)."""
    if not isinstance(entry, dict):
        return [f"effect {entry!r} is not a mapping"]
    problems = [
        f"effect key {k!r} is not part of the format" for k in set(entry) - {*contract.EFFECT_KEYS, "when"}
    ]
    for key in contract.EFFECT_KEYS:
        if not (isinstance(entry.get(key), str) and entry[key].strip()):
            problems.append(f"effect without {key}")
    if entry.get("change") not in contract.CHANGES:
        problems.append(f"change {entry.get('change')!r} is not one of {', '.join(contract.CHANGES)}")
    if isinstance(entry.get("source"), str) and not SOURCE.match(entry["source"]):
        problems.append(f"source {entry['source']!r} is not 'path:line what is there'")
    if "when" in entry and not (isinstance(entry["when"], str) and entry["when"].strip()):
        problems.append("an empty when")
    return problems


@pytest.mark.parametrize("name", EFFECTS)
def test_effects_are_well_formed(name: str) -> None:
    """Each effect names a store, a change of the known kinds, what changes, and where it was read (the
    citation is checked against the platform with the others); the key sits before pcnctl's part."""
    raw = contract.load(name).data["effects"]
    assert isinstance(raw, list) and raw, f"{name}: effects must be a non-empty list"
    keys = list(contract.load(name).data)
    assert keys.index("responses") < keys.index("effects") < keys.index("pcnctl"), f"{name}: key order"
    for entry in raw:
        assert not _effect_problems(entry), f"{name}: {_effect_problems(entry)}"


def test_the_modelled_routes_carry_their_effects() -> None:
    """The routes whose effects the lab models say them, including what they leave (keep)."""
    for name in (
        "conversation/api-purge-messages-post",
        "conversation/internal-purge-orphans-post",
        "conversation/send-post",
        "directory/profile-block",
        "communication/relative-delete",
    ):
        assert name in EFFECTS, name
    changes = {e.change for n in EFFECTS for e in contract.load(n).effects}
    assert set(contract.CHANGES) <= changes


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"store": "s", "change": "purge", "what": "w", "source": "a/B.java:1 x"}, "change 'purge'"),
        ({"store": "s", "change": "keep", "what": "w", "source": "B.java the delete"}, "is not 'path:line"),
        ({"store": "s", "change": "keep", "what": "w"}, "effect without source"),
        ({"store": "s", "change": "keep", "what": "w", "source": "a/B.java:1 x", "by": "cron"}, "'by'"),
        ("deletes rows", "not a mapping"),
    ],
)
def test_a_malformed_effect_is_caught(entry: Any, problem: str) -> None:
    """The effect check is not vacuous: each of these entries is refused, for the reason given."""
    assert any(problem in p for p in _effect_problems(entry)), _effect_problems(entry)


def test_a_wrong_example_is_caught() -> None:
    """The example check is not vacuous: a body of the wrong shape fails the schema it is checked against."""
    c = contract.load("directory/user-get")
    schema = c.answer(200).schema
    assert schema is not None
    good = dict(c.examples(200)[0])
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "type": "Student"}, schema)  # type is a list on the platform


@pytest.mark.parametrize("name", NAMES)
def test_sources_exist_in_the_platform(name: str) -> None:
    if not (_mirror(ENTCORE) / "HEAD").exists():
        pytest.skip(f"no local copy of {ENTCORE} under {MIRRORS} (the contracts were read from it)")
    checked = 0
    for match in _sources(name):
        repo = match["repo"] or ENTCORE
        if not (_mirror(repo) / "HEAD").exists():
            continue  # another repository whose copy is not here
        path, line = match["path"], int(match["line"])
        lines = _lines(repo, _revision(repo, path), path)
        assert lines is not None, f"{name}: {repo} has no {path} at {_revision(repo, path)}"
        assert 1 <= line <= len(lines), f"{name}: {path} has {len(lines)} lines, not {line}"
        assert lines[line - 1].strip(), f"{name}: {path}:{line} is a blank line"
        checked += 1
    assert any((m["repo"] or ENTCORE) == ENTCORE for m in _sources(name)), f"{name}: no entcore source"
    assert checked, f"{name}: no source could be checked"
