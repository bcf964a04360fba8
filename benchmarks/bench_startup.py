"""Start-up time: ``pcnctl --help`` and ``pcnctl accounts block --help`` as an installed tool runs them.

The on-call operator types ``--help`` and completion asks pcnctl for candidates at every Tab: both start the
interpreter and import the CLI. This benchmark installs pcnctl as a user would (a fresh virtual environment,
a regular, non-editable install) and times 30 runs of each command, against the floor of the same
interpreter starting (and importing Typer alone, for comparison). ``--help`` is answered from pages rendered
ahead (``pcnctl.entry``) unless the terminal is narrower than 80 columns, where Typer renders it: both are
timed. Writes its table to docs/benchmarks.md.

    python benchmarks/bench_startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _lab import ROOT, write_section

GOAL_MS = 100


def timed(argv: list[str], runs: int, env: dict[str, str] | None = None) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds (user + system) of each run: the CPU time does not count the waits
    for the other processes of a busy machine, the wall time is what the operator waits."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
        wall.append((time.perf_counter() - started) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pcnctl-startup-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, str(ROOT)], check=True)
        python, pcnctl = str(venv / "bin" / "python"), str(venv / "bin" / "pcnctl")
        wide, narrow = dict(os.environ, COLUMNS="80"), dict(os.environ, COLUMNS="60")
        cases = {
            "`python -c pass` (the floor)": ([python, "-c", "pass"], wide),
            "`python -c 'import typer'`": ([python, "-c", "import typer"], wide),
            "`pcnctl --help`": ([pcnctl, "--help"], wide),
            "`pcnctl accounts block --help`": ([pcnctl, "accounts", "block", "--help"], wide),
            "`pcnctl accounts block --help`, 60 columns (Typer)": (
                [pcnctl, "accounts", "block", "--help"],
                narrow,
            ),
            "`pcnctl --version` (Typer)": ([pcnctl, "--version"], wide),
            "Tab after `pcnctl accounts block --sch` (bash)": (
                [pcnctl],
                dict(
                    wide,
                    _PCNCTL_COMPLETE="complete_bash",
                    COMP_WORDS="pcnctl accounts block --sch",
                    COMP_CWORD="3",
                ),
            ),
        }
        for argv, env in cases.values():
            timed(argv, 3, env)  # warm the page cache and the bytecode
        results = {name: timed(argv, args.runs, env) for name, (argv, env) in cases.items()}
    load = os.getloadavg()[0]
    rows = [
        "| command | median (wall) | p90 (wall) | median CPU time | goal |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {statistics.median(wall):.0f} ms | {sorted(wall)[int(len(wall) * 0.9)]:.0f} ms | "
            f"{statistics.median(cpu):.0f} ms | {f'≤ {GOAL_MS} ms median' if '--help' in name else ''} |"
            for name, (wall, cpu) in results.items()
        ),
    ]
    body = (
        "## Start-up time\n\n"
        f"`python benchmarks/bench_startup.py` on {platform.node()} ({os.cpu_count()} cores, load average "
        f"{load:.1f} at the end), a regular install in a fresh virtual environment, {args.runs} runs "
        "each.\n\n"
        + "\n".join(rows)
        + "\n\n`--help` on a terminal of 80 columns or more (or a pipe) prints the page rendered ahead "
        "(`make help-pages`; `tests/test_help_pages.py` checks every page against what Typer prints). A "
        "completion request builds only the group or command already typed. "
        "Otherwise only the group or command asked for is built (Typer reads each command's signature "
        "when it "
        "registers it); heavy modules (requests, keyring, yaml, tabulate, sqlite3, psycopg, rich) are "
        "imported only by the commands that use them, which `tests/test_startup.py` checks.\n"
    )
    write_section("startup", body)
    print(body)


if __name__ == "__main__":
    main()
