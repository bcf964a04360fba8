"""Pure parts: UAI codes, school types, output formats."""

from __future__ import annotations

import csv
import io
import json

import pytest

from pcnctl.errors import UsageError
from pcnctl.models import school_type
from pcnctl.output import render
from pcnctl.uai import check_letter, is_valid, normalise
from tests.conftest import Cli, Lab


@pytest.mark.parametrize("code", ["0750654D", "0750655E", "0750654d", " 0750654D "])
def test_valid_uai(code: str) -> None:
    assert is_valid(code)
    assert normalise(code) == "0750654D" or normalise(code) == "0750655E"


def test_check_letter_skips_ambiguous_letters() -> None:
    letters = {check_letter(f"{n:07d}") for n in range(23)}
    assert len(letters) == 23 and not letters & {"I", "O", "Q"}


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("0750654E", "check letter should be D"),
        ("075065D", "seven digits and a letter"),
        ("ABC", "not a UAI"),
    ],
)
def test_invalid_uai_says_why(code: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        normalise(code)
    assert message in err.value.message


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("École élémentaire Jules Ferry", "ecole"),
        ("CLG JEAN MOULIN-PARIS", "college"),
        ("Lycée polyvalent Victor Hugo", "lycee"),
        ("LP Gustave Eiffel", "lycee"),
        ("Rectorat", "other"),
    ],
)
def test_school_type_from_name(name: str, kind: str) -> None:
    assert school_type(name) == kind


ROWS = [
    {"uai": "0750654D", "name": '=HYPERLINK("x")', "blocked": True, "schools": ["A", "B"], "n": -3},
    {"uai": "0750655E", "name": "Lycée", "blocked": False, "schools": [], "n": 2},
]
COLUMNS = ("uai", "name", "blocked", "schools", "n")


def rendered(fmt: str, rows: list[dict[str, object]] = ROWS) -> str:
    out = io.StringIO()
    render(rows, fmt, COLUMNS, stream=out)
    return out.getvalue()


def test_json_is_an_array_with_stable_keys() -> None:
    data = json.loads(rendered("json"))
    assert [list(d) for d in data] == [list(COLUMNS)] * 2
    assert data[0]["schools"] == ["A", "B"] and data[0]["blocked"] is True
    assert json.loads(rendered("json", [])) == []


def test_jsonl_is_one_object_per_line() -> None:
    lines = rendered("jsonl").splitlines()
    assert [json.loads(line)["uai"] for line in lines] == ["0750654D", "0750655E"]


def test_csv_neutralises_formulas_but_keeps_numbers() -> None:
    rows = list(csv.DictReader(io.StringIO(rendered("csv"))))
    assert rows[0]["name"] == '\'=HYPERLINK("x")'
    assert rows[0]["n"] == "-3"
    assert rows[0]["blocked"] == "true" and rows[0]["schools"] == "A;B"


def test_markdown_and_table() -> None:
    md = rendered("markdown")
    assert md.splitlines()[0].startswith("| uai") and "0750654D" in md
    table = rendered("table")
    assert "0750655E" in table and "Lycée" in table


def test_the_widest_tables_read_well_at_80_columns(
    lab: Lab, admc: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 80 columns a row stays on one line, codes stay whole, long text is cut with an ellipsis."""
    monkeypatch.setenv("COLUMNS", "80")
    uai = lab.info["accounts"]["adml"][0]["schools"][0]
    users = admc("users", "list", "--school", uai, "--profile", "Student")
    schools = admc("schools", "list")
    for result in (users, schools):
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines and max(len(line) for line in lines) <= 80
    rows = [line for line in users.stdout.splitlines()[2:] if line.strip()]
    expected = lab.sql(
        "SELECT count(*) FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
        " ON s.id = us.structure_id WHERE s.uai = ? AND u.profile = 'Student'",
        uai,
    )[0][0]
    assert len(rows) == expected  # one line per account: nothing folded
    assert all(uai in row and "Student" in row for row in rows)
    assert all(u in schools.stdout for (u,) in lab.sql("SELECT uai FROM structures"))
