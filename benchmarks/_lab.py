"""Shared helpers for benchmarks: start a lab subprocess, talk to its control endpoint, record results."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"


class Lab:
    def __init__(self, data_dir: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PCNCTL_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pcnctl", "lab", "serve", "--data", str(data_dir), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        path = data_dir / "lab.json"
        deadline = time.monotonic() + 120
        while not path.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the lab did not start")
            time.sleep(0.05)
        self.info: dict[str, Any] = json.loads(path.read_text())
        self.url = str(self.info["base_url"])

    def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"X-Lab-Control": self.info["control_token"]}
        if body is None and path != "/__lab/reset":
            r = requests.get(self.url + path, headers=headers, timeout=30)
        else:
            r = requests.post(self.url + path, json=body or {}, headers=headers, timeout=30)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def write_section(name: str, markdown: str) -> None:
    """Replace (or add) the section ``name`` of docs/benchmarks.md between its markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")
