"""A team's shared state store on the session's real PostgreSQL server: two operators (two homes, one
database) on one incident, one killed and the other resuming and rolling back; the cron audit (a third
home, the read-only role) seeing both; incident locks held by the database and released when their
process dies; the shared audit chain, which the operators' roles may only extend, tampered with by a
superuser and caught; a SQLite home moved into the database exactly, once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pcnctl.lab.pgserver import Postgres
from pcnctl.state.postgres import incident_key
from tests.conftest import Cli, Lab, MemoryKeyring, Run
from tests.pg import TEAM_ROLES, TeamDatabase, team_database
from tests.test_operations import SCHOOLS, school_graph
from tests.test_safety import blocked, students_of

INCIDENT_COLUMNS = "id, title, opened_at, opened_by, status, closed_at, profiles, ents"
INCIDENT_LOCKS = 0x70636E64  # pcnctl.state.postgres: the first key of every incident's advisory lock


@dataclass
class Member:
    """One member of the team: a home and a config of their own, a database role of their own."""

    cli: Cli
    home: Path
    config: Path

    def __call__(self, *args: str, input: str | None = None) -> Run:
        return self.cli(*args, input=input, env=self.env())

    def env(self) -> dict[str, str]:
        return {"PCNCTL_HOME": str(self.home), "PCNCTL_CONFIG": str(self.config)}

    def process(self, *args: str) -> subprocess.Popen[bytes]:
        """``pcnctl ARGS`` as a process of its own (to be killed)."""
        env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", **self.env())
        return subprocess.Popen([sys.executable, "-m", "pcnctl", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


@dataclass
class Team:
    db: TeamDatabase
    marie: Member
    paul: Member
    audit: Member


def member(cli: Cli, root: Path, name: str) -> Member:
    return Member(cli, root / name / "home", root / name / "config.yaml")


@pytest.fixture
def team(postgres: Postgres, lab: Lab, cli: Cli, tmp_path: Path) -> Team:
    """A database made as docs/team.md says (roles, then ``state init`` as its owner), two operators'
    homes with a profile on it as their own role, and the cron audit's home as the read role."""
    db = team_database(postgres)
    made = cli("state", "init", "--to", db.url("pcnctl_owner"))
    assert made.exit_code == 0, made.stderr
    people = Team(
        db, member(cli, tmp_path, "marie"), member(cli, tmp_path, "paul"), member(cli, tmp_path, "audit")
    )
    for someone, role in ((people.marie, "marie"), (people.paul, "paul"), (people.audit, "pcnctl_audit")):
        added = someone(
            "profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--state", db.url(role)
        )
        assert added.exit_code == 0, added.stderr
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    return people


def sent(db: TeamDatabase, incident: str) -> int:
    found = db.rows("SELECT count(*) FROM pcnctl.journal WHERE incident = %s AND body LIKE %s", incident,
                    '%"phase":"sending"%')  # fmt: skip
    return int(found[0][0])


def lock_holders(db: TeamDatabase, incident: str) -> list[str]:
    """The database roles holding the incident's advisory lock, as the server sees them."""
    rows = db.rows(
        "SELECT a.usename FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = "
        "'advisory' AND l.granted AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 2",
        INCIDENT_LOCKS,
        incident_key(incident),
    )
    return [r[0] for r in rows]


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def json_of(result: Run) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_two_operators_block_resume_and_roll_back_one_incident(team: Team, lab: Lab, tmp_path: Path) -> None:
    """Marie starts an account block and is killed mid-run; her lock goes with her process; Paul, on his
    own home, resumes her run and cuts two schools' messaging beside hers; the cron audit's home, as the
    read role, sees every block in force; Paul rolls the whole incident back to the exact prior state."""
    assert team.marie("incident", "open", "--id", "INC-TEAM", "--title", "vague").exit_code == 0
    targets = students_of(lab, list(SCHOOLS), 60)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(targets) + "\n")
    before, graph = blocked(lab), school_graph(lab)
    lab.knobs(latency_ms=30)
    killed = team.marie.process("accounts", "block", "--from-file", str(ids), "--max", "500", "--yes",
                                "--incident", "INC-TEAM", "--batch-size", "5", "-q")  # fmt: skip
    assert wait_for(lambda: sent(team.db, "INC-TEAM") >= 6 or killed.poll() is not None)
    assert lock_holders(team.db, "INC-TEAM") == ["marie"]  # held by the database for her run
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL  # killed mid-run
    lab.knobs(latency_ms=0)
    assert wait_for(lambda: lock_holders(team.db, "INC-TEAM") == [])  # released with her session
    assert blocked(lab) != before | set(targets)  # she left work undone

    resumed = team.paul("incident", "resume", "INC-TEAM", "-q")
    assert resumed.exit_code == 0, resumed.stderr
    assert blocked(lab) == before | set(targets)
    cut = (
        "messaging",
        "block",
        "--profile",
        "Student",
        "--yes",
        "--no-verify",
        "-q",
        "--incident",
        "INC-TEAM",
    )
    assert team.marie(*cut, "--school", SCHOOLS[0]).exit_code == 0
    assert team.paul(*cut, "--school", SCHOOLS[1]).exit_code == 0
    writers = team.db.rows("SELECT DISTINCT written_by FROM pcnctl.journal WHERE incident = 'INC-TEAM'")
    assert {r[0] for r in writers} == {"marie", "paul"}  # each record says whose role wrote it
    runs = [json.loads(r[0]) for r in team.db.rows("SELECT body FROM pcnctl.journal WHERE kind = 'run'")]
    assert {r["meta"]["url"] for r in runs} == {lab.url} and all(r["meta"]["identity"] for r in runs)

    status = json_of(team.audit("messaging", "status", "-o", "json"))
    assert {(b["school"], b["incident"]) for b in status} == {
        (SCHOOLS[0], "INC-TEAM"),
        (SCHOOLS[1], "INC-TEAM"),
    }
    owners = team.db.rows("SELECT written_by FROM pcnctl.blocks ORDER BY written_by")
    assert owners == [("marie",), ("paul",)]  # one block of each operator, both seen above
    report = json_of(team.audit("audit", "run", "--since", "last", "--checks", "blocks,drift", "-o", "json"))
    found = {f["check"]: f for f in report["findings"]}
    assert found["blocks"]["count"] == 2 + len(targets) and found["drift"]["count"] == 0
    window = team.db.rows("SELECT role FROM pcnctl.settings WHERE key = 'audit-state'")
    assert window == [("pcnctl_audit",)]  # the audit's own window, the one thing its role writes
    refused = team.audit("incident", "open", "--id", "INC-AUDIT")
    assert refused.exit_code == 7 and "refused" in refused.stderr
    assert team.db.rows("SELECT id FROM pcnctl.incidents") == [("INC-TEAM",)]

    undone = team.paul("rollback", "INC-TEAM", "--yes")
    assert undone.exit_code == 0, undone.stderr
    assert blocked(lab) == before and school_graph(lab) == graph
    assert json_of(team.audit("messaging", "status", "-o", "json")) == []
    assert team.audit("audit", "verify-log").exit_code == 0


def test_a_lock_held_by_a_killed_process_is_released(postgres: Postgres, cli: Cli, tmp_path: Path) -> None:
    db = team_database(postgres)
    assert cli("state", "init", "--to", db.url("pcnctl_owner")).exit_code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "from pathlib import Path\n"
         "from pcnctl.state.store import SharedDatabase, StateStore\n"
         f"store = StateStore(Path({str(tmp_path / 'a')!r}), database=SharedDatabase({db.url('marie')!r}))\n"
         "with store.lock('INC-L'):\n    print('held', flush=True)\n    input()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    from pcnctl.errors import RefusedError
    from pcnctl.state.store import SharedDatabase, StateStore

    other = StateStore(tmp_path / "b", database=SharedDatabase(db.url("paul")))
    held = r"in use by another pcnctl run \(pid \d+ on .*database role marie\)"
    with pytest.raises(RefusedError, match=held), other.lock("INC-L"):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()

    def taken() -> bool:
        try:
            with other.lock("INC-L"):
                return True
        except RefusedError:
            return False

    assert wait_for(taken)
    # A session lock is re-entrant; pcnctl's is not: a second hold in the same process refuses too.
    with other.lock("INC-L"), pytest.raises(RefusedError, match="this very process"), other.lock("INC-L"):
        pass
    other.close()


def test_tampering_with_the_shared_chain_is_detected(team: Team) -> None:
    """The operators' roles cannot change or remove an entry; a superuser can, and verify-log (from any
    home sharing the store, the read role's too) says where."""
    for incident in ("INC-C1", "INC-C2", "INC-C3"):
        assert team.marie("incident", "open", "--id", incident).exit_code == 0
    assert team.paul("incident", "close", "INC-C2").exit_code == 0
    assert json_of(team.audit("audit", "verify-log", "-o", "json"))["entries"] == 4
    import psycopg

    for statement in ("UPDATE pcnctl.audit_log SET body = body", "DELETE FROM pcnctl.audit_log",
                      "UPDATE pcnctl.seals SET count = 0", "DELETE FROM pcnctl.journal"):  # fmt: skip
        with (
            psycopg.connect(team.db.url("marie")) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(statement)
    with psycopg.connect(team.db.url("paul")) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO pcnctl.audit_log (chain, seq, body, written_by) VALUES ('x', 1, '{}', 'marie')"
        )

    def verified() -> tuple[int, dict[str, Any]]:
        result = team.audit("audit", "verify-log", "-o", "json")
        return result.exit_code, json.loads(result.stdout)

    original = team.db.rows("SELECT seq, body FROM pcnctl.audit_log ORDER BY seq")
    team.db.run("UPDATE pcnctl.audit_log SET body = replace(body, 'INC-C2', 'INC-C9') WHERE seq = 2")
    code, report = verified()
    assert (code, report["first_bad_line"]) == (11, 2) and report[
        "problem"
    ] == "content changed after it was written"
    team.db.run("UPDATE pcnctl.audit_log SET body = %s WHERE seq = 2", original[1][1])
    team.db.run("DELETE FROM pcnctl.audit_log WHERE seq = 2")
    code, report = verified()
    assert (code, report["first_bad_line"]) == (11, 2) and report[
        "problem"
    ] == "does not chain to the previous entry"
    team.db.run("INSERT INTO pcnctl.audit_log (chain, seq, body) VALUES ('shared', 2, %s)", original[1][1])
    assert verified()[0] == 0
    team.db.run("DELETE FROM pcnctl.audit_log WHERE seq = 4")  # the last entry, which the seal still names
    code, report = verified()
    assert code == 11 and "its end was cut off" in report["problem"]
    again = team.paul("incident", "open", "--id", "INC-C4")  # the next append does not seal over it
    assert again.exit_code == 0
    code, report = verified()
    assert code == 11 and report["problem"] == "the log was cut back to entry 3 after entry 4 was sealed"


def test_migrate_moves_a_home_exactly_once(team: Team, lab: Lab, cli: Cli, tmp_path: Path) -> None:
    """A SQLite home with runs, a snapshot, a block, seals and its audit log goes into the shared store
    in one transaction, every record as it was; the home is not written again, a second move and a home
    with the same incident are refused; the moved incident rolls back from the shared store."""
    solo = member(cli, tmp_path, "solo")
    assert solo("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn").exit_code == 0
    assert solo("incident", "open", "--id", "INC-M").exit_code == 0
    graph = school_graph(lab)
    cut = ("messaging", "block", "--profile", "Student", "--school", SCHOOLS[0], "--yes", "--no-verify", "-q")
    assert solo(*cut, "--incident", "INC-M").exit_code == 0
    assert (
        solo(
            "accounts", "block", students_of(lab, [SCHOOLS[1]], 1)[0], "--yes", "--incident", "INC-M"
        ).exit_code
        == 0
    )
    from pcnctl.state.store import StateStore

    store = StateStore(solo.home)
    store.set_seal("evidence:INC-M/20260101T000000Z-1", 3, "ab" * 32, "2026-01-01T00:00:00.000Z")
    store.close()
    home = sqlite3.connect(solo.home / "state.db")
    tables = {
        "incidents": f"SELECT {INCIDENT_COLUMNS} FROM incidents",
        "journal": "SELECT incident, ent, run, kind, at, body FROM journal ORDER BY seq",
        "snapshots": "SELECT run, incident, ent, body, digest FROM snapshots",
        "blocks": "SELECT id, ent, incident, run, status, body FROM blocks",
    }
    held = {name: home.execute(sql).fetchall() for name, sql in tables.items()}
    seals = dict((n, (c, h, a)) for n, c, h, a in home.execute("SELECT name, count, head, at FROM seals"))
    home.close()
    lines = (solo.home / "audit.log").read_text().splitlines()
    assert held["snapshots"] and held["blocks"] and len(lines) >= 4

    moved = solo("state", "migrate", "--to", team.db.url("marie"), "--yes", "-o", "json")
    assert moved.exit_code == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert (report["incidents"], report["journal"], report["audit_entries"]) == (
        1,
        len(held["journal"]),
        len(lines),
    )
    chain = report["chain"]
    for name, sql in tables.items():
        shared = team.db.rows(sql.replace(f"FROM {name}", f"FROM pcnctl.{name}"))
        if name != "journal":  # the journal in its order; the others by their keys
            shared, held[name] = sorted(shared), sorted(held[name])
        assert shared == held[name], name
    copied = {n: (c, h, a) for n, c, h, a in team.db.rows("SELECT name, count, head, at FROM pcnctl.seals")}
    assert copied.pop("audit-log")[0] == 1  # the shared chain's own seal: the move's entry
    assert copied == {(f"audit-log@{chain}" if n == "audit-log" else n): v for n, v in seals.items()}
    rows = team.db.rows("SELECT body FROM pcnctl.audit_log WHERE chain = %s ORDER BY seq", chain)
    assert [r[0] for r in rows] == lines  # the home's chain, byte for byte
    assert team.db.rows("SELECT count(*) FROM pcnctl.audit_log WHERE chain = 'shared'") == [(1,)]  # the move

    stale = solo("incident", "list")
    assert stale.exit_code == 3 and "were moved to the shared state store" in stale.stderr
    twice = solo("state", "migrate", "--to", team.db.url("marie"), "--yes")
    assert twice.exit_code == 7 and "moved already" in twice.stderr
    other = member(cli, tmp_path, "other")
    assert other("incident", "open", "--id", "INC-M").exit_code == 0
    clash = other("state", "migrate", "--to", team.db.url("paul"), "--yes")
    assert clash.exit_code == 7 and "already holds records of INC-M" in clash.stderr
    assert team.db.rows("SELECT count(*) FROM pcnctl.imports") == [(1,)]

    shown = json_of(team.paul("state", "show", "-o", "json"))
    assert (shown["backend"], shown["role"], shown["incidents"]) == ("postgresql", "paul", 1)
    assert shown["imported_entries"] == len(lines) and shown["blocks_active"] == 1
    verified = json_of(team.audit("audit", "verify-log", "-o", "json"))
    assert verified["intact"] and verified["entries"] == len(lines) + 1
    undone = team.paul("rollback", "INC-M", "--yes")  # from the moved snapshot, sealed in the moved chain
    assert undone.exit_code == 0, undone.stderr
    assert school_graph(lab) == graph


def test_the_sql_of_docs_team_is_the_sql_these_tests_and_state_init_run() -> None:
    """The roles docs/team.md tells a DBA to create are the ones the team above is made of, and the grants
    it prints are, byte for byte, those ``state init`` gives."""
    from pcnctl.state.postgres import grants

    text = (Path(__file__).resolve().parent.parent / "docs" / "team.md").read_text()
    blocks = text.split("```sql\n")[1:]
    assert all(f"{statement};" in blocks[0] for statement in TEAM_ROLES)
    assert blocks[1].split("```")[0] == grants()


def test_a_profile_names_its_store_and_the_password_stays_out_of_files(
    postgres: Postgres, cli: Cli, memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    db = team_database(postgres)
    url = db.url("marie")
    leaked = cli("profile", "add", "pcn", "--url", "http://127.0.0.1:9", "--login", "a",
                 "--state", url.replace("marie@", "marie:s3cret@"))  # fmt: skip
    assert leaked.exit_code == 2 and "must not carry a password" in leaked.stderr
    keyed = cli("profile", "add", "pcn", "--url", "http://127.0.0.1:9", "--login", "a", "--state", url,
                "--audit-key")  # fmt: skip
    assert keyed.exit_code == 2 and "team's key" in keyed.stderr
    assert not Path(os.environ["PCNCTL_CONFIG"]).exists()  # refused before anything was saved
    assert (
        cli("profile", "add", "pcn", "--url", "http://127.0.0.1:9", "--login", "a", "--state", url).exit_code
        == 0
    )
    bare = cli("incident", "list")
    assert bare.exit_code == 3 and "pcnctl state init" in bare.stderr  # no schema yet: said, not guessed
    assert cli("state", "init", "--to", db.url("pcnctl_owner")).exit_code == 0
    saved = cli("state", "login", "--password-stdin", input="s3cret\n")
    assert saved.exit_code == 0, saved.stderr
    assert memory_keyring.entries[("pcnctl", "pcn:state_password")] == "s3cret"
    assert json_of(cli("profile", "show", "-o", "json"))["state_password_source"] == "keyring"
    assert json_of(cli("state", "show", "-o", "json"))["role"] == "marie"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and not any(b"s3cret" in p.read_bytes() for p in files)
    removed = cli("profile", "remove", "pcn")
    assert removed.exit_code == 0 and ("pcnctl", "pcn:state_password") not in memory_keyring.entries
    gone = cli("profile", "add", "far", "--url", "http://127.0.0.1:9", "--login", "a",
               "--state", "postgresql://marie@127.0.0.1:1/pcnctl")  # fmt: skip
    assert gone.exit_code == 0
    unreachable = cli("incident", "list")
    assert (
        unreachable.exit_code == 5 and "cannot reach the shared state store 127.0.0.1:1" in unreachable.stderr
    )
