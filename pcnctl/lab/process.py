"""A lab running in a child process: start it, wait for ``lab.json``, drive its control endpoints, stop it.

The drill, the test suite and the benchmarks all run the lab this way, as an operator would, over real HTTP.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from pcnctl.env import child_environ, pcnctl_command
from pcnctl.errors import PcnError


def child_failed(what: str, log: Path, code: int | None) -> PcnError:
    """The error a parent reports for a child process that died (or never started): its last words."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    said = lines[-1] if lines else "nothing in its log"
    status = f"exit {code}" if code is not None else "still not ready"
    return PcnError(f"{what} failed ({status}): {said}", hint=f"its whole output is in {log}")


class LabProcess:
    def __init__(
        self,
        data_dir: Path,
        *args: str,
        environ: Mapping[str, str],
        log: IO[bytes] | int | None = subprocess.DEVNULL,
        timeout: float = 120,
    ) -> None:
        """Start ``pcnctl lab serve`` on ``data_dir`` in the caller's ``environ`` (pcnctl's own variables
        left out); a lab that dies before it serves raises with the end of its error output."""
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            pcnctl_command("lab", "serve", "--data", str(data_dir), "--port", "0", *args),
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=child_environ(environ),
        )
        lab_json = data_dir / "lab.json"
        deadline = time.monotonic() + timeout
        while not lab_json.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                named = getattr(log, "name", None)
                where = Path(named) if isinstance(named, str) else data_dir / "lab.log"
                raise child_failed(f"the lab in {data_dir}", where, self.process.poll())
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
