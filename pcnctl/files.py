"""Files only pcnctl's user may read: its home holds journals, evidence, renewal codes and lists that name
people, so directories are created 0700 and files written 0600, atomically."""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """Create ``path`` and every missing parent 0700 (``mkdir(parents=True)`` gives parents 0755): pcnctl's
    home holds journals, evidence and renewal codes, which only its user may list."""
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file 0600 atomically (incident metadata, failure lists, renewal codes)."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
