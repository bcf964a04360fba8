"""What a purge leaves on the platform, counted, and the SQL that finishes the removal (run on a real
PostgreSQL server holding the lab's conversation tables, as the hosting team would)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcnctl.lab.pgserver import Postgres
from tests import pg
from tests.conftest import Cli, Lab, played_wave


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="pcnctl-pg-residue-"))
    server = pg.start(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def _purged(lab: Lab, cli: Cli, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    wave = played_wave(lab, senders=6, messages=40, schools=5, rate=0, noise=30, random_seed=3)
    made = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore",
               lab.info["mailstore"])  # fmt: skip
    assert made.exit_code == 0
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    cli.open_incidents("INC-RES")
    saved = tmp_path / "threat.json"
    assert cli("messages", "search", "--like", wave["messages"][0], "--save", str(saved), "-q").exit_code == 0
    result = cli(
        "messages", "purge", "--from-search", str(saved), "--yes", "--incident", "INC-RES", "-o", "json"
    )
    assert result.exit_code == 0, result.stderr
    summary = {r["what"]: r["count"] for r in result.json()}
    sql = next((Path(cli_home()) / "incidents" / "INC-RES" / "purge").glob("*-residue.sql"))
    purged = [m["id"] for m in json.loads(saved.read_text())["matches"]]
    assert set(wave["messages"]) <= set(purged)  # the threats sent, and those scheduled for later
    return {**wave, "purged": purged}, summary, sql


def cli_home() -> str:
    import os

    return os.environ["PCNCTL_HOME"]


def test_a_purge_counts_what_it_leaves(lab: Lab, cli: Cli, tmp_path: Path) -> None:
    wave, summary, sql = _purged(lab, cli, tmp_path)
    threats = wave["purged"]
    marks = ",".join("?" * len(threats))
    assert summary["copies still in mailboxes"] == 0
    left = lab.sql(f"SELECT count(*) FROM conversation.messages WHERE id IN ({marks})", *threats)[0][0]
    assert summary["message rows (subject, body, search index)"] == left == len(threats)
    threads = [
        r[0]
        for r in lab.sql(
            f"SELECT DISTINCT thread_id FROM conversation.messages WHERE id IN ({marks})", *threats
        )
    ]
    assert summary["thread subjects"] == len(threads) > 0
    assert summary["original bodies"] == 0  # the send path writes none (only converted history has them)
    assert sql.stat().st_mode & 0o777 == 0o600 and "BEGIN;" in sql.read_text()
    # The platform's orphan job removes the message rows, and keeps the threads the purge left named.
    lab.control("/__lab/jobs/orphans", {})
    assert lab.sql(f"SELECT count(*) FROM conversation.messages WHERE id IN ({marks})", *threats) == [(0,)]
    kept = lab.sql(f"SELECT count(*) FROM conversation.threads WHERE id IN ({','.join('?' * len(threads))})",
                   *threads)  # fmt: skip
    assert kept == [(len(threads),)]


def test_the_residue_script_finishes_the_removal_on_postgresql(
    lab: Lab, cli: Cli, tmp_path: Path, postgres: Postgres
) -> None:
    import psycopg

    from pcnctl.lab.pgmirror import copy_from_sqlite

    wave, _summary, sql = _purged(lab, cli, tmp_path)
    threats, noise = wave["purged"], wave["noise_messages"]
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        copy_from_sqlite(lab.data_dir / "conversation.sqlite", conn)
        count = "SELECT count(*) FROM conversation.messages WHERE id = ANY(%s)"
        before_noise = conn.execute(count, (noise,)).fetchone()
        assert conn.execute(count, (threats,)).fetchone() == (len(threats),)
        conn.execute(sql.read_text())
        assert conn.execute(count, (threats,)).fetchone() == (0,)
        assert conn.execute(count, (noise,)).fetchone() == before_noise  # nothing else touched
        threads = conn.execute(
            "SELECT count(*) FROM conversation.threads t WHERE NOT EXISTS"
            " (SELECT 1 FROM conversation.messages m WHERE m.thread_id = t.id)"
        ).fetchone()
        assert threads == (0,)  # no thread left without a message


def test_the_incident_report_tells_the_crisis_cell_what_the_purge_left(
    lab: Lab, cli: Cli, tmp_path: Path
) -> None:
    wave, summary, sql = _purged(lab, cli, tmp_path)
    data = cli("incident", "report", "INC-RES", "-o", "json", "--offline")
    assert data.exit_code == 0, data.stderr
    kept = data.json()["residue"]
    assert kept["scripts"] == [str(sql)]
    assert kept["counts"]["copies"] == 0
    assert kept["counts"]["messages"] == summary["message rows (subject, body, search index)"] > 0
    assert kept["counts"]["threads"] == summary["thread subjects"] > 0
    french = cli("incident", "report", "INC-RES", "--lang", "fr", "--offline")
    assert french.exit_code == 0, french.stderr
    section = french.stdout.split("## Ce que la plateforme conserve des messages supprimés")[1]
    assert str(sql) in section and "objets des fils" in section and "définitivement" in section
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in section.splitlines()
            if line.startswith("| ") and "---" not in line}  # fmt: skip
    assert rows["messages (objet, corps, index)"] == str(len(wave["purged"]))
    page = tmp_path / "report.html"
    html = cli("incident", "report", "INC-RES", "-o", "html", "--offline", "--out", str(page))
    assert html.exit_code == 0, html.stderr
    assert "What the platform still holds of the purged messages" in page.read_text()
