"""The lab's conversation module does what the platform does on the paths pcnctl's levers do not close:
replies skip visibility, a purge leaves the text behind until the orphan job (and some of it for good),
scheduled messages reach their recipients at their date. Over real HTTP; the stores are read back.

Each test checks the lab's answers against the route's contract, and its stores against the contract's
``effects`` (``tests/contracts/conversation/``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from pcnctl.lab.pgserver import Postgres
from tests import pg
from tests.conftest import Lab
from tests.contract import load

SEND = load("conversation/send-post")
PURGE = load("conversation/api-purge-messages-post")
ORPHANS = load("conversation/internal-purge-orphans-post")
THREADS = load("conversation/threads-list-get")
DRAFT = load("conversation/draft-post")


def login(lab: Lab, user_id: str, *, mfa: bool = False) -> requests.Session:
    """A browser's cookie session for the user, with the anti-CSRF header (and MFA done for an admin)."""
    name = lab.sql("SELECT login FROM users WHERE id = ?", user_id)[0][0]
    s = requests.Session()
    r = s.post(lab.url + "/auth/login", data={"email": name, "password": lab.password}, allow_redirects=False)
    assert r.status_code == 302, r.text[:200]
    s.headers["X-XSRF-TOKEN"] = s.cookies["XSRF-TOKEN"]
    if mfa:
        assert s.post(lab.url + "/auth/user/mfa/code", json={"key": lab.mfa_code}, timeout=5).ok
    return s


def admc(lab: Lab) -> requests.Session:
    uid = lab.sql("SELECT user_id FROM functions WHERE code = 'SUPER_ADMIN'")[0][0]
    return login(lab, uid, mfa=True)


def send(s: requests.Session, lab: Lab, body: dict[str, object], query: str = "") -> requests.Response:
    payload = {"subject": "s", "body": "<p>b</p>", "cc": [], "cci": [], **body}
    return s.post(f"{lab.url}/conversation/send{query}", json=payload, allow_redirects=False, timeout=10)


@dataclass(frozen=True)
class School:
    """A collège of the seed: its student group, a member of staff who writes to it, a pupil, a teacher."""

    id: str
    students: str  # the structure's Student group
    staff: str  # a Personnel account (no admin function) of the structure's Personnel group
    pupil: str
    teacher: str


def college(lab: Lab) -> School:
    """The first collège whose pupils hold the Messagerie role (a sub-structure's do not)."""
    sid = lab.sql(
        "SELECT s.id FROM structures s JOIN groups g ON g.structure_id = s.id AND g.profile = 'Student'"
        " AND g.sub_type = 'StructureGroup' JOIN role_groups rg ON rg.group_id = g.id"
        " WHERE s.kind = 'college' ORDER BY s.uai LIMIT 1"
    )[0][0]

    def group(profile: str) -> str:
        return str(
            lab.sql(
                "SELECT id FROM groups WHERE structure_id = ? AND profile = ?"
                " AND sub_type = 'StructureGroup'",
                sid,
                profile,
            )[0][0]
        )

    def plain(group_id: str) -> list[str]:
        """The group's members who hold no admin function."""
        return [
            r[0]
            for r in lab.sql(
                "SELECT gm.user_id FROM group_members gm WHERE gm.group_id = ? AND NOT EXISTS"
                " (SELECT 1 FROM functions f WHERE f.user_id = gm.user_id) ORDER BY gm.user_id",
                group_id,
            )
        ]

    pupil = plain(group("Student"))[0]
    klass = lab.sql(
        "SELECT g.class_id FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE gm.user_id = ?"
        " AND g.class_id IS NOT NULL",
        pupil,
    )[0][0]
    teacher = lab.sql(
        "SELECT gm.user_id FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE g.class_id = ?"
        " AND g.profile = 'Teacher' ORDER BY 1",
        klass,
    )[0][0]
    return School(sid, group("Student"), plain(group("Personnel"))[0], pupil, teacher)


def cut(lab: Lab, admin: requests.Session, user_id: str) -> None:
    """Cut every group the user writes through, with the platform's routes: the group's relations, then
    its members' link (what a messaging block of the pupil's profile does to his groups)."""
    for (gid,) in lab.sql(
        "SELECT g.id FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE gm.user_id = ?"
        " AND g.member_in = 1",
        user_id,
    ):
        for (end,) in lab.sql("SELECT end_id FROM communique WHERE start_id = ?", gid):
            admin.delete(f"{lab.url}/communication/group/{gid}/relations/{end}", timeout=10)
        assert admin.delete(f"{lab.url}/communication/group/{gid}/users", timeout=10).status_code == 200


def copies(lab: Lab, message_id: str) -> set[str]:
    return {
        u
        for (u,) in lab.sql("SELECT user_id FROM conversation.usermessages WHERE message_id = ?", message_id)
    }


def members(lab: Lab, group_id: str) -> set[str]:
    return {u for (u,) in lab.sql("SELECT user_id FROM group_members WHERE group_id = ?", group_id)}


# -- replies -----------------------------------------------------------------------------------------------


def announced(lab: Lab) -> tuple[School, str]:
    """The school's staff writes to all its pupils: the group message every pupil now holds."""
    school = college(lab)
    r = send(login(lab, school.staff), lab, {"subject": "Information vie scolaire", "to": [school.students]})
    SEND.check_response(r)
    assert r.status_code == 200 and school.pupil in copies(lab, r.json()["id"])
    return school, r.json()["id"]


def test_a_reply_to_all_passes_a_communication_cut_and_reaches_every_member(lab: Lab) -> None:
    school, parent = announced(lab)
    cut(lab, admc(lab), school.pupil)
    pupil = login(lab, school.pupil)
    fresh = send(pupil, lab, {"to": [school.teacher]})
    SEND.check_response(fresh)
    assert fresh.status_code == 401  # the cut holds for a new message
    reply = send(pupil, lab, {"to": [school.staff, school.students]}, f"?In-Reply-To={parent}")
    SEND.check_response(reply)
    assert reply.status_code == 200
    everyone = members(lab, school.students) | {school.staff}
    assert reply.json()["sent"] == len(everyone)  # the pupil, a member, is counted as the platform does
    assert copies(lab, reply.json()["id"]) == everyone  # each member a copy, the sender's own included
    SEND.effect("conversation.usermessages", "insert")


def test_a_reply_keeps_its_parent_and_thread_and_reads_the_parents_copy(lab: Lab) -> None:
    school, parent = announced(lab)
    before = lab.sql(
        "SELECT unread FROM conversation.usermessages WHERE user_id = ? AND message_id = ?",
        school.pupil,
        parent,
    )
    reply = send(
        login(lab, school.pupil), lab, {"to": [school.staff, school.students]}, f"?In-Reply-To={parent}"
    )
    assert reply.status_code == 200 and before == [(1,)]
    row = lab.sql("SELECT parent_id, thread_id FROM conversation.messages WHERE id = ?", reply.json()["id"])[
        0
    ]
    thread = lab.sql("SELECT thread_id FROM conversation.messages WHERE id = ?", parent)[0][0]
    # The only person added is the replier, reached through the group the parent named: same thread.
    assert row == (parent, thread) and reply.json()["thread_id"] == thread
    assert lab.sql(
        "SELECT unread FROM conversation.usermessages WHERE user_id = ? AND message_id = ?",
        school.pupil,
        parent,
    ) == [(0,)]
    SEND.effect("conversation.usermessages", "update", "In-Reply-To")
    subject = lab.sql("SELECT subject FROM conversation.threads WHERE id = ?", thread)[0][0]
    assert subject == "s"  # the reply in the thread rewrote the thread's subject


def test_a_reply_needs_a_copy_of_the_parent(lab: Lab) -> None:
    school, parent = announced(lab)
    outsider = lab.sql(
        "SELECT u.id FROM users u JOIN user_structures us ON us.user_id = u.id WHERE us.structure_id <> ?"
        " AND u.profile = 'Student' ORDER BY u.id LIMIT 1",
        school.id,
    )[0][0]
    r = send(login(lab, outsider), lab, {"to": [school.students]}, f"?In-Reply-To={parent}")
    SEND.check_response(r)
    assert r.status_code == 401 and lab.sql(
        'SELECT count(*) FROM conversation.messages WHERE "from" = ?', outsider
    ) == [(0,)]


def test_a_draft_of_ones_own_opens_every_recipient_to_a_reply(lab: Lab) -> None:
    """Saving a draft checks nobody; a reply to that draft skips the draft's people: the cut pupil reaches
    another school's whole student group."""
    school, _parent = announced(lab)
    cut(lab, admc(lab), school.pupil)
    far = lab.sql(
        "SELECT id FROM groups WHERE structure_id <> ? AND profile = 'Student'"
        " AND sub_type = 'StructureGroup' ORDER BY id LIMIT 1",
        school.id,
    )[0][0]
    pupil = login(lab, school.pupil)
    assert send(pupil, lab, {"to": [far]}).status_code == 401
    draft = pupil.post(f"{lab.url}/conversation/draft", json={"subject": "d", "to": [far]}, timeout=10)
    DRAFT.check_response(draft)
    assert draft.status_code == 201
    reply = send(pupil, lab, {"to": [far]}, f"?In-Reply-To={draft.json()['id']}")
    SEND.check_response(reply)
    assert reply.status_code == 200 and copies(lab, reply.json()["id"]) == members(lab, far) | {school.pupil}


def test_a_reply_to_a_no_reply_message_is_refused(lab: Lab) -> None:
    school = college(lab)
    staff = login(lab, school.staff)
    parent = send(staff, lab, {"to": [school.pupil], "noReply": True}).json()["id"]
    r = send(login(lab, school.pupil), lab, {"to": [school.staff]}, f"?In-Reply-To={parent}")
    SEND.check_response(r)
    assert r.status_code == 403 and r.json() == {"error": "conversation.error.reply.not.allowed"}


def test_a_saved_draft_is_sent_to_the_requests_recipients(lab: Lab) -> None:
    """``send?id=`` takes the recipients from the request: the draft's own are not used."""
    school = college(lab)
    staff = login(lab, school.staff)
    draft = staff.post(
        f"{lab.url}/conversation/draft", json={"subject": "d", "to": [school.pupil]}, timeout=10
    )
    empty = staff.post(f"{lab.url}/conversation/send?id={draft.json()['id']}", json={}, timeout=10)
    SEND.check_response(empty)
    assert (
        empty.status_code == 200
        and empty.json()["sent"] == 0
        and copies(lab, draft.json()["id"]) == {school.staff}
    )
    again = staff.post(f"{lab.url}/conversation/send?id={draft.json()['id']}", json={}, timeout=10)
    SEND.check_response(again)
    assert again.status_code == 400 and "state mismatch" in again.json()["error"]


# -- the purge and the orphan job ------------------------------------------------------------------------


def sent_with_attachment(lab: Lab, school: School) -> str:
    """A teacher's message to a pupil with an attachment, as the web client sends it."""
    teacher = login(lab, school.teacher)
    draft = teacher.post(
        f"{lab.url}/conversation/draft",
        json={"subject": "Alerte", "body": "<p>Le texte</p>", "to": [school.pupil]},
    ).json()["id"]
    up = teacher.post(f"{lab.url}/conversation/message/{draft}/attachment?name=v.mp4", data=b"x" * 64)
    assert up.status_code == 200
    body = {"subject": "Alerte", "body": "<p>Le texte</p>", "to": [school.pupil], "cc": [], "cci": []}
    assert teacher.post(f"{lab.url}/conversation/send?id={draft}", json=body).status_code == 200
    return draft


def test_a_purge_leaves_the_message_its_thread_attachments_and_notification(lab: Lab) -> None:
    school = college(lab)
    message = sent_with_attachment(lab, school)
    attachment = lab.sql(
        "SELECT attachment_id FROM conversation.usermessagesattachments WHERE message_id = ?", message
    )[0][0]
    r = admc(lab).post(f"{lab.url}/conversation/api/purge/messages", json={"id": [message]}, timeout=10)
    PURGE.check_response(r)
    assert r.json() == {"status": "ok"} and copies(lab, message) == set()
    assert lab.sql("SELECT subject, body FROM conversation.messages WHERE id = ?", message) == [
        ("Alerte", "<p>Le texte</p>")
    ]
    assert lab.sql("SELECT subject FROM conversation.threads WHERE id = ?", message) == [("Alerte",)]
    assert {
        u for (u,) in lab.sql("SELECT user_id FROM conversation.userthreads WHERE thread_id = ?", message)
    } == {
        school.teacher,
        school.pupil,
    }
    assert lab.sql("SELECT count(*) FROM conversation.attachments WHERE id = ?", attachment) == [(1,)]
    assert lab.sql(
        "SELECT count(*) FROM conversation.usermessagesattachments WHERE message_id = ?", message
    ) == [(0,)]
    params, push, recipients = lab.sql(
        "SELECT params, push_notif, recipients FROM timeline WHERE resource = ?", message
    )[0]
    assert json.loads(params)["subject"] == "Alerte" and json.loads(push)["body"] == "Alerte\nLe texte"
    assert json.loads(recipients) == [{"userId": school.pupil, "unread": 1}]
    for store in (
        "conversation.messages",
        "conversation.threads",
        "conversation.attachments",
        "timeline (MongoDB)",
    ):
        PURGE.effect(store, "keep")


def test_the_orphan_job_removes_what_the_platforms_removes(lab: Lab) -> None:
    school = college(lab)
    message = sent_with_attachment(lab, school)
    converted = lab.sql("SELECT message_id FROM conversation.originalmessages ORDER BY 1 LIMIT 1")[0][0]
    before = lab.sql("SELECT count(*) FROM conversation.originalmessages")[0][0]
    admin = admc(lab)
    assert admin.post(f"{lab.url}/conversation/api/purge/messages", json={"id": [message, converted]}).ok
    done = lab.control("/__lab/jobs/orphans")
    assert done["messages"] >= 2 and done["attachments"] >= 1
    assert lab.sql("SELECT count(*) FROM conversation.messages WHERE id IN (?, ?)", message, converted) == [
        (0,)
    ]
    assert lab.sql(
        "SELECT count(*) FROM conversation.attachments a WHERE NOT EXISTS (SELECT 1 FROM"
        " conversation.usermessagesattachments u WHERE u.attachment_id = a.id)"
    ) == [(0,)]
    # The thread stays: the purge left its userthreads rows. The converted original stays for good.
    assert lab.sql("SELECT subject FROM conversation.threads WHERE id = ?", message) == [("Alerte",)]
    assert lab.sql("SELECT count(*) FROM conversation.originalmessages") == [(before,)]
    assert lab.sql("SELECT count(*) FROM timeline WHERE resource = ?", message) == [(1,)]
    ORPHANS.effect("conversation.messages", "delete")
    ORPHANS.effect("conversation.originalmessages", "keep")


def test_the_orphan_job_stops_at_its_batch_bound(lab: Lab) -> None:
    school = college(lab)
    staff = login(lab, school.staff)
    ids = [send(staff, lab, {"to": [school.pupil]}).json()["id"] for _ in range(5)]
    assert admc(lab).post(f"{lab.url}/conversation/api/purge/messages", json={"id": ids}).ok
    first = lab.control("/__lab/jobs/orphans", {"batch_size": 1, "max_batches": 2})
    left = lab.sql(f"SELECT count(*) FROM conversation.messages WHERE id IN ({','.join('?' * 5)})", *ids)
    assert first["messages"] == 2 and left == [(3,)]
    assert lab.control("/__lab/jobs/orphans")["messages"] == 3
    with pytest.raises(requests.HTTPError):
        lab.control("/__lab/jobs/orphans", {"batch_size": 0})


def test_the_orphan_route_is_for_a_service_token_only(lab: Lab) -> None:
    refused = admc(lab).post(f"{lab.url}/conversation/api/internal/purge/orphans", allow_redirects=False)
    ORPHANS.check_response(refused)
    assert refused.status_code == 401
    action = "org.entcore.conversation.controllers.TaskController|deleteOrphans"
    lab.write_sql(
        "UPDATE oauth_clients SET scope = scope || ' ' || ? WHERE client_id = 'pcnctl-service'", action
    )
    client = lab.info["oauth"]["service_client"]
    token = requests.post(
        lab.url + "/auth/oauth2/token",
        data={"grant_type": "client_credentials", "scope": action},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    ).json()["access_token"]
    school = college(lab)
    message = send(login(lab, school.staff), lab, {"to": [school.pupil]}).json()["id"]
    assert admc(lab).post(f"{lab.url}/conversation/api/purge/messages", json={"id": [message]}).ok
    ran = requests.post(
        f"{lab.url}/conversation/api/internal/purge/orphans", headers={"Authorization": f"Bearer {token}"}
    )
    ORPHANS.check_response(ran)
    assert ran.status_code == 202 and lab.sql(
        "SELECT count(*) FROM conversation.messages WHERE id = ?", message
    ) == [(0,)]


def test_the_thread_list_keeps_a_purged_subject_when_optimized(lab: Lab) -> None:
    school = college(lab)
    message = sent_with_attachment(lab, school)
    assert admc(lab).post(f"{lab.url}/conversation/api/purge/messages", json={"id": [message]}).ok
    pupil = login(lab, school.pupil)
    legacy = pupil.get(f"{lab.url}/conversation/threads/list", timeout=10)
    THREADS.check_response(legacy)
    assert message not in {t["id"] for t in legacy.json()}  # read from the copies: gone
    lab.knobs(optimized_thread_list=True)
    optimized = pupil.get(f"{lab.url}/conversation/threads/list", timeout=10)
    THREADS.check_response(optimized)
    assert [t["subject"] for t in optimized.json() if t["id"] == message] == ["Alerte"]


# -- notifications ------------------------------------------------------------------------------------------


def test_the_timeline_drops_a_senders_notifications_within_its_anti_flood_delay(lab: Lab) -> None:
    school = college(lab)
    staff = login(lab, school.staff)
    lab.knobs(anti_flood_ms=3_600_000)  # an hour: the second send is certainly within it
    first, second = (send(staff, lab, {"to": [school.pupil]}).json()["id"] for _ in range(2))
    kept = {r for (r,) in lab.sql("SELECT resource FROM timeline WHERE sender = ?", school.staff)}
    assert first in kept and second not in kept and copies(lab, second) == {school.staff, school.pupil}
    lab.knobs(anti_flood_ms=0)
    third = send(staff, lab, {"to": [school.pupil]}).json()["id"]
    assert lab.sql("SELECT count(*) FROM timeline WHERE resource = ?", third) == [(1,)]


# -- scheduled messages ------------------------------------------------------------------------------------


def scheduled(lab: Lab, school: School, when: str) -> str:
    r = send(login(lab, school.staff), lab, {"to": [school.students], "scheduleAt": when})
    SEND.check_response(r)
    assert r.status_code == 200 and r.json()["sent"] == len(members(lab, school.students))
    return str(r.json()["id"])


def test_a_scheduled_message_reaches_its_recipients_at_its_date(lab: Lab) -> None:
    school = college(lab)
    message = scheduled(lab, school, "2031-03-02T08:00:00Z")
    assert lab.sql("SELECT state FROM conversation.messages WHERE id = ?", message) == [("SCHEDULE",)]
    assert copies(lab, message) == {school.staff}
    assert lab.sql("SELECT count(*) FROM timeline WHERE resource = ?", message) == [(0,)]
    SEND.effect("conversation.usermessages", "keep", "scheduleAt")
    early = lab.control("/__lab/jobs/scheduled", {"now": "2031-03-02T07:59:00Z"})
    assert message not in early["delivered"] and copies(lab, message) == {school.staff}
    done = lab.control("/__lab/jobs/scheduled", {"now": "2031-03-02T08:00:00+00:00"})
    assert message in done["delivered"]
    assert copies(lab, message) == members(lab, school.students) | {school.staff}
    assert lab.sql("SELECT state FROM conversation.messages WHERE id = ?", message) == [("SENT",)]


def test_a_purged_scheduled_message_still_goes_out_unless_the_orphan_job_ran_first(lab: Lab) -> None:
    school = college(lab)
    kept, removed = (
        scheduled(lab, school, "2031-03-02T08:00:00Z"),
        scheduled(lab, school, "2031-03-02T08:00:00Z"),
    )
    assert admc(lab).post(f"{lab.url}/conversation/api/purge/messages", json={"id": [kept]}).ok
    assert copies(lab, kept) == set()  # its only copy, the sender's
    lab.control("/__lab/jobs/scheduled", {"now": "2031-03-02T09:00:00Z"})
    assert copies(lab, kept) == members(lab, school.students)  # the row was all the delivery read
    assert admc(lab).post(f"{lab.url}/conversation/api/purge/messages", json={"id": [removed]}).ok
    lab.control("/__lab/jobs/orphans")
    assert lab.sql("SELECT count(*) FROM conversation.messages WHERE id = ?", removed) == [(0,)]


def test_a_schedule_that_is_not_a_time_is_refused(lab: Lab) -> None:
    school = college(lab)
    count = 'SELECT count(*) FROM conversation.messages WHERE "from" = ?'
    before = lab.sql(count, school.staff)
    r = send(login(lab, school.staff), lab, {"to": [school.pupil], "scheduleAt": "demain"})
    SEND.check_response(r)
    assert r.status_code == 400 and "timestamp" in r.json()["error"]
    assert lab.sql(count, school.staff) == before


def test_the_nightly_run_is_due_when_04_45_went_by() -> None:
    """The lab runs the orphan job as the platform's cron does: once the clock passed 04:45 (local time)."""
    from datetime import datetime

    from pcnctl.lab.mailjobs import _crossed_orphan_hour

    at = lambda day, h, m: datetime(2026, 1, day, h, m).timestamp()  # noqa: E731
    assert _crossed_orphan_hour(at(5, 4, 40), at(5, 4, 50))
    assert _crossed_orphan_hour(at(5, 23, 0), at(6, 5, 0))
    assert not _crossed_orphan_hour(at(5, 4, 46), at(6, 4, 44))
    assert not _crossed_orphan_hour(0, at(5, 5, 0))  # the lab's first look runs nothing


# -- the same rows in a PostgreSQL mirror built with the platform's schema --------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="pcnctl-pg-"))
    server = pg.start(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_a_purged_threat_is_still_found_by_the_platforms_text_index(lab: Lab, postgres: Postgres) -> None:
    """Copied into the platform's schema (its trigger fills ``text_searchable``), the purged message is
    still a row the full-text index finds, with its thread and no copy."""
    import psycopg

    from pcnctl.lab.pgmirror import copy_from_sqlite

    school = college(lab)
    message = sent_with_attachment(lab, school)
    assert admc(lab).post(f"{lab.url}/conversation/api/purge/messages", json={"id": [message]}).ok
    with psycopg.connect(postgres.dsn()) as conn:
        copy_from_sqlite(lab.data_dir / "conversation.sqlite", conn)
        found = conn.execute(
            "SELECT m.id, t.subject, (SELECT count(*) FROM conversation.usermessages um"
            " WHERE um.message_id = m.id) FROM conversation.messages m JOIN conversation.threads t"
            " ON t.id = m.thread_id"
            " WHERE m.text_searchable @@ to_tsquery('conversation.fr', 'texte & alerte')"
        ).fetchall()
        kept = conn.execute("SELECT count(*) FROM conversation.originalmessages").fetchone()
    assert (message, "Alerte", 0) in found and kept is not None and kept[0] > 0
