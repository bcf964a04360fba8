"""Exposure: who received the threat and who opened it before the purge, against the lab's own truth.

A wave is played through the lab's real send route; a few recipients then open their copy through the
lab's real read route (``GET /conversation/api/messages/:id``, which marks the copy read as the
platform's ``SqlConversationService.get`` does). The lab's ``usermessages.unread`` just before the purge is
the truth; the evidence taken by the purge, the incident report, the per-school Excel files and the
mailstore read live (what the watcher calls) must all say the same. Also on a real PostgreSQL mailstore.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openpyxl import load_workbook

from pcnctl.forensics import exposure
from pcnctl.forensics.exposure import Copy, Status
from pcnctl.forensics.mailstore import Mailstore
from pcnctl.lab.pgserver import Postgres
from tests import pg
from tests.conftest import Cli, Lab, played_wave


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


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="pcnctl-pg-exposure-"))
    server = pg.start(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def threats(wave: dict[str, Any]) -> list[str]:
    return [*wave["messages"], *wave["scheduled"]]


def marks(ids: list[str]) -> str:
    return ",".join("?" * len(ids))


def copies(lab: Lab, ids: list[str]) -> list[tuple[str, str, int]]:
    """(holder, message, unread) of every recipient's copy: the sender's own copy is not a recipient's."""
    rows = lab.sql(
        "SELECT um.user_id, um.message_id, um.unread FROM conversation.usermessages um"
        f" JOIN conversation.messages m ON m.id = um.message_id WHERE um.message_id IN ({marks(ids)})"
        ' AND um.user_id <> m."from" ORDER BY um.message_id, um.user_id',
        *ids,
    )
    return [(str(u), str(m), int(n)) for u, m, n in rows]


def schools_of(lab: Lab, users: set[str]) -> dict[str, list[str]]:
    ids = sorted(users)
    rows = lab.sql(
        "SELECT us.user_id, s.uai FROM user_structures us JOIN structures s ON s.id = us.structure_id"
        f" WHERE us.user_id IN ({marks(ids)})",
        *ids,
    )
    out: dict[str, list[str]] = {}
    for user, uai in rows:
        out.setdefault(user, []).append(uai)
    return out


def truth(lab: Lab, ids: list[str]) -> dict[str, dict[str, int]]:
    """Per school, from the lab's tables: recipients (people), and those with a copy marked read."""
    held = copies(lab, ids)
    where = schools_of(lab, {u for u, _m, _n in held})
    people: dict[str, set[str]] = {}
    opened: dict[str, set[str]] = {}
    for user, _message, unread in held:
        for uai in where.get(user, [""]):
            people.setdefault(uai, set()).add(user)
            if not unread:
                opened.setdefault(uai, set()).add(user)
    return {u: {"recipients": len(p), "opened": len(opened.get(u, ()))} for u, p in people.items()}


def read_as(lab: Lab, user_id: str, message_id: str) -> dict[str, Any]:
    """The recipient opens the message through the lab's real read route, in a browser's session."""
    login = lab.sql("SELECT login FROM users WHERE id = ?", user_id)[0][0]
    s = requests.Session()
    r = s.post(
        lab.url + "/auth/login", data={"email": login, "password": lab.password}, allow_redirects=False
    )
    assert r.status_code == 302, r.text[:200]
    got = s.get(f"{lab.url}/conversation/api/messages/{message_id}", timeout=10)
    assert got.status_code == 200, got.text[:200]
    body: dict[str, Any] = got.json()
    return body


def open_some(lab: Lab, wave: dict[str, Any]) -> list[tuple[str, str]]:
    """Five recipients, in different schools where the wave allows, each open one threat copy."""
    held = copies(lab, wave["messages"])
    where = schools_of(lab, {u for u, _m, _n in held})
    chosen: dict[str, tuple[str, str]] = {}  # school -> (recipient, message): one per school
    for user, message, _unread in held:
        chosen.setdefault((where.get(user) or [""])[0], (user, message))
    opened = list(chosen.values())[:5]
    assert len(opened) >= 2
    for user, message in opened:
        answer = read_as(lab, user, message)
        assert answer["id"] == message and answer["unread"] is False  # this read just marked it
    return opened


def test_the_read_route_marks_the_copy_read_and_the_thread(lab: Lab, wave: dict[str, Any]) -> None:
    user, message, unread = copies(lab, wave["messages"])[0]
    assert unread == 1  # a copy is delivered unread
    thread = lab.sql("SELECT thread_id FROM conversation.messages WHERE id = ?", message)[0][0]
    before = lab.sql(
        "SELECT nb_unread FROM conversation.userthreads WHERE user_id = ? AND thread_id = ?", user, thread
    )[0][0]
    read_as(lab, user, message)
    read_as(lab, user, message)  # a second read changes nothing more
    assert lab.sql(
        "SELECT unread FROM conversation.usermessages WHERE user_id = ? AND message_id = ?", user, message
    ) == [(0,)]
    after = lab.sql(
        "SELECT nb_unread FROM conversation.userthreads WHERE user_id = ? AND thread_id = ?", user, thread
    )[0][0]
    assert after == before - 1


def report_exposure(ops: Cli, incident: str) -> dict[str, dict[str, Any]]:
    result = ops("incident", "report", incident, "-o", "json", "--offline")
    assert result.exit_code == 0, result.stderr
    return {p["uai"]: p for p in json.loads(result.stdout)["exposure"]}


def purge(ops: Cli, wave: dict[str, Any], tmp_path: Path, incident: str) -> Path:
    saved = tmp_path / "threat.json"
    assert ops("messages", "search", "--like", wave["messages"][0], "--save", str(saved)).exit_code == 0
    ops.open_incidents(incident)
    done = ops("messages", "purge", "--from-search", str(saved), "--incident", incident, "--yes")
    assert done.exit_code == 0, done.stderr
    return saved


def test_exposure_after_the_purge_equals_the_lab_before_it(
    ops: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    opened = open_some(lab, wave)
    expected = truth(lab, threats(wave))
    assert sum(s["opened"] for s in expected.values()) >= len({u for u, _m in opened})
    purge(ops, wave, tmp_path, "EXP-1")
    assert copies(lab, threats(wave)) == []  # the flags are gone from the platform: only evidence says
    seen = report_exposure(ops, "EXP-1")
    assert set(seen) == set(expected)
    for uai, want in expected.items():
        got = seen[uai]
        assert (got["recipients"], got["opened"]) == (want["recipients"], want["opened"]), uai
        assert got["purged_unread"] == want["recipients"] - want["opened"]  # everyone else, all purged
        assert got["unread"] == got["unknown"] == 0 and got["read_at"]
    home = Path(os.environ["PCNCTL_HOME"]) / "incidents" / "EXP-1" / "evidence"
    bundle = next(p for p in home.iterdir() if not p.name.startswith("."))
    records = [json.loads(line) for line in (bundle / "messages.jsonl").read_text().splitlines()]
    assert all(r["collected_at"] and all("unread" in b for b in r["mailboxes"]) for r in records)
    verified = ops("incident", "verify", "EXP-1")
    assert verified.exit_code == 0, verified.stderr  # the flags are part of the hashed evidence


def test_the_report_shows_exposure_per_school_in_both_languages(
    ops: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    open_some(lab, wave)
    expected = truth(lab, threats(wave))
    purge(ops, wave, tmp_path, "EXP-2")
    names = dict(lab.sql("SELECT uai, name FROM structures"))
    fr = ops("incident", "report", "EXP-2", "--lang", "fr")
    en = ops("incident", "report", "EXP-2")
    assert "## Qui a ouvert la menace" in fr.stdout and "## Who opened the threat" in en.stdout
    for uai, want in expected.items():
        assert f"### {names[uai]} ({uai})" in fr.stdout
        n, o = want["recipients"], want["opened"]
        # French: 0 and 1 take the singular; English: 1 only.
        assert f"- {n} destinataire{'s' if n > 1 else ''}\n" in fr.stdout
        assert f"- {o} l'{'ont' if o > 1 else 'a'} ouvert avant la suppression\n" in fr.stdout
        assert f"- {n} recipient{'s' if n != 1 else ''}\n" in en.stdout
        assert f"- {o} opened it before the purge\n" in en.stdout


def test_the_schools_get_their_list_of_people(
    ops: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    opened = open_some(lab, wave)
    expected = truth(lab, threats(wave))
    purge(ops, wave, tmp_path, "EXP-3")
    out = tmp_path / "exposition"
    made = ops("incident", "exposure", "EXP-3", "--out", str(out), "-o", "json")
    assert made.exit_code == 0, made.stderr
    rows = {r["uai"]: r for r in made.json()}
    assert set(rows) == {u for u in expected if u}
    for uai, row in rows.items():
        assert (row["recipients"], row["opened"]) == (expected[uai]["recipients"], expected[uai]["opened"])
        assert row["named"] == row["recipients"]  # the directory named every one of them
        assert os.stat(row["file"]).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out.iterdir()) == sorted(f"exposition-{u}.xlsx" for u in rows)
    user, _message = opened[0]
    uai = schools_of(lab, {user})[user][0]
    first, last, login = lab.sql("SELECT first_name, last_name, login FROM users WHERE id = ?", user)[0]
    ws = load_workbook(out / f"exposition-{uai}.xlsx")["Destinataires"]
    table = [list(r) for r in ws.iter_rows(values_only=True)]
    headings = table[0]
    people = {r[headings.index("Identifiant ENT")]: dict(zip(headings, r, strict=True)) for r in table[1:]}
    me = people[login]
    assert me["Nom"] == f"{last} {first}" and me["A ouvert la menace"] == "oui"
    assert me["Situation"] == "ouverte avant la suppression" and me["Menaces ouvertes"] == 1
    assert sum(1 for p in people.values() if p["A ouvert la menace"] == "oui") == expected[uai]["opened"]
    assert {p["Situation"] for p in people.values() if p["A ouvert la menace"] == "non"} <= {
        "jamais ouverte : supprimée sans avoir été lue"
    }
    assert all(isinstance(p[headings[8]], type(me[headings[8]])) for p in people.values())  # dates


def workbook_people(path: Path) -> dict[str, dict[str, Any]]:
    """The rows of a school's file, by ENT login."""
    ws = load_workbook(path)["Destinataires"]
    table = [list(r) for r in ws.iter_rows(values_only=True)]
    headings = table[0]
    return {r[headings.index("Identifiant ENT")]: dict(zip(headings, r, strict=True)) for r in table[1:]}


def send_to_pupils(lab: Lab, subject: str = "Alerte zqxv") -> tuple[str, str, list[str]]:
    """A member of staff writes to a school's pupils through the lab's real send route: (UAI, message id,
    the pupils reached)."""
    uai, group, staff = lab.sql(
        "SELECT s.uai, g.id, u.id FROM structures s JOIN groups g ON g.structure_id = s.id"
        " AND g.profile = 'Student' AND g.sub_type = 'StructureGroup' JOIN user_structures us"
        " ON us.structure_id = s.id JOIN users u ON u.id = us.user_id AND u.profile = 'Personnel'"
        " WHERE u.id NOT IN (SELECT user_id FROM functions) AND s.kind = 'college'"
        " ORDER BY s.uai, u.id LIMIT 1"
    )[0]
    login = lab.sql("SELECT login FROM users WHERE id = ?", staff)[0][0]
    s = requests.Session()
    r = s.post(
        lab.url + "/auth/login", data={"email": login, "password": lab.password}, allow_redirects=False
    )
    assert r.status_code == 302
    sent = s.post(
        f"{lab.url}/conversation/send",
        json={"subject": subject, "body": "<p>zqxv</p>", "to": [group], "cc": [], "cci": []},
        headers={"X-XSRF-TOKEN": s.cookies["XSRF-TOKEN"]},
        timeout=10,
    )
    assert sent.status_code == 200, sent.text[:200]
    message = str(sent.json()["id"])
    pupils = [u for u, _m, _n in copies(lab, [message])]
    return uai, message, pupils


def test_a_pupils_row_names_their_class_and_relatives(ops: Cli, lab: Lab, tmp_path: Path) -> None:
    """The list a school needs to call families: each pupil with their class and their relatives as the
    directory's admin list gives them; whether they opened it (one pupil did, through the read route)."""
    uai, message, pupils = send_to_pupils(lab)
    read_as(lab, pupils[0], message)
    saved = tmp_path / "sent.json"
    assert (
        ops("messages", "search", "--subject", "zqxv", "--since", "1h", "--save", str(saved)).exit_code == 0
    )
    ops.open_incidents("EXP-6")
    kept = ops("messages", "evidence", "--from-search", str(saved), "--incident", "EXP-6")
    assert kept.exit_code == 0, kept.stderr
    out = tmp_path / "exposition"
    made = ops("incident", "exposure", "EXP-6", "--out", str(out), "--school", uai.lower(), "-o", "json")
    assert made.exit_code == 0, made.stderr
    assert [(r["uai"], r["recipients"], r["opened"]) for r in made.json()] == [(uai, len(pupils), 1)]
    people = workbook_people(out / f"exposition-{uai}.xlsx")
    opener = lab.sql("SELECT login FROM users WHERE id = ?", pupils[0])[0][0]
    assert people[opener]["A ouvert la menace"] == "oui"
    waiting = {p["Situation"] for login, p in people.items() if login != opener}
    assert waiting == {"pas ouverte lors de la collecte des preuves ; pas encore supprimée"}
    pupils_with_parents(lab, people)


def pupils_with_parents(lab: Lab, people: dict[str, dict[str, Any]]) -> None:
    """A pupil's class and relatives, as the lab's directory holds them, are in the row."""
    checked = 0
    for login, row in people.items():
        if row["Profil"] != "Élève":
            continue
        uid = lab.sql("SELECT id FROM users WHERE login = ?", login)[0][0]
        relatives = lab.sql(
            "SELECT u.first_name, u.last_name FROM related r JOIN users u ON u.id = r.relative_id"
            " WHERE r.child_id = ? ORDER BY u.last_name, u.first_name",
            uid,
        )
        classes = lab.sql(
            "SELECT DISTINCT c.name FROM group_members gm JOIN groups g ON g.id = gm.group_id"
            " JOIN classes c ON c.id = g.class_id WHERE gm.user_id = ? AND g.type = 'ProfileGroup'",
            uid,
        )
        assert (row["Responsables (annuaire)"] or "") == "; ".join(f"{f} {n}" for f, n in relatives)
        assert set(filter(None, (row["Classe"] or "").split(", "))) == {c for (c,) in classes}
        checked += bool(relatives)
    assert checked, "no pupil with relatives among the recipients: the check would prove nothing"


def test_the_live_read_is_what_the_watcher_gets(lab: Lab, wave: dict[str, Any]) -> None:
    """Before any purge, exposure read from the mailstore (no evidence) equals the lab's truth."""
    open_some(lab, wave)
    expected = truth(lab, threats(wave))
    held = copies(lab, threats(wave))
    where = schools_of(lab, {u for u, _m, _n in held})
    store = Mailstore(str(lab.info["mailstore"]))
    try:
        live = exposure.from_mailstore(store, threats(wave), where)
    finally:
        store.close()
    assert {s.uai: (len(s.recipients), s.count(Status.OPENED)) for s in live} == {
        u: (e["recipients"], e["opened"]) for u, e in expected.items()
    }
    assert all(s.count(Status.UNREAD) == len(s.recipients) - s.count(Status.OPENED) for s in live)


def test_evidence_from_postgresql_records_the_same_flags(
    ops: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path, postgres: Postgres
) -> None:
    import psycopg

    from pcnctl.lab.pgmirror import copy_from_sqlite

    open_some(lab, wave)
    expected = truth(lab, threats(wave))
    with psycopg.connect(postgres.dsn()) as conn:
        copy_from_sqlite(lab.data_dir / "conversation.sqlite", conn)
    saved = tmp_path / "threat.json"
    assert ops("messages", "search", "--like", wave["messages"][0], "--save", str(saved)).exit_code == 0
    ops.open_incidents("EXP-PG")
    kept = ops("messages", "evidence", "--from-search", str(saved), "--incident", "EXP-PG",
               "--mailstore", postgres.dsn())  # fmt: skip
    assert kept.exit_code == 0, kept.stderr
    seen = report_exposure(ops, "EXP-PG")
    for uai, want in expected.items():
        got = seen[uai]
        assert (got["recipients"], got["opened"]) == (want["recipients"], want["opened"])
        # Preserved, not purged: those who had not opened it still can.
        assert got["unread"] == want["recipients"] - want["opened"] and got["purged_unread"] == 0


def test_bad_exposure_requests_are_refused_before_anything(
    ops: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    purge(ops, wave, tmp_path, "EXP-4")
    out = tmp_path / "nothing-here"
    other = ops("incident", "exposure", "EXP-4", "--out", str(out), "--school", "0000000A")
    assert other.exit_code == 2 and "0000000A is not one of the incident's schools" in other.stderr
    zone = ops("incident", "exposure", "EXP-4", "--out", str(out), "--tz", "Mars/Olympus")
    assert zone.exit_code == 2 and "unknown time zone" in zone.stderr
    missing = ops("incident", "exposure", "NOPE", "--out", str(out))
    assert missing.exit_code != 0 and "Traceback" not in missing.stderr
    assert not out.exists()


def test_an_adml_exports_its_own_schools_only(
    ops: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    purge(ops, wave, tmp_path, "EXP-5")
    adml = lab.info["accounts"]["adml"][0]
    assert ops("profile", "add", "adml", "--url", lab.url, "--login", adml["login"]).exit_code == 0
    outside = sorted(set(wave["schools"]) - set(adml["schools"]))[0]
    out = tmp_path / "adml"
    refused = ops("incident", "exposure", "EXP-5", "--out", str(out), "--school", outside, "-p", "adml")
    assert refused.exit_code == 7 and f"school {outside} is not in this profile's directory" in refused.stderr
    assert not out.exists()
    mine = ops("incident", "exposure", "EXP-5", "--out", str(out), "-p", "adml", "-o", "json")
    assert mine.exit_code == 0, mine.stderr
    assert {r["uai"] for r in mine.json()} == set(wave["schools"]) & set(adml["schools"])
    assert "Not in this profile's directory" in mine.stderr


def copy(message: str, user: str, unread: bool | None, schools: tuple[str, ...] = ("0750001A",)) -> Copy:
    return Copy(message, user, unread, "2024-03-27T06:09:00Z", "2024-03-27T06:00:00Z", schools)


def test_one_opened_copy_makes_an_opened_threat() -> None:
    """Per person, the worst of their copies; a person of two schools counts in each; an unrecorded flag
    is unknown, never unread; unread is purged-unread only when every copy they held was purged."""
    found = exposure.by_school(
        [
            copy("m1", "alice", True),
            copy("m2", "alice", False),  # opened one of two: opened
            copy("m1", "bob", True, ("0750001A", "0750002B")),  # unread, both purged
            copy("m2", "bob", True, ("0750001A", "0750002B")),
            copy("m1", "carol", None),  # an older bundle: unknown
            copy("m3", "dan", True),  # m3 not purged: unread, may still open it
            copy("m1", "eve", True, ()),  # school not known
        ],
        purged={"m1", "m2"},
    )
    schools = {s.uai: s for s in found}
    assert set(schools) == {"", "0750001A", "0750002B"}
    first = {r.user_id: r.status for r in schools["0750001A"].recipients}
    assert first == {
        "alice": Status.OPENED,
        "bob": Status.PURGED_UNREAD,
        "carol": Status.UNKNOWN,
        "dan": Status.UNREAD,
    }
    assert schools["0750001A"].copies == 6 and schools["0750002B"].count(Status.PURGED_UNREAD) == 1
    assert [r.user_id for r in schools[""].recipients] == ["eve"]
