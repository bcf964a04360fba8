"""The playbook format: loading YAML with positions, validating it, and data-only templating.

A value may hold ``${{ inputs.NAME }}``, ``${{ steps.ID.FIELD }}`` or ``${{ incident.id }}``; a value that is
exactly one expression keeps the type of what it names (a list stays a list). Nothing else is evaluated:
no code runs from a playbook. Every error names the file, line and column, and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, cast

from pcnctl.errors import PlaybookError
from pcnctl.playbooks.expressions import COMPARATORS, EXPR, WHOLE
from pcnctl.records import JsonObject, JsonValue

if TYPE_CHECKING:
    from yaml import MappingNode, Node

    from pcnctl.playbooks.ops import Op

STEP_ID = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")
# How a check reports a problem at a node's line and column (None: the file's start).
Report = Callable[["Node | None", str], None]
INPUT_TYPES = {"string": str, "int": int, "bool": bool, "list": list, "float": float}


class InputSpec(TypedDict, total=False):
    """A declared input: its type (one of INPUT_TYPES), and a default when it is optional."""

    type: str
    default: JsonValue
    description: str
    required: bool


@dataclass
class Problem:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass
class Step:
    id: str
    op: str
    params: JsonObject
    when: JsonValue = None
    on_error: str = "stop"
    approval: bool = False
    line: int = 0


@dataclass
class Playbook:
    path: Path
    name: str
    description: str
    inputs: dict[str, InputSpec]
    steps: list[Step] = field(default_factory=list)

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)


def _plain(node: Node | None) -> JsonValue:
    """A YAML node to plain Python values (safe: only scalars, sequences and mappings)."""
    import yaml

    plain: JsonValue = yaml.safe_load(yaml.serialize(node)) if node is not None else None
    return plain


def load(path: Path) -> tuple[Playbook | None, list[Problem]]:
    """Parse and check a playbook; returns it (None when unusable) and every problem found."""
    import yaml

    from pcnctl.playbooks.ops import OPS

    name = str(path)
    problems: list[Problem] = []

    def problem(node: Node | None, message: str) -> None:
        mark = getattr(node, "start_mark", None)
        problems.append(Problem(name, mark.line + 1 if mark else 1, mark.column + 1 if mark else 1, message))

    text = _read_text(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problems.append(Problem(name, line, column, f"not valid YAML: {getattr(exc, 'problem', exc)}"))
        return None, problems
    if not isinstance(root, yaml.MappingNode):
        problem(root, "expected a mapping with version, name, description, inputs and steps")
        return None, problems
    top = _top(root, problem)
    inputs = _inputs(top.get("inputs"), problem)
    steps = _steps(top.get("steps") or root, problem, OPS, inputs)
    if problems:
        return None, problems
    return Playbook(path, str(_plain(top["name"])), str(_plain(top["description"])), inputs, steps), problems


def _read_text(path: Path) -> str:
    """The playbook's text: a file that cannot be read, is not UTF-8 or holds NUL bytes (a binary file, an
    export in another encoding) is named as such, with where the first bad byte is, before YAML sees it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlaybookError(f"cannot read playbook {path}: {exc.strerror}") from None
    hint = "a playbook is a YAML text file saved as UTF-8: check the file name, or convert it (iconv)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start)
        where = f"byte 0x{data[exc.start]:02x} at line {line}, column {column}"
        raise PlaybookError(f"playbook {path} is not UTF-8 text: {where}", hint=hint) from None
    if "\x00" in text:
        line, column = _position(data, data.index(b"\x00"))
        raise PlaybookError(
            f"playbook {path} is a binary file (a NUL byte at line {line}, column {column}), not YAML",
            hint=hint,
        )
    return text


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """Line and column (from 1, in bytes) of ``offset`` in ``data``."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _top(root: MappingNode, problem: Report) -> dict[str, Node]:
    """The top-level keys by name, each checked: known keys only, version 1, a name and a description."""
    top = {k.value: v for k, v in root.value}
    for key_node, _ in root.value:
        if key_node.value not in ("version", "name", "description", "inputs", "steps"):
            problem(
                key_node,
                f"unknown key {key_node.value!r} (expected version, name, description, inputs, steps)",
            )
    if _plain(top.get("version")) != 1:
        problem(top.get("version", root), "expected version: 1")
    for key in ("name", "description"):
        if not isinstance(_plain(top.get(key)), str):
            problem(top.get(key, root), f"expected {key}: a text")
    return top


def _inputs(node: Node | None, problem: Report) -> dict[str, InputSpec]:
    """The declared inputs: a type each, known keys, a default of that type."""
    import yaml

    inputs: dict[str, InputSpec] = {}
    if node is None:
        return inputs
    if not isinstance(node, yaml.MappingNode):
        problem(node, "expected inputs: a mapping of name to {type, default, description}")
        return inputs
    for key_node, spec_node in node.value:
        spec = _plain(spec_node)
        if not isinstance(spec, dict) or spec.get("type") not in INPUT_TYPES:
            problem(spec_node, f"input {key_node.value!r}: expected type one of {', '.join(INPUT_TYPES)}")
            continue
        unknown = set(spec) - {"type", "default", "description", "required"}
        if unknown:
            problem(spec_node, f"input {key_node.value!r}: unknown key(s) {', '.join(sorted(unknown))}")
        if "default" in spec and not _type_ok(spec["default"], spec["type"]):
            problem(spec_node, f"input {key_node.value!r}: default is not a {spec['type']}")
        inputs[key_node.value] = cast(InputSpec, spec)  # its type and default checked above
    return inputs


def _steps(node: Node, problem: Report, ops: dict[str, Op], inputs: dict[str, InputSpec]) -> list[Step]:
    """Every step, checked in order: a step may use the results of the steps before it only."""
    import yaml

    steps: list[Step] = []
    produced: dict[str, set[str]] = {}
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        problem(node, "expected steps: a list of {id, op, with, when, on_error, approval}")
        return steps
    for step_node in node.value:
        step = _step(step_node, problem, ops, inputs, produced)
        if step is not None:
            if step.id in produced:
                problem(step_node, f"step id {step.id!r} is used twice")
            produced[step.id] = set(ops[step.op].produces) if step.op in ops else set()
            steps.append(step)
    return steps


def _type_ok(value: object, kind: str) -> bool:
    if kind == "any" or (isinstance(value, str) and WHOLE.match(value)):
        return True
    expected = INPUT_TYPES.get(kind, object)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _refs(value: object) -> list[str]:
    if isinstance(value, str):
        return EXPR.findall(value)
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    return []


def _step(
    node: Node,
    problem: Report,
    ops: dict[str, Op],
    inputs: dict[str, InputSpec],
    produced: dict[str, set[str]],
) -> Step | None:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        problem(node, "expected a step: a mapping with id and op")
        return None
    fields = {k.value: (k, v) for k, v in node.value}
    for key, (key_node, _v) in fields.items():
        if key not in ("id", "op", "with", "when", "on_error", "approval", "description"):
            problem(key_node, f"unknown step key {key!r} (expected id, op, with, when, on_error, approval)")
    step_id = _plain(fields["id"][1]) if "id" in fields else None
    if not isinstance(step_id, str) or not STEP_ID.match(step_id):
        problem(fields.get("id", (node, node))[1], "expected id: lower-case letters, digits, '-' or '_'")
        return None
    op = _plain(fields["op"][1]) if "op" in fields else None
    if op not in ops:
        problem(
            fields.get("op", (node, node))[1],
            f"step {step_id}: unknown operation {op!r} (expected one of {', '.join(sorted(ops))})",
        )
        return None
    params_node = fields.get("with", (None, None))[1]
    params = _plain(params_node) or {}
    if not isinstance(params, dict):
        problem(params_node, f"step {step_id}: expected with: a mapping of parameters")
        return None
    _check_params(node, params_node, params, f"step {step_id}", op, ops[op], problem)
    when = _plain(fields["when"][1]) if "when" in fields else None
    on_error = _plain(fields["on_error"][1]) if "on_error" in fields else "stop"
    if on_error not in ("stop", "continue"):
        problem(fields["on_error"][1], f"step {step_id}: on_error must be stop or continue")
    approval = _plain(fields["approval"][1]) if "approval" in fields else False
    if not isinstance(approval, bool):
        problem(fields["approval"][1], f"step {step_id}: approval must be true or false")
    bad_when = isinstance(when, dict) and (
        set(when) - {"value", "op", "than"} or when.get("op") not in COMPARATORS
    )
    if bad_when:
        problem(
            fields["when"][1],
            f"step {step_id}: when is an expression, or {{value, op, than}} with op "
            f"one of {', '.join(sorted(COMPARATORS))}",
        )
    where = fields.get("with", fields.get("when", (node, node)))[1]
    for ref in _refs(params) + _refs(when):
        _check_ref(ref, where, f"step {step_id}", inputs, produced, problem)
    return Step(step_id, op, params, when, str(on_error), bool(approval), node.start_mark.line + 1)


def _check_params(
    node: Node,
    params_node: Node | None,
    params: Mapping[str, object],
    label: str,
    op: str,
    spec: Op,
    problem: Report,
) -> None:
    """Known parameters only, each of its type (or an expression), and the required ones given."""
    for key_node, value_node in params_node.value if params_node is not None else []:
        if key_node.value not in spec.params:
            problem(
                key_node,
                f"{label}: unknown parameter {key_node.value!r} for {op} "
                f"(expected {', '.join(sorted(spec.params)) or 'none'})",
            )
            continue
        kind = spec.params[key_node.value].type
        if not _type_ok(_plain(value_node), kind) and not _refs(_plain(value_node)):
            problem(value_node, f"{label}: {key_node.value} must be a {kind}")
    for name, p in spec.params.items():
        if p.required and name not in params:
            problem(node, f"{label}: {op} needs the parameter {name!r}")


def _check_ref(
    ref: str,
    where: Node | None,
    label: str,
    inputs: dict[str, InputSpec],
    produced: dict[str, set[str]],
    problem: Report,
) -> None:
    """An expression names a declared input, a result of an earlier step, or the incident's id."""
    parts = ref.split(".")
    if parts[0] == "inputs":
        if len(parts) != 2 or parts[1] not in inputs:
            problem(where, f"{label}: ${{{{ {ref} }}}} names no declared input")
    elif parts[0] == "steps":
        if len(parts) < 3 or parts[1] not in produced or not all(p.isdigit() for p in parts[3:]):
            problem(where, f"{label}: ${{{{ {ref} }}}} names no earlier step")
        elif parts[2] not in produced[parts[1]]:
            problem(
                where,
                f"{label}: step {parts[1]} has no result {parts[2]!r} "
                f"(it gives {', '.join(sorted(produced[parts[1]]))})",
            )
    elif ref != "incident.id":
        problem(where, f"{label}: unknown reference ${{{{ {ref} }}}} (inputs.*, steps.*.*, incident.id)")
