"""The HTTP client against an overloaded or failing lab: retries, Retry-After, timeouts, unreachable hosts."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from pcnctl.ent.http import HttpClient, RetryPolicy, parse_retry_after
from pcnctl.errors import ServerError, TransportError
from tests.conftest import Cli, Lab, add_token_profile, driver_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server(cli: Cli) -> None:
    cli("profile", "add", "gone", "--url", f"http://127.0.0.1:{free_port()}", "--login", "x")
    cli.setenv(PCNCTL_PASSWORD="x")
    result = cli("doctor")
    assert result.exit_code == 5
    assert "cannot reach" in result.stderr and "connection refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_capacity_limit_is_absorbed_by_retries_honouring_retry_after(lab: Lab, admc: Cli) -> None:
    driver = driver_for("lab")
    waits: list[float] = []
    driver.http._sleep = lambda seconds: (waits.append(seconds), time.sleep(seconds))  # type: ignore[func-returns-value]
    lab.knobs(capacity=3)
    for _ in range(4):
        driver._schools = None
        assert len(driver.list_schools()) == 20
    assert (
        driver.http.stats.statuses[429] > 0 and driver.http.stats.retries >= driver.http.stats.statuses[429]
    )
    assert waits and all(w >= 1.0 for w in waits)  # the lab's Retry-After (1 s) was honoured
    assert lab.counters()["throttled"] == driver.http.stats.statuses[429]


def test_server_errors_outlasting_retries_exit_5(lab: Lab, admc: Cli) -> None:
    assert admc("auth", "login").exit_code == 0
    lab.knobs(fail_rate=1.0)
    result = admc("schools", "list")
    assert result.exit_code == 5 and "server error" in result.stderr


def test_post_is_never_retried(lab: Lab) -> None:
    http = HttpClient(lab.url, retry=RetryPolicy(attempts=5, base_delay=0.0))
    lab.knobs(fail_rate=1.0)
    before = lab.counters()["requests"]
    with pytest.raises(ServerError) as err:
        http.request("POST", "/auth/user/mfa/code", json={"key": "1"})
    assert "not retried" in err.value.message
    assert lab.counters()["requests"] - before == 1
    with pytest.raises(ServerError):
        http.request("GET", "/auth/login")
    assert lab.counters()["requests"] - before == 6


def test_timeout_is_a_transport_error(lab: Lab) -> None:
    lab.knobs(latency_ms=600)
    http = HttpClient(lab.url, read_timeout=0.2, retry=RetryPolicy(attempts=1))
    with pytest.raises(TransportError) as err:
        http.request("GET", "/auth/login")
    assert "no answer" in err.value.message


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_session_quota_gives_a_clear_error(lab: Lab, cli: Cli) -> None:
    """Above its session limit the platform answers 509 on the token endpoint (the cookie form does not
    check it: only the login page turns into the "too many of you" page, which doctor reports)."""
    add_token_profile(cli, lab)
    cli("profile", "add", "web", "--url", lab.url, "--login", "admc.pcn")
    lab.knobs(sessions_limit=1)
    assert cli("schools", "list", "-p", "tok").exit_code == 0  # first session fits
    result = cli("schools", "list", "-p", "tok")  # no cache here: a second login
    assert result.exit_code == 5 and "refused new sessions" in result.stderr
    doctor = cli("doctor", "-p", "web", "-o", "json")
    reach = next(c for c in doctor.json() if c["check"] == "reachability")
    assert reach["status"] == "warn" and "session limit" in reach["detail"]


def test_the_environments_ca_bundle_does_not_replace_the_profiles(
    lab: Lab, admc: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcnctl.ent.http import HttpClient

    bogus = tmp_path / "other-ca.pem"
    bogus.write_text("not a certificate\n")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bogus))
    mine = tmp_path / "mine.pem"
    mine.write_text("")
    for client, expected in (
        (HttpClient(lab.url, ca_file=str(mine)), str(mine)),
        (HttpClient(lab.url), None),
    ):
        # What requests itself decides for a request, environment included.
        verify = client.session.merge_environment_settings(lab.url, {}, None, client._verify, None)["verify"]
        assert verify != str(bogus) and Path(verify).exists()
        assert expected is None or verify == expected


def test_a_dsn_with_a_password_never_reaches_the_config_file(lab: Lab, cli: Cli) -> None:
    import os

    for dsn in ("postgresql://ro:S3cret@db/ent", "host=db dbname=ent password=S3cret"):
        result = cli("profile", "add", "pg", "--url", lab.url, "--login", "x", "--mailstore", dsn)
        assert result.exit_code == 2 and "holds a password" in result.stderr
    config = Path(os.environ["PCNCTL_CONFIG"])
    assert not config.exists() or "S3cret" not in config.read_text()


def test_the_home_and_its_incidents_are_private(lab: Lab, admc: Cli) -> None:
    import os

    home = Path(os.environ["PCNCTL_HOME"])
    assert admc("incident", "open", "--id", "INC-PRIV").exit_code == 0
    for path in (home, home / "incidents", home / "incidents" / "INC-PRIV"):
        assert oct(path.stat().st_mode & 0o777) == "0o700", path
    assert oct((home / "state.db").stat().st_mode & 0o777) == "0o600"


def test_a_command_waiting_on_a_throttled_ent_says_so(lab: Lab, admc: Cli) -> None:
    """Before each wait of a second or more the operator is told what the ENT answered and when the next
    try is: a terminal never stays silent while an overloaded ENT is retried."""
    assert admc("auth", "login").exit_code == 0
    lab.knobs(capacity=2)
    for _ in range(3):
        result = admc("schools", "list", "-o", "json")
        assert result.exit_code == 0, result.stderr
        if "answered 429; try 2 of" in result.stderr:
            break
    else:
        pytest.fail("no wait was announced while the ENT answered 429")
