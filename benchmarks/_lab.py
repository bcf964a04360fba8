"""Shared helpers for benchmarks: start a lab subprocess, talk to its control endpoint, record results."""

from __future__ import annotations

import re
from pathlib import Path

from pcnctl.lab.process import LabProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"


class Lab(LabProcess):
    """The lab the benchmarks drive (see pcnctl.lab.process)."""


def write_section(name: str, markdown: str) -> None:
    """Replace (or add) the section ``name`` of docs/benchmarks.md between its markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")
