"""Excel workbooks for the crisis cell: real ``.xlsx`` files, written 0600 (they may name people).

No cell is ever a formula. Text is written as a text cell, whatever it starts with; text that Excel would
turn into a formula once someone edits the cell and presses Enter (``=``, ``+``, ``-``, ``@``) also carries
Excel's quote prefix, the mark a typed leading apostrophe leaves. Numbers are numbers; times are Excel
dates in the crisis cell's time zone (a workbook has no zone: the wall-clock time there, the zone named in
the heading). XlsxWriter is imported when a workbook is written, never when pcnctl starts.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

Value = str | int | float | datetime | None
FORMULA_START = ("=", "+", "-", "@")
DATE_FORMAT = "dd/mm/yyyy hh:mm:ss"


@dataclass(frozen=True)
class Column:
    key: str
    heading: str
    width: int = 18


@dataclass(frozen=True)
class Sheet:
    """One table: a heading row (frozen, with filters), then a row per mapping of column keys to values."""

    name: str
    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Value]]


def workbook(sheets: Sequence[Sheet], tz: str) -> bytes:
    """The workbook's bytes: each sheet's table, times shown in ``tz``."""
    import xlsxwriter

    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False})
    formats = {
        "heading": book.add_format({"bold": True, "bg_color": "#EEEEEE", "border": 1, "text_wrap": True}),
        "datetime": book.add_format({"num_format": DATE_FORMAT}),
        "quoted": book.add_format({"quote_prefix": True}),
    }
    for sheet in sheets:
        _write_sheet(book.add_worksheet(sheet.name[:31]), sheet, formats, ZoneInfo(tz))
    book.close()
    return buffer.getvalue()


def _write_sheet(ws: Any, sheet: Sheet, formats: dict[str, Any], zone: ZoneInfo) -> None:
    for col, column in enumerate(sheet.columns):
        ws.set_column(col, col, column.width)
        ws.write_string(0, col, column.heading, formats["heading"])
    for row, values in enumerate(sheet.rows, start=1):
        for col, column in enumerate(sheet.columns):
            _write_cell(ws, row, col, values.get(column.key), formats, zone)
    ws.freeze_panes(1, 0)
    if sheet.rows:
        ws.autofilter(0, 0, len(sheet.rows), len(sheet.columns) - 1)


def _write_cell(ws: Any, row: int, col: int, value: Value, formats: dict[str, Any], zone: ZoneInfo) -> None:
    """One cell of the value's own type: a number, a date (aware times shown in ``zone``), or text."""
    if value is None or value == "":
        ws.write_blank(row, col, None)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        ws.write_number(row, col, value)
    elif isinstance(value, datetime):
        local = value.astimezone(zone).replace(tzinfo=None) if value.tzinfo else value
        ws.write_datetime(row, col, local, formats["datetime"])
    else:
        text = str(value)
        ws.write_string(row, col, text, formats["quoted"] if text.startswith(FORMULA_START) else None)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` 0600, atomically (a file that names people is its owner's alone)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
