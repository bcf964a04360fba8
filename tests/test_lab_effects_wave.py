"""The reply-all wave: a hijacked pupil whose class or school messaging is cut answers, to all, a group
message it holds, and no communication cut stops it (the platform's send filter skips the parent's people).
Over real HTTP; the mailstore is read back. The drill's ``reply-all`` scenario plays it."""

from __future__ import annotations

import random
from pathlib import Path

from pcnctl.lab import attack
from pcnctl.lab.drill import SCENARIOS, scenario
from tests.conftest import Lab
from tests.test_lab_effects import admc, copies, cut, members


def test_a_cut_wave_replies_to_all_when_it_may_and_is_refused_when_it_may_not(
    lab: Lab, tmp_path: Path
) -> None:
    """The wave's target school has its pupils' groups cut before it starts: without the option every
    threat is refused; with it the senders answer the school's message to all its pupils, and each reply
    reaches every pupil."""
    roster = attack._roster(lab.data_dir)
    target = random.Random("attack:5").sample(roster.schools, 1)[0]
    admin = admc(lab)
    students = lab.sql(
        "SELECT id FROM groups WHERE structure_id = ? AND profile = 'Student'"
        " AND sub_type = 'StructureGroup'",
        target,
    )[0][0]
    for pupil in sorted(members(lab, students)):
        cut(lab, admin, pupil)
    lab.control("/__lab/checkpoint", {"name": "cut-school"})
    quiet = attack.run(
        lab.data_dir, senders=2, messages=4, schools=1, rate=0, noise=0, innocent=0, random_seed=5
    )
    assert quiet["messages"] == [] and quiet["refused"] == 4 and not quiet["replies"]
    lab.control("/__lab/reset", {"checkpoint": "cut-school"})
    loud = attack.run(
        lab.data_dir,
        senders=2,
        messages=4,
        schools=1,
        rate=0,
        noise=0,
        innocent=0,
        random_seed=5,
        reply_after_cut=True,
    )
    assert loud["announcements"] and loud["replies"] and set(loud["replies"]) <= set(loud["messages"])
    for reply in loud["replies"]:
        assert members(lab, students) <= copies(lab, reply)
    assert set(loud["recipients"]) >= members(lab, students) - set(loud["senders"])


def test_the_reply_all_scenario_and_the_others() -> None:
    assert SCENARIOS["reply-all"].reply_after_cut and scenario("reply-all").preset == "small"
    assert not any(s.reply_after_cut for name, s in SCENARIOS.items() if name != "reply-all")
    assert "--reply-after-cut" in attack.command(Path("d"), reply_after_cut=True)
    assert attack.command(Path("d"), messages=3, reply_after_cut=False)[-2:] == ["--messages", "3"]
