"""A student messaging block of a whole académie: ``--all-schools`` on the ``paris`` preset, then the unblock.

The lab serves the platform's communication graph (structure and class groups, the module's default
rules, relatives' direct edges, head-teacher and functional groups; the lycées run the students-open
variant). The block reads every school's groups, cuts what lets students write, in the order the server
allows, and the unblock writes the snapshot back. This benchmark times both as the CLI runs them (ADMC,
default concurrency), counts the lab's requests, checks that no student group is left open, and that the
graph after the unblock equals the graph before, row for row. Writes its table to docs/benchmarks.md.

    python benchmarks/bench_messaging.py [--preset paris]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _lab import Lab, write_section

GRAPH = (
    "SELECT id, users_dir, member_in, member_out, relative_student FROM groups ORDER BY id",
    "SELECT * FROM communique ORDER BY 1, 2",
    "SELECT * FROM communique_direct ORDER BY 1, 2",
)


def _graph(lab: Lab) -> list[list[Any]]:
    db = sqlite3.connect(lab.data_dir / "lab.sqlite")
    try:
        return [db.execute(q).fetchall() for q in GRAPH]
    finally:
        db.close()


def _open_student_groups(lab: Lab) -> int:
    db = sqlite3.connect(lab.data_dir / "lab.sqlite")
    try:
        row = db.execute("SELECT count(*) FROM groups WHERE profile = 'Student' AND member_in = 1").fetchone()
        return int(row[0])
    finally:
        db.close()


def _pcnctl(env: dict[str, str], *args: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pcnctl", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pcnctl {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paris")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pcnctl-bench-") as tmp:
        started = time.perf_counter()
        lab = Lab(Path(tmp) / "lab", "--seed", args.preset, "--random-seed", "1")
        seeded = time.perf_counter() - started
        try:
            env = dict(
                os.environ,
                PCNCTL_HOME=str(Path(tmp) / "home"),
                PCNCTL_CONFIG=str(Path(tmp) / "config.yaml"),
                PCNCTL_NO_KERNEL_KEYRING="1",
                PCNCTL_PASSWORD=lab.info["accounts"]["user_password"],
                PCNCTL_MFA_CODE=lab.info["mfa_code"],
                PCNCTL_NO_SESSION_CACHE="1",
                PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
            )
            login = lab.info["accounts"]["admc"]["login"]
            _pcnctl(env, "profile", "add", "bench", "--url", lab.url, "--login", login)
            before = _graph(lab)
            groups = len(before[0])
            opened = _open_student_groups(lab)
            count0 = int(lab.control("/__lab/state")["counters"]["requests"])
            block_s = _pcnctl(
                env, "messaging", "block", "--profile", "Student", "--all-schools", "--yes",
                "--incident", "BENCH", "--no-verify", "-q",
            )  # fmt: skip
            count1 = int(lab.control("/__lab/state")["counters"]["requests"])
            left_open = _open_student_groups(lab)
            unblock_s = _pcnctl(env, "messaging", "unblock", "--incident", "BENCH", "--yes", "-q")
            count2 = int(lab.control("/__lab/state")["counters"]["requests"])
            exact = _graph(lab) == before
            schools = lab.info["schools"]
        finally:
            lab.stop()
    rows = [
        "| step | time | lab requests | result |",
        "|---|---|---|---|",
        f"| block (plan, snapshot, cut) | {block_s:.0f} s | {count1 - count0:,} | "
        f"{opened:,} student groups open before, {left_open} after |",
        f"| unblock (restore, re-read) | {unblock_s:.0f} s | {count2 - count1:,} | "
        f"graph {'equal to' if exact else 'DIFFERENT from'} the one before, row for row |",
    ]
    body = (
        "## Messaging block of a whole académie on the real communication graph\n\n"
        f"`python benchmarks/bench_messaging.py` on {platform.node()} ({os.cpu_count()} cores), preset "
        f"`{args.preset}` seeded in {seeded:.0f} s ({schools} schools, {groups:,} groups), "
        "`pcnctl messaging block --profile Student --all-schools` as the ADMC, default concurrency, "
        "no verification, then `pcnctl messaging unblock`.\n\n" + "\n".join(rows) + "\n"
    )
    write_section("messaging-all-schools", body)
    print(body)


if __name__ == "__main__":
    main()
