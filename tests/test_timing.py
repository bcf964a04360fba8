"""Where a run's time goes, as --debug tells it: each phase with its calls, and the waiting the ENT asked
for (a throttled call's pause) counted, over real HTTP against the lab."""

from __future__ import annotations

import re

from tests.conftest import Cli, Lab
from tests.test_operations import SCHOOLS, students


def _phases(stderr: str) -> dict[str, tuple[float, int]]:
    line = next(x for x in stderr.splitlines() if x.startswith("time: "))
    found = re.findall(r"(planning|writes|verification) ([\d.]+) s \((\d+) calls?\)", line)
    return {name: (float(seconds), int(calls)) for name, seconds, calls in found}


def _waited(stderr: str) -> float:
    line = next(x for x in stderr.splitlines() if x.startswith("time: "))
    return float(re.findall(r"of which waiting ([\d.]+) s", line)[0])


def test_a_block_says_where_its_time_went(admc: Cli, lab: Lab) -> None:
    admc.open_incidents("INC-T1")
    cut = admc("--debug", "messaging", "block", "--profile", "Student", "--school", SCHOOLS[0], "--yes",
               "--incident", "INC-T1")  # fmt: skip
    assert cut.exit_code == 0, cut.stderr
    phases = _phases(cut.stderr)
    assert set(phases) == {"planning", "writes", "verification"}
    assert all(calls > 0 for _seconds, calls in phases.values())  # reads, cuts and re-reads all counted


def test_a_throttled_call_counts_as_waiting(admc: Cli, lab: Lab) -> None:
    admc.open_incidents("INC-T2")
    pupils = [login for _id, login in students(lab, SCHOOLS[0], 2)]
    lab.knobs(fail_match="block", fail_status=429, fail_count=1)  # one refusal, no Retry-After: 0.5 s pause
    blocked = admc("--debug", "accounts", "block", *pupils, "--yes", "--incident", "INC-T2")
    lab.knobs(fail_match="", fail_status=500, fail_count=-1)
    assert blocked.exit_code == 0, blocked.stderr
    assert _phases(blocked.stderr)["writes"][1] >= 2
    assert _waited(blocked.stderr) >= 0.5
