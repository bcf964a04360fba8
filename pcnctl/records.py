"""The shapes of what pcnctl renders and serialises: table rows and JSON documents.

A table row is a flat mapping of column name to a cell: a scalar, or a list of strings (the schools or
functions of an account), which tables and CSV join and ``-o json`` keeps as a list. A JSON document is
what a command builds for ``-o json``, a report or a playbook step's result; code that reads fields back
out of one uses a typed record for it instead. Its containers are read-only (``Sequence``, ``Mapping``)
so that a ``list[str]`` or a ``dict[str, int]`` already built is a JSON value as it is; ``JsonObject`` is
the mutable object a function builds and returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

Scalar: TypeAlias = str | int | float | bool | None
Cell: TypeAlias = Scalar | list[str]
Row: TypeAlias = dict[str, Cell]

JsonValue: TypeAlias = str | int | float | bool | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
JsonObject: TypeAlias = dict[str, JsonValue]
