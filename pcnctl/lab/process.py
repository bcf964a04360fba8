"""A lab running in a child process: start it, wait for ``lab.json``, drive its control endpoints, stop it.

The drill, the test suite and the benchmarks all run the lab this way, as an operator would, over real HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any


class LabProcess:
    def __init__(
        self,
        data_dir: Path,
        *args: str,
        log: IO[bytes] | int | None = subprocess.DEVNULL,
        timeout: float = 120,
    ) -> None:
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("PCNCTL_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pcnctl", "lab", "serve", "--data", str(data_dir), "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )
        lab_json = data_dir / "lab.json"
        deadline = time.monotonic() + timeout
        while not lab_json.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"the lab did not start in {data_dir}")
            time.sleep(0.05)
        self.info: dict[str, Any] = json.loads(lab_json.read_text())

    @property
    def url(self) -> str:
        return str(self.info["base_url"])

    def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``/__lab/reset`` (a body ``{"checkpoint": name}`` returns to a saved state), ``/__lab/checkpoint``
        and ``/__lab/knobs`` (POST with a body), ``/__lab/jobs/orphans`` and ``/__lab/jobs/scheduled``
        (POST, a body optional), ``/__lab/state`` (GET)."""
        import requests

        headers = {"X-Lab-Control": self.info["control_token"]}
        if body is None and path != "/__lab/reset" and not path.startswith("/__lab/jobs/"):
            response = requests.get(self.url + path, headers=headers, timeout=30)
        else:
            response = requests.post(self.url + path, json=body or {}, headers=headers, timeout=30)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def stop(self) -> int:
        """SIGTERM, as an operator's Ctrl-C; returns the exit status (0 when it stopped cleanly)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)
