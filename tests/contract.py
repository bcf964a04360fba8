"""Route contracts: what the real Edifice platform answers on each route pcnctl calls or the lab serves.

A contract is a YAML file under ``tests/contracts/`` (one per route), written from the platform's source
(edificeio/entcore, release 6.15.4; file and line cited in ``source``), in our own words. Each response
of a contract carries a JSON Schema and one or more example payloads of the real shape. The tests use the
same contract both ways: the driver's parsers run on the examples, and the lab's live answers are
validated against the schemas, so the lab and the client cannot drift away from the platform together.

File format (keys in this order)::

    route: GET /directory/user/:userId        # method and path, path params as :name
    release: 6.15.4
    summary: one sentence, what the route is for pcnctl
    source:                                   # where each fact was read: path:line and what is there
      - directory/src/main/java/org/entcore/directory/controllers/UserController.java:123 handler
    filter: the rights rule, in words (ADMC / ADML of the structure / any session / ...)
    mfa: true | false                         # @MfaProtected
    csrf: true | false                        # a cookie write needs X-XSRF-TOKEN
    request:                                  # optional parts
      path: {userId: what it is}
      query: {name: what it is and its values}
      body: {JSON Schema of the body}
    responses:
      - status: 200
        when: in which case the platform answers this
        content_type: application/json        # or text/html, or none
        headers: {X-HAS-MORE: meaning}        # optional
        schema: {JSON Schema}                 # optional for HTML / empty bodies
        examples: [payload, ...]
    effects:                                  # optional: what the route changes in the platform's stores
      - store: conversation.usermessages      # a table, a collection, a node or edge kind, a session store
        change: delete                        # insert | update | delete | keep (what it leaves as it was)
        what: every copy of the ids, in every mailbox
        when: optional - the case it applies to (a reply, a block:false, ...)
        source: path:line what is there       # same form as the entries of `source`
    pcnctl: how pcnctl uses the route and what it does when the platform differs (older release, absent)
    notes: anything else worth knowing (where edifice-api.md was wrong, ...)

``effects`` say what a call leaves behind, which its answer does not show: the rows written and deleted,
and, as ``keep``, what a reader would expect it to touch and it does not (a purge that leaves the message
row, an unblock that forgets who was blocked before). The lab's tests read those stores after the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CONTRACTS = Path(__file__).parent / "contracts"
REQUIRED = ("route", "release", "summary", "source", "filter", "mfa", "csrf", "responses", "pcnctl")
CHANGES = ("insert", "update", "delete", "keep")
EFFECT_KEYS = ("store", "change", "what", "source")


@dataclass(frozen=True)
class Answer:
    """One documented response of a route."""

    status: int
    when: str
    content_type: str | None
    schema: dict[str, Any] | None
    examples: tuple[Any, ...]
    headers: dict[str, str]


@dataclass(frozen=True)
class Effect:
    """One change a route makes in a platform store (or one it leaves undone: ``keep``)."""

    store: str
    change: str
    what: str
    when: str
    source: str


@dataclass(frozen=True)
class Contract:
    name: str
    method: str
    path: str
    data: dict[str, Any]
    answers: tuple[Answer, ...]
    effects: tuple[Effect, ...] = ()

    def effect(self, store: str, change: str, when: str | None = None) -> Effect:
        """The documented effect on ``store`` (``when`` picks among several of the same change)."""
        found = [
            e
            for e in self.effects
            if e.store == store and e.change == change and (when is None or when in e.when)
        ]
        if not found:
            raise AssertionError(f"{self.name}: no documented {change} on {store}")
        return found[0]

    def answer(self, status: int, when: str | None = None) -> Answer:
        """The documented response for ``status`` (``when`` picks among several with one status)."""
        found = [a for a in self.answers if a.status == status and (when is None or when in a.when)]
        if not found:
            raise AssertionError(f"{self.name}: the platform never answers {status} on {self.path}")
        return found[0]

    def examples(self, status: int = 200, when: str | None = None) -> tuple[Any, ...]:
        return self.answer(status, when).examples

    def check(self, status: int, body: Any, when: str | None = None) -> None:
        """Fail unless ``body`` is a shape the platform gives with ``status`` on this route."""
        answer = self.answer(status, when)
        if answer.schema is not None:
            jsonschema.validate(body, answer.schema)

    def check_response(self, response: Any, when: str | None = None) -> None:
        """Validate a ``requests.Response``: status documented, content type and JSON body as documented."""
        answer = self.answer(response.status_code, when)
        kind = response.headers.get("Content-Type", "")
        if answer.content_type and answer.content_type not in kind:
            raise AssertionError(f"{self.name}: {answer.content_type} expected, the lab sent {kind!r}")
        for header in answer.headers:
            if header not in response.headers:
                raise AssertionError(f"{self.name}: header {header} missing")
        if answer.schema is not None:
            jsonschema.validate(response.json(), answer.schema)


def _answer(raw: dict[str, Any]) -> Answer:
    return Answer(
        status=int(raw["status"]),
        when=str(raw.get("when", "")),
        content_type=raw.get("content_type"),
        schema=raw.get("schema"),
        examples=tuple(raw.get("examples") or ()),
        headers=dict(raw.get("headers") or {}),
    )


def _effect(raw: dict[str, Any]) -> Effect:
    return Effect(
        store=str(raw.get("store", "")),
        change=str(raw.get("change", "")),
        what=str(raw.get("what", "")),
        when=str(raw.get("when", "")),
        source=str(raw.get("source", "")),
    )


@cache
def load(name: str) -> Contract:
    """The contract ``tests/contracts/NAME.yaml`` (for example ``directory/user-get``)."""
    path = CONTRACTS / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise AssertionError(f"{path}: missing {', '.join(missing)}")
    method, _, route = str(data["route"]).partition(" ")
    effects = tuple(_effect(e) for e in data.get("effects") or () if isinstance(e, dict))
    return Contract(name, method, route, data, tuple(_answer(r) for r in data["responses"]), effects)


def all_names() -> list[str]:
    return sorted(str(p.relative_to(CONTRACTS).with_suffix("")) for p in CONTRACTS.rglob("*.yaml"))
