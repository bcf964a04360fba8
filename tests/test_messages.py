"""Find, preserve and purge the threat after a wave played through the lab; the affected schools.

The search tests run twice: on the lab's SQLite mailstore and on a real PostgreSQL server holding the same
rows with Edifice's column types.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pcnctl.lab.pgserver import Postgres
from tests.conftest import Cli, Lab, played_wave


@pytest.fixture
def wave(lab: Lab) -> dict[str, Any]:
    return played_wave(lab, senders=6, messages=40, schools=5, rate=0, noise=30, random_seed=3)


@pytest.fixture(params=["sqlite", "postgresql"])
def mailstore(request: pytest.FixtureRequest, lab: Lab, wave: dict[str, Any]) -> str:
    if request.param == "sqlite":
        return str(lab.info["mailstore"])
    import psycopg

    from pcnctl.lab.pgmirror import copy_from_sqlite

    server: Postgres = request.getfixturevalue("postgres")
    with psycopg.connect(server.dsn()) as conn:
        copy_from_sqlite(lab.data_dir / "conversation.sqlite", conn)
    return server.dsn()


@pytest.fixture
def ops(lab: Lab, cli: Cli, wave: dict[str, Any]) -> Cli:
    cli(
        "profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore", lab.info["mailstore"]
    )
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    return cli


def ids(rows: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in rows}


def threats(wave: dict[str, Any]) -> list[str]:
    """Every threat a search finds by default: those sent (the recalled one included) and those scheduled
    for later (only the sender's copy until then)."""
    return [*wave["messages"], *wave["scheduled"]]


def test_like_finds_exactly_the_threat_copies(ops: Cli, wave: dict[str, Any], mailstore: str) -> None:
    result = ops("messages", "search", "--like", wave["messages"][0], "--mailstore", mailstore, "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert ids(result.json()) == set(threats(wave))  # none missed, no ordinary message caught
    assert all(r["similarity"] >= 0.4 for r in result.json())
    regex = ops("messages", "search", "--regex", r"bombe.*explosera", "--mailstore", mailstore, "-o", "json")
    assert ids(regex.json()) == set(threats(wave))
    broad = ops("messages", "search", "--body", "bombe", "--mailstore", mailstore, "-o", "json")
    assert set(wave["messages"]) <= ids(broad.json())  # a keyword also catches the history homework


def test_filters_run_where_they_should(ops: Cli, lab: Lab, wave: dict[str, Any], mailstore: str) -> None:
    login = wave["sender_logins"][0]
    from_one = ops("messages", "search", "--from", login, "--mailstore", mailstore, "-o", "json").json()
    assert from_one and {r["from_login"] for r in from_one} == {login}
    with_attachment = ops(
        "messages",
        "search",
        "--like",
        wave["messages"][0],
        "--has-attachment",
        "--mailstore",
        mailstore,
        "-o",
        "json",
    ).json()
    without = ops(
        "messages",
        "search",
        "--like",
        wave["messages"][0],
        "--no-attachment",
        "--mailstore",
        mailstore,
        "-o",
        "json",
    ).json()
    assert ids(with_attachment) | ids(without) == set(threats(wave)) and with_attachment and without
    assert not ids(with_attachment) & ids(without)
    school = sorted(wave["schools"])[0]
    to_school = ops(
        "messages",
        "search",
        "--like",
        wave["messages"][0],
        "--to-school",
        school,
        "--mailstore",
        mailstore,
        "-o",
        "json",
    ).json()
    assert to_school and all(school in r["schools"] for r in to_school)
    future = ops("messages", "search", "--since", "2099-01-01", "--mailstore", mailstore, "-o", "json").json()
    assert future == []


def test_bad_input_is_a_clear_error(ops: Cli, wave: dict[str, Any], tmp_path: Path) -> None:
    cases = [
        (["--regex", "["], 2, "invalid regular expression"),
        (["--since", "hier"], 2, "not a date"),
        (["--since", "2024-03-28", "--until", "2024-03-27"], 2, "--until must be after --since"),
        (["--to-school", "0750654D"], 2, "no school with UAI"),
        (["--like", "00000000-0000-4000-8000-000000000000"], 2, "no message"),
        (["--mailstore", f"sqlite:///{tmp_path}/none.sqlite"], 3, "does not exist"),
        (["--mailstore", "postgresql://nobody@127.0.0.1:1/db"], 5, "cannot reach the mailstore"),
        (["--mailstore", "mysql://x/y"], 2, "not a mailstore DSN"),
    ]
    for args, code, message in cases:
        result = ops("messages", "search", *args)
        assert result.exit_code == code and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    purge = ops("messages", "purge", "--from-search", str(bad), "--yes")
    assert purge.exit_code == 2 and "not a saved search" in purge.stderr


@pytest.mark.parametrize("pattern", [r"(\w+\s?)+$", r"(a|a)*b", r"(.*bombe){10}"])
def test_a_regex_that_can_backtrack_for_ever_is_refused_before_any_request(
    ops: Cli, lab: Lab, pattern: str
) -> None:
    before = lab.counters()["requests"]
    result = ops("messages", "search", "--regex", pattern, "--since", "1h")
    assert result.exit_code == 2, result.stderr
    assert f"'{pattern}' can take exponential time" in result.stderr and "possessive" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert lab.counters()["requests"] == before  # not even a login
    fine = ops("messages", "search", "--regex", r"(\w+\s)*\w+ explosera", "--since", "1h", "-o", "json")
    assert fine.exit_code == 0, fine.stderr


def test_purge_takes_evidence_removes_all_copies_and_nothing_else(
    ops: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    ops.open_incidents("INC-W")
    saved = tmp_path / "threat.json"
    assert ops("messages", "search", "--like", wave["messages"][0], "--save", str(saved)).exit_code == 0
    noise_marks = ",".join("?" * len(wave["noise_messages"]))
    noise_sql = f"SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({noise_marks})"
    noise_before = lab.sql(noise_sql, *wave["noise_messages"])
    dry = ops("messages", "purge", "--from-search", str(saved), "--dry-run")
    assert dry.exit_code == 0 and f"purge {len(threats(wave))} message(s)" in dry.stderr
    refused = ops("messages", "purge", "--from-search", str(saved), "--yes", "--max", "10")
    assert refused.exit_code == 7 and "above the cap" in refused.stderr
    result = ops(
        "messages", "purge", "--from-search", str(saved), "--yes", "--incident", "INC-W", "-o", "json"
    )
    assert result.exit_code == 0, result.stderr
    summary = {r["what"]: r["count"] for r in result.json()}
    assert summary["messages purged"] == len(threats(wave)) and summary["copies still in mailboxes"] == 0
    assert summary["timeline notifications with the text"] > 0
    every = ",".join("?" * len(threats(wave)))  # the scheduled ones' only copy (the sender's) too
    assert lab.sql(
        f"SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({every})", *threats(wave)
    ) == [(0,)]
    marks = ",".join("?" * len(wave["messages"]))
    assert lab.sql(noise_sql, *wave["noise_messages"]) == noise_before
    # The timeline copies stay, as on the platform: the purge reports them instead of pretending.
    assert lab.sql(f"SELECT count(*) FROM timeline WHERE resource IN ({marks})", *wave["messages"])[0][0] > 0
    verify = ops("incident", "verify", "INC-W", "-o", "json")
    assert verify.exit_code == 0 and verify.json() and all(c["ok"] for c in verify.json())
    bundle = next((Path(os.environ["PCNCTL_HOME"]) / "incidents" / "INC-W" / "evidence").iterdir())
    lines = (bundle / "messages.jsonl").read_text().splitlines()
    assert {json.loads(line)["id"] for line in lines} == set(threats(wave))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["operator"].startswith("admc.pcn") and manifest["tool"].startswith("pcnctl ")
    assert json.loads((bundle / "query.json").read_text())["query"]["like"] == wave["messages"][0]
    (bundle / "messages.jsonl").write_text("\n".join(lines[1:]) + "\n")  # someone removes a message
    tampered = ops("incident", "verify", "INC-W")
    assert tampered.exit_code == 11 and "messages.jsonl" in tampered.stderr


def test_a_deleted_bundle_or_a_manifest_rewritten_with_its_hash_is_detected(
    ops: Cli, wave: dict[str, Any], tmp_path: Path
) -> None:
    import hashlib

    ops.open_incidents("INC-E")
    saved = tmp_path / "threat.json"
    assert ops("messages", "search", "--like", wave["messages"][0], "--save", str(saved)).exit_code == 0
    for _ in range(2):
        assert ops("messages", "evidence", "--from-search", str(saved), "--incident", "INC-E").exit_code == 0
    root = Path(os.environ["PCNCTL_HOME"]) / "incidents" / "INC-E" / "evidence"
    (
        root / ".partial-20261201T070000Z-1"
    ).mkdir()  # an interrupted collection: never evidence, never an error
    assert ops("incident", "verify", "INC-E").exit_code == 0
    first, second = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    manifest = json.loads((first / "manifest.json").read_text())
    manifest["messages"] = 0  # rewritten, and its hash recomputed, as someone covering their tracks would
    (first / "manifest.json").write_text(json.dumps(manifest))
    digest = hashlib.sha256((first / "manifest.json").read_bytes()).hexdigest()
    (first / "manifest.sha256").write_text(f"{digest}  manifest.json\n")
    rewritten = ops("incident", "verify", "INC-E", "-o", "json")
    assert rewritten.exit_code == 11
    assert [c["problem"] for c in rewritten.json() if not c["ok"]] == [
        "manifest rewritten: its hash is not the one sealed when the bundle was written"
    ]
    shutil.rmtree(second)
    deleted = ops("incident", "verify", "INC-E", "-o", "json")
    assert deleted.exit_code == 11
    assert {"bundle deleted after it was sealed"} <= {c["problem"] for c in deleted.json()}


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_a_purge_killed_at_any_point_resumes_to_every_copy_gone_with_evidence(
    ops: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path, seed: int
) -> None:
    import random
    import signal
    import time

    from tests import state

    ops.open_incidents("INC-PK")
    saved = tmp_path / "threat.json"
    assert ops("messages", "search", "--like", wave["messages"][0], "--save", str(saved)).exit_code == 0
    home = Path(os.environ["PCNCTL_HOME"])
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    lab.knobs(latency_ms=30)
    command = ["messages", "purge", "--from-search", str(saved), "--yes", "--incident", "INC-PK", "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "pcnctl", *command], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(r.get("t") == "run" for r in state.journal(home, "INC-PK")):
            break
        time.sleep(0.002)
    time.sleep(random.Random(seed).uniform(0, 0.08))  # during the evidence, or the purge call
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lab.knobs(latency_ms=0)
    resumed = ops("incident", "resume", "INC-PK")
    assert resumed.exit_code == 0, resumed.stderr
    marks = ",".join("?" * len(threats(wave)))
    left = f"SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({marks})"
    assert lab.sql(left, *threats(wave)) == [(0,)]
    verify = ops("incident", "verify", "INC-PK", "-o", "json")
    assert verify.exit_code == 0 and verify.json(), verify.stderr  # no empty or half bundle is counted
    kept = set()
    for bundle in (home / "incidents" / "INC-PK" / "evidence").iterdir():
        if not bundle.name.startswith("."):
            kept |= {json.loads(line)["id"] for line in (bundle / "messages.jsonl").read_text().splitlines()}
    assert kept == set(threats(wave))  # every purged message is in the evidence


def test_affected_schools_export_equals_the_ground_truth(
    ops: Cli, wave: dict[str, Any], tmp_path: Path
) -> None:
    ops.open_incidents("INC-X")
    saved = tmp_path / "threat.json"
    ops("messages", "search", "--like", wave["messages"][0], "--save", str(saved))
    result = ops("schools", "export", "--affected", "--from-search", str(saved), "-o", "json")
    assert result.exit_code == 0, result.stderr
    rows = result.json()
    assert {r["uai"] for r in rows} == set(wave["schools"])
    assert sum(r["senders_from_school"] for r in rows) >= len(wave["senders"])
    assert all(r["name"] and r["type"] in ("ecole", "college", "lycee") for r in rows)
    assert (
        ops("messages", "purge", "--from-search", str(saved), "--yes", "--incident", "INC-X").exit_code == 0
    )
    from_incident = ops("schools", "export", "--affected", "--incident", "INC-X", "-o", "json").json()
    assert {r["uai"] for r in from_incident} == set(wave["schools"])
    excel = tmp_path / "affected.csv"
    assert (
        ops(
            "schools", "export", "--affected", "--incident", "INC-X", "--excel", "--out", str(excel)
        ).exit_code
        == 0
    )
    raw = excel.read_bytes()
    assert raw.startswith("\ufeff".encode()) and b";" in raw.splitlines()[0]
    table = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert {r["UAI"] for r in table} == set(wave["schools"])
    assert {"Établissement", "Messages reçus", "Première menace"} <= set(table[0])
    assert {r["Type"] for r in table} <= {"école", "collège", "lycée"}
    # Dates French Excel reads as dates: day/month/year and the local time of the crisis cell.
    first = datetime.strptime(table[0]["Première menace"], "%d/%m/%Y %H:%M:%S")
    iso = next(r["first_threat"] for r in from_incident if r["uai"] == table[0]["UAI"])
    moment = datetime.fromtimestamp(iso / 1000, UTC) if isinstance(iso, int) else datetime.fromisoformat(iso)
    assert first == moment.astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None, microsecond=0)
    both = ops("schools", "export", "--affected", "--incident", "INC-X", "--excel", "-o", "json")
    assert both.exit_code == 2 and "does not go with -o" in both.stderr


def test_senders_flags_exactly_the_hijacked_accounts(ops: Cli, wave: dict[str, Any]) -> None:
    result = ops("senders", "--since", "1h", "--mass-messages", "5", "-o", "json")
    assert result.exit_code == 0, result.stderr
    flagged = {r["id"] for r in result.json() if r["mass"]}
    assert flagged == set(wave["senders"])
    row = next(r for r in result.json() if r["mass"])
    assert row["ips"] and not row["ips"][0].startswith("10.") and row["recipients"] > 0


def test_show_one_message(ops: Cli, wave: dict[str, Any]) -> None:
    record = ops("messages", "show", wave["messages"][0], "-o", "json").json()
    assert record["id"] == wave["messages"][0] and "bombe" in record["body"].lower()
    assert record["copies"] and any("INBOX" in c for c in record["copies"])


# -- the platform's conversation schema and its semantics --------------------------------------------------


def pg_mirror(server: Postgres, sqlite_path: Path) -> str:
    import psycopg

    from pcnctl.lab.pgmirror import copy_from_sqlite

    with psycopg.connect(server.dsn()) as conn:
        copy_from_sqlite(sqlite_path, conn)
    return server.dsn()


def test_postgres_schema_is_the_platforms(lab: Lab, wave: dict[str, Any], postgres: Postgres) -> None:
    import psycopg

    dsn = pg_mirror(postgres, lab.data_dir / "conversation.sqlite")
    with psycopg.connect(dsn) as conn:
        indexes = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'conversation'")
        }
        nulls = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE folder_id IS NULL) FROM conversation.usermessages"
        ).fetchone()
        vectors = conn.execute(
            "SELECT count(*) FROM conversation.messages"
            " WHERE text_searchable @@ to_tsquery('conversation.fr', 'bombe')"
        ).fetchone()
        names = conn.execute(
            'SELECT count(*) FROM conversation.messages WHERE "fromName" IS NOT NULL'
        ).fetchone()
        uma_keys = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'usermessagesattachments'"
        ).fetchall()
    platform = set(
        """
        messages_pkey attachments_pkey folders_pkey usermessages_pkey usermessagesattachments_pkey
        scripts_pkey threads_pkey userthreads_pkey originalmessages_pkey idx_message_to idx_message_cc
        idx_message_dname messages_date_idx idx_message_textsearch idx_message_id idx_parent_id idx_from
        idx_thread_id conversation_foldername_parent_uniq_idx conversation_foldername_uniq_idx
        idx_folders_userparent idx_originalmessages idx_usermessagesattachments_attachment_id
        idx_usermessages_message_id idx_userthreads_thread_id idx_threads_date
        """.split()
    )
    assert indexes == platform  # no index the platform does not have
    assert not any("(message_id)" in r[0] for r in uma_keys)  # its key starts with user_id
    assert nulls is not None and nulls[0] > 0 and nulls[0] == nulls[1]  # system folders are NULL
    assert vectors is not None and vectors[0] >= len(wave["messages"])  # the trigger filled text_searchable
    assert names == (0,)  # the send path leaves fromName NULL


def test_group_send_reaches_every_member_and_their_school(
    ops: Cli, lab: Lab, wave: dict[str, Any], mailstore: str
) -> None:
    assert wave["group_sends"], "the wave sends to whole groups"
    rows = ops(
        "messages", "search", "--like", wave["messages"][0], "--mailstore", mailstore, "-o", "json"
    ).json()
    by_id = {r["id"]: r for r in rows}
    for message_id in wave["group_sends"]:
        row = by_id[message_id]
        (group,) = row["addressed"]  # one id typed: the teachers' group
        copies = lab.sql("SELECT user_id FROM conversation.usermessages WHERE message_id = ?", message_id)
        assert row["recipient_count"] == len(copies) - 1 > 1  # every member's copy, not the sender's
        assert row["groups"] and group not in row["recipients"]
        assert row["schools"] and set(row["schools"]) <= set(wave["schools"])
        school = row["schools"][0]
        to_school = ops(
            "messages",
            "search",
            "--like",
            message_id,
            "--to-school",
            school,
            "--mailstore",
            mailstore,
            "-o",
            "json",
        ).json()
        assert message_id in ids(to_school)
    reached = {r for row in rows for r in row["recipients"]}
    assert reached == set(wave["recipients"])  # group members included, as the ground truth has them
    assert {s for row in rows for s in row["schools"]} == set(wave["schools"])


def test_senders_count_the_people_reached_through_groups(
    ops: Cli, wave: dict[str, Any], mailstore: str
) -> None:
    rows = ops("senders", "--since", "1h", "--mailstore", mailstore, "-o", "json").json()
    reached = {r["id"]: r["recipients"] for r in rows}
    threats = ops(
        "messages", "search", "--like", wave["messages"][0], "--mailstore", mailstore, "-o", "json"
    ).json()
    group_senders = {r["from"] for r in threats if r["groups"]}
    assert group_senders
    for sender in wave["senders"]:
        mine = [r for r in threats if r["from"] == sender]
        people = {p for r in mine for p in r["recipients"]}
        assert reached[sender] == len(people)  # the copies, group members included
        groups = {a for r in mine for a in r["addressed"]} - people
        assert (sender in group_senders) == bool(groups)  # a group id typed is not a person reached


def test_scheduled_threats_are_found_and_drafts_counted_on_stderr(
    ops: Cli, lab: Lab, wave: dict[str, Any], mailstore: str
) -> None:
    """A send scheduled for tomorrow is part of the wave (found, its one copy the sender's); a draft was
    never sent: it is left out, and the search says how many drafts also match."""
    assert wave["drafts"] and wave["scheduled"] and wave["recalled"]
    states = dict(lab.sql("SELECT id, state FROM conversation.messages"))
    assert {states[i] for i in wave["drafts"]} == {"DRAFT"}
    assert {states[i] for i in wave["scheduled"]} == {"SCHEDULE"}
    default = ops("messages", "search", "--regex", "explosera", "--mailstore", mailstore, "-o", "json")
    assert default.exit_code == 0, default.stderr
    assert ids(default.json()) == set(threats(wave))  # the recalled one and the scheduled ones included
    assert [r["id"] for r in default.json() if r["recalled"]] == wave["recalled"]
    scheduled = [r for r in default.json() if r["state"] == "SCHEDULE"]
    assert ids(scheduled) == set(wave["scheduled"])
    assert all(r["recipient_count"] == 0 and r["copies"] == 1 and r["addressed"] for r in scheduled)
    drafts = len(wave["drafts"])
    assert f"also matching, left out: {drafts} draft; search with --state all to list them" in default.stderr
    sent = ops("messages", "search", "--regex", "explosera", "--state", "sent", "--state", "RECALL",
               "--mailstore", mailstore, "-o", "json")  # fmt: skip
    assert ids(sent.json()) == set(wave["messages"])
    scheduled_count = len(wave["scheduled"])
    left = f"also matching, left out: {scheduled_count} scheduled, {drafts} draft; search with --state all"
    assert left in sent.stderr
    only = ops("messages", "search", "--regex", "explosera", "--state", "SENT", "--state", "SCHEDULE",
               "--mailstore", mailstore, "-o", "json")  # fmt: skip
    assert ids(only.json()) == set(threats(wave)) - set(wave["recalled"])
    assert f"left out: 1 recalled, {drafts} draft; search with --state all" in only.stderr
    every = ops(
        "messages", "search", "--regex", "explosera", "--state", "all", "--mailstore", mailstore, "-o", "json"
    )
    assert ids(every.json()) == set(threats(wave)) | set(wave["drafts"])
    assert "also matching" not in every.stderr
    assert all(r["recipient_count"] == 0 for r in every.json() if r["state"] in ("DRAFT", "SCHEDULE"))
    bad = ops("messages", "search", "--state", "ARCHIVED", "--mailstore", mailstore)
    assert bad.exit_code == 2 and "unknown message state" in bad.stderr


def test_show_names_the_sender_from_the_directory(ops: Cli, wave: dict[str, Any]) -> None:
    record = ops("messages", "show", wave["messages"][0], "-o", "json").json()
    assert record["from_name"] and record["state"] in ("SENT", "RECALL")
    assert any(c.endswith(":OUTBOX") for c in record["copies"]) and any(
        c.endswith(":INBOX") for c in record["copies"]
    )


def test_purge_timeline_count_matches_the_platforms(
    ops: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    saved = tmp_path / "threat.json"
    assert ops("messages", "search", "--like", wave["messages"][0], "--save", str(saved)).exit_code == 0
    marks = ",".join("?" * len(wave["messages"]))
    notified = sum(
        len(json.loads(r[0]))
        for r in lab.sql(f"SELECT recipients FROM timeline WHERE resource IN ({marks})", *wave["messages"])
    )
    result = ops("messages", "purge", "--from-search", str(saved), "--yes", "-o", "json")
    assert result.exit_code == 0, result.stderr
    summary = {r["what"]: r["count"] for r in result.json()}
    assert summary["timeline notifications with the text"] == notified  # the sender's copy is not one


def test_purge_survives_idle_in_transaction_timeout_with_slow_api(
    ops: Cli, lab: Lab, wave: dict[str, Any], postgres: Postgres, tmp_path: Path
) -> None:
    dsn = pg_mirror(postgres, lab.data_dir / "conversation.sqlite")
    timed = dsn + "&options=-c%20idle_in_transaction_session_timeout%3D3s"
    import psycopg

    with psycopg.connect(timed) as conn:  # the setting production often has
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("3s",)
    saved = tmp_path / "threat.json"
    found = ops(
        "messages", "search", "--like", wave["messages"][0], "--mailstore", timed, "--save", str(saved)
    )
    assert found.exit_code == 0, found.stderr
    lab.knobs(latency_ms=1600)  # every API call takes 1.6 s: the purge lasts well over the 3 s timeout
    try:
        result = ops(
            "messages", "purge", "--from-search", str(saved), "--yes", "--mailstore", timed, "-o", "json"
        )
    finally:
        lab.knobs(latency_ms=0)
    # The mirror is not what the lab purged: its copies are still there, so the run ends partial (6).
    assert result.exit_code == 6 and "mailstore query failed" not in result.stderr, result.stderr
    summary = {r["what"]: r["count"] for r in result.json()}
    assert summary["messages purged"] == len(threats(wave))
    assert summary["copies still in mailboxes"] > 0  # read after the purge, on the same session


def test_ctrl_c_cancels_the_server_query(postgres: Postgres, lab: Lab, wave: dict[str, Any]) -> None:
    import signal
    import subprocess
    import sys
    import time

    import psycopg

    dsn = pg_mirror(postgres, lab.data_dir / "conversation.sqlite")
    script = (
        "import sys\nfrom pcnctl.forensics.mailstore import Mailstore\n"
        "store = Mailstore(sys.argv[1])\nprint('ready', flush=True)\n"
        "try:\n    print(sum(1 for _ in store.iter_messages()))\n"
        "except KeyboardInterrupt:\n    sys.exit(130)\n"
    )
    with psycopg.connect(dsn) as locker, psycopg.connect(dsn, autocommit=True) as watch:
        locker.execute("LOCK TABLE conversation.messages IN ACCESS EXCLUSIVE MODE")  # the scan now waits
        child = subprocess.Popen([sys.executable, "-c", script, dsn], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pcnctl' AND state = 'active'"
        )
        for _ in range(200):
            if watch.execute(waiting).fetchone() == (1,):
                break
            time.sleep(0.05)
        assert watch.execute(waiting).fetchone() == (1,)
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 130
        # The lock is still held, so a query left on the server would still be active: it was cancelled.
        assert watch.execute(waiting).fetchone() == (0,)
        locker.rollback()


def _corpus(path: Path, count: int = 400) -> str:
    """A conversation database with near and far variants of the threat, written as the platform does."""
    import random
    import sqlite3

    from pcnctl.lab.attack import NOISE, threat_text
    from pcnctl.lab.conversation_routes import Recipients, create_draft, deliver
    from pcnctl.lab.store import CONVERSATION_SCHEMA

    rng = random.Random(11)
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("ATTACH DATABASE ? AS conversation", (str(path),))
    db.executescript(CONVERSATION_SCHEMA)
    glue = [" ", ", ", "-", ". ", "<br>", " <b>", "</p><p>", "'", " (", "10h"]
    reference = ""
    for n in range(count):
        subject, body = threat_text(rng) if n % 3 else rng.choice(NOISE)
        words = body.split()
        for _ in range(rng.randrange(0, 12)):  # drop, swap, glue and accent words: every similarity
            i = rng.randrange(len(words))
            choice = rng.random()
            if choice < 0.4 and len(words) > 3:
                words.pop(i)
            elif choice < 0.6:
                words[i] = rng.choice(("élève", "Collège", "demain", "évacuez", "BOMBE", "l'école"))
            elif choice < 0.8 and i + 1 < len(words):
                words[i : i + 2] = [words[i] + rng.choice(glue) + words[i + 1]]
            else:
                words.insert(i, rng.choice(("<i>", "bombe2", "x.explosera.fr", "a@blague.fr", "&nbsp;")))
        html = f"<div>{' '.join(words)}</div>"
        sender = {"id": f"u{n % 17:04d}", "display_name": f"ELEVE {n % 17}"}
        rec = Recipients([f"t{n % 5:04d}", f"t{(n + 1) % 5:04d}"], {}, {})
        mid = create_draft(
            db, sender, {"subject": subject, "body": html, "to": rec.users}, rec, 1_700_000_000 + n
        )
        deliver(db, sender, mid, rec, None)
        reference = reference or (mid if n % 3 else "")
    db.close()
    return reference


def test_full_text_prefilter_never_drops_an_exact_match(tmp_path: Path, postgres: Postgres) -> None:
    from pcnctl.forensics import search
    from pcnctl.forensics.mailstore import Mailstore

    path = tmp_path / "conversation.sqlite"
    reference_id = _corpus(path)
    dsns = [f"sqlite:///{path}", pg_mirror(postgres, path)]
    queries = [
        search.Query(body="bombe"),
        search.Query(body="a ete placee dans"),
        search.Query(subject="alerte"),
        search.Query(regex=r"bombe.*explos"),
        search.Query(regex=r" morts[.!]"),
        search.Query(regex=r"^URGENT\n une bombe a ete placee dans"),
        *[search.Query(like=reference_id, threshold=t) for t in (0.2, 0.3, 0.4, 0.5, 0.7)],
    ]
    for dsn in dsns:
        store = Mailstore(dsn)
        try:
            ref = store.get(reference_id)
            assert ref is not None
            shingles = search.shingles(ref.subject + " " + ref.body)
            narrowed = []
            for query in queries:
                pattern = re.compile(query.regex, re.IGNORECASE) if query.regex else None
                reference = shingles if query.like else None
                kwargs: dict[str, Any] = {"pattern": pattern, "reference": reference}
                full, scanned_full = [0], [0]
                exact = {m.id for m, _ in search.scan(store, query, counter=full, use_index=False, **kwargs)}
                fast = {m.id for m, _ in search.scan(store, query, counter=scanned_full, **kwargs)}
                assert fast == exact, (dsn, query)  # the prefilter only narrows what the exact filter sees
                assert exact, query  # each case has matches to lose
                narrowed.append(scanned_full[0] < full[0])
            # And it narrows (fewer candidates read) wherever whole words are known: words between edges,
            # --like from 0.4 up; a lone word open at its end narrows only on SQLite (FTS5 prefixes).
            assert all(narrowed[i] for i in (1, 5, 8, 9, 10)), (dsn, narrowed)
            assert dsn.startswith("postgresql") or all(narrowed[i] for i in (0, 2, 4)), narrowed
        finally:
            store.close()


def test_regex_literal_runs_are_what_every_match_holds() -> None:
    from pcnctl.forensics.mailstore import literal_runs

    assert literal_runs(r"bombe.*explos") == ["bombe", "explos"]
    assert literal_runs("^URGENT\n une bombe a ete") == ["URGENT", "une", "bombe", "ete"]  # cut at spaces
    assert literal_runs(r"bombes?!") == ["bombe"]  # the optional letter ends the run
    assert literal_runs(r"(bombe) explos") == ["explos"]  # a group ends a run
    assert literal_runs(r"bombe|explos") == []  # an alternative at the top holds no run for sure
    assert literal_runs("[") == []


def test_postgres_regex_prefilter_keeps_matches_across_tags_and_entities(
    tmp_path: Path, postgres: Postgres
) -> None:
    """The stored text is searched for the pattern's runs before the tags are stripped: a match the
    visible text makes across a tag or an entity (each one space there) is still found."""
    import sqlite3

    from pcnctl.forensics import search
    from pcnctl.forensics.mailstore import Mailstore
    from pcnctl.lab.conversation_routes import Recipients, create_draft, deliver
    from pcnctl.lab.store import CONVERSATION_SCHEMA

    path = tmp_path / "conversation.sqlite"
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("ATTACH DATABASE ? AS conversation", (str(path),))
    db.executescript(CONVERSATION_SCHEMA)
    bodies = {
        "plain": "<p>une bombe explosera demain</p>",
        "tag": "<p>une BOMBE<br>explosera demain</p>",
        "entity": "<p>une bombe&nbsp;explosera demain</p>",
        "paragraphs": "<p>une bombe</p><p>explosera demain</p>",  # two tags, two spaces: no match
        "split word": "<p>une bom<b>be</b> explosera demain</p>",  # visible: "bom be": no match
        "other": "<p>une bombe n'explosera pas</p>",
    }
    ids = {}
    for n, (name, body) in enumerate(bodies.items()):
        sender = {"id": f"u{n:04d}", "display_name": f"ELEVE {n}"}
        rec = Recipients(["t0001"], {}, {})
        ids[name] = create_draft(db, sender, {"subject": "info", "body": body, "to": rec.users}, rec, n + 1)
        deliver(db, sender, ids[name], rec, None)
    db.close()
    store = Mailstore(pg_mirror(postgres, path))
    try:
        for regex in (r"bombe explosera", r"une bombe.explosera d"):
            query = search.Query(regex=regex)
            kwargs: dict[str, Any] = {"pattern": re.compile(regex, re.IGNORECASE)}
            fast = {m.id for m, _ in search.scan(store, query, **kwargs)}
            exact = {m.id for m, _ in search.scan(store, query, use_index=False, **kwargs)}
            names = {v: k for k, v in ids.items()}
            assert fast == exact, (regex, {names[i] for i in fast}, {names[i] for i in exact})
            assert {names[i] for i in exact} == {"plain", "tag", "entity"}, regex
    finally:
        store.close()


def test_lab_send_and_draft_answer_as_the_contracts_say(lab: Lab, wave: dict[str, Any]) -> None:
    import jsonschema
    import requests

    from tests import contract

    session = requests.Session()
    login = wave["sender_logins"][0]
    session.post(lab.url + "/auth/login", data={"email": login, "password": lab.password}, timeout=10)
    xsrf = {"X-XSRF-TOKEN": session.cookies.get("XSRF-TOKEN", "")}
    to = lab.sql("SELECT user_id FROM conversation.usermessages WHERE message_id = ?", wave["messages"][0])
    recipient = next(u for (u,) in to if u != wave["senders"][0])
    send = contract.load("conversation/send-post")
    ok = session.post(lab.url + "/conversation/send", json={"subject": "s", "to": [recipient]}, headers=xsrf)
    assert ok.status_code == 200
    jsonschema.validate(ok.json(), send.answer(200).schema)
    empty = session.post(lab.url + "/conversation/send", json={"to": []}, headers=xsrf)
    assert empty.status_code == 200 and empty.json()["sent"] == 0  # accepted, reaching nobody
    extra = session.post(
        lab.url + "/conversation/send", json={"to": [recipient], "attachments": []}, headers=xsrf
    )
    assert extra.status_code == 400  # every key is a column: attachments have their own route
    jsonschema.validate(extra.json(), send.answer(400, "save or the send failed").schema)
    draft = session.post(
        lab.url + "/conversation/draft", json={"subject": "d", "to": [recipient]}, headers=xsrf
    )
    assert draft.status_code == 201
    jsonschema.validate(draft.json(), contract.load("conversation/draft-post").answer(201).schema)
    again = session.post(f"{lab.url}/conversation/send?id={draft.json()['id']}", json={}, headers=xsrf)
    twice = session.post(f"{lab.url}/conversation/send?id={draft.json()['id']}", json={}, headers=xsrf)
    assert again.status_code == 200 and twice.status_code in (400, 401)  # a draft is sent once


def test_a_saved_search_survives_a_reader_that_stops_early(
    ops: Cli, wave: dict[str, Any], tmp_path: Path
) -> None:
    saved = tmp_path / "threat.json"
    command = f"{sys.executable} -m pcnctl messages search --since 1h --save {saved} -o jsonl | head -n 1"
    done = subprocess.run(
        ["sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert done.returncode == 0 and done.stdout.count("\n") == 1, done.stderr
    assert len(json.loads(saved.read_text())["matches"]) > 1
