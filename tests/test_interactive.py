"""An operator at a terminal: the MFA code is asked for on a real pseudo-terminal and the command proceeds."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Cli, Lab


def read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_mfa_code_is_prompted_on_a_terminal(lab: Lab, admc: Cli, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PCNCTL_MFA_CODE"}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    primary, secondary = pty.openpty()
    out = tmp_path / "out.json"
    with out.open("w") as stdout:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pcnctl",
                "users",
                "list",
                "--school",
                "0782268S",
                "--profile",
                "Teacher",
                "-o",
                "json",
            ],
            stdin=secondary,
            stdout=stdout,
            stderr=secondary,
            env=env,
        )
        os.close(secondary)
        prompt = read_until(primary, b"MFA code")
        assert b"MFA code (sent by email)" in prompt
        os.write(primary, lab.mfa_code.encode() + b"\n")
        read_until(primary, b"\n__never__", timeout=3)
        assert proc.wait(timeout=20) == 0
    os.close(primary)
    assert '"profile": "Teacher"' in out.read_text()


def test_ctrl_c_at_a_confirmation_prompt_exits_130(lab: Lab, admc: Cli, tmp_path: Path) -> None:
    login = lab.info["accounts"]["student"]["login"]
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcnctl", "accounts", "block", login],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    assert b"[y/N]" in read_until(primary, b"[y/N]")
    proc.send_signal(signal.SIGINT)  # Ctrl-C: what the terminal sends the foreground process
    screen = read_until(primary, b"interrupted", timeout=10)
    assert proc.wait(timeout=20) == 130 and b"Aborted" not in screen
    os.close(primary)
    assert lab.sql("SELECT count(*) FROM account_log") == [(0,)]


def test_debug_shows_the_traceback_and_keeps_the_exit_code(lab: Lab, admc: Cli) -> None:
    plain = admc("users", "show", "no.such.login")
    debug = admc("--debug", "users", "show", "no.such.login")
    assert plain.exit_code == debug.exit_code == 2
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr
