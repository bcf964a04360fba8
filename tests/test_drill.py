"""``pcnctl lab drill`` at a chosen scale: scenarios and their overrides, refused options, and one small
drill through a slowed, rate-limited lab that must still be contained, silent accounts included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcnctl.errors import UsageError
from pcnctl.lab.drill import SCENARIOS, scenario
from tests.conftest import Cli


def test_the_reference_scenario_is_the_scale_of_a_large_ent() -> None:
    ref = SCENARIOS["reference"]
    assert (ref.preset, ref.hijacked, ref.schools, ref.latency_ms, ref.capacity) == (
        "paris",
        200,
        50,
        20,
        300,
    )
    assert ref.senders < ref.hijacked  # part of the attacker's accounts never send
    small = scenario("small", hijacked=30, latency_ms=5.0, capacity=None)
    assert (small.preset, small.hijacked, small.latency_ms, small.capacity) == ("small", 30, 5.0, 0.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--scenario", "huge"), "unknown drill scenario 'huge'"),
        (("--preset", "lyon"), "unknown lab preset 'lyon'"),
        (("--senders", "10", "--hijacked", "5"), "cannot be below --senders"),
        (("--fault-rate", "1.5"), "--fault-rate is a fraction"),
        (("--rate", "0"), "must be above 0"),
        (("--capacity", "-3"), "cannot be negative"),
        (("--messages", "5"), "--messages must be at least 12"),
    ],
)
def test_bad_drill_options_are_refused_before_a_lab_starts(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = cli("lab", "drill", "--data", str(tmp_path / "drill"), *args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "drill").exists()


def test_scenario_refuses_what_cannot_be_played() -> None:
    with pytest.raises(UsageError, match="cannot be below"):
        scenario("small", senders=20, hijacked=10)


def test_a_slowed_drill_with_silent_accounts_is_contained(cli: Cli, tmp_path: Path) -> None:
    result = cli("lab", "drill", "--data", str(tmp_path / "drill"), "--hijacked", "10", "--senders", "4",
                 "--schools", "3", "--messages", "30", "--rate", "20", "--latency-ms", "2",
                 "--capacity", "2000", "-o", "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = {r["measure"]: r["value"] for r in result.json()}
    assert report["hijacked accounts blocked"] == "10/10" and report["silent accounts blocked"] == "6/6"
    assert report["innocent accounts blocked"] == 0 and report["threats delivered after containment"] == 0
    made, to_containment = report["calls by the response (to containment)"].rstrip(")").split(" (")
    assert 0 < int(to_containment) <= int(made)
    saved = json.loads((tmp_path / "drill" / "drill-report.json").read_text())
    assert saved["scenario"]["latency_ms"] == 2.0 and saved["scenario"]["capacity"] == 2000.0
    assert "hunt: " in result.stderr and saved["contained"] is True
