"""Serving the lab: a threaded HTTP/1.1 server on loopback, ``lab.json``, clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pcnctl.lab.app import Knobs, LabApp
from pcnctl.lab.seed import PRESETS, seed
from pcnctl.lab.store import SCHEMA_VERSION, Store
from pcnctl.lab.web import Request
from pcnctl.records import JsonObject


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections, as against a real ENT
    server_version = "pcnctl-lab"
    app: LabApp

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, delayed ACKs add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = self.app.handle(req)
        if response.dropped:
            self.close_connection = True  # no status line, no body: the client sees the connection drop
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        for cookie in response.cookies:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request logs
        return


class LabServer:
    """A running lab: its store, its app, its HTTP server."""

    def __init__(self, data_dir: Path, *, port: int = 0, knobs: Knobs | None = None) -> None:
        self.data_dir = data_dir
        self.store = Store(data_dir)
        self.app = LabApp(self.store, knobs)
        handler = type("Handler", (_Handler,), {"app": self.app})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.store.close()


def prepare(data_dir: Path, preset: str | None, random_seed: int) -> JsonObject:
    """Seed ``data_dir`` unless it already holds the same preset and seed; returns the seed summary."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(data_dir)
    try:
        current = (store.meta("preset"), store.meta("random_seed"))
        wanted = (preset or current[0] or "small", str(random_seed))
        stale = store.meta("schema_version") != SCHEMA_VERSION or not store.conversation_pristine.exists()
        if current != wanted or stale or not store.pristine.exists():
            return seed(store, wanted[0], random_seed)
        store.reset()
        return summary(store)
    finally:
        store.close()


def summary(store: Store) -> JsonObject:
    """What ``lab.json`` says about a seeded store (rebuilt from the store itself)."""
    password = store.meta("user_password")
    admls: dict[str, list[str]] = {}
    for row in store.all(
        "SELECT u.login, s.uai FROM functions f JOIN users u ON u.id = f.user_id"
        " JOIN structures s ON s.id = f.structure_id WHERE f.code = 'ADMIN_LOCAL' ORDER BY u.login, s.rowid"
    ):
        admls.setdefault(row["login"], []).append(row["uai"])
    admc = store.get(
        "SELECT u.login FROM functions f JOIN users u ON u.id = f.user_id WHERE code = 'SUPER_ADMIN'"
    )
    student = store.get("SELECT login FROM users WHERE profile = 'Student' ORDER BY rowid LIMIT 1")
    clients = {r["client_id"]: r for r in store.all("SELECT * FROM oauth_clients")}
    return {
        "preset": store.meta("preset"),
        "random_seed": int(store.meta("random_seed") or 0),
        "schools": store.get("SELECT count(*) n FROM structures")["n"],
        "users": store.get("SELECT count(*) n FROM users")["n"],
        "accounts": {
            "admc": {"login": admc["login"], "password": password},
            "adml": [{"login": k, "password": password, "schools": v} for k, v in admls.items()],
            "student": {"login": student["login"], "password": password},
            "user_password": password,
        },
        "mfa_code": store.meta("mfa_code"),
        "oauth": {
            "password_client": {
                "client_id": "pcnctl-lab",
                "client_secret": clients["pcnctl-lab"]["secret"],
            },
            "service_client": {
                "client_id": "pcnctl-service",
                "client_secret": clients["pcnctl-service"]["secret"],
                "scope": clients["pcnctl-service"]["scope"],
            },
        },
    }


def write_lab_json(path: Path, data: JsonObject) -> None:
    """Write ``lab.json`` 0600 and atomically: it holds the lab's throwaway credentials."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
    os.replace(tmp, path)


def serve(
    data_dir: Path,
    *,
    port: int = 0,
    preset: str | None = None,
    random_seed: int = 1,
    knobs: Knobs | None = None,
    ready: threading.Event | None = None,
) -> JsonObject:
    """Seed if needed, start serving, write ``lab.json``, block until SIGINT/SIGTERM, then stop cleanly."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(preset)
    info = prepare(data_dir, preset, random_seed)
    server = LabServer(data_dir, port=port, knobs=knobs)
    lab_json = data_dir / "lab.json"
    write_lab_json(
        lab_json,
        {
            "base_url": server.base_url,
            "pid": os.getpid(),
            "data_dir": str(data_dir.resolve()),
            "control_token": server.app.control_token,
            "mailstore": f"sqlite:///{(data_dir / 'conversation.sqlite').resolve()}",
            **{k: v for k, v in info.items()},
            **server.app.describe(),
        },
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=server.serve_forever, name="lab-http", daemon=True)
    thread.start()
    if ready is not None:
        ready.set()
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lab_json.unlink(missing_ok=True)
    return {"base_url": server.base_url}
