"""A disposable PostgreSQL server for the lab's production-mailstore path (tests, benchmarks, drills):
``initdb`` in a temporary directory, a free port, a Unix socket, no network listener.

As root (CI), the server runs as the ``postgres`` account the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class MissingPostgres(RuntimeError):
    """No PostgreSQL server on this machine."""


@dataclass
class Postgres:
    data: Path
    socket_dir: Path
    port: int
    as_user: list[str]

    def dsn(self, db: str = "mailstore") -> str:
        return f"postgresql://postgres@/{db}?host={self.socket_dir}&port={self.port}"

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, _bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-m", "fast", "stop"],
            capture_output=True,
            check=False,
        )


def start(tmp: Path, settings: dict[str, str] | None = None) -> Postgres:
    """Start a server under ``tmp``; ``settings`` are extra server parameters (the benchmarks' memory)."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise MissingPostgres("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    as_user: list[str] = []
    tmp.mkdir(parents=True, exist_ok=True)  # its parents must be traversable by the server's account
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(tmp, "postgres")
    data, sockets = tmp / "data", tmp / "sock"
    for d in (data, sockets):
        d.mkdir()
        if as_user:
            shutil.chown(d, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-w",
            "-l",
            str(tmp / "server.log"),
            "-o",
            f"-p {port} -k {sockets} -c listen_addresses='' -c fsync=off"
            + "".join(f" -c {k}={v}" for k, v in (settings or {}).items()),
            "start",
        ],
        check=True,
        capture_output=True,
    )
    server = Postgres(data, sockets, port, as_user)
    import psycopg

    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE mailstore")
    return server
