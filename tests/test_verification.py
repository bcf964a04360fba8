"""A messaging block's verification, over real HTTP against the lab: every school's cut groups are re-read
(a link put back by hand in one school of several is found and named), and the members' pairs are checked
through the platform's own visibility route in a few sampled schools, or in all of them when asked."""

from __future__ import annotations

from tests.conftest import Cli, Lab

ALL_SCHOOLS = "SELECT uai FROM structures WHERE uai IS NOT NULL AND uai != '' ORDER BY uai LIMIT 5"


def _blocked(lab: Lab, cli: Cli, incident: str) -> list[str]:
    uais = [str(r[0]) for r in lab.sql(ALL_SCHOOLS)]
    where = [w for uai in uais for w in ("--school", uai)]
    cli.open_incidents(incident)
    cut = cli("messaging", "block", "--profile", "Student", *where, "--yes", "--incident", incident)
    assert cut.exit_code == 0, cut.stderr
    assert f"cut groups re-read in {len(uais)} school(s)" in cut.stderr
    assert "members' pairs checked in 3 sampled school(s)" in cut.stderr
    return uais


def test_a_link_put_back_in_one_school_is_found_and_named(admc: Cli, lab: Lab) -> None:
    uais = _blocked(lab, admc, "INC-V1")
    reopened = lab.sql(
        "SELECT g.id, g.name FROM groups g JOIN structures s ON s.id = g.structure_id WHERE s.uai = ?"
        " AND g.profile = 'Student' AND g.sub_type = 'ClassGroup'"
        " AND coalesce(g.users_dir, '') NOT IN ('INCOMING', 'BOTH') ORDER BY g.name LIMIT 1",
        uais[1],  # a school the pairs are not sampled in: only the re-read can see it
    )
    assert reopened, "the cut left no class group without its members' link"
    group, name = reopened[0]
    lab.write_sql("UPDATE groups SET users_dir = 'BOTH' WHERE id = ?", group)
    result = admc("messaging", "verify", "--incident", "INC-V1", "-o", "json")
    assert result.exit_code == 6, result.stderr
    failing = [c for c in result.json() if not c["ok"]]
    assert [(c["school"], c["check"]) for c in failing] == [(uais[1], f"{name} cut")]
    checked = {c["school"] for c in result.json()}
    assert checked == set(uais)  # every school's groups were re-read
    pairs = {c["school"] for c in result.json() if " -> " in str(c["check"])}
    assert pairs == {uais[0], uais[2], uais[4]}  # the first, the middle and the last school


def test_every_school_can_have_its_pairs_checked(admc: Cli, lab: Lab) -> None:
    uais = _blocked(lab, admc, "INC-V2")
    result = admc("messaging", "verify", "--incident", "INC-V2", "--sample-schools", "0", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert {c["school"] for c in result.json() if " -> " in str(c["check"])} == set(uais)
    assert "members' pairs checked in every school" in result.stderr
