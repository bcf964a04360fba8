"""A real headless browser (Debian's Chromium) to open the HTML reports as a person would."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("PCNCTL_REQUIRE_CHROMIUM"):
            raise RuntimeError("chromium is required here (PCNCTL_REQUIRE_CHROMIUM)")
        pytest.skip("Debian's chromium is not installed (CI installs it)")
    return found


def open_page(page: Path, workdir: Path) -> tuple[str, bytes]:
    """The DOM Chromium built from ``page``, and a PNG screenshot of it (1200x1600)."""
    browser = chromium()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={workdir / 'profile'}",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-500:]
    shot = workdir / f"{page.stem}.png"
    run = subprocess.run(
        [browser, *flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-500:]
    return dom.stdout, shot.read_bytes()
