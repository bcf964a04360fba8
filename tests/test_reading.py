"""The lab's reading model (docs/lab.md) and the unattended drill scored from the first threat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcnctl.lab.drill import SCENARIOS
from pcnctl.lab.reading import PARENTS, PUPILS, STAFF, Readers, delay
from tests.conftest import Cli, Lab, played_wave


@pytest.mark.parametrize(
    ("curve", "shares"),
    [(PUPILS, (0.20, 0.50, 0.80)), (STAFF, (0.10, 0.30, 0.65)), (PARENTS, (0.05, 0.20, 0.50))],
)
def test_the_curves_are_the_ones_the_docs_state(curve: object, shares: tuple[float, ...]) -> None:
    from pcnctl.lab.reading import Curve

    assert isinstance(curve, Curve)
    assert tuple(round(curve.share(t), 4) for t in (300, 1800, 4 * 3600)) == shares
    assert curve.share(150) == pytest.approx(shares[0] / 2)  # linear over the first five minutes
    docs = (Path(__file__).resolve().parent.parent / "docs" / "lab.md").read_text()
    assert "20 % of pupils' copies" in docs and "50 % within 30 minutes" in docs


def test_draws_follow_the_curve_and_are_the_same_every_time() -> None:
    draws = [delay(7, f"m{n}", f"u{n}", "Student") for n in range(4000)]
    assert draws == [delay(7, f"m{n}", f"u{n}", "Student") for n in range(4000)]
    within = sum(1 for d in draws if d is not None and d <= 300) / len(draws)
    half_hour = sum(1 for d in draws if d is not None and d <= 1800) / len(draws)
    assert 0.17 < within < 0.23 and 0.46 < half_hour < 0.54
    staff = [delay(7, f"m{n}", f"u{n}", "Teacher") for n in range(4000)]
    assert sum(1 for d in staff if d is not None and d <= 300) < within * len(draws)  # staff are slower


def test_readers_open_copies_as_the_platform_reads_them_and_never_a_purged_one(lab: Lab) -> None:
    truth = played_wave(lab, senders=2, messages=8, schools=1, rate=0, hijacked=2, innocent=0)
    threats = list(truth["messages"])
    gone, kept = threats[0], threats[1:]
    db_marks = ",".join("?" * len(kept))
    unread_before = lab.sql(
        "SELECT count(*) FROM conversation.usermessages um"
        " JOIN conversation.messages m ON m.id = um.message_id"
        f' WHERE um.message_id IN ({db_marks}) AND um.unread = 1 AND um.user_id <> m."from"',
        *kept,
    )[0][0]
    _purge(lab, gone)
    later = 4e12  # long after the wave: every copy that will ever be opened is
    readers = Readers(lab.data_dir, seed=1, since_ms=0, clock=lambda: later)
    readers.tick()
    opened = {(o.message, o.user) for o in readers.opened if o.message in threats}
    assert opened and {m for m, _u in opened} <= set(kept)  # never the purged one
    assert len(opened) < unread_before  # some copies are never opened (the curves end below 100 %)
    still = lab.sql(
        "SELECT um.message_id, um.user_id FROM conversation.usermessages um"
        f" WHERE um.message_id IN ({db_marks}) AND um.unread = 0",
        *kept,
    )
    assert opened <= {(m, u) for m, u in still}
    again = Readers(lab.data_dir, seed=1, since_ms=0, clock=lambda: later)
    again.tick()
    assert again.opened == []  # read already: opening it again changes nothing


def _purge(lab: Lab, message: str) -> None:
    """What the platform's purge does to a message: its mailbox copies deleted (the rest stays)."""
    import sqlite3

    db = sqlite3.connect(lab.data_dir / "conversation.sqlite", timeout=10)
    try:
        db.execute("DELETE FROM usermessages WHERE message_id = ?", (message,))
        db.commit()
    finally:
        db.close()


def test_the_unattended_scenarios_are_the_attended_ones_with_the_watcher() -> None:
    small, reference = SCENARIOS["unattended"], SCENARIOS["unattended-reference"]
    assert small.unattended and small.reading and small.start_after == 0
    assert (
        reference.preset,
        reference.hijacked,
        reference.schools,
        reference.latency_ms,
        reference.capacity,
    ) == (
        "paris",
        200,
        50,
        20,
        300,
    )
    assert not any(
        SCENARIOS[n].unattended or SCENARIOS[n].reading for n in ("small", "reference", "reply-all")
    )


def test_an_unattended_drill_is_contained_and_scored_from_the_first_threat(cli: Cli, tmp_path: Path) -> None:
    scale = ("--hijacked", "6", "--senders", "3", "--schools", "2", "--messages", "40", "--rate", "10")
    drill = ("lab", "drill", "--data", str(tmp_path / "drill"), "--scenario", "unattended", "--interval", "1")
    result = cli(*drill, *scale, "-o", "json")
    assert result.exit_code == 0, result.stderr
    report = {r["measure"]: r["value"] for r in result.json()}
    assert report["watcher's response"] == "done (2 run(s))" and report["verdict"] == "CONTAINED"
    assert report["hijacked accounts blocked"] == "6/6" and report["innocent accounts blocked"] == 0
    assert report["schools cut outside those the threat reached"] == 0
    detect = float(report["time from the first threat to detection"].rstrip(" s"))
    page = float(report["time from the first threat to the page"].rstrip(" s"))
    contain = float(report["time from the first threat to containment"].rstrip(" s"))
    assert 0 <= detect <= page <= contain  # the order, never the speed: timing is the benchmark's
    delivered = report["threat copies delivered in all"]
    opened = int(report["threat copies opened before the purge"].split()[0])
    assert delivered > 0 and 0 <= opened <= delivered
    saved = json.loads((tmp_path / "drill" / "drill-report.json").read_text())
    assert saved["scenario"]["unattended"] is True and saved["contained"] is True
