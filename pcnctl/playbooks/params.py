"""A playbook step's parameters, read through typed accessors.

Parameters come from YAML and from earlier steps' results (``${{ steps.x.y }}``), so they are JSON values.
The loader checked each literal against the type its operation declares; a value an expression produced
is only known once resolved, so the accessors convert (a number given where a text is wanted is its text).
The drill reads a step's result back with the same accessors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pcnctl.records import JsonValue


@dataclass(frozen=True)
class StepParams:
    values: Mapping[str, JsonValue] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def value(self, name: str, default: JsonValue = None) -> JsonValue:
        return self.values.get(name, default)

    def text(self, name: str) -> str | None:
        """The parameter as text; None when absent or null."""
        value = self.values.get(name)
        return None if value is None else str(value)

    def texts(self, name: str) -> list[str]:
        """A list parameter's items as text (empty when absent, null or empty)."""
        value = self.values.get(name)
        if isinstance(value, list):
            return [str(v) for v in value]
        return [str(value)] if value else []

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        return float(value) if isinstance(value, (int, float, str)) and value != "" else None

    def integer(self, name: str) -> int | None:
        value = self.values.get(name)
        return int(value) if isinstance(value, (int, float, str)) and value != "" else None

    def flag(self, name: str) -> bool | None:
        value = self.values.get(name)
        return None if value is None else bool(value)
