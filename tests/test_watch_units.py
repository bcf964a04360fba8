"""The watcher's pure parts: its pacing (replayed sequences, no clock), its detectors on synthetic traffic,
what a page says, the channels' settings and bad input; and its systemd unit, run as written."""

from __future__ import annotations

import configparser
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pcnctl.errors import UsageError
from pcnctl.models import PlatformEvent
from pcnctl.reports.audit.checks import DEFAULT_WATCHLIST
from pcnctl.watch.detectors import Detectors, Settings, Window, merge
from pcnctl.watch.pacing import Pacer
from pcnctl.watch.paging import Context, Smtp, compose
from pcnctl.watch.records import NewMessage, Wave
from tests.conftest import Cli, Lab

ROOT = Path(__file__).resolve().parent.parent
MIN = 60_000
THREAT = (
    "urgent une bombe a ete placee dans votre etablissement elle explosera a 10h evacuez " + "sinon des morts"
)


def message(n: int, sender: str, date: int, text: str = THREAT, to: int = 5) -> NewMessage:
    return NewMessage(
        f"m{n}", sender, date, "SENT", text[:20], text, tuple(f"r{sender}{i}" for i in range(to))
    )


def login(user: str, date: int, ip: str, profile: str = "Student") -> PlatformEvent:
    return PlatformEvent(f"e{user}{date}{ip}", "LOGIN", "Auth", date, user, profile, (), ip, "agent")


# -- pacing -------------------------------------------------------------------------------------------------


def test_a_slower_ent_gets_fewer_calls_never_more() -> None:
    pacer = Pacer(base_s=5.0)
    assert pacer.next(20.0) == 5.0
    slow = pacer.next(100.0)  # five times slower (with the client's own 10 ms): about 4x the pause
    assert slow == pytest.approx(5.0 * 110 / 30)
    assert 1 / slow <= 1 / 5.0 * (30 / 110) + 1e-9  # calls per second fall with the ENT's speed
    for _ in range(10):
        assert pacer.next(100.0) >= slow - 1e-9  # as long as it stays slow, never faster


def test_throttling_and_outages_double_the_pause_up_to_the_cap_and_honour_retry_after() -> None:
    pacer = Pacer(base_s=5.0, max_s=60.0)
    pacer.next(20.0)
    assert pacer.next(20.0, trouble=True) == 10.0
    assert pacer.next(None) == 20.0  # no answer at all
    assert pacer.next(20.0, trouble=True, retry_after_s=50.0) == 50.0
    assert pacer.next(None) == 60.0 and pacer.slow
    pauses = [pacer.next(20.0) for _ in range(30)]  # healthy again: back by a quarter a cycle
    assert pauses == sorted(pauses, reverse=True) and pauses[-1] == pytest.approx(5.0, abs=0.01)
    assert not pacer.slow


# -- detectors ----------------------------------------------------------------------------------------------


def test_a_threat_is_one_detection_that_grows() -> None:
    detectors = Detectors(Settings(), DEFAULT_WATCHLIST)
    first = detectors.feed([], [message(1, "a", 0), message(2, "b", 1000)], 2000)
    watch = [d for d in first if d.kind == "watchlist"]
    assert [d.key for d in watch] == ["watchlist:bomb threat"] and watch[0].senders == ("a", "b")
    later = detectors.feed([], [message(3, "c", 5000)], 6000)
    grown = merge(watch[0], next(d for d in later if d.kind == "watchlist"))
    assert grown.messages == ("m1", "m2", "m3") and grown.recipients == 15 and grown.first_ms == 0


def test_drafts_and_innocent_words_raise_nothing() -> None:
    detectors = Detectors(Settings(), DEFAULT_WATCHLIST)
    draft = NewMessage("d", "a", 0, "DRAFT", "x", THREAT, ())
    homework = message(
        2, "b", 0, "mon expose porte sur la bombe atomique et la fin de la seconde guerre mondiale"
    )
    drill = message(3, "c", 0, "un exercice d'evacuation incendie aura lieu demain a 10h restez calmes")
    assert detectors.feed([], [draft, homework, drill], 1000) == []


def test_mass_sending_fan_out_and_one_template_from_several_pupils() -> None:
    detectors = Detectors(Settings(), DEFAULT_WATCHLIST)
    pupils = [PlatformEvent(f"c{p}", "CREATE", "Conversation", 0, p, "Student") for p in "abcd"]
    text = "rendez vous tous devant le portail a midi pour la surprise du siecle"
    burst = [message(n, "a", n * 1000, text, to=2) for n in range(6)]
    found = {d.kind: d for d in detectors.feed(pupils, burst, 7000)}
    assert set(found) == {"mass-sender"} and "messages par minute" in found["mass-sender"].what
    wide = [message(10, "b", 8000, "bonjour a tous", to=35)]
    assert {d.kind for d in detectors.feed([], wide, 9000)} == {"fan-out"}
    same = [message(20 + n, p, 10_000 + n, text + " " + p, to=1) for n, p in enumerate("cd")]
    kinds = {d.kind: d for d in detectors.feed([], same, 11_000)}
    assert "template" in kinds and "3 élèves" in kinds["template"].what


def test_without_a_mailstore_the_event_stores_creations_stand_for_the_sends() -> None:
    detectors = Detectors(Settings(), DEFAULT_WATCHLIST)
    created = [PlatformEvent(f"c{n}", "CREATE", "Conversation", n * 1000, "a", "Student") for n in range(6)]
    logins = [login("b", n * 1000, "10.0.0.1") for n in range(6)]
    assert detectors.feed([*created, *logins], [], 7000) == []  # with a mailstore, its messages decide
    again = Detectors(Settings(), DEFAULT_WATCHLIST)
    found = again.feed([*created, *logins], [], 7000, sends_from_events=True)
    assert [(d.kind, d.senders) for d in found] == [("mass-sender", ("a",))]


def test_staff_writing_to_many_is_not_a_fan_out_nor_a_template() -> None:
    detectors = Detectors(Settings(), DEFAULT_WATCHLIST)
    staff = [PlatformEvent(f"s{p}", "CREATE", "Conversation", 0, p, "Teacher") for p in "xyz"]
    circular = [
        message(n, p, n, "la reunion parents professeurs aura lieu mardi", to=60) for n, p in enumerate("xyz")
    ]
    assert detectors.feed(staff, circular, 1000) == []


def test_pupils_sending_right_after_a_login_from_a_new_device() -> None:
    detectors = Detectors(Settings(), DEFAULT_WATCHLIST)
    known = [login(p, 0, "10.0.0.1") for p in "abc"]
    detectors.feed(known, [], 1000)
    fresh = [login(p, 2 * MIN, "185.220.101.47") for p in "abc"]
    sends = [message(n, p, 3 * MIN + n, f"coucou {p} ca va", to=1) for n, p in enumerate("abc")]
    found = detectors.feed(fresh, sends, 4 * MIN)
    assert [d.kind for d in found] == ["new-device"] and found[0].severity == "warning"


def test_the_window_survives_a_restart_and_forgets_what_is_old() -> None:
    detectors = Detectors(Settings(), DEFAULT_WATCHLIST)
    detectors.feed([], [message(n, "a", n * 1000, "salut", to=1) for n in range(4)], 5000)
    kept = Window.from_json(detectors.window.to_json())
    again = Detectors(Settings(), DEFAULT_WATCHLIST, window=kept)
    found = again.feed([], [message(9, "a", 6000, "salut", to=1)], 7000)
    assert [d.kind for d in found] == ["mass-sender"]  # five messages in six seconds, four of them before
    again.feed([], [], 7000 + 11 * MIN)
    assert again.window.sends == []


# -- pages --------------------------------------------------------------------------------------------------


def test_a_page_says_what_where_since_when_and_the_commands_in_french() -> None:
    detectors = Detectors(Settings(), DEFAULT_WATCHLIST)
    found = detectors.feed([], [message(1, "u1", 1_711_523_400_000)], 1_711_523_401_000)
    wave = Wave("INC-1", 1_711_523_400_000, {d.key: d for d in found})
    context = Context("https://ent.example.fr", "pcn", "/etc/pcnctl/bomb.yaml", logins={"u1": "eleve.x"},
                      schools=("0750654D",))  # fmt: skip
    subject, body = compose(context, wave, found, None, "un opérateur doit agir")
    assert subject == "[pcnctl] ent.example.fr : message menaçant (liste de surveillance) (incident INC-1)"
    assert "27/03/2024 08:10:00 (heure de Paris)" in body and "eleve.x" in body and "0750654D" in body
    assert "pcnctl -p pcn playbook run /etc/pcnctl/bomb.yaml --incident INC-1 --approve block-senders" in body
    assert "Réponse : un opérateur doit agir" in body and "watch confirm" not in body


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.fr", Smtp("mail.example.fr", 25, "none")),
        ("smtps://mail.example.fr", Smtp("mail.example.fr", 465, "ssl")),
        (
            "smtp+starttls://astreinte@mail.example.fr:2525",
            Smtp("mail.example.fr", 2525, "starttls", "astreinte"),
        ),
    ],
)
def test_smtp_addresses(url: str, expected: Smtp) -> None:
    assert Smtp.parse(url) == expected


def test_bad_channel_settings_are_refused_and_change_nothing(cli: Cli, lab: Lab) -> None:
    config = Path(os.environ["PCNCTL_CONFIG"])
    for option, value, message in [
        ("--smtp", "smtp://u:pw@mail.example.fr", "holds a password"),
        ("--smtp", "http://mail.example.fr", "is not an SMTP server address"),
        ("--page-to", "astreinte", "is not an e-mail address"),
        ("--policy", "/nonexistent/policy.yaml", "does not exist"),
    ]:
        result = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", option, value)
        assert result.exit_code == 2 and message in result.stderr, result.stderr
        assert not config.exists()
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"profiles:\n  lab:\n    url: {lab.url}\n    login: a\n    webhook_url: https://x/T\n")
    leaked = cli("profile", "list")
    assert leaked.exit_code == 3 and "holds a secret (webhook_url)" in leaked.stderr


def test_a_webhook_profile_without_its_url_is_a_clear_error(cli: Cli, lab: Lab) -> None:
    made = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--page-webhook")
    assert made.exit_code == 0
    result = cli("watch", "run", "--cycles", "1", env={"PCNCTL_PASSWORD": lab.password})
    assert result.exit_code == 3 and "PCNCTL_WEBHOOK_URL" in result.stderr


# -- the systemd unit ---------------------------------------------------------------------------------------


UNIT = ROOT / "contrib" / "systemd" / "pcnctl-watch.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(UNIT)
    return parser


def test_the_unit_is_a_restarting_simple_service_of_the_service_account() -> None:
    service = unit()["Service"]
    assert service["Type"] == "simple" and service["User"] == "pcnctl" and service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/pcnctl/watch.env" and service["KillSignal"] == "SIGTERM"
    assert set(service["RestartPreventExitStatus"].split()) == {"3", "7"}  # a person must look
    assert service["ExecStart"].startswith("/usr/local/bin/pcnctl watch run")
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit()["Unit"]["After"]
    docs = (ROOT / "docs" / "watch.md").read_text()
    assert "contrib/systemd/pcnctl-watch.service" in docs and "/etc/pcnctl/watch.env" in docs


def test_systemd_accepts_the_unit() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text().replace("/usr/local/bin/pcnctl", str(Path(sys.executable).parent / "pcnctl"))
    copy = Path(os.environ["PCNCTL_HOME"]).parent / "pcnctl-watch.service"
    copy.write_text(text)
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, check=False)
    problems = [ln for ln in done.stderr.splitlines() if "pcnctl-watch.service" in ln and "User" not in ln]
    assert not problems, done.stderr


def test_the_units_command_runs_as_written(admc: Cli, lab: Lab, tmp_path: Path) -> None:
    """ExecStart= with the environment file's variables only (systemd gives no PATH of its own), one cycle."""
    docs = (ROOT / "docs" / "watch.md").read_text()
    names = [
        ln.split("=", 1)[0]
        for ln in docs.split("# /etc/pcnctl/watch.env\n", 1)[1].split("```")[0].splitlines()
    ]
    values = {
        "PCNCTL_CONFIG": os.environ["PCNCTL_CONFIG"],
        "PCNCTL_HOME": str(tmp_path / "home"),
        "PCNCTL_PROFILE": "lab",
        "PCNCTL_PASSWORD": lab.password,
        "PCNCTL_SMTP_PASSWORD": "unused-here",
        "PCNCTL_WEBHOOK_URL": "http://127.0.0.1:9/unused",
    }
    assert set(names) == set(values), names
    env = dict(values, PCNCTL_MFA_CODE=lab.mfa_code, PCNCTL_NO_KERNEL_KEYRING="1")
    argv = unit()["Service"]["ExecStart"].replace(
        "/usr/local/bin/pcnctl", str(Path(sys.executable).parent / "pcnctl")
    )
    done = subprocess.run(
        [*argv.split(), "--cycles", "1"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "home" / "state.db").exists() and done.stdout == ""


def test_an_unknown_setting_in_a_policy_is_named() -> None:
    from pcnctl.watch.policy import load

    with pytest.raises(UsageError, match="cannot read the response policy"):
        load(Path("/nonexistent/policy.yaml"))


# -- the watcher's SQL on both backends of the state store --------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    """The state store on each backend: the home's SQLite, and the team's PostgreSQL database made as
    docs/team.md says (``state init`` as its owner), used as an operator's role: the watcher's tables are
    created and granted by the store, not by the watcher."""
    from pcnctl.state.store import SharedDatabase, StateStore

    if request.param == "sqlite":
        sqlite = StateStore(tmp_path / "home")
        request.addfinalizer(sqlite.close)
        return sqlite
    import tempfile

    from pcnctl.state import postgres
    from tests import pg

    root = Path(
        tempfile.mkdtemp(prefix="pcnctl-pg-")
    )  # as tests/test_messages.py: the server's user reads it
    server = pg.start(root)
    request.addfinalizer(lambda: (server.stop(), shutil.rmtree(root, ignore_errors=True)))
    db = pg.team_database(server)
    postgres.init(db.url("pcnctl_owner"), None)
    shared = StateStore(tmp_path / "home", database=SharedDatabase(db.url("marie")))
    request.addfinalizer(shared.close)
    return shared


def test_the_watchers_records_on_both_backends(store: object) -> None:
    from pcnctl.watch.records import Detection, Heartbeat, Response
    from pcnctl.watch.state import WatchState, heartbeat

    ent = "https://ent.example.fr"
    watch = WatchState(store, ent)  # type: ignore[arg-type]
    watch.set_cursor("events", 10, {"e1": 9})
    watch.set_cursor("events", 20, {"e2": 19})
    assert watch.cursor("events") == (20, {"e2": 19}) and watch.cursor("messages") is None
    first = Detection("watchlist", "watchlist:bomb threat", "critical", "x", 1, 2, ("m1",), ("a",), 3, "s")
    watch.keep("INC-1", first)
    watch.mark_paged("INC-1", [first.key])
    grown = dataclasses.replace(first, last_ms=5, messages=("m1", "m2"))
    watch.keep("INC-1", grown)  # the same key again: updated, its paged flag kept
    assert watch.detections("INC-1") == [(grown, True)] and watch.last_incident() == ("INC-1", 5)
    watch.queue_page("p1", "INC-1", "email", "sujet", "corps", 100)
    watch.queue_page("p1", "INC-1", "email", "sujet", "corps", 100)  # written once
    assert [p.id for p in watch.pending_pages(5)] == ["p1"] and watch.last_page_ms("INC-1") == 100
    watch.page_result("p1", 120, "")
    assert watch.pending_pages(5) == [] and watch.pages()[0].status == "sent"
    response = Response(ent, "INC-1", "abc", "running", 100, 200)
    watch.set_response(response)
    watch.set_response(Response(ent, "INC-1", "abc", "done", 100, 200, "ok", "", 1))
    assert watch.responses() == [Response(ent, "INC-1", "abc", "done", 100, 200, "ok", "", 1)]
    beat = Heartbeat(ent, "h", "t0", "t1", 1000, 3, 5.0, "ok")
    watch.beat(beat)
    assert heartbeat(store, ent) == beat  # type: ignore[arg-type]
