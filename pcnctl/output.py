"""Rendering of results: data on stdout in the format asked, everything else on stderr.

``json`` is always an array of objects whose keys are the declared columns, in order, so scripts can rely on
them. ``jsonl`` streams one object per line for large results. ``csv`` neutralises cells a spreadsheet
would run as a formula. rich and tabulate are imported only in the branch that needs them: they cost tens of
milliseconds each and ``--help`` must stay fast.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import IO

from pcnctl.records import Cell, JsonObject, JsonValue

FORMATS = ("table", "json", "jsonl", "csv", "markdown")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object, *, machine: bool = False) -> str:
    """A value as text for table and Markdown cells (yes/no), or CSV cells (``machine``: true/false)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        if machine:
            return "true" if value else "false"
        return "yes" if value else "no"
    if isinstance(value, (list, tuple, set)):
        return (";" if machine else ", ").join(cell(v, machine=machine) for v in value)
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def safe_csv_cell(text: str) -> str:
    """Prefix text a spreadsheet would evaluate (=, +, -, @, tab, CR) with a quote, keeping plain numbers."""
    if text.startswith(_FORMULA_START):
        try:
            float(text)
            return text
        except ValueError:
            return "'" + text
    return text


# Columns whose values are codes or states: never folded nor cut, the others give way first.
_KEYS = frozenset(
    {
        "uai",
        "school",
        "profile",
        "result",
        "status",
        "method",
        "kind",
        "check",
        "severity",
        "available",
        "lever",
    }
)


# Columns a narrow terminal drops first, in this order (ids are unreadable there; -o json keeps them).
_DROP_FIRST = (
    "id",
    "zip_code",
    "academy",
    "firstName",
    "lastName",
    "lastLogin",
    "functions",
    "alias",
    "detail",
    "city",
)


def _width(out: IO[str], width: int | None) -> int:
    """The width the caller knows (the terminal's, or ``$COLUMNS``, read at the edge), else wide: off a
    terminal (a pipe, a file) rows stay on one line."""
    if width is not None:
        return width
    try:
        return 80 if out.isatty() else 240
    except ValueError:
        return 240


def _fit(columns: list[str], longest: list[int], width: int) -> list[int]:
    """The indexes of the columns to show: all that fit, dropping the least useful ones first."""
    keep = list(range(len(columns)))

    def need() -> int:
        return sum(min(longest[i], 24 if columns[i] in _KEYS else 14) + 3 for i in keep)

    for name in _DROP_FIRST:
        if need() <= width:
            break
        if name in columns and len(keep) > 2:
            keep.remove(columns.index(name))
    return keep


def render(
    rows: Iterable[Mapping[str, JsonValue]],  # rows (Row), or whole records for -o json
    fmt: str,
    columns: Sequence[str],
    *,
    stream: IO[str] | None = None,
    title: str | None = None,
    width: int | None = None,
) -> int:
    """Write ``rows`` to ``stream`` (stdout) in ``fmt``; returns how many rows were written. ``width``: the
    terminal's columns as the edge read them (tables only)."""
    out = stream or sys.stdout
    if fmt == "json":
        return _render_json(rows, columns, out)
    if fmt == "jsonl":
        count = 0
        for row in rows:
            out.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False, default=str) + "\n")
            count += 1
        return count
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        count = 0
        for row in rows:
            writer.writerow([safe_csv_cell(cell(row.get(c), machine=True)) for c in columns])
            count += 1
        return count
    materialised = [[cell(row.get(c)) for c in columns] for row in rows]
    if fmt == "markdown":
        from tabulate import tabulate

        if title:
            out.write(f"### {title}\n\n")
        out.write(tabulate(materialised, headers=list(columns), tablefmt="github") + "\n")
        return len(materialised)
    if fmt == "table":
        if not materialised:
            return 0
        from rich.console import Console
        from rich.table import Table

        width = _width(out, width)
        longest = [max([len(c), *(len(v[i]) for v in materialised)]) for i, c in enumerate(columns)]
        keep = _fit(list(columns), longest, width)
        table = Table(title=title, show_edge=False, header_style="bold")
        for i in keep:
            if columns[i] in _KEYS:  # codes and states stay whole: "0750654D", not "0750/654D"
                table.add_column(columns[i], no_wrap=True, min_width=min(longest[i], 24))
            else:  # text and ids give way, on one line, cut with an ellipsis (-o json/csv has them whole)
                table.add_column(columns[i], no_wrap=True, overflow="ellipsis", min_width=min(longest[i], 8))
        for values in materialised:
            table.add_row(*(values[i] for i in keep))
        Console(file=out, soft_wrap=False, width=width).print(table)
        if len(keep) < len(columns):
            hidden = ", ".join(c for i, c in enumerate(columns) if i not in keep)
            sys.stderr.write(f"({hidden} not shown at {width} columns: -o json or csv has every column)\n")
        return len(materialised)
    raise ValueError(f"unknown output format {fmt!r}")


def render_excel_csv(
    rows: Iterable[Mapping[str, Cell]],
    columns: Sequence[str],
    stream: IO[str],
    headers: Mapping[str, str] | None = None,
) -> int:
    """CSV that French Excel opens as it should: semicolons, UTF-8 with a BOM, formulas neutralised."""
    stream.write("\ufeff")
    writer = csv.writer(stream, delimiter=";", lineterminator="\r\n")
    writer.writerow([(headers or {}).get(c, c) for c in columns])
    count = 0
    for row in rows:
        writer.writerow([safe_csv_cell(cell(row.get(c), machine=True)) for c in columns])
        count += 1
    return count


def _render_json(rows: Iterable[Mapping[str, JsonValue]], columns: Sequence[str], out: IO[str]) -> int:
    # Streamed as a valid array, one object per line, so a long listing starts printing at once.
    out.write("[")
    count = 0
    for row in rows:
        out.write(",\n " if count else "\n ")
        out.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False, default=str))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def render_record(record: Mapping[str, JsonValue], fmt: str, *, stream: IO[str] | None = None) -> None:
    """Write one object: key/value lines for a person, the object itself for json/jsonl."""
    out = stream or sys.stdout
    if fmt in ("json", "jsonl"):
        indent = 2 if fmt == "json" else None
        out.write(json.dumps(dict(record), ensure_ascii=False, default=str, indent=indent) + "\n")
        return
    rows: list[JsonObject] = [{"field": k, "value": v} for k, v in record.items()]
    render(rows, fmt, ("field", "value"), stream=out)
