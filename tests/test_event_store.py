"""The event store as the platform writes it: ``ip`` is the raw ``X-Forwarded-For`` (``Renders.getIp``), or
the TCP peer without one; pcnctl compares the client's hop; doctor says when the store answers empty."""

from __future__ import annotations

import pytest
import requests

from pcnctl.forensics.events import client_hop
from tests.conftest import Cli, Lab

ADMC = "admc.pcn"


def _student(lab: Lab) -> tuple[str, str]:
    row = lab.sql(
        "SELECT id, login FROM users WHERE profile = 'Student' AND coalesce(blocked, 0) = 0"
        " ORDER BY id LIMIT 1"
    )
    return str(row[0][0]), str(row[0][1])


def _log_in(lab: Lab, login: str, headers: dict[str, str]) -> requests.Session:
    s = requests.Session()
    s.headers.update(headers)
    done = s.post(lab.url + "/auth/login", data={"email": login, "password": lab.password},
                  allow_redirects=False, timeout=10)  # fmt: skip
    assert done.status_code == 302 and s.cookies.get("oneSessionId"), login
    return s


def _last_ip(lab: Lab, user: str, kind: str) -> str:
    rows = lab.sql(
        "SELECT ip FROM events WHERE user_id = ? AND event_type = ? ORDER BY date DESC, rowid DESC LIMIT 1",
        user,
        kind,
    )
    return str(rows[0][0])


def test_the_lab_records_x_forwarded_for_as_it_stands(lab: Lab) -> None:
    user, login = _student(lab)
    raw = "10.3.7.21, 193.51.24.7"  # a school computer behind the school's filtering proxy
    s = _log_in(lab, login, {"X-Forwarded-For": raw, "User-Agent": "Firefox"})
    assert _last_ip(lab, user, "LOGIN") == raw  # not split, not trimmed: the event store writes it as is
    teacher = lab.sql(
        "SELECT u.id FROM users u JOIN user_structures a ON a.user_id = u.id JOIN user_structures b"
        " ON b.structure_id = a.structure_id WHERE b.user_id = ? AND u.profile = 'Teacher' LIMIT 1",
        user,
    )[0][0]
    sent = s.post(lab.url + "/conversation/send", json={"subject": "s", "body": "b", "to": [teacher]},
                  headers={"X-XSRF-TOKEN": s.cookies.get("XSRF-TOKEN", "")}, timeout=10)  # fmt: skip
    assert sent.status_code == 200, sent.text
    assert _last_ip(lab, user, "CREATE") == raw  # the send's event too
    _log_in(lab, login, {})  # no header: the TCP peer's address, as getIp falls back to
    assert _last_ip(lab, user, "LOGIN") == "127.0.0.1"
    _log_in(lab, login, {"X-Forwarded-For": ""})  # an empty header counts as none
    assert _last_ip(lab, user, "LOGIN") == "127.0.0.1"


@pytest.mark.parametrize(
    ("raw", "trusted", "hop"),
    [
        ("185.220.101.47", 1, "185.220.101.47"),
        ("10.8.0.2, 185.220.101.47", 1, "185.220.101.47"),  # whatever the client wrote first is ignored
        ("10.8.0.2,185.220.101.47", 1, "185.220.101.47"),
        ("1.2.3.4, 185.220.101.47, 10.0.0.5", 2, "185.220.101.47"),  # a load balancer, then the web server
        ("185.220.101.47", 2, "185.220.101.47"),  # fewer hops than proxies: the first one
        (" 203.0.113.9:51234 ", 1, "203.0.113.9"),
        ("[2001:db8::1]:443", 1, "2001:db8::1"),
        ("2001:DB8:0::1", 1, "2001:db8::1"),
        ("unknown", 1, "unknown"),
        ("", 1, ""),
        (None, 1, ""),
    ],
)
def test_the_client_hop_is_the_address_the_outermost_trusted_proxy_saw(
    raw: str | None, trusted: int, hop: str
) -> None:
    assert client_hop(raw, trusted) == hop


def _doctor(cli: Cli) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    result = cli("doctor", "-o", "json")
    assert result.exit_code == 0, result.stderr
    rows = result.json()
    checks = {r["check"]: r for r in rows if r["kind"] == "check"}
    capabilities = {r["check"]: r for r in rows if r["kind"] == "capability"}
    return checks, capabilities


def test_doctor_says_when_the_event_store_answers_empty(lab: Lab, cli: Cli) -> None:
    assert cli("profile", "add", "lab", "--url", lab.url, "--login", ADMC).exit_code == 0
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    checks, capabilities = _doctor(cli)
    assert checks["events"]["status"] == "ok" and "5 minutes" in checks["events"]["detail"]
    assert capabilities["infra.event_store"]["status"] == "ok"
    # A deployment whose events go to another store: the route still answers 200, with an empty list.
    lab.knobs(event_store="postgresql")
    checks, capabilities = _doctor(cli)
    assert (
        checks["events"]["status"] == "warn"
        and "empty list for the last 24 hours" in checks["events"]["detail"]
    )
    assert capabilities["infra.event_store"]["status"] == "no"
    assert "mass_senders needs" in checks["audit"]["detail"]
