"""Every command's --help ends with examples, and each example is a command line pcnctl accepts."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import typer.main

from pcnctl.cli import app
from pcnctl.cli.examples import EXAMPLES


def _commands() -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(command: Any, path: str) -> None:
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{path} {name}".strip())
        else:
            found[path] = command

    walk(typer.main.get_command(app), "")
    return found


COMMANDS = _commands()


def test_every_command_has_examples_and_every_example_a_command() -> None:
    assert len(COMMANDS) >= 45 and set(COMMANDS) == set(EXAMPLES)
    for path, command in COMMANDS.items():
        assert command.epilog and "Examples:" in command.epilog and f"pcnctl {path}" in command.epilog, path


@pytest.mark.parametrize(("path", "line"), [(p, e) for p, lines in EXAMPLES.items() for e in lines])
def test_each_example_parses(path: str, line: str) -> None:
    """The example's options exist and its values pass their types (nothing runs)."""
    words = shlex.split(line)
    words = words[: words.index(">")] if ">" in words else words  # the shell's redirection, not pcnctl's
    assert words[0] == "pcnctl" and " ".join(words[1 : 1 + len(path.split())]) == path
    command = COMMANDS[path]
    with command.make_context(path, words[1 + len(path.split()) :]) as ctx:
        assert ctx.params is not None


def _complete(words: str, env: dict[str, str]) -> list[str]:
    """What the bash script asks pcnctl for when the operator presses Tab after ``words``."""
    import os
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "pcnctl", "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    assert "complete -o default -F _pcnctl_completion pcnctl" in shown and "_PCNCTL_COMPLETE" in shown
    import shlex

    full = dict(os.environ, **env)
    if "_PCNCTL_COMPLETE" not in env:  # bash: the words, and the index of the one being typed
        full.update(
            COMP_WORDS=words, COMP_CWORD=str(len(shlex.split(words)) - 1), _PCNCTL_COMPLETE="complete_bash"
        )
    code = "from pcnctl.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=30)
    return done.stdout.split()


def test_shell_completion_for_bash_zsh_and_fish(tmp_path: Any, cli: Any) -> None:
    for shell in ("zsh", "fish"):
        script = cli("completion", shell)
        assert script.exit_code == 0 and "_PCNCTL_COMPLETE" in script.stdout
    assert cli("completion", "powershell").exit_code == 2
    assert _complete("pcnctl acc", {}) == ["accounts"]
    assert "--school" in _complete("pcnctl accounts block --sch", {})
    assert _complete("pcnctl -p 'a b' accounts block-p", {}) == ["block-profile"]
    zsh = _complete("", {"_PCNCTL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "pcnctl accounts bl"})
    assert any('"block-profile"' in word for word in zsh)
    import os

    cli("profile", "add", "preprod", "--url", "http://127.0.0.1:9", "--login", "x")
    assert _complete("pcnctl doctor -p pre", {"PCNCTL_CONFIG": os.environ["PCNCTL_CONFIG"]}) == ["preprod"]


def test_the_ent_profile_goes_before_or_after_the_subcommand(lab: Any, cli: Any) -> None:
    cli("profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn")
    cli("profile", "add", "other", "--url", "http://127.0.0.1:9", "--login", "x")  # now the current one
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    uai = lab.info["accounts"]["adml"][0]["schools"][0]
    before = cli("-p", "lab", "users", "list", "--school", uai, "--profile", "Teacher", "-o", "json")
    after = cli("users", "list", "--school", uai, "--profile", "Teacher", "--ent", "lab", "-o", "json")
    assert before.exit_code == after.exit_code == 0, before.stderr + after.stderr
    assert before.json() == after.json() and {u["profile"] for u in before.json()} == {"Teacher"}
    assert cli("--ent", "lab", "doctor").exit_code == 0


def test_a_run_builds_only_the_group_it_runs() -> None:
    """Typer reads every registered command's signature: pcnctl registers only the group asked for."""
    import subprocess
    import sys

    from pcnctl.cli import ORDER, build

    accounts = typer.main.get_command(build("accounts"))
    assert set(accounts.commands["accounts"].commands) == {
        c.split()[1] for c in EXAMPLES if c.startswith("accounts ")
    }
    assert not getattr(accounts.commands["messaging"], "commands", None)  # a name and its help only
    top = subprocess.run(
        [sys.executable, "-m", "pcnctl", "--help"], capture_output=True, text=True, check=True
    )
    assert all(name in top.stdout for name in ORDER)
    sub = subprocess.run(
        [sys.executable, "-m", "pcnctl", "-p", "x", "messaging", "block", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Examples:" in sub.stdout and "--method" in sub.stdout
    wrong = subprocess.run([sys.executable, "-m", "pcnctl", "acounts"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "No such command" in wrong.stderr
