"""A cached session belongs to one identity: the home and config, the ENT, the account and the mode it was
opened for, and the user the ENT names. Only ``auth login`` caches; every reuse is checked against userinfo.
MFA is retried like the login. All against the lab over real HTTP, with an in-memory desktop keyring."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from tests.conftest import Cli, Lab, MemoryKeyring

ADML = "adml1.pcn"


def sessions(keyring: MemoryKeyring) -> dict[str, str]:
    """The cached sessions the keyring holds, by entry name."""
    return {user: value for (service, user), value in keyring.entries.items() if ":session" in user}


def logged_in(cli: Cli) -> None:
    result = cli("auth", "login")
    assert result.exit_code == 0 and "session cached in the keyring" in result.stderr, result.stderr


def identity(cli: Cli) -> str:
    """What doctor says the profile acts as (its identity line)."""
    result = cli("doctor", "-o", "json")
    assert result.exit_code == 0, result.stderr
    return str(next(r for r in result.json() if r["check"] == "identity")["detail"])


def refused(cli: Cli, *args: str) -> None:
    """The command logs in with the (wrong) password of the environment, and the ENT refuses it."""
    result = cli(*args)
    assert result.exit_code == 3 and "login or password refused" in result.stderr, result.stderr


def test_the_cached_session_is_reused_without_the_password(
    admc: Cli, lab: Lab, memory_keyring: MemoryKeyring
) -> None:
    """The baseline the other tests stand on: while it is its own, the cached session needs no secret."""
    logged_in(admc)
    admc.setenv(PCNCTL_PASSWORD="not-the-password")
    assert identity(admc).startswith("admc.pcn: ADMC")


def test_a_profile_replaced_by_another_login_never_acts_as_the_old_one(
    admc: Cli, lab: Lab, memory_keyring: MemoryKeyring
) -> None:
    logged_in(admc)
    assert sessions(memory_keyring)
    memory_keyring.set_password("pcnctl", "lab:password", lab.password)  # the ADMC's, saved earlier
    replaced = admc("profile", "add", "lab", "--url", lab.url, "--login", ADML, "--force")
    assert replaced.exit_code == 0, replaced.stderr
    assert not sessions(memory_keyring) and ("pcnctl", "lab:password") not in memory_keyring.entries
    assert "password of the previous account deleted" in replaced.stderr
    admc.setenv(PCNCTL_PASSWORD="not-the-password")
    refused(admc, "doctor")
    admc.setenv(PCNCTL_PASSWORD=lab.password)
    assert identity(admc).startswith(f"{ADML}: ADML of 2 school(s)")


def test_replacing_a_profile_with_the_same_account_keeps_its_secrets(
    admc: Cli, lab: Lab, memory_keyring: MemoryKeyring
) -> None:
    logged_in(admc)
    memory_keyring.set_password("pcnctl", "lab:password", lab.password)
    login = lab.info["accounts"]["admc"]["login"]
    again = admc("profile", "add", "lab", "--url", lab.url, "--login", login, "--read-timeout", "20",
                 "--force")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert not sessions(memory_keyring)  # replaced: its session goes all the same
    assert memory_keyring.entries[("pcnctl", "lab:password")] == lab.password


def test_removing_a_profile_drops_its_cached_session(
    admc: Cli, lab: Lab, memory_keyring: MemoryKeyring
) -> None:
    logged_in(admc)
    assert admc("profile", "remove", "lab").exit_code == 0
    assert not sessions(memory_keyring)
    admc("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn")
    admc.setenv(PCNCTL_PASSWORD="not-the-password")
    refused(admc, "schools", "list")


def test_another_home_never_sees_the_session(
    admc: Cli, lab: Lab, memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    logged_in(admc)
    admc.setenv(PCNCTL_PASSWORD="not-the-password", PCNCTL_HOME=str(tmp_path / "other-home"))
    refused(admc, "schools", "list")
    assert sessions(memory_keyring)  # the first home's session is left alone, still its own


def test_another_config_with_the_same_profile_name_and_url_never_sees_it(
    admc: Cli, lab: Lab, memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    logged_in(admc)
    admc.setenv(PCNCTL_CONFIG=str(tmp_path / "other" / "config.yaml"))
    assert admc("profile", "add", "lab", "--url", lab.url, "--login", ADML).exit_code == 0
    admc.setenv(PCNCTL_PASSWORD="not-the-password")
    refused(admc, "doctor")


def test_a_url_changed_and_changed_back_does_not_bring_the_session_back(
    admc: Cli, lab: Lab, memory_keyring: MemoryKeyring
) -> None:
    logged_in(admc)
    config = Path(os.environ["PCNCTL_CONFIG"])
    text = config.read_text()
    config.write_text(text.replace(lab.url, "http://127.0.0.1:9"))  # edited by hand, no pcnctl command
    assert admc("schools", "list").exit_code == 5  # nothing listens there; the session was not for it
    assert not sessions(memory_keyring)
    config.write_text(text)
    admc.setenv(PCNCTL_PASSWORD="not-the-password")
    refused(admc, "schools", "list")


def test_only_auth_login_caches_a_session(admc: Cli, lab: Lab, memory_keyring: MemoryKeyring) -> None:
    assert admc("schools", "list").exit_code == 0
    assert admc("users", "list", "--school", "0782268S", "--profile", "Guest").exit_code == 0  # MFA too
    assert not sessions(memory_keyring)
    admc.setenv(PCNCTL_PASSWORD="not-the-password")
    refused(admc, "schools", "list")


def test_a_cached_session_the_ent_says_is_another_users_is_dropped(
    admc: Cli, lab: Lab, memory_keyring: MemoryKeyring
) -> None:
    logged_in(admc)
    other = requests.Session()
    answer = other.post(lab.url + "/auth/login", data={"email": ADML, "password": lab.password}, timeout=5,
                        allow_redirects=False)  # fmt: skip
    assert answer.status_code == 302 and other.cookies.get("oneSessionId")
    [(entry, raw)] = sessions(memory_keyring).items()
    cached = json.loads(raw)
    cached["cookies"] = other.cookies.get_dict()  # the ADML's session under the ADMC's name
    memory_keyring.set_password("pcnctl", entry, json.dumps(cached))
    admc.setenv(PCNCTL_PASSWORD="not-the-password")
    refused(admc, "schools", "list")
    assert not sessions(memory_keyring)
    memory_keyring.set_password("pcnctl", entry, json.dumps(cached))
    admc.setenv(PCNCTL_PASSWORD=lab.password)
    assert identity(admc).startswith("admc.pcn: ADMC")  # logged in again as itself, not the ADML
    assert not sessions(memory_keyring)  # and that login was not cached


def test_an_expired_cached_session_is_dropped_and_not_cached_again(
    admc: Cli, lab: Lab, memory_keyring: MemoryKeyring
) -> None:
    logged_in(admc)
    lab.write_sql("DELETE FROM sessions")  # the ENT forgot every session
    result = admc("schools", "list", "-o", "json")
    assert result.exit_code == 0 and len(result.json()) == 20, result.stderr
    assert not sessions(memory_keyring)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("status", [500, 0], ids=["500", "reset"])
def test_the_mfa_code_flow_is_retried_like_the_login(admc: Cli, lab: Lab, method: str, status: int) -> None:
    lab.knobs(fail_match=f"{method} /auth/user/mfa/code", fail_count=1, fail_status=status)
    result = admc("users", "list", "--school", "0782268S", "--profile", "Teacher", "-o", "json")
    assert result.exit_code == 0 and result.json(), result.stderr
    assert lab.counters()["faults"] == 1  # the fault did hit the MFA call, once


def test_an_mfa_route_that_keeps_failing_ends_in_a_clear_unavailable_error(admc: Cli, lab: Lab) -> None:
    lab.knobs(fail_match="POST /auth/user/mfa/code", fail_count=-1, fail_status=500)
    result = admc("users", "list", "--school", "0782268S", "--profile", "Teacher")
    assert result.exit_code == 5 and "Traceback" not in result.stderr
    assert lab.counters()["faults"] == 4  # as many tries as a login gets


def test_removing_a_profile_drops_its_session_from_the_kernel_keyring(
    lab: Lab, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A headless machine caches in the kernel keyring, which outlives the profile unless it is dropped."""
    from pcnctl.ent.kernelkeys import KernelKeyring

    ring = KernelKeyring.open()
    if ring is None or not ring.put("probe", "x", 5) or ring.get("probe") != "x":
        pytest.skip("this kernel offers no user keyring here (a container without keyctl?)")
    ring.drop("probe")
    name = f"gone{os.getpid()}"
    monkeypatch.delenv("PCNCTL_NO_KERNEL_KEYRING")
    cli("profile", "add", name, "--url", lab.url, "--login", "admc.pcn")
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    try:
        login = cli("auth", "login", "-p", name)
        assert login.exit_code == 0 and "kernel keyring" in login.stderr, login.stderr
        assert cli("profile", "remove", name).exit_code == 0
        cli("profile", "add", name, "--url", lab.url, "--login", "admc.pcn")
        cli.setenv(PCNCTL_PASSWORD="not-the-password")
        refused(cli, "schools", "list", "-p", name)
    finally:
        cli("auth", "logout", "-p", name)


def test_logout_closes_only_a_session_the_ent_names_as_the_profiles_user(
    admc: Cli, lab: Lab, memory_keyring: MemoryKeyring
) -> None:
    logged_in(admc)
    other = requests.Session()
    other.post(lab.url + "/auth/login", data={"email": ADML, "password": lab.password}, timeout=5,
               allow_redirects=False)  # fmt: skip
    [(entry, raw)] = sessions(memory_keyring).items()
    memory_keyring.set_password(
        "pcnctl", entry, json.dumps({**json.loads(raw), "cookies": other.cookies.get_dict()})
    )
    live = lab.sql("SELECT count(*) FROM sessions")[0][0]
    admc.setenv(PCNCTL_PASSWORD="")  # no secret: logout must not need one
    out = admc("auth", "logout")
    assert out.exit_code == 0 and "No cached session" in out.stderr, out.stderr
    assert lab.sql("SELECT count(*) FROM sessions")[0][0] == live  # the ADML's session was not closed
    assert not sessions(memory_keyring)


def test_a_cached_token_is_checked_like_a_cookie_session(
    lab: Lab, cli: Cli, memory_keyring: MemoryKeyring
) -> None:
    from tests.conftest import add_token_profile

    add_token_profile(cli, lab, "tok")
    logged_in(cli)
    [raw] = sessions(memory_keyring).values()
    assert json.loads(raw)["token"] and json.loads(raw)["account"] == "admc.pcn|pcnctl-lab"
    cli.setenv(PCNCTL_PASSWORD="not-the-password", PCNCTL_CLIENT_SECRET="not-the-secret")
    assert identity(cli).startswith("admc.pcn: ADMC")  # the cached token, checked against userinfo
    cli.setenv(
        PCNCTL_PASSWORD=lab.password,
        PCNCTL_CLIENT_SECRET=lab.info["oauth"]["password_client"]["client_secret"],
    )
    again = cli("profile", "add", "tok", "--url", lab.url, "--auth", "oauth-password", "--login", ADML,
                "--client-id", "pcnctl-lab", "--force")  # fmt: skip
    assert again.exit_code == 0 and not sessions(memory_keyring)
    assert identity(cli).startswith(f"{ADML}: ADML")
