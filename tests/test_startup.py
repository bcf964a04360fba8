"""Startup cost: ``pcnctl --help`` must not import the heavy modules (requests, keyring, yaml, ...)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("requests", "keyring", "yaml", "tabulate", "sqlite3", "psycopg")

PROBE = """
import sys
from pcnctl.cli import main
sys.argv = ["pcnctl"] + sys.argv[1:]
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def loaded_after(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True, check=True
    ).stdout.strip()
    return [m for m in out.split(",") if m]


def test_help_imports_no_heavy_module() -> None:
    assert loaded_after("--help") == []


def test_subcommand_help_imports_no_heavy_module() -> None:
    assert loaded_after("users", "list", "--help") == []
    assert loaded_after("lab", "serve", "--help") == []


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "pcnctl", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("pcnctl ")
