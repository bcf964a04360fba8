"""``pcnctl watch`` on the lab: detection, pages to a real SMTP server and a real webhook receiver, the
pre-approved response within its signed limits, a kill mid-response, one watcher per ENT, and an ordinary
day that raises nothing. Everything goes over real HTTP to the lab and real SMTP; nothing is mocked."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pcnctl.state.store import StateStore, ent_key
from pcnctl.watch.watcher import lock_name
from tests.conftest import Cli, Lab, driver_for, played_wave

WAVE = {"senders": 4, "messages": 24, "schools": 2, "rate": 0, "hijacked": 4, "innocent": 0}
PLAYBOOK = Path(__file__).resolve().parent.parent / "playbooks" / "bomb-threat-wave.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """What the local SMTP server received."""

    def __init__(self) -> None:
        self.mails: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(envelope.content)
        return "250 OK"

    def texts(self) -> list[tuple[str, str]]:
        out = []
        for raw in self.mails:
            mail = message_from_bytes(raw)
            subject = str(make_header(decode_header(mail["Subject"])))
            body = mail.get_payload(decode=True)
            text = body.decode("utf-8") if isinstance(body, bytes) else ""
            out.append((subject, text.replace("\r\n", "\n")))
        return out


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    from aiosmtpd.controller import Controller

    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


class Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.received.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    received: list[tuple[str, Any]] = []
    handler = type("Received", (Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/T0KEN-s3cr3t", received
    server.shutdown()
    server.server_close()


def signers(folder: Path) -> tuple[Path, Path, Path]:
    """Two administrators' SSH keys and the allowed-signers file naming them by ENT login."""
    lines = []
    for name in ("admc.dupont", "admc.martin"):
        key = folder / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
        )
        lines.append(f'{name} namespaces="pcnctl-approval" {(folder / f"{name}.pub").read_text().strip()}')
    allowed = folder / "allowed_signers"
    allowed.write_text("\n".join(lines) + "\n")
    return folder / "admc.dupont", folder / "admc.martin", allowed


def watcher(cli: Cli, lab: Lab, tmp: Path, smtp_port: int, hook: str, *extra: str) -> None:
    made = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore",
               lab.info["mailstore"], "--page-to", "astreinte@example.fr", "--smtp",
               f"smtp://127.0.0.1:{smtp_port}", "--page-webhook", "--force", *extra)  # fmt: skip
    assert made.exit_code == 0, made.stderr
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code, PCNCTL_WEBHOOK_URL=hook)


def policy(
    cli: Cli, tmp: Path, *, accounts: int = 100, schools: int = 10, playbook: Path = PLAYBOOK
) -> tuple[Path, Path]:
    """A policy for the lab, signed by two administrators; returns it and the allowed-signers file."""
    dupont, martin, allowed = signers(tmp)
    path = tmp / "policy.yaml"
    limits = ("--accounts", str(accounts), "--schools", str(schools), "--expire-hours", "8")
    made = cli("watch", "policy", "new", "--out", str(path), "--playbook", str(playbook), *limits)
    assert made.exit_code == 0, made.stderr
    for key in (dupont, martin):
        signed = cli("watch", "policy", "sign", str(path), "--key", str(key), "--yes")
        assert signed.exit_code == 0, signed.stderr
    return path, allowed


def armed(cli: Cli, lab: Lab, tmp: Path, smtp_port: int, hook: str, **limits: Any) -> None:
    """The watcher's profile with a policy for the lab signed by two administrators."""
    watcher(cli, lab, tmp, smtp_port, hook)
    path, allowed = policy(cli, tmp, **limits)
    watcher(cli, lab, tmp, smtp_port, hook, "--policy", str(path), "--approvers", str(allowed))


def blocked(lab: Lab, ids: list[str]) -> set[str]:
    marks = ",".join("?" * len(ids))
    return {r[0] for r in lab.sql(f"SELECT id FROM users WHERE blocked = 1 AND id IN ({marks})", *ids)}


def home() -> Path:
    return Path(os.environ["PCNCTL_HOME"])


def test_an_ordinary_day_raises_nothing(admc: Cli, lab: Lab) -> None:
    """The lab's seeded mail history (days of staff messages, group sends, a recall, drafts, scheduled
    messages) and its login history: read from the start, nothing is detected, no incident opened."""
    made = admc("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore",
                lab.info["mailstore"], "--force")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    history = lab.sql("SELECT count(*) FROM conversation.messages WHERE state <> 'DRAFT'")[0][0]
    result = admc("watch", "run", "--cycles", "2", "--interval", "1", "--since", "10d")
    assert result.exit_code == 0, result.stderr
    assert f"{history} message(s), nothing found" in result.stderr, result.stderr
    assert "incident" not in result.stderr
    status = admc("watch", "status", "-o", "json").json()
    assert status["status"] == "stopped" and status["cycles"] == 2 and status["responses"] == "none"
    assert admc("incident", "list", "-o", "json").json() == []


def test_a_wave_is_detected_and_paged_once(
    cli: Cli, lab: Lab, tmp_path: Path, smtp: tuple[int, Inbox], webhook: tuple[str, list[Any]]
) -> None:
    port, inbox = smtp
    hook, received = webhook
    watcher(cli, lab, tmp_path, port, hook)
    truth = played_wave(lab, **WAVE)
    result = cli("watch", "run", "--cycles", "3", "--interval", "1", "--since", "30m")
    assert result.exit_code == 0, result.stderr
    assert "watchlist" in result.stderr and "incident INC-" in result.stderr
    assert len(inbox.mails) == 1 and len(received) == 1, (inbox.mails, received)
    subject, body = inbox.texts()[0]
    path, payload = received[0]
    assert path == "/hooks/T0KEN-s3cr3t" and set(payload) == {"text"} and payload["text"] == body
    assert "message menaçant" in subject and "INC-" in subject
    incident = subject.rsplit("incident ", 1)[1].rstrip(")")
    assert f"pcnctl -p lab incident report {incident}" in body
    assert f"--incident {incident} --approve block-senders" in body
    assert "Depuis :" in body and "heure de Paris" in body and "Où : établissement(s)" in body
    assert "aucune réponse pré-approuvée" in body  # no policy on this profile: nothing was done
    assert not blocked(lab, truth["senders"])
    again = cli("watch", "run", "--cycles", "2", "--interval", "1")
    assert again.exit_code == 0 and len(inbox.mails) == 1 and len(received) == 1  # deduplicated
    status = cli("watch", "status", "-o", "json").json()
    assert status["pages_sent"] == 2 and status["pages_pending"] == 0
    # The webhook URL holds a token: never in the state store, the config file or the output.
    assert "T0KEN" not in (home() / "state.db").read_bytes().decode("latin-1")
    assert "T0KEN" not in Path(os.environ["PCNCTL_CONFIG"]).read_text()
    assert "T0KEN" not in result.stdout + result.stderr


def test_a_mail_server_down_is_paged_once_it_is_back(
    cli: Cli, lab: Lab, tmp_path: Path, webhook: tuple[str, list[Any]]
) -> None:
    from aiosmtpd.controller import Controller

    port = free_port()
    hook, received = webhook
    watcher(cli, lab, tmp_path, port, hook)
    played_wave(lab, **WAVE)
    down = cli("watch", "run", "--cycles", "1", "--since", "30m")
    assert down.exit_code == 0 and len(received) == 1
    assert cli("watch", "status", "-o", "json").json()["pages_pending"] == 1
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        back = cli("watch", "run", "--cycles", "1")
    finally:
        controller.stop()
    assert back.exit_code == 0 and len(inbox.mails) == 1 and len(received) == 1


def test_a_second_watcher_of_the_same_ent_refuses(admc: Cli, lab: Lab) -> None:
    store = StateStore(home())
    try:
        with store.lock(lock_name(ent_key(lab.url))):
            result = admc("watch", "run", "--cycles", "1")
    finally:
        store.close()
    assert result.exit_code == 7, result.stderr
    assert "a watcher already follows" in result.stderr and "one watcher per ENT" in result.stderr
    assert admc("watch", "run", "--cycles", "1").exit_code == 0  # once the first one is gone


def test_the_pre_approved_response_contains_the_wave_and_expires_unless_confirmed(
    cli: Cli, lab: Lab, tmp_path: Path, smtp: tuple[int, Inbox], webhook: tuple[str, list[Any]]
) -> None:
    port, inbox = smtp
    hook, received = webhook
    armed(cli, lab, tmp_path, port, hook)
    truth = played_wave(lab, **WAVE)
    result = cli("watch", "run", "--cycles", "1", "--since", "30m")
    assert result.exit_code == 0, result.stderr
    assert "response done" in result.stderr, result.stderr
    assert blocked(lab, truth["hijacked"]) == set(truth["hijacked"])
    marks = ",".join("?" * len(truth["messages"]))
    left = lab.sql(
        f"SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({marks})", *truth["messages"]
    )
    assert left[0][0] == 0
    assert len(inbox.mails) == 2 and len(received) == 2  # the detection, then what the response did
    first, done = inbox.texts()
    assert "la réponse pré-approuvée démarre" in first[1] and "admc.dupont et admc.martin" in first[1]
    assert "la réponse pré-approuvée a été exécutée" in done[1] and "watch confirm" in done[1]
    incident = first[0].rsplit("incident ", 1)[1].rstrip(")")
    journal = home() / "state.db"
    db = sqlite3.connect(journal)
    runs = [json.loads(b) for (b,) in db.execute("SELECT body FROM journal WHERE incident = ?", (incident,))]
    db.close()
    starts = [r for r in runs if r.get("t") == "run"]
    assert {r["op"] for r in starts} >= {"accounts.block", "messaging.block", "messages.purge"}
    assert all("signed by admc.dupont and admc.martin" in r["approved_by"] for r in starts)
    # Past the policy's hours with nobody confirming: what it blocked is lifted through the rollback.
    later = _expire(cli, lab, incident, hours=9)
    assert later == "lifted" and not blocked(lab, truth["hijacked"])


def _expire(cli: Cli, lab: Lab, incident: str, *, hours: float) -> str:
    """One cycle of the watcher with its clock ``hours`` ahead (the core, with an injected clock)."""
    response = _cycle_at(incident, hours * 3600)
    return response.status


def _cycle_at(incident: str, ahead_s: float) -> Any:
    """One cycle of the watcher (the core, its clock ``ahead_s`` seconds ahead); the incident's response."""
    from pcnctl.forensics.mailstore import open_mailstore
    from pcnctl.reports.audit.checks import DEFAULT_WATCHLIST
    from pcnctl.watch import policy as core
    from pcnctl.watch.watcher import Watcher

    driver = driver_for("lab")  # in an environment read now, as the watcher's command reads it
    profile = driver.profile
    store, mails = StateStore(home()), open_mailstore(profile)
    found = core.load(Path(str(profile.policy)))
    names = core.signers(found, profile.approvers, "admc.pcn")
    ahead = time.time() + ahead_s
    from pcnctl.cli.watch import channels_of

    channels = channels_of(profile)  # the profile's, with the secrets the environment gives
    watch = Watcher(
        driver, mails, store, DEFAULT_WATCHLIST, channels, policy=found, signers=names, clock=lambda: ahead
    )
    try:
        watch.cycle()
        response = watch.watch.response(incident)
    finally:
        store.close()
        mails.close()
    assert response is not None
    return response


def test_the_second_look_runs_once_within_the_same_limits(
    cli: Cli, lab: Lab, tmp_path: Path, smtp: tuple[int, Inbox], webhook: tuple[str, list[Any]]
) -> None:
    port, inbox = smtp
    hook, _received = webhook
    truth = played_wave(lab, **WAVE)
    armed(cli, lab, tmp_path, port, hook, accounts=len(truth["hijacked"]))  # exactly the wave's accounts
    assert cli("watch", "run", "--cycles", "1", "--since", "30m").exit_code == 0
    incident = cli("incident", "list", "-o", "json").json()[0]["id"]
    second = _cycle_at(incident, 60)
    assert (second.status, second.passes) == ("done", 2), second
    assert "second passage" in inbox.texts()[-1][1]
    assert _cycle_at(incident, 120).passes == 2  # once
    records = _runs(home() / "state.db")
    runs = {r["run"] for r in records if r["t"] == "run" and r["op"] == "accounts.block"}
    done = [r["key"] for r in records if r["t"] == "item" and r["run"] in runs and r.get("phase") == "done"]
    assert len(done) == len(set(done)) == len(truth["hijacked"])  # each account blocked once, by one look
    assert blocked(lab, truth["hijacked"]) == set(truth["hijacked"])
    assert (home() / "incidents" / incident / "second-look.yaml").is_file()


def test_a_confirmed_response_is_kept_past_its_expiry(
    cli: Cli, lab: Lab, tmp_path: Path, smtp: tuple[int, Inbox], webhook: tuple[str, list[Any]]
) -> None:
    port, _inbox = smtp
    hook, _received = webhook
    armed(cli, lab, tmp_path, port, hook)
    truth = played_wave(lab, **WAVE)
    assert cli("watch", "run", "--cycles", "1", "--since", "30m").exit_code == 0
    incident = cli("incident", "list", "-o", "json").json()[0]["id"]
    confirmed = cli("watch", "confirm", incident)
    assert confirmed.exit_code == 0, confirmed.stderr
    assert _expire(cli, lab, incident, hours=9) == "done"
    assert blocked(lab, truth["hijacked"]) == set(truth["hijacked"])


def test_a_wave_wider_than_the_policy_is_paged_not_acted_on(
    cli: Cli, lab: Lab, tmp_path: Path, smtp: tuple[int, Inbox], webhook: tuple[str, list[Any]]
) -> None:
    port, inbox = smtp
    hook, _received = webhook
    armed(cli, lab, tmp_path, port, hook, accounts=2)
    truth = played_wave(lab, **WAVE)
    result = cli("watch", "run", "--cycles", "1", "--since", "30m")
    assert result.exit_code == 0, result.stderr
    assert "response refused" in result.stderr, result.stderr
    assert not blocked(lab, truth["hijacked"])  # nothing of the response happened
    marks = ",".join("?" * len(truth["messages"]))
    kept = lab.sql(
        f"SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({marks})", *truth["messages"]
    )
    assert kept[0][0] > 0
    texts = [body for _subject, body in inbox.texts()]
    assert len(texts) == 2 and "n'est PAS allée au bout" in texts[1]
    assert "above the policy's limit of 2" in texts[1] and "un opérateur doit" in texts[1]


def test_a_policy_signed_once_or_changed_since_is_not_run(
    cli: Cli, lab: Lab, tmp_path: Path, smtp: tuple[int, Inbox], webhook: tuple[str, list[Any]]
) -> None:
    port, inbox = smtp
    hook, _received = webhook
    watcher(cli, lab, tmp_path, port, hook)
    dupont, _martin, allowed = signers(tmp_path)
    path = tmp_path / "policy.yaml"
    assert cli("watch", "policy", "new", "--out", str(path), "--playbook", str(PLAYBOOK), "--accounts", "50",
               "--schools", "5").exit_code == 0  # fmt: skip
    assert cli("watch", "policy", "sign", str(path), "--key", str(dupont), "--yes").exit_code == 0
    watcher(cli, lab, tmp_path, port, hook, "--policy", str(path), "--approvers", str(allowed))
    once = cli("watch", "policy", "check")
    assert once.exit_code == 7 and "signed by 1 administrator(s)" in once.stderr
    # A second signature by the same key replaces the first: still one administrator.
    assert cli("watch", "policy", "sign", str(path), "--key", str(dupont), "--yes").exit_code == 0
    assert cli("watch", "policy", "check").exit_code == 7
    truth = played_wave(lab, **WAVE)
    result = cli("watch", "run", "--cycles", "1", "--since", "30m")
    assert result.exit_code == 0 and "will not be run" in result.stderr
    assert not blocked(lab, truth["hijacked"])
    assert "la politique de réponse n'est pas utilisable" in inbox.texts()[0][1]


def test_a_policy_changed_after_its_signatures_is_refused(cli: Cli, lab: Lab, tmp_path: Path) -> None:
    assert cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn").exit_code == 0
    path, allowed = policy(cli, tmp_path)
    made = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--policy", str(path),
               "--approvers", str(allowed), "--force")  # fmt: skip
    assert made.exit_code == 0
    ok = cli("watch", "policy", "check", "-o", "json")
    assert ok.exit_code == 0 and ok.json()[0]["signed_by"] == "admc.dupont, admc.martin"
    path.write_text(path.read_text().replace("accounts: 100", "accounts: 100000"))
    changed = cli("watch", "policy", "check")
    assert changed.exit_code == 7 and "signed by 0 administrator(s)" in changed.stderr
    other = tmp_path / "other.yaml"
    text = (
        path.read_text()
        .replace("accounts: 100000", "accounts: 100")
        .replace(lab.url, "https://ent.example.fr")
    )
    other.write_text(text)
    wrong = cli("watch", "policy", "check", str(other))
    assert wrong.exit_code == 7 and "is for https://ent.example.fr" in wrong.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("kind: pcnctl-response-policy", "kind: other"),
            "is not a pcnctl response policy",
        ),
        (lambda t: t.replace("expire_hours: 8.0", "expire_hours: 100"), "expire_hours is a number of hours"),
        (lambda t: t.replace("- template", "- everything"), "triggers must be a list of"),
        (lambda t: t + "extra: 1\n", "unknown key(s) extra"),
    ],
)
def test_a_bad_policy_is_a_clear_error(cli: Cli, lab: Lab, tmp_path: Path, edit: Any, message: str) -> None:
    assert cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn").exit_code == 0
    path = tmp_path / "policy.yaml"
    made = cli("watch", "policy", "new", "--out", str(path), "--playbook", str(PLAYBOOK), "--accounts", "5",
               "--schools", "1")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    path.write_text(edit(path.read_text()))
    result = cli("watch", "policy", "check", str(path))
    assert result.exit_code == 2 and message in result.stderr, result.stderr


def test_a_watcher_killed_mid_response_resumes_without_acting_twice(
    cli: Cli, lab: Lab, tmp_path: Path, smtp: tuple[int, Inbox], webhook: tuple[str, list[Any]]
) -> None:
    port, inbox = smtp
    hook, _received = webhook
    armed(cli, lab, tmp_path, port, hook)
    truth = played_wave(lab, **WAVE)
    lab.knobs(latency_ms=150)  # long enough a response to be killed in the middle of it
    once = ("--cycles", "1", "--second-look", "0")  # the runs checked below are the first look's only
    command = [sys.executable, "-m", "pcnctl", "watch", "run", *once, "--since", "30m"]
    proc = subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_cut(home() / "state.db", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    lab.knobs(latency_ms=0)
    state = _runs(home() / "state.db")
    blocks = [r for r in state if r["t"] == "run" and r["op"] == "accounts.block"]
    assert len(blocks) == 1 and not any(r["t"] == "end" and r["run"] == _cut(state) for r in state)
    result = cli("watch", "run", *once)
    assert result.exit_code == 0, result.stderr
    after = _runs(home() / "state.db")
    assert [r["run"] for r in after if r["t"] == "run" and r["op"] == "accounts.block"] == [blocks[0]["run"]]
    cuts = [r for r in after if r["t"] == "run" and r["op"] == "messaging.block"]
    assert len(cuts) == 1 and any(r["t"] == "end" and r["run"] == cuts[0]["run"] for r in after)
    done = [r for r in after if r["t"] == "item" and r.get("phase") == "done"]
    keys = [(r["run"], r["key"]) for r in done]
    assert len(keys) == len(set(keys))  # no item done twice
    assert blocked(lab, truth["hijacked"]) == set(truth["hijacked"])
    status = cli("watch", "status", "-o", "json").json()
    assert status["responses"].endswith(": done"), status
    texts = [body for _s, body in inbox.texts()]
    assert sum("démarre" in t for t in texts) == 1 and sum("a été exécutée" in t for t in texts) == 1


def _runs(db_path: Path) -> list[dict[str, Any]]:
    """The journal's records as the watcher wrote them (read-only, while it runs)."""
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:  # not created yet
        return []
    try:
        return [json.loads(b) for (b,) in db.execute("SELECT body FROM journal ORDER BY seq")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def _cut(records: list[dict[str, Any]]) -> str:
    return next((r["run"] for r in records if r["t"] == "run" and r["op"] == "messaging.block"), "")


def _wait_for_cut(db_path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until the response has started its messaging block (its accounts are blocked by then)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _cut(_runs(db_path)):
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "the watcher ended")
        time.sleep(0.05)
    raise AssertionError("no messaging block started")


def test_doctor_and_the_audit_check_the_heartbeat(
    cli: Cli, lab: Lab, tmp_path: Path, smtp: tuple[int, Inbox], webhook: tuple[str, list[Any]]
) -> None:
    from pcnctl.watch.records import Heartbeat
    from pcnctl.watch.state import WatchState

    port, _inbox = smtp
    hook, _received = webhook
    watcher(cli, lab, tmp_path, port, hook)
    never = {r["check"]: r for r in cli("doctor", "-o", "json").json()}
    assert never["watcher"]["status"] == "warn" and "no watcher has run" in never["watcher"]["detail"]
    audit = cli("audit", "run", "--since", "1h", "--checks", "watch", "-o", "json", "--fail-on", "warning")
    assert audit.exit_code == 10 and json.loads(audit.stdout)["findings"][0]["severity"] == "warning"
    assert cli("watch", "run", "--cycles", "1").exit_code == 0
    stopped = {r["check"]: r for r in cli("doctor", "-o", "json").json()}
    assert stopped["watcher"]["status"] == "warn" and "stopped at" in stopped["watcher"]["detail"]
    # A watcher alive a moment ago, then silent for ten minutes (killed -9, a host down): stale.
    store = StateStore(home())
    now = time.time()
    try:
        state = WatchState(store, ent_key(lab.url))
        beat = Heartbeat(
            state.ent, "pcnctl@host pid 1", "2026-01-01T00:00:00+00:00", "x", int(now * 1000), 9, 5.0, "ok"
        )
        state.beat(beat)
        alive = {r["check"]: r for r in cli("doctor", "-o", "json").json()}
        assert alive["watcher"]["status"] == "ok" and "pcnctl@host pid 1" in alive["watcher"]["detail"]
        state.beat(
            Heartbeat(beat.ent, beat.holder, beat.started_at, "x", int((now - 600) * 1000), 9, 5.0, "ok")
        )
    finally:
        store.close()
    stale = {r["check"]: r for r in cli("doctor", "-o", "json").json()}
    assert stale["watcher"]["status"] == "warn" and "no heartbeat for 600 s" in stale["watcher"]["detail"]
    critical = cli("audit", "run", "--since", "1h", "--checks", "watch", "-o", "json")
    assert (
        critical.exit_code == 11
        and "nobody is paged" in json.loads(critical.stdout)["findings"][0]["summary"]
    )


def test_a_playbook_steps_max_above_the_commands_cap_is_honoured(admc: Cli, lab: Lab, tmp_path: Path) -> None:
    """The reference wave's 200 accounts pass the playbook's ``max: 2000`` (the response the watcher runs):
    the step's cap is the one the operation's sequence checks, not the command's default of 100."""
    logins = [
        r[0] for r in lab.sql("SELECT login FROM users WHERE profile = 'Student' ORDER BY id LIMIT 120")
    ]
    book = tmp_path / "wide.yaml"
    book.write_text(
        "version: 1\nname: wide\ndescription: Block a list.\ninputs:\n  accounts: {type: list}\nsteps:\n"
        "  - id: block\n    op: block_accounts\n    with: {accounts: '${{ inputs.accounts }}', max: 500}\n"
    )
    result = admc("playbook", "run", str(book), "--input", "accounts=" + ",".join(logins), "--approve-all")
    assert result.exit_code == 0, result.stderr
    marks = ",".join("?" * len(logins))
    assert (
        lab.sql(f"SELECT count(*) FROM users WHERE blocked = 1 AND login IN ({marks})", *logins)[0][0] == 120
    )


def test_a_policy_never_cuts_a_school_the_threat_did_not_reach(
    cli: Cli, lab: Lab, tmp_path: Path, smtp: tuple[int, Inbox], webhook: tuple[str, list[Any]]
) -> None:
    """A signed playbook that would cut another school's messaging is refused when the cut seals its plan,
    before any call: the schools are checked against the detected messages' recipients, not the playbook."""
    port, inbox = smtp
    hook, _received = webhook
    truth = played_wave(lab, **WAVE)
    reached = set(truth["schools"])
    other = next(r[0] for r in lab.sql("SELECT uai FROM structures ORDER BY uai") if r[0] not in reached)
    book = tmp_path / "elsewhere.yaml"
    book.write_text(
        "version: 1\nname: elsewhere\ndescription: Cut a school the wave did not reach.\nsteps:\n"
        f"  - id: cut\n    op: block_messaging\n    with: {{profile: Student, schools: ['{other}']}}\n"
    )
    armed(cli, lab, tmp_path, port, hook, playbook=book)
    result = cli("watch", "run", "--cycles", "1", "--since", "30m")
    assert result.exit_code == 0 and "response refused" in result.stderr, result.stderr
    assert f"reaches outside the schools the detected messages reached ({other})" in inbox.texts()[1][1]
    assert cli("messaging", "status", "-o", "json").json() == []  # nothing was cut
