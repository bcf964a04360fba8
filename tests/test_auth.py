"""Authentication against the lab: each mode, MFA, wrong secrets, headless machines, session renewal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from tests.conftest import Cli, Lab, MemoryKeyring, add_token_profile, driver_for
from tests.contract import load


def test_cookie_login_with_mfa_from_env(admc: Cli) -> None:
    result = admc("auth", "login", "-o", "json")
    assert result.exit_code == 0, result.stderr
    ident = result.json()
    assert ident["role"] == "ADMC" and ident["login"] == "admc.pcn" and ident["authMode"] == "cookie"
    assert "session not cached (no keyring)" in result.stderr


def test_mfa_required_without_a_code_is_a_clear_error(admc: Cli, monkeypatch: object) -> None:
    import os

    del os.environ["PCNCTL_MFA_CODE"]
    result = admc("users", "list", "--school", "0782268S")
    assert result.exit_code == 3
    assert "requires MFA" in result.stderr and "PCNCTL_MFA_CODE" in result.stderr


def test_wrong_mfa_code(admc: Cli) -> None:
    admc.setenv(PCNCTL_MFA_CODE="000000")
    result = admc("users", "list", "--school", "0782268S")
    assert result.exit_code == 3 and "MFA code was refused" in result.stderr


def test_mfa_prompt_is_not_used_without_a_terminal(lab: Lab, admc: Cli) -> None:
    import os

    del os.environ["PCNCTL_MFA_CODE"]
    result = admc("users", "list", "--school", "0782268S", input=lab.mfa_code + "\n")
    assert result.exit_code == 3  # stdin is not a TTY: no prompt, a clear error instead


def test_wrong_password(admc: Cli) -> None:
    admc.setenv(PCNCTL_PASSWORD="not-the-password")
    result = admc("schools", "list")
    assert result.exit_code == 3
    assert "login or password refused" in result.stderr and "not-the-password" not in result.stderr


def test_blocked_account_gets_the_real_error(lab: Lab, admc: Cli) -> None:
    lab.write_sql("UPDATE users SET blocked = 1 WHERE login = 'admc.pcn'")
    result = admc("schools", "list")
    assert result.exit_code == 3 and "blocked on the ENT" in result.stderr


def test_headless_machine_without_secret_points_to_the_variable(lab: Lab, cli: Cli) -> None:
    cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn")
    result = cli("schools", "list")
    assert result.exit_code == 3
    assert "no password for profile 'lab'" in result.stderr and "PCNCTL_PASSWORD" in result.stderr
    assert "no keyring" in result.stderr


def test_oauth_password_grant(lab: Lab, cli: Cli) -> None:
    add_token_profile(cli, lab)  # with an MFA code: the platform asks token-backed admin sessions too
    result = cli("users", "list", "--school", "0782268S", "--profile", "Teacher", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() and {u["profile"] for u in result.json()} == {"Teacher"}
    # userinfo v1.0 drops 'functions' for a bearer token: pcnctl asks v2.0, so the ADMC is seen as one.
    rows = cli("doctor", "-o", "json").json()
    identity = next(r for r in rows if r["check"] == "identity")
    assert identity["status"] == "ok" and "ADMC" in identity["detail"]


def test_oauth_wrong_client_secret(lab: Lab, cli: Cli) -> None:
    cli(
        "profile",
        "add",
        "tok",
        "--url",
        lab.url,
        "--auth",
        "oauth-password",
        "--login",
        "admc.pcn",
        "--client-id",
        "pcnctl-lab",
    )
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_CLIENT_SECRET="wrong")
    result = cli("schools", "list")
    assert result.exit_code == 3 and "OAuth2 client 'pcnctl-lab' was refused" in result.stderr


def test_client_credentials_is_a_service_identity(lab: Lab, cli: Cli) -> None:
    service = lab.info["oauth"]["service_client"]
    cli(
        "profile",
        "add",
        "svc",
        "--url",
        lab.url,
        "--auth",
        "oauth-client",
        "--client-id",
        service["client_id"],
        "--scope",
        service["scope"],
    )
    cli.setenv(PCNCTL_CLIENT_SECRET=service["client_secret"])
    result = cli("doctor", "-o", "json")
    assert result.exit_code == 0, result.stderr
    identity = next(r for r in result.json() if r["check"] == "identity")
    assert "service account pcnctl-service" in identity["detail"] and "bypasses" in identity["detail"]
    # The token is limited to the actions its scope lists: the admin user list needs a user session.
    denied = cli("schools", "list")
    assert denied.exit_code == 4 and "access denied" in denied.stderr


def test_keyring_login_save_status_logout(lab: Lab, cli: Cli, memory_keyring: MemoryKeyring) -> None:
    cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn")
    cli.setenv(PCNCTL_MFA_CODE=lab.mfa_code)
    login = cli("auth", "login", "--save", "--secret-stdin", input=lab.password + "\n")
    assert login.exit_code == 0, login.stderr
    assert memory_keyring.entries[("pcnctl", "lab:password")] == lab.password
    assert "session cached in the keyring" in login.stderr
    status = cli("auth", "status", "-o", "json").json()
    assert status["password_source"] == "keyring" and status["session"] == "valid"
    assert status["cached_session"] is True and lab.password not in str(status)
    # The cached session is reused: no new login is needed while it lives.
    sessions = lab.sql("SELECT count(*) FROM sessions")[0][0]
    assert cli("schools", "list", "-o", "json").exit_code == 0
    assert lab.sql("SELECT count(*) FROM sessions")[0][0] == sessions
    out = cli("auth", "logout", "--forget")
    assert out.exit_code == 0 and ("pcnctl", "lab:password") not in memory_keyring.entries
    assert not [user for (_, user) in memory_keyring.entries if user.startswith("lab:session")]
    assert lab.sql("SELECT count(*) FROM sessions")[0][0] == sessions - 1


def test_session_expiring_mid_run_is_renewed_once(lab: Lab, admc: Cli) -> None:
    driver = driver_for("lab")
    assert driver.list_users(driver.list_schools()[0].id, profiles=["Guest"]) is not None
    lab.write_sql("DELETE FROM sessions")  # the ENT drops every session (restart, admin action)
    driver._schools = None
    schools = driver.list_schools()
    assert len(schools) == 20 and driver.http.stats.renewals == 1


def test_lab_security_gate(lab: Lab) -> None:
    """The lab answers like Edifice: login redirect, invalid token, CSRF, ADML scope, service scope."""
    no_session = requests.get(lab.url + "/directory/structure/admin/list", allow_redirects=False, timeout=5)
    login_page = lab.url + "/auth/login?callback="
    assert no_session.status_code == 302 and no_session.headers["Location"].startswith(login_page)
    load("common/session-missing").check_response(no_session)
    bad_token = requests.get(
        lab.url + "/directory/structure/admin/list",
        headers={"Authorization": "Bearer nope"},
        allow_redirects=False,
        timeout=5,
    )
    assert bad_token.status_code == 302 and bad_token.headers["Location"].startswith(login_page)

    s = requests.Session()
    r = s.post(
        lab.url + "/auth/login",
        data={"email": "adml1.pcn", "password": lab.password},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302 and s.cookies.get("oneSessionId") and s.cookies.get("XSRF-TOKEN")
    no_csrf = s.post(lab.url + "/auth/user/mfa/code", json={"key": lab.mfa_code}, timeout=5)
    assert no_csrf.status_code == 403 and no_csrf.json() == {"error": "invalid.xsrf.token"}
    load("common/csrf-refused").check_response(no_csrf)
    mfa = s.get(lab.url + "/directory/user/admin/list?profile=Guest", allow_redirects=False, timeout=5)
    assert mfa.status_code == 302 and "/auth/validate-mfa" in mfa.headers["Location"]
    ok = s.post(
        lab.url + "/auth/user/mfa/code",
        json={"key": lab.mfa_code},
        headers={"X-XSRF-TOKEN": s.cookies["XSRF-TOKEN"]},
        timeout=5,
    )
    assert ok.json()["state"] == "valid"
    other = lab.sql(
        "SELECT id FROM structures WHERE uai NOT IN (?, ?) LIMIT 1",
        *lab.info["accounts"]["adml"][0]["schools"],
    )
    denied = s.get(lab.url + f"/directory/structure/{other[0][0]}/users", allow_redirects=False, timeout=5)
    assert denied.status_code == 401

    service = lab.info["oauth"]["service_client"]
    token = requests.post(
        lab.url + "/auth/oauth2/token",
        data={"grant_type": "client_credentials", "scope": service["scope"]},
        auth=(service["client_id"], service["client_secret"]),
        timeout=5,
    ).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(lab.url + "/directory/structures", headers=bearer, timeout=5).status_code == 200
    not_in_scope = requests.get(lab.url + "/directory/structure/admin/list", headers=bearer, timeout=5)
    assert not_in_scope.status_code == 401
    load("common/action-denied").check_response(not_in_scope)


def test_an_expired_session_sent_to_an_sso_portal_is_renewed(lab: Lab, admc: Cli) -> None:
    """A platform with a ``loginUri`` sends expired sessions to its SSO portal, not to /auth/login."""
    driver = driver_for("lab")
    driver.list_schools()
    lab.knobs(login_uri="https://sso.example.fr/cas/login?service=ent")
    lab.write_sql("DELETE FROM sessions")
    driver._schools = None
    assert len(driver.list_schools()) == 20 and driver.http.stats.renewals == 1


def test_a_session_the_ent_keeps_sending_to_its_portal_names_the_portal(lab: Lab, admc: Cli) -> None:
    lab.knobs(login_uri="https://sso.example.fr/cas/login")
    lab.write_sql("UPDATE users SET password = 'ERASED' WHERE login = 'admc.pcn'")
    result = admc("schools", "list")
    assert result.exit_code == 3 and "login or password refused" in result.stderr
    lab.write_sql("UPDATE users SET password = NULL WHERE login = 'admc.pcn'")
    cookie = requests.get(
        lab.url + "/directory/structure/admin/list",
        cookies={"oneSessionId": "stale"},
        allow_redirects=False,
        timeout=5,
    )
    assert cookie.status_code == 302 and cookie.headers["Location"].startswith("https://sso.example.fr/")


def test_a_blocked_account_is_told_so_on_both_login_routes(lab: Lab, cli: Cli) -> None:
    """The cookie form answers with the translated text, the token endpoint with access_denied."""
    client = lab.info["oauth"]["password_client"]
    login = lab.info["accounts"]["student"]["login"]
    lab.write_sql("UPDATE users SET blocked = 1 WHERE login = ?", login)
    cli("profile", "add", "web", "--url", lab.url, "--login", login)
    cli("profile", "add", "tok", "--url", lab.url, "--auth", "oauth-password", "--login", login,
        "--client-id", client["client_id"])  # fmt: skip
    cli.setenv(PCNCTL_PASSWORD="wrong-password", PCNCTL_CLIENT_SECRET=client["client_secret"])
    for name in ("web", "tok"):
        result = cli("schools", "list", "-p", name)
        assert result.exit_code == 3 and "this account is blocked on the ENT" in result.stderr, result.stderr


def test_a_scope_the_client_may_not_have_is_named(lab: Lab, cli: Cli) -> None:
    add_token_profile(cli, lab, "tok", "--scope", "userinfo directory payroll")
    result = cli("schools", "list", "-p", "tok")
    assert result.exit_code == 3 and "may not ask for scope 'userinfo directory payroll'" in result.stderr


def test_a_service_profile_without_scope_is_refused_before_any_request(lab: Lab, cli: Cli) -> None:
    before = lab.counters()["requests"]
    result = cli("profile", "add", "svc", "--url", lab.url, "--auth", "oauth-client", "--client-id", "x")
    assert result.exit_code == 2 and "needs the scopes registered" in result.stderr
    assert lab.counters()["requests"] == before


def test_an_admin_account_forced_to_change_its_password_gets_a_clear_error(lab: Lab, admc: Cli) -> None:
    lab.write_sql("UPDATE users SET change_pw = 1 WHERE login = 'admc.pcn'")
    result = admc("schools", "list")
    assert result.exit_code == 3 and "requires a new password for 'admc.pcn'" in result.stderr
    assert "change the password" in result.stderr


def test_a_malformed_mfa_code_is_refused_before_it_is_sent(lab: Lab, admc: Cli) -> None:
    admc.setenv(PCNCTL_MFA_CODE="12ab")
    result = admc("users", "list", "--school", "0782268S", "--profile", "Guest")
    assert result.exit_code == 3 and "6 digits" in result.stderr
    assert lab.sql("SELECT max(mfa_tries) FROM sessions") == [(0,)]  # no try was spent


def test_a_headless_machine_logs_in_once_per_shift(
    lab: Lab, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No desktop keyring: the session (and its passed MFA) is cached in the kernel keyring, in memory."""
    from pcnctl.ent.kernelkeys import KernelKeyring

    ring = KernelKeyring.open()
    if ring is None or not ring.put("probe", "x", 5) or ring.get("probe") != "x":
        pytest.skip("this kernel offers no user keyring here (a container without keyctl?)")
    ring.drop("probe")
    name = f"shift{os.getpid()}"
    monkeypatch.delenv("PCNCTL_NO_KERNEL_KEYRING")
    cli("profile", "add", name, "--url", lab.url, "--login", "admc.pcn")
    saved = cli("auth", "login", "--save", "-p", name, input=lab.password + "\n")
    assert saved.exit_code == 3 and "no keyring to save the secret" in saved.stderr
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    try:
        login = cli("auth", "login", "-p", name)
        assert login.exit_code == 0 and "kernel keyring" in login.stderr, login.stderr
        monkeypatch.delenv("PCNCTL_MFA_CODE")  # no second code: the cached session has passed MFA
        sessions = lab.sql("SELECT count(*) FROM sessions")[0][0]
        listed = cli(
            "users", "list", "--school", "0782268S", "--profile", "Teacher", "-p", name, "-o", "json"
        )
        assert listed.exit_code == 0 and listed.json(), listed.stderr
        assert lab.sql("SELECT count(*) FROM sessions")[0][0] == sessions
        assert not any(
            lab.password in p.read_text(errors="ignore")
            for p in Path(os.environ["PCNCTL_HOME"]).rglob("*")
            if p.is_file()
        )
    finally:
        assert cli("auth", "logout", "-p", name).exit_code == 0
    assert cli("auth", "status", "-p", name, "-o", "json").json()["cached_session"] is False


def test_a_server_that_is_not_an_ent_is_named_so(cli: Cli, tmp_path: Path) -> None:
    """A profile pointing at an ordinary web server: not 'login or password refused'."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = b"<html><body><h1>Welcome to nginx!</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        cli("profile", "add", "web", "--url", url, "--login", "admc.pcn")
        cli.setenv(PCNCTL_PASSWORD="x")
        result = cli("schools", "list", "-p", "web")
        assert result.exit_code == 3 and "does not answer like an Edifice ENT" in result.stderr
        assert "password refused" not in result.stderr
    finally:
        server.shutdown()
