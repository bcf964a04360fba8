"""The real PostgreSQL server the mailstore tests use (see pcnctl.lab.pgserver).

Without PostgreSQL these tests are skipped, unless ``PCNCTL_REQUIRE_POSTGRES=1`` (set by .ci/run), where its
absence is an error: CI must exercise the production path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pcnctl.lab.pgserver import MissingPostgres, Postgres
from pcnctl.lab.pgserver import start as start_server


def start(root: Path) -> Postgres:
    try:
        return start_server(root)
    except MissingPostgres as exc:
        if os.environ.get("PCNCTL_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"{exc} (CI installs them)")
