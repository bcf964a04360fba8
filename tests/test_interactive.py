"""An operator at a terminal: the MFA code is asked for on a real pseudo-terminal and the command proceeds."""

from __future__ import annotations

import os
import pty
import re
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
    time.sleep(0.5)  # let it settle in the prompt's read, where the operator's Ctrl-C lands
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


ONE_BY_ONE = ("--concurrency", "1", "--batch-size", "0")  # one account a call, one call at a time


def _interrupt(lab: Lab, args: list[str], started: bytes) -> tuple[int, str]:
    """Run pcnctl, press Ctrl-C once ``started`` shows on stderr, and return its exit code and stderr."""
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcnctl", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + 60
    while started not in seen and time.monotonic() < deadline:
        seen += proc.stderr.read1(4096)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    return proc.wait(timeout=60), (seen + rest).decode()


def test_every_interruption_says_how_to_resume(lab: Lab, admc: Cli) -> None:
    admc.open_incidents("INC-INT")
    logins = [r[0] for r in lab.sql("SELECT login FROM users WHERE profile = 'Relative' LIMIT 60")]
    lab.knobs(latency_ms=100)
    code, err = _interrupt(
        lab,
        [*("accounts", "block", *logins, "--max", "60", "--yes", "--incident", "INC-INT"), *ONE_BY_ONE],
        b"Recording in incident",
    )
    assert code == 130 and "pcnctl incident resume INC-INT" in err, err[-800:]
    lab.knobs(latency_ms=0)
    resumed = admc("incident", "resume", "INC-INT")
    assert resumed.exit_code == 0, resumed.stderr
    marks = ",".join("?" * len(logins))
    assert lab.sql(f"SELECT count(*) FROM users WHERE blocked = 1 AND login IN ({marks})", *logins) == [(60,)]


def test_long_work_shows_its_progress_on_a_terminal(lab: Lab, admc: Cli) -> None:
    logins = [r[0] for r in lab.sql("SELECT login FROM users WHERE profile = 'Relative' LIMIT 30")]
    lab.knobs(latency_ms=100)
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", COLUMNS="100")
    primary, secondary = pty.openpty()
    args = ["accounts", "block", *logins, "--yes", "--concurrency", "1", "--batch-size", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcnctl", *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=secondary, env=env,
    )  # fmt: skip
    os.close(secondary)
    screen = read_until(primary, b"/30 ", timeout=30)
    screen += read_until(primary, b"__never__", timeout=2)
    assert proc.wait(timeout=60) == 0
    os.close(primary)
    lab.knobs(latency_ms=0)
    assert re.search(rb"\d+/30", screen) and re.search(rb"\d+/s", screen)  # count and rate, while it ran
