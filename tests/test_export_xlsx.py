"""The affected-schools export as a real Excel workbook, read back as Excel reads it (openpyxl): French
headings, counts as numbers, threat times as dates in Paris time, no cell a formula, the file 0600; the
same from the playbook's export step. Against the lab, after a wave played through its real routes.
"""

from __future__ import annotations

import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from pcnctl.reports import xlsx
from tests.conftest import Cli, Lab, played_wave

HOSTILE = ('=HYPERLINK("http://evil.example","clic")', "+33 1 23", "-2+3", "@SUM(A1:A9)", "=1+1")


@pytest.fixture
def wave(lab: Lab) -> dict[str, Any]:
    return played_wave(lab, senders=6, messages=40, schools=5, rate=0, noise=30, random_seed=3)


@pytest.fixture
def ops(lab: Lab, cli: Cli, wave: dict[str, Any]) -> Cli:
    cli(
        "profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore", lab.info["mailstore"]
    )
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    return cli


def saved_search(ops: Cli, wave: dict[str, Any], tmp_path: Path) -> Path:
    saved = tmp_path / "threat.json"
    found = ops("messages", "search", "--like", wave["messages"][0], "--save", str(saved))
    assert found.exit_code == 0, found.stderr
    return saved


def sheet_rows(path: Path, sheet: int = 0) -> tuple[list[str], list[list[Any]], Any]:
    """The headings, the rows' values and the sheet itself, as Excel would read them."""
    ws = load_workbook(path).worksheets[sheet]
    values = [list(r) for r in ws.iter_rows(values_only=True)]
    return [str(h) for h in values[0]], values[1:], ws


def formulas(path: Path) -> list[str]:
    """Every sheet XML of the workbook that holds a formula element (none may)."""
    with zipfile.ZipFile(path) as z:
        return [n for n in z.namelist() if n.startswith("xl/worksheets/") and b"<f>" in z.read(n)]


def test_the_affected_schools_workbook_reads_back_as_the_json(
    ops: Cli, wave: dict[str, Any], tmp_path: Path
) -> None:
    saved = saved_search(ops, wave, tmp_path)
    rows = ops("schools", "export", "--affected", "--from-search", str(saved), "-o", "json").json()
    book = tmp_path / "etablissements.xlsx"
    made = ops("schools", "export", "--affected", "--from-search", str(saved), "--format", "xlsx", "--out",
               str(book))  # fmt: skip
    assert made.exit_code == 0, made.stderr
    assert made.stdout == "" and "5 schools affected" in made.stderr
    assert os.stat(book).st_mode & 0o777 == 0o600
    headings, table, ws = sheet_rows(book)
    assert headings[:4] == ["UAI", "Établissement", "Type", "Commune"]
    assert "Première menace (Europe/Paris)" in headings and "Messages reçus" in headings
    by_uai = {r["uai"]: r for r in rows}
    assert {t[0] for t in table} == set(wave["schools"]) == set(by_uai)
    paris = ZoneInfo("Europe/Paris")
    for line in table:
        cells = dict(zip(headings, line, strict=True))
        json_row = by_uai[cells["UAI"]]
        assert cells["Messages reçus"] == json_row["messages_received"]  # a number, not a text
        assert isinstance(cells["Destinataires touchés"], int)
        first = datetime.fromisoformat(str(json_row["first_threat"]).replace("Z", "+00:00"))
        shown = cells["Première menace (Europe/Paris)"]
        assert isinstance(shown, datetime)  # a date Excel sorts and filters, in Paris time
        assert abs((shown - first.astimezone(paris).replace(tzinfo=None)).total_seconds()) < 0.001
        assert cells["Type"] in ("école", "collège", "lycée")
    date_cell = ws.cell(row=2, column=headings.index("Première menace (Europe/Paris)") + 1)
    assert date_cell.is_date and date_cell.number_format == "dd/mm/yyyy hh:mm:ss"
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref
    assert formulas(book) == []


def test_a_hostile_school_name_stays_text(ops: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path) -> None:
    """A name the directory holds is shown, never run: the cell is text with Excel's quote prefix (so an
    edit keeps it text), and the workbook holds no formula at all."""
    uai = sorted(wave["schools"])[0]
    lab.write_sql("UPDATE structures SET name = ? WHERE uai = ?", HOSTILE[0], uai)
    saved = saved_search(ops, wave, tmp_path)
    book = tmp_path / "e.xlsx"
    made = ops(
        "schools", "export", "--affected", "--from-search", str(saved), "-o", "xlsx", "--out", str(book)
    )
    assert made.exit_code == 0, made.stderr
    _headings, _table, ws = sheet_rows(book)
    name = next(
        ws.cell(row=r, column=2) for r in range(2, ws.max_row + 1) if ws.cell(row=r, column=1).value == uai
    )
    assert name.value == HOSTILE[0] and name.data_type == "s" and name.quotePrefix
    assert formulas(book) == []


def test_every_formula_start_is_written_as_text(tmp_path: Path) -> None:
    """=, +, -, @ at the start of a text: a text cell with the quote prefix; numbers stay numbers and
    times dates, each in its own cell type, whatever column they are in."""
    columns = [xlsx.Column("text", "Texte"), xlsx.Column("n", "Nombre"), xlsx.Column("when", "Quand")]
    moment = datetime(2024, 3, 27, 6, 2, 11, tzinfo=UTC)
    rows = [{"text": t, "n": -2.5, "when": moment} for t in HOSTILE] + [{"text": "plain", "n": 3}]
    path = tmp_path / "f.xlsx"
    xlsx.write_private(path, xlsx.workbook([xlsx.Sheet("S", columns, rows)], "Europe/Paris"))
    ws = load_workbook(path).worksheets[0]
    for r, text in enumerate(HOSTILE, start=2):
        cell = ws.cell(row=r, column=1)
        assert (cell.value, cell.data_type, cell.quotePrefix) == (text, "s", True)
        assert ws.cell(row=r, column=2).value == -2.5 and ws.cell(row=r, column=2).data_type == "n"
        assert ws.cell(row=r, column=3).value == datetime(2024, 3, 27, 7, 2, 11)  # Paris, winter time
    plain = ws.cell(row=len(HOSTILE) + 2, column=1)
    assert plain.value == "plain" and not plain.quotePrefix
    assert ws.cell(row=len(HOSTILE) + 2, column=3).value is None
    assert formulas(path) == []
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_bad_export_options_are_refused_before_anything(ops: Cli, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    saved = tmp_path / "missing.json"  # never read: the options are refused first
    no_out = ops("schools", "export", "--affected", "--from-search", str(saved), "-o", "xlsx")
    assert no_out.exit_code == 2 and "give --out FILE.xlsx" in no_out.stderr
    both = ops("schools", "export", "--affected", "--from-search", str(saved), "--excel", "--format", "xlsx",
               "--out", str(tmp_path / "x.xlsx"))  # fmt: skip
    assert both.exit_code == 2 and "does not go with -o" in both.stderr
    bogus = ops("schools", "export", "--affected", "--from-search", str(saved), "-o", "xls")
    assert bogus.exit_code == 2 and "'xls' is not a format" in bogus.stderr
    assert list(tmp_path.iterdir()) == []


PLAYBOOK = """version: 1
name: export-xlsx
description: find the threat, export the affected schools as a workbook
inputs:
  like: {{type: string, required: true}}
steps:
  - id: find
    op: search
    with:
      since: 2h
      like: ${{{{ inputs.like }}}}
  - id: export
    op: export
    with:
      search: ${{{{ steps.find.saved }}}}
      format: {fmt}
"""


def test_the_playbook_export_step_writes_a_workbook(ops: Cli, wave: dict[str, Any], tmp_path: Path) -> None:
    book = tmp_path / "export.yaml"
    book.write_text(PLAYBOOK.format(fmt="xlsx"))
    ops.open_incidents("XL-1")
    ran = ops("playbook", "run", str(book), "--incident", "XL-1", "--input", f"like={wave['messages'][0]}")
    assert ran.exit_code == 0, ran.stderr
    made = Path(os.environ["PCNCTL_HOME"]) / "incidents" / "XL-1" / "affected-schools.xlsx"
    assert os.stat(made).st_mode & 0o777 == 0o600
    _headings, table, _ws = sheet_rows(made)
    assert {t[0] for t in table} == set(wave["schools"])
    book.write_text(PLAYBOOK.format(fmt="xls"))
    planned = ops("playbook", "plan", str(book), "--input", f"like={wave['messages'][0]}", "-o", "json")
    export = {r["step"]: r for r in planned.json()}["export"]
    assert export["status"] == "failed" and "unknown format 'xls'" in export["summary"]
