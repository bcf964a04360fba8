"""A playbook's data-only expressions: ``${{ inputs.NAME }}``, ``${{ steps.ID.FIELD }}``,
``${{ incident.id }}`` and ``when:`` comparisons. Nothing is evaluated: a value that is exactly one
expression keeps the type of what it names (a list stays a list); anything else is text substitution.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from pcnctl.errors import PlaybookError
from pcnctl.records import JsonObject, JsonValue

EXPR = re.compile(r"\$\{\{\s*([a-z_]+(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
WHOLE = re.compile(r"^\s*\$\{\{\s*([a-z_]+(?:\.[A-Za-z0-9_-]+)*)\s*\}\}\s*$")
# What a YAML comparison may hold (numbers, texts, a list's length): Python's own operators decide.
COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}
COMPARATORS = set(COMPARE)


def resolve(value: JsonValue, context: JsonObject) -> JsonValue:
    """Substitute expressions from ``context`` ({"inputs": ..., "steps": ..., "incident": ...})."""
    if isinstance(value, str):
        whole = WHOLE.match(value)
        if whole:
            return _lookup(whole.group(1), context)
        return EXPR.sub(lambda m: str(_lookup(m.group(1), context)), value)
    if isinstance(value, list):
        return [resolve(v, context) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, context) for k, v in value.items()}
    return value


def _lookup(ref: str, context: JsonObject) -> JsonValue:
    value: JsonValue = context
    for part in ref.split("."):
        if isinstance(value, list) and part.isdigit():  # steps.find.messages.0: an item of a list result
            if int(part) >= len(value):
                found = f"has only {len(value)} item(s)" if value else "is empty"
                raise PlaybookError(
                    f"nothing to act on: ${{{{ {ref} }}}} asks for item {part} of a list that {found}",
                    hint="an earlier step found nothing; guard the step with a 'when:' condition",
                )
            value = value[int(part)]
            continue
        if not isinstance(value, dict) or part not in value:
            raise PlaybookError(f"${{{{ {ref} }}}} has no value at this point of the run")
        value = value[part]
    return value


def condition(when: JsonValue, context: JsonObject) -> bool:
    if when is None:
        return True
    if isinstance(when, dict):
        left, right = resolve(when["value"], context), resolve(when["than"], context)
        if isinstance(left, list):
            left = len(left)
        return bool(COMPARE[str(when["op"])](left, right))
    value = resolve(when, context)
    return bool(len(value)) if isinstance(value, (list, dict)) else bool(value)
