"""One operation model: every door into an operation ends the same way.

For each operation that changes the ENT, the command, the playbook step, and the command killed (``kill
-9``) part-way then finished by ``incident resume`` must leave the lab in the same state, exit with the
same code and do the same follow-ups (verification, session revokes, evidence). Then the defects the
operation model closes, each reproduced through the real doors (D1-D7 of the issue).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import state
from tests.conftest import Cli, Lab, driver_for, played_wave

INC = "INC-DOOR"
SCHOOLS = ("0782268S", "0948617F")


def students(lab: Lab, uai: str, n: int) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in lab.sql(
            "SELECT u.id, u.login FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
            " ON s.id = us.structure_id WHERE s.uai = ? AND u.profile = 'Student' ORDER BY u.login LIMIT ?",
            uai,
            n,
        )
    ]


def log_in(lab: Lab, login: str) -> None:
    """A live session for a pupil (the lab keeps it in its sessions table)."""
    r = requests.post(
        lab.url + "/auth/login",
        data={"email": login, "password": lab.password},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302


def live(lab: Lab, ids: list[str]) -> int:
    marks = ",".join("?" * len(ids))
    return int(lab.sql(f"SELECT count(*) FROM sessions WHERE user_id IN ({marks})", *ids)[0][0])


def flags(lab: Lab, ids: list[str]) -> list[tuple[Any, ...]]:
    marks = ",".join("?" * len(ids))
    return lab.sql(
        f"SELECT id, coalesce(blocked, 0), change_pw, password IS NULL FROM users WHERE id IN ({marks})"
        " ORDER BY id",
        *ids,
    )


def school_graph(lab: Lab) -> list[list[tuple[Any, ...]]]:
    marks = ",".join("?" * len(SCHOOLS))
    where = f"g.structure_id IN (SELECT id FROM structures WHERE uai IN ({marks}))"
    return [
        lab.sql(f"SELECT g.id, g.users_dir, g.member_in, g.member_out FROM groups g WHERE {where} ORDER BY 1",
                *SCHOOLS),
        lab.sql("SELECT c.* FROM communique c JOIN groups g ON g.id = c.start_id"
                f" WHERE {where} ORDER BY 1, 2", *SCHOOLS),
        lab.sql("SELECT rg.* FROM role_groups rg JOIN groups g ON g.id = rg.group_id"
                f" WHERE {where} ORDER BY 1, 2", *SCHOOLS),
    ]  # fmt: skip


def home() -> Path:
    return Path(os.environ["PCNCTL_HOME"])


def ends(incident: str = INC) -> dict[str, list[dict[str, Any]]]:
    """Each run's op and the end records it got, by run id (the follow-ups' verdicts are in them)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    ops = {}
    for r in state.journal(home(), incident):
        if r.get("t") == "run":
            ops[r["run"]] = r["op"]
            runs.setdefault(r["run"], [])
        elif r.get("t") == "end":
            runs.setdefault(r["run"], []).append(r)
    return {f"{ops.get(k, '?')} {k}": v for k, v in runs.items()}


def followups(incident: str = INC) -> dict[str, Any]:
    """What the runs did after their items, door-independent: the operations run (follow-up runs
    included), how each last ended, and which follow-ups each verdict reports."""
    out: dict[str, Any] = {}
    for key, records in ends(incident).items():
        op = key.split(" ")[0]
        last = records[-1] if records else {}
        notes = " ".join(last.get("verdict", {}).get("notes", []))
        found = sorted(word for word in ("verification", "revoked", "kept blocked") if word in notes)
        files = sorted(last.get("verdict", {}).get("files", {}))
        out.setdefault(op, []).append((last.get("status"), found, files))
    return {k: sorted(v) for k, v in out.items()}


@dataclass
class Case:
    """One operation through its doors: ``setup`` readies a reset lab and returns what the run targets."""

    id: str
    setup: Callable[[Lab, Cli, Path], dict[str, Any]]
    command: Callable[[dict[str, Any]], list[str]]
    step: Callable[[dict[str, Any]], str]
    state: Callable[[Lab, dict[str, Any]], Any]
    slow: tuple[str, ...] = ()  # what makes the killed run last long enough to be killed part-way
    kill_at: str = '"phase":"done"'  # the journal marker the kill waits for
    latency: int = 40
    records_in_own: bool = False  # the command records in the incident of what it lifts, not in INC
    follow: tuple[str, ...] = ()  # operations its follow-ups run (compared with the main one's)

    @property
    def ops(self) -> tuple[str, ...]:
        return (self.id.split(" ")[0], *self.follow)

    def incident(self, context: dict[str, Any], door: str) -> str:
        return str(context["incident"]) if self.records_in_own and door != "step" else INC

    def args(self, context: dict[str, Any]) -> list[str]:
        return [*self.command(context), "--yes", "-q"] + ([] if self.records_in_own else ["--incident", INC])


def _accounts(lab: Lab, cli: Cli, tmp: Path) -> dict[str, Any]:
    pupils = students(lab, SCHOOLS[0], 12)
    for _id, login in pupils[:3]:
        log_in(lab, login)
    return {"ids": [i for i, _ in pupils]}


def _blocked_accounts(lab: Lab, cli: Cli, tmp: Path) -> dict[str, Any]:
    found = _accounts(lab, cli, tmp)
    lab.write_sql(
        f"UPDATE users SET blocked = 1 WHERE id IN ({','.join('?' * len(found['ids']))})", *found["ids"]
    )
    return found


def _logged_in(lab: Lab, cli: Cli, tmp: Path) -> dict[str, Any]:
    ids = []
    for uai in SCHOOLS:
        for uid, login in students(lab, uai, 3):
            log_in(lab, login)
            ids.append(uid)
    return {"ids": ids}


def _blocked_messaging(lab: Lab, cli: Cli, tmp: Path) -> dict[str, Any]:
    """Both schools cut by an earlier incident, INC-OLD, which the doors then lift."""
    cli.open_incidents("INC-OLD")
    cut = cli("messaging", "block", "--profile", "Student", *_schools(), "--yes", "--no-verify",
              "--incident", "INC-OLD", "-q")  # fmt: skip
    assert cut.exit_code == 0, cut.stderr
    return {"incident": "INC-OLD"}


def _threats(lab: Lab, cli: Cli, tmp: Path) -> dict[str, Any]:
    wave = played_wave(lab, senders=6, messages=40, schools=5, rate=0, noise=30, random_seed=3)
    saved = tmp / f"threat-{time.monotonic_ns()}.json"
    found = cli("messages", "search", "--like", wave["messages"][0], "--save", str(saved), "-q")
    assert found.exit_code == 0, found.stderr
    return {"saved": str(saved), "messages": wave["messages"]}


def _schools() -> list[str]:
    return [w for uai in SCHOOLS for w in ("--school", uai)]


def _yaml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _copies(lab: Lab, ids: list[str]) -> Any:
    marks = ",".join("?" * len(ids))
    return lab.sql(f"SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({marks})", *ids)


CASES = [
    Case(
        "accounts.block",
        _accounts,
        lambda c: ["accounts", "block", *c["ids"]],
        lambda c: f"op: block_accounts\n    with: {{accounts: {_yaml_list(c['ids'])}}}",
        lambda lab, c: (flags(lab, c["ids"]), live(lab, c["ids"])),
        ("--batch-size", "0", "--concurrency", "1"),
    ),
    Case(
        "accounts.unblock",
        _blocked_accounts,
        lambda c: ["accounts", "unblock", *c["ids"]],
        lambda c: f"op: unblock_accounts\n    with: {{accounts: {_yaml_list(c['ids'])}}}",
        lambda lab, c: flags(lab, c["ids"]),
        ("--batch-size", "0", "--concurrency", "1"),
    ),
    Case(
        "sessions.revoke",
        _accounts,
        lambda c: ["sessions", "revoke", *c["ids"]],
        lambda c: f"op: revoke_sessions\n    with: {{accounts: {_yaml_list(c['ids'])}}}",
        lambda lab, c: (flags(lab, c["ids"]), live(lab, c["ids"])),
        ("--concurrency", "1"),
    ),
    Case(
        "accounts.reset-password",
        _accounts,
        lambda c: ["accounts", "reset-password", *c["ids"], "--mode", "erase"],
        lambda c: f"op: reset_password\n    with: {{accounts: {_yaml_list(c['ids'])}, mode: erase}}",
        lambda lab, c: (flags(lab, c["ids"]), live(lab, c["ids"])),
        ("--concurrency", "1"),
    ),
    Case(
        "accounts.block-profile",
        _logged_in,
        lambda c: ["accounts", "block-profile", "--profile", "Student", *_schools()],
        lambda c: f"op: block_profile\n    with: {{schools: {_yaml_list(list(SCHOOLS))}, profile: Student}}",
        lambda lab, c: (flags(lab, c["ids"]), live(lab, c["ids"])),
        kill_at='"phase":"sending"',
        latency=300,
    ),
    Case(
        "messaging.block communication",
        lambda lab, cli, tmp: {},
        lambda c: ["messaging", "block", "--profile", "Student", *_schools()],
        lambda c: (
            f"op: block_messaging\n    with: {{schools: {_yaml_list(list(SCHOOLS))}, profile: Student}}"
        ),
        lambda lab, c: school_graph(lab),
        ("--concurrency", "1"),
    ),
    Case(
        "messaging.block roles and revoke",
        _logged_in,
        lambda c: [
            "messaging",
            "block",
            "--profile",
            "Student",
            *_schools(),
            "--method",
            "roles",
            "--revoke-sessions",
        ],
        lambda c: (
            f"op: block_messaging\n    with: {{schools: {_yaml_list(list(SCHOOLS))}, profile: Student, "
            "method: roles, revoke_sessions: true}"
        ),
        lambda lab, c: (school_graph(lab), live(lab, c["ids"]), flags(lab, c["ids"])),
        ("--concurrency", "1"),
        follow=("sessions.revoke",),
    ),
    Case(
        "messaging.unblock",
        _blocked_messaging,
        lambda c: ["messaging", "unblock", "--incident", c["incident"]],
        lambda c: f"op: unblock_messaging\n    with: {{incident: {c['incident']}}}",
        lambda lab, c: school_graph(lab),
        kill_at='"op":"messaging.unblock"',
        latency=150,
        records_in_own=True,
    ),
    Case(
        "messages.purge",
        _threats,
        lambda c: ["messages", "purge", "--from-search", c["saved"]],
        lambda c: f'op: purge\n    with: {{search: "{c["saved"]}"}}',
        lambda lab, c: _copies(lab, c["messages"]),
        kill_at='"phase":"sending"',
        latency=400,
    ),
]


def _profile(lab: Lab, cli: Cli) -> None:
    made = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore",
               lab.info["mailstore"], "--force")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)


def _fresh(lab: Lab, cli: Cli, tmp: Path, case: Case, door: str) -> dict[str, Any]:
    """A reset lab and a new home for one door: the doors must not see each other's records."""
    lab.reset()
    cli.setenv(PCNCTL_HOME=str(tmp / door / "state"), PCNCTL_CONFIG=str(tmp / door / "config.yaml"))
    _profile(lab, cli)
    context = case.setup(lab, cli, tmp)
    cli.open_incidents(INC)
    return context


def _through_command(lab: Lab, cli: Cli, case: Case, context: dict[str, Any], tmp: Path) -> int:
    return cli(*case.args(context)).exit_code


def _through_step(lab: Lab, cli: Cli, case: Case, context: dict[str, Any], tmp: Path) -> int:
    book = tmp / "door.yaml"
    book.write_text(
        f"version: 1\nname: door\ndescription: one step\nsteps:\n  - id: act\n    {case.step(context)}\n"
    )
    return cli("playbook", "run", str(book), "--incident", INC, "--approve-all", "-q").exit_code


def _through_kill(lab: Lab, cli: Cli, case: Case, context: dict[str, Any], tmp: Path) -> int:
    """The command as a process, killed once the journal shows the marker, then ``incident resume``."""
    incident = case.incident(context, "killed")
    _kill_when([*case.args(context), *case.slow], incident, case.kill_at, case.latency, lab)
    mine = [records for key, records in ends(incident).items() if key.split(" ")[0] == case.ops[0]]
    assert mine and not any(mine), "the kill must land before the run's end"
    return cli("incident", "resume", incident, "-q").exit_code


DOORS = {"command": _through_command, "step": _through_step, "killed and resumed": _through_kill}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_door_ends_the_same_way(lab: Lab, cli: Cli, tmp_path: Path, case: Case) -> None:
    seen = {}
    for door, through in DOORS.items():
        context = _fresh(lab, cli, tmp_path, case, door.replace(" ", "-"))
        code = through(lab, cli, case, context, tmp_path)
        done = followups(case.incident(context, door))
        seen[door] = (code, case.state(lab, context), {op: v for op, v in done.items() if op in case.ops})
    reference = seen["command"]
    assert reference[0] == 0, reference
    for door, outcome in seen.items():
        assert outcome[0] == reference[0], f"{door}: exit {outcome[0]}, the command's {reference[0]}"
        assert outcome[1] == reference[1], f"{door}: the lab's state differs from the command's"
        assert outcome[2] == reference[2], f"{door}: follow-ups {outcome[2]} != {reference[2]}"


# -- the registry ------------------------------------------------------------------------------------------


def test_every_operation_undoes_or_says_why_and_states_its_limits() -> None:
    """D7 and the registry: each operation states its cap, its pace and its undo, each with why."""
    from pcnctl.ops.registry import OPERATIONS

    assert len(OPERATIONS) >= 10
    for name, op in OPERATIONS.items():
        assert op.name == name and op.labels.en and op.labels.fr
        assert op.cap.why and op.cap.unit and op.pace.why and 1 <= op.pace.concurrency <= 64, name
        assert op.undo.why, f"{name} neither undoes nor says why it cannot"
        if op.undo.inverse is not None:
            assert op.undo.inverse in OPERATIONS, f"{name}: its inverse {op.undo.inverse} is not registered"


# -- D1 to D6, through the doors ----------------------------------------------------------------------------


def _group(lab: Lab, uai: str) -> str:
    return str(lab.sql("SELECT id FROM structures WHERE uai = ?", uai)[0][0])


@pytest.mark.parametrize("status", [500, 403])
def test_d1_a_profile_block_with_a_school_failing_is_not_done(admc: Cli, lab: Lab, status: int) -> None:
    """Three schools, the second refusing: the run is partial, exit 6, the failure named."""
    admc.open_incidents("INC-D1")
    uais = [r[0] for r in lab.sql("SELECT uai FROM structures ORDER BY uai LIMIT 3")]
    lab.knobs(fail_match=f"/directory/structure/{_group(lab, uais[1])}/profile/block", fail_status=status)
    where = [w for u in uais for w in ("--school", u)]
    result = admc(
        "accounts", "block-profile", "--profile", "Student", *where, "--yes", "--incident", "INC-D1"
    )
    lab.knobs(fail_match="", fail_status=500)
    assert result.exit_code == 6, result.stderr
    assert "failed in 1" in result.stderr and uais[1] in result.stderr
    assert "done in 3" not in result.stderr


def test_d2_resume_reports_failures_and_goes_on_with_the_other_runs(admc: Cli, lab: Lab) -> None:
    """Two interrupted runs: an account block whose calls are refused, then a banner. Resume exits 6 and
    still posts the banners."""
    from pcnctl.ops.context import RunContext
    from pcnctl.state.incidents import create_incident
    from pcnctl.state.store import StateStore

    pupils = [i for i, _ in students(lab, SCHOOLS[0], 2)]
    store = StateStore(home())
    driver = driver_for("lab")
    schools = sorted(driver.list_schools(), key=lambda s: s.uai)[:2]
    with RunContext.create(driver, create_incident(store, "INC-D2"), store) as ctx:
        ctx.start("accounts.block", {}, [{"key": p, "blocked": False} for p in pupils])
        params = {"title": "Info", "message": "Ne les ouvrez pas", "profiles": ["Teacher"]}
        ctx.start("banners.post", params, [{"key": s.id, "uai": s.uai} for s in schools])  # type: ignore[arg-type]
    store.close()
    lab.knobs(fail_match="block", fail_status=403)  # the account calls, batched or one by one
    resumed = admc("incident", "resume", "INC-D2")
    lab.knobs(fail_match="", fail_status=500)
    assert resumed.exit_code == 6, resumed.stderr
    posted = dict(lab.sql("SELECT structure_id, count(*) FROM flashmsg GROUP BY structure_id"))
    assert [posted.get(s.id, 0) for s in schools] == [1, 1]


def _kill_when(
    command: list[str], incident: str, marker: str, latency: int, lab: Lab, after: float = 0.0
) -> None:
    """Run a command as a process and kill it ``after`` seconds once its journal shows ``marker``."""
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    lab.knobs(latency_ms=latency)
    proc = subprocess.Popen([sys.executable, "-m", "pcnctl", *command], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if marker in state.journal_text(home(), incident):
            time.sleep(after)
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lab.knobs(latency_ms=0)


def test_d3_a_killed_roles_block_revokes_and_verifies_once_resumed(admc: Cli, lab: Lab) -> None:
    """Killed after its first school, a roles block with --revoke-sessions is finished by incident
    resume: every pupil's live session ends and the block is verified."""
    admc.open_incidents("INC-D3")
    pupils = []
    for uai in SCHOOLS:
        for uid, login in students(lab, uai, 3):
            log_in(lab, login)
            pupils.append(uid)
    command = ["messaging", "block", "--profile", "Student", *_schools(), "--method", "roles",
               "--revoke-sessions", "--yes", "--incident", "INC-D3", "-q", "--concurrency", "1"]  # fmt: skip
    _kill_when(command, "INC-D3", '"phase":"done"', 60, lab)
    assert live(lab, pupils) > 0  # killed before the revoke
    resumed = admc("incident", "resume", "INC-D3")
    assert resumed.exit_code == 0, resumed.stderr
    assert live(lab, pupils) == 0
    assert "verification" in resumed.stderr


def test_d3_a_killed_playbook_block_revokes_once_resumed(admc: Cli, lab: Lab, tmp_path: Path) -> None:
    admc.open_incidents("INC-D3P")
    pupils = []
    for uai in SCHOOLS:
        for uid, login in students(lab, uai, 3):
            log_in(lab, login)
            pupils.append(uid)
    book = tmp_path / "roles.yaml"
    book.write_text(
        "version: 1\nname: roles\ndescription: roles block\nsteps:\n  - id: cut\n    op: block_messaging\n"
        f"    with: {{schools: {_yaml_list(list(SCHOOLS))}, profile: Student, method: roles, "
        "revoke_sessions: true}\n"
    )
    command = ["playbook", "run", str(book), "--incident", "INC-D3P", "--approve-all", "-q"]
    _kill_when(command, "INC-D3P", '"phase":"done"', 60, lab)
    resumed = admc("playbook", "resume", "INC-D3P", "--approve-all")
    assert resumed.exit_code == 0, resumed.stderr
    assert live(lab, pupils) == 0


def test_d5_a_playbook_purge_that_fails_stops_the_playbook_with_exit_6(
    lab: Lab, cli: Cli, tmp_path: Path
) -> None:
    """Purge calls answering 500: the step fails, the playbook stops before its banner, exit 6."""
    _profile(lab, cli)
    cli.open_incidents("INC-D5")
    context = _threats(lab, cli, tmp_path)
    book = tmp_path / "purge.yaml"
    book.write_text(
        "version: 1\nname: purge\ndescription: purge then tell\nsteps:\n"
        f'  - id: purge\n    op: purge\n    with: {{search: "{context["saved"]}"}}\n'
        f'  - id: tell\n    op: notify\n    with: {{schools: ["{SCHOOLS[0]}"], message: purged}}\n'
    )
    lab.knobs(fail_match="/conversation/api/purge/messages", fail_status=500)
    result = cli("playbook", "run", str(book), "--incident", "INC-D5", "--approve-all")
    lab.knobs(fail_match="", fail_status=500)
    assert result.exit_code == 6, result.stderr
    assert "step 'purge' failed" in result.stderr
    assert lab.sql("SELECT count(*) FROM flashmsg") == [(0,)]
    assert _copies(lab, context["messages"])[0][0] > 0


def test_d6_rollback_after_a_kill_restores_a_half_cut_school(admc: Cli, lab: Lab) -> None:
    """Killed while a school is half cut, rolled back at once (no resume): every school exactly as
    before; a later resume of the rolled-back incident cuts nothing again."""
    admc.open_incidents("INC-D6")
    before = school_graph(lab)
    command = ["messaging", "block", "--profile", "Student", *_schools(), "--yes", "--incident", "INC-D6",
               "-q", "--no-verify", "--concurrency", "1"]  # fmt: skip
    _kill_when(command, "INC-D6", '"phase":"sending"', 80, lab, after=0.7)  # mid-school
    time.sleep(0.3)  # the lab finishes the calls it had received
    assert school_graph(lab) != before  # some groups were cut
    undone = admc("rollback", "INC-D6", "--yes")
    assert undone.exit_code == 0, undone.stderr
    assert school_graph(lab) == before
    again = admc("incident", "resume", "INC-D6")
    assert again.exit_code == 0 and "nothing left to resume" in again.stderr
    assert school_graph(lab) == before
