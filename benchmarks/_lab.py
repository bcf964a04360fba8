"""Shared helpers for benchmarks: start a lab subprocess, talk to its control endpoint, record results."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcnctl.lab.process import LabProcess

if TYPE_CHECKING:
    from pcnctl.config import Profile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"


class Lab(LabProcess):
    """The lab the benchmarks drive (see pcnctl.lab.process), in the benchmark's own environment."""

    def __init__(self, data_dir: Path, *args: str, **options: Any) -> None:
        super().__init__(data_dir, *args, environ=os.environ, **options)


def responder(lab: LabProcess, profile: Profile, home: Path) -> Any:
    """A driver logged in as ``profile`` on the lab, as an unattended responder is (password and MFA code
    given, no session cached, its own home)."""
    from pcnctl.ent.credentials import Secrets
    from pcnctl.ent.edifice.driver import EdificeDriver
    from pcnctl.env import Environment

    env = Environment(
        config=home / "config.yaml",
        home=home,
        secrets={
            "PCNCTL_PASSWORD": lab.info["accounts"]["user_password"],
            "PCNCTL_MFA_CODE": lab.info["mfa_code"],
        },
        session_cache=False,
    )
    return EdificeDriver.open(profile, Secrets(env), use_cache=False)


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
