"""``pcnctl hunt`` against the lab: silent hijacked accounts found, a school network's pupils spared, the
output read by ``accounts block --from-file``, bad input refused before any request, ADML scope; and the
weighing rule itself on hand-made traces."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from pcnctl.forensics.hunt import Activity, Baseline, HuntQuery, Seed, Trace, grow
from tests.conftest import Cli, Lab, played_wave

ROOT = Path(__file__).resolve().parent.parent
WAVE = str(ROOT / "playbooks" / "bomb-threat-wave.yaml")
TOWN = "Versailles"  # the small preset's largest town: its school network carries 800+ pupils


@pytest.fixture
def wave(lab: Lab, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Four senders, eight silent accounts; half of them log in through Versailles' school network, where
    ordinary pupils log in meanwhile (300 of them where the test is about them, 40 elsewhere)."""
    crowd = 300 if "proxy" in request.node.name else 40
    return played_wave(
        lab, senders=4, hijacked=12, messages=24, schools=3, rate=0, noise=12, random_seed=4,
        innocent=crowd, via_proxy=0.5, city=TOWN,
    )  # fmt: skip


@pytest.fixture
def hunter(lab: Lab, cli: Cli) -> Cli:
    made = cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore",
               lab.info["mailstore"])  # fmt: skip
    assert made.exit_code == 0, made.stderr
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    return cli


def test_hunt_finds_every_hijacked_account_and_spares_the_pupils_behind_the_proxy(
    hunter: Cli, wave: dict[str, Any]
) -> None:
    assert len(wave["hijacked"]) == 12 and len(wave["silent"]) == 8
    assert set(wave["senders"]) | set(wave["silent"]) == set(wave["hijacked"])
    assert any(ip == wave["proxy"] for ip, _ua in wave["traces"].values())  # the attacker is behind it too
    assert len(wave["innocent"]) == 300 and not set(wave["innocent"]) & set(wave["hijacked"])
    seeds = [arg for login in wave["sender_logins"] for arg in ("--account", login)]
    result = hunter("hunt", *seeds, "--since", "1h", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    found = {s["id"] for s in data["suspects"]}
    assert found == set(wave["hijacked"])  # the silent ones too, and nobody else
    proxy = next(t for t in data["traces"] if t["value"] == wave["proxy"])
    assert proxy["accounts"] >= 300 and proxy["baseline_accounts"] >= 300 and proxy["weight"] < 0.01
    silent = [s for s in data["suspects"] if s["id"] in wave["silent"]]
    assert all(s["sent"] == 0 and s["reasons"] for s in silent)
    assert all(r["kind"] == "trace" for s in silent for r in s["reasons"][:1])
    assert data["rounds"] >= 2 and "account(s) found" in result.stderr


def test_hunt_output_round_trips_into_accounts_block(
    hunter: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    hunter.open_incidents("HUNT-1")
    saved, out = tmp_path / "threat.json", tmp_path / "hunt.csv"
    searched = hunter("messages", "search", "--like", wave["messages"][0], "--save", str(saved))
    assert searched.exit_code == 0, searched.stderr
    hunted = hunter("hunt", "--from-search", str(saved), "--since", "1h", "-o", "csv", "--out", str(out))
    assert hunted.exit_code == 0, hunted.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert {r["id"] for r in rows} == set(wave["hijacked"]) and all(r["reasons"] for r in rows)
    assert hunted.stdout.splitlines()[0].startswith("id,login,")
    blocked = hunter("accounts", "block", "--from-file", str(out), "--yes", "--incident", "HUNT-1")
    assert blocked.exit_code == 0, blocked.stderr
    marks = ",".join("?" * len(wave["hijacked"]))
    assert lab.sql(
        f"SELECT count(*) FROM users WHERE blocked = 1 AND id IN ({marks})", *wave["hijacked"]
    ) == [(12,)]
    assert lab.sql("SELECT count(*) FROM users WHERE blocked = 1") == [(12,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no seed to hunt from"),
        (("--ip", "185.220.101.999"), "is not an IP address"),
        (("--ip", "10.0.0.1", "--since", "1h", "--until", "2h"), "the window is empty"),
        (("--ip", "10.0.0.1", "--since", "yesterday"), "is not a date"),
        (("--ip", "10.0.0.1", "--baseline", "2024-01-01"), "is not a duration"),
        (("--ua", " "), "an empty --ua"),
        (("--ip", "10.0.0.1", "--min-score", "0"), "--min-score must be above 0"),
        (("--from-search", "/nonexistent/threat.json"), "cannot read"),
        (("--ip", "10.0.0.1", "-o", "xml"), "xml"),
    ],
)
def test_hunt_refuses_bad_input_before_any_request(
    hunter: Cli, lab: Lab, args: tuple[str, ...], message: str
) -> None:
    before = lab.counters()["requests"]
    result = hunter("hunt", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert lab.counters()["requests"] == before


def test_an_adml_hunts_only_inside_its_schools(adml: Cli, lab: Lab) -> None:
    mine = set(lab.info["accounts"]["adml"][0]["schools"])
    outside = lab.sql(
        "SELECT u.id FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
        " ON s.id = us.structure_id WHERE u.profile = 'Student'"
        f" AND s.uai NOT IN ({','.join('?' * len(mine))}) LIMIT 1",
        *sorted(mine),
    )[0][0]
    refused = adml("hunt", "--account", outside, "--since", "1h")
    assert refused.exit_code == 7 and "outside the schools this ADML administers" in refused.stderr
    inside = lab.sql(
        "SELECT u.login FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
        " ON s.id = us.structure_id WHERE u.profile = 'Student' AND s.uai = ? LIMIT 1",
        sorted(mine)[0],
    )[0][0]
    # The platform's event store is for ADMCs only (SuperAdminFilter): said plainly, not as a crash.
    events = adml("hunt", "--account", inside, "--since", "1h")
    assert events.exit_code == 7 and "event store" in events.stderr and "ADMC" in events.stderr


def test_the_playbook_contains_a_wave_whose_silent_half_never_sends(
    hunter: Cli, lab: Lab, wave: dict[str, Any]
) -> None:
    hunter.open_incidents("HUNT-PB")
    result = hunter("playbook", "run", WAVE, "--incident", "HUNT-PB", "--approve-all", "-o", "json")
    assert result.exit_code == 0, result.stderr
    steps = {s["step"]: s for s in result.json()}
    assert steps["hunt"]["status"] == "done" and steps["block-senders"]["status"] == "done"
    hijacked = wave["hijacked"]
    blocked = {r[0] for r in lab.sql("SELECT id FROM users WHERE blocked = 1")}
    assert set(hijacked) <= blocked and not blocked & set(wave["innocent"])
    assert blocked == set(hijacked)  # no innocent account blocked at all
    marks = ",".join("?" * len(wave["messages"]))
    assert lab.sql(
        f"SELECT count(*) FROM conversation.usermessages WHERE message_id IN ({marks})", *wave["messages"]
    ) == [(0,)]


# -- the rule, on hand-made traces (no ENT needed: the weighing is pure) ---------------------------------

SEEN = 10_000_000
PROXY, FOREIGN, BROWSER, SCRIPT = Trace("ip", "193.51.0.1"), Trace("ip", "45.133.1.93"), "Firefox", "curl"


def _act(*logins: tuple[str, str], sends: int = 0) -> Activity:
    act = Activity(profile="Student")
    act.logins = [(SEEN + n, ip, ua) for n, (ip, ua) in enumerate(logins)]
    act.sends = [(SEEN + 60_000 + n, logins[0][0], logins[0][1]) for n in range(sends)]
    return act


def _grow(activity: dict[str, Activity], base: Baseline, seeds: list[Seed]) -> set[str]:
    query = HuntQuery(since_ms=SEEN, until_ms=SEEN + 3_600_000, baseline_ms=86_400_000)
    suspects, _linked, _rounds = grow(seeds, activity, base, query, {})
    return set(suspects)


def test_a_shared_address_needs_more_than_corroboration() -> None:
    base = Baseline(users={PROXY: {f"pupil{n}" for n in range(300)}, Trace("ua", BROWSER): {"pupil1"}})
    activity = {
        "sender": _act((PROXY.value, SCRIPT), sends=5),
        # Behind the same proxy, with a common browser, new to the hunt and sending: still only 0.5 + ε.
        "pupil7": _act((PROXY.value, "Chrome"), sends=2),
        "pupil8": _act((PROXY.value, "Chrome")),
        # The attacker's script behind the proxy: a trace nobody ordinary used.
        "silent": _act((PROXY.value, SCRIPT)),
    }
    found = _grow(activity, base, [Seed("account", "sender", "sender")])
    assert found == {"sender", "silent"}


def test_a_new_address_links_alone_and_growth_reaches_a_fixed_point() -> None:
    crowd = {f"pupil{n}" for n in range(300)}
    base = Baseline(users={PROXY: crowd, Trace("ua", BROWSER): crowd})
    activity = {
        "a": _act((FOREIGN.value, BROWSER)),
        "b": _act((FOREIGN.value, SCRIPT)),
        "c": _act(("91.219.236.18", SCRIPT)),  # linked through b's agent, one round later
        "d": _act(("91.219.236.18", "Edge")),  # through c's address, a round after that
        "pupil": _act((PROXY.value, BROWSER), sends=1),
    }
    found = _grow(activity, base, [Seed("ip", FOREIGN.value)])
    assert found == {"a", "b", "c", "d"}


def test_a_trace_used_by_one_ordinary_account_needs_corroboration() -> None:
    vpn = Trace("ip", "198.51.100.7")
    crowd = {f"pupil{n}" for n in range(300)}
    base = Baseline(
        users={vpn: {"someone"}, Trace("ua", BROWSER): crowd}, devices={"quiet": {(vpn.value, BROWSER)}}
    )
    activity = {"quiet": _act((vpn.value, BROWSER)), "loud": _act((vpn.value, BROWSER), sends=3)}
    found = _grow(activity, base, [Seed("ip", vpn.value)])
    assert found == {"loud"}  # 1/2 for the address + 0.5 for the sends; the quiet one has 1/2 only


def _forward(lab: Lab, login: str, ip: str, agent: str, body: str, to: str) -> None:
    """``login`` logs in through the form from ``ip`` and sends the threat's text on to ``to``."""
    import requests

    s = requests.Session()
    s.headers.update({"X-Forwarded-For": ip, "User-Agent": agent})
    logged = s.post(lab.url + "/auth/login", data={"email": login, "password": lab.password},
                    allow_redirects=False, timeout=10)  # fmt: skip
    assert logged.status_code == 302 and s.cookies.get("oneSessionId"), login
    payload = {"subject": "TR: URGENT", "body": f"Regardez ce que j'ai recu ce matin : {body}", "to": [to]}
    sent = s.post(lab.url + "/conversation/send", json={**payload, "cc": [], "cci": []},
                  headers={"X-XSRF-TOKEN": s.cookies.get("XSRF-TOKEN", "")}, timeout=10)  # fmt: skip
    assert sent.status_code in (200, 201), (login, to, sent.text)


def _reachable(lab: Lab, sender: str, school_of: str) -> str:
    """Someone of the sender's school, not a pupil, the sender may write to (the lab's own rule)."""
    import sqlite3

    from pcnctl.lab import graph

    school = lab.sql(school_of, sender)[0][0]
    people = lab.sql(
        "SELECT u.id FROM users u JOIN user_structures s ON s.user_id = u.id WHERE s.structure_id = ?"
        " AND u.profile IN ('Teacher', 'Personnel') AND u.id != ? ORDER BY u.id",
        school,
        sender,
    )
    db = sqlite3.connect(lab.data_dir / "lab.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return next(p for (p,) in people if graph.verify(db, sender, p))
    finally:
        db.close()


def test_a_forward_corroborates_a_linked_account_and_never_links_alone(
    hunter: Cli, lab: Lab, wave: dict[str, Any]
) -> None:
    """A teacher who received the threat forwards it to the head teacher through the school network the
    attacker also used: not a suspect. A silent hijacked account forwarding it: found, with the forward
    among its reasons."""
    from pcnctl.lab.seed import COMMON_AGENTS

    body = lab.sql("SELECT body FROM conversation.messages WHERE id = ?", wave["messages"][0])[0][0]
    school_of = "SELECT structure_id FROM user_structures WHERE user_id = ?"
    teacher_id = next(r for r in wave["recipients"] if lab.sql("SELECT profile FROM users WHERE id = ?", r)
                      == [("Teacher",)])  # fmt: skip
    teacher = lab.sql("SELECT login FROM users WHERE id = ?", teacher_id)[0][0]
    _forward(lab, teacher, wave["proxy"], COMMON_AGENTS[0], body, _reachable(lab, teacher_id, school_of))
    silent = wave["silent"][0]
    silent_login = wave["hijacked_logins"][wave["hijacked"].index(silent)]
    _forward(lab, silent_login, *wave["traces"][silent], body, _reachable(lab, silent, school_of))
    seeds = [arg for login in wave["sender_logins"] for arg in ("--account", login)]
    result = hunter("hunt", *seeds, "--message", wave["messages"][0], "--since", "1h", "-o", "json")
    assert result.exit_code == 0, result.stderr
    suspects = {s["login"]: s for s in result.json()["suspects"]}
    assert teacher not in suspects and {s["id"] for s in suspects.values()} == set(wave["hijacked"])
    assert "forward" in {r["kind"] for r in suspects[silent_login]["reasons"]}


# -- addresses as the platform records them: the raw X-Forwarded-For ---------------------------------------


def _wave_logins(lab: Lab, wave: dict[str, Any], user: str) -> set[str]:
    """The addresses the event store holds for the account's logins during the wave (the day before, its
    owner logged in from home or school)."""
    rows = lab.sql(
        "SELECT ip FROM events WHERE user_id = ? AND event_type = 'LOGIN' AND date >= ?",
        user,
        int(wave["started_at"] * 1000),
    )
    return {ip for (ip,) in rows}


def _two_hop_machine(wave: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """A foreign machine of the attacker, the accounts that came from it, and those of them whose header
    holds two hops (the script's made-up address, then the machine's)."""
    by_machine: dict[str, list[str]] = {}
    for user, (ip, _ua) in wave["traces"].items():
        if ip != wave["proxy"]:
            by_machine.setdefault(ip, []).append(user)
    for machine, users in sorted(by_machine.items()):
        two = [u for u in users if wave["forwarded"][u] != machine]
        if two:
            return machine, users, two
    raise AssertionError("the wave has no two-hop trace")


def test_a_two_proxy_trace_is_linked_by_ip_as_the_address_the_ent_saw(
    hunter: Cli, lab: Lab, wave: dict[str, Any]
) -> None:
    machine, users, two = _two_hop_machine(wave)
    for user in two:  # recorded raw, as Renders.getIp gives it: a comma list, the client's hop last
        (raw,) = _wave_logins(lab, wave, user)
        assert raw == wave["forwarded"][user] and raw.endswith(f", {machine}") and raw.startswith("10.")
    result = hunter("hunt", "--ip", machine, "--since", "1h", "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    found = {s["id"] for s in data["suspects"]}
    assert set(users) <= found <= set(wave["hijacked"])  # nobody innocent
    seed = next(t for t in data["traces"] if t["value"] == machine)
    assert seed["accounts"] == len(users) and seed["origin"] == f"seed ip {machine}"
    assert not [t for t in data["traces"] if "," in t["value"]]  # hops compared, never the raw list
    behind = lab.sql("SELECT count(DISTINCT ip) FROM events WHERE ip LIKE ?", f"%, {wave['proxy']}")
    assert behind[0][0] > 1  # pupils on school computers: one raw header each, one school address
    proxy = next(t for t in data["traces"] if t["value"] == wave["proxy"])
    assert proxy["accounts"] > 40 and proxy["weight"] < 0.01  # all of them one trace, known before


def test_the_profile_says_how_many_proxies_the_ent_has(hunter: Cli, lab: Lab, wave: dict[str, Any]) -> None:
    """Counting two proxies where there is one takes the hop the client wrote: the two-hop accounts of
    the machine are no longer seen on it (so the setting is the deployment's, not a guess)."""
    machine, users, two = _two_hop_machine(wave)
    made = hunter("profile", "add", "two", "--url", lab.url, "--login", "admc.pcn", "--trusted-proxies", "2")
    assert made.exit_code == 0, made.stderr
    shown = hunter("profile", "show", "two", "-o", "json")
    assert shown.json()["trusted_proxies"] == 2
    result = hunter("hunt", "-p", "two", "--ip", machine, "--since", "1h", "-o", "json")
    assert result.exit_code == 0, result.stderr
    seed = next(t for t in result.json()["traces"] if t["value"] == machine)
    assert seed["accounts"] == len(users) - len(two)
    for bad in ("0", "11", "deux"):
        refused = hunter("profile", "add", "bad", "--url", lab.url, "--login", "x", "--trusted-proxies", bad)
        assert refused.exit_code == 2 and "Traceback" not in refused.stderr, refused.stderr
        said = "'deux' is not a valid int" if bad == "deux" else "from 1 to 10, not"
        assert said in refused.stderr, refused.stderr
    assert "bad" not in hunter("profile", "list", "-o", "json").stdout


def test_senders_show_the_address_the_ent_saw(hunter: Cli, wave: dict[str, Any]) -> None:
    rows = hunter("senders", "--since", "1h", "-o", "json").json()
    mine = {r["id"]: r for r in rows if r["id"] in wave["senders"]}
    assert set(mine) == set(wave["senders"])
    for user, row in mine.items():
        assert row["ips"] == [wave["traces"][user][0]]  # the hop, not the raw header


# -- the baseline must have seen the ordinary traffic --------------------------------------------------------


def test_a_hunt_on_a_day_whose_baseline_holds_no_login_is_refused(
    hunter: Cli, lab: Lab, wave: dict[str, Any], tmp_path: Path
) -> None:
    """The 24-hour case: the day before the window holds no login (the lab's history is all inside the
    window), so the school network's address would weigh as new and link everyone behind it."""
    seeds = [arg for login in wave["sender_logins"] for arg in ("--account", login)]
    refused = hunter("hunt", *seeds, "--since", "24h", "-o", "json")
    assert refused.exit_code == 7 and refused.stdout == "", refused.stderr
    assert "saw 0 ordinary account(s) log in, for " in refused.stderr and "--baseline" in refused.stderr
    window = int(refused.stderr.split("for ")[1].split(" account(s)")[0])
    assert window > 1000  # a day of the académie's logins
    # What the refusal prevents: without a baseline every shared address weighs 1.
    reckless = hunter("hunt", *seeds, "--since", "24h", "--baseline", "0", "-o", "json")
    assert reckless.exit_code == 0 and "no baseline (--baseline 0)" in reckless.stderr
    linked = {s["id"] for s in reckless.json()["suspects"]}
    assert len(linked) > 300 and set(wave["innocent"]) <= linked  # the pupils behind the proxy
    ok = hunter("hunt", *seeds, "--since", "1h", "-o", "json")
    assert ok.exit_code == 0 and ok.json()["baseline_accounts"] * 4 >= ok.json()["window_accounts"]
    assert f"by {ok.json()['baseline_accounts']} ordinary account(s)" in ok.stderr


def test_the_playbook_stops_at_the_hunt_rather_than_block_on_a_thin_baseline(
    hunter: Cli, lab: Lab, wave: dict[str, Any]
) -> None:
    hunter.open_incidents("HUNT-24")
    result = hunter(
        "playbook",
        "run",
        WAVE,
        "--incident",
        "HUNT-24",
        "--approve-all",
        "--input",
        "since=24h",
        "-o",
        "json",
    )
    assert result.exit_code == 8, result.stderr
    assert "step 'hunt' failed" in result.stderr and "saw 0 ordinary account(s)" in result.stderr
    assert lab.sql("SELECT count(*) FROM users WHERE blocked = 1") == [(0,)]  # no block at all
    assert lab.sql("SELECT count(*) FROM account_log") == [(0,)]
