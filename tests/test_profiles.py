"""Profiles and config: no secrets in files, clear errors on bad input, nothing changed on error."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import Cli


def config_file() -> Path:
    return Path(os.environ["PCNCTL_CONFIG"])


def test_add_list_show_use_remove(cli: Cli) -> None:
    assert cli("profile", "add", "a", "--url", "https://ent.example.fr/", "--login", "x.y").exit_code == 0
    assert cli("profile", "add", "b", "--url", "http://127.0.0.1:9", "--login", "z", "--use").exit_code == 0
    listed = cli("profile", "list", "-o", "json").json()
    assert [(p["name"], p["current"], p["url"]) for p in listed] == [
        ("a", False, "https://ent.example.fr"),
        ("b", True, "http://127.0.0.1:9"),
    ]
    assert oct(config_file().stat().st_mode & 0o777) == "0o600"
    shown = cli("profile", "show", "a", "-o", "json").json()
    assert shown["login"] == "x.y" and shown["password_source"] == "missing"
    assert cli("profile", "use", "a").exit_code == 0
    assert cli("profile", "list", "-o", "json").json()[0]["current"] is True
    assert cli("profile", "remove", "a").exit_code == 0
    assert [p["name"] for p in cli("profile", "list", "-o", "json").json()] == ["b"]


def test_existing_profile_needs_force(cli: Cli) -> None:
    cli("profile", "add", "a", "--url", "https://ent.example.fr", "--login", "x")
    again = cli("profile", "add", "a", "--url", "https://other.example.fr", "--login", "x")
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert "ent.example.fr" in config_file().read_text()


def test_bad_url_and_plain_http_to_remote_host_are_refused(cli: Cli) -> None:
    bad = cli("profile", "add", "a", "--url", "ent.example.fr", "--login", "x")
    assert bad.exit_code == 2 and "not an ENT URL" in bad.stderr and "Traceback" not in bad.stderr
    clear = cli("profile", "add", "a", "--url", "http://ent.example.fr", "--login", "x")
    assert clear.exit_code == 2 and "in clear" in clear.stderr
    assert not config_file().exists()


def test_unknown_auth_mode_and_missing_login(cli: Cli) -> None:
    assert cli("profile", "add", "a", "--url", "https://e.fr", "--auth", "kerberos").exit_code == 2
    missing = cli("profile", "add", "a", "--url", "https://e.fr")
    assert missing.exit_code == 2 and "needs a login" in missing.stderr


def test_unknown_profile(cli: Cli) -> None:
    cli("profile", "add", "a", "--url", "https://e.fr", "--login", "x")
    result = cli("schools", "list", "-p", "nope")
    assert result.exit_code == 3
    assert "unknown profile 'nope'" in result.stderr and "known: a" in result.stderr


def test_no_profile_at_all(cli: Cli) -> None:
    result = cli("doctor")
    assert result.exit_code == 3 and "no profile is configured" in result.stderr
    assert "pcnctl profile add" in result.stderr


def test_malformed_yaml_is_a_clear_config_error(cli: Cli) -> None:
    config_file().parent.mkdir(parents=True)
    config_file().write_text("profiles:\n  a: [unclosed\n")
    result = cli("profile", "list")
    assert result.exit_code == 3
    assert "not valid YAML at line" in result.stderr and "Traceback" not in result.stderr


def test_secret_in_config_is_refused(cli: Cli) -> None:
    config_file().parent.mkdir(parents=True)
    config_file().write_text("profiles:\n  a:\n    url: https://e.fr\n    login: x\n    password: hunter2\n")
    result = cli("profile", "list")
    assert result.exit_code == 3 and "holds a secret (password)" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_unknown_key_and_bad_types(cli: Cli) -> None:
    config_file().parent.mkdir(parents=True)
    config_file().write_text("profiles:\n  a:\n    url: https://e.fr\n    login: x\n    colour: blue\n")
    assert "unknown key(s) colour" in cli("profile", "list").stderr
    config_file().write_text("profiles:\n  a:\n    url: https://e.fr\n    login: x\n    read_timeout: soon\n")
    result = cli("profile", "list")
    assert result.exit_code == 3 and "read_timeout must be a number" in result.stderr


def test_missing_ca_file(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        "profile", "add", "a", "--url", "https://e.fr", "--login", "x", "--ca-file", str(tmp_path / "no")
    )
    assert result.exit_code == 2 and "does not exist" in result.stderr
