"""Real processes and servers for the suite: `hookplane dev` and HTTP targets."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")


def eventually(probe: Callable[[], _T | None], *, timeout: float = 20.0, interval: float = 0.05, what: str) -> _T:
    """Polls `probe` until it returns something other than None.

    Bounded polling instead of fixed sleeps: as fast as the system allows,
    and a clear failure naming `what` when it never happens.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The suite's own settings. hookplane reads every HOOKPLANE_* variable as a
# config key and refuses unknown ones, so they must not reach a server.
SUITE_VARIABLES = ("HOOKPLANE_BIN", "HOOKPLANE_GRPC", "HOOKPLANE_HTTP", "HOOKPLANE_ADMIN_KEY_FILE")


def _server_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in SUITE_VARIABLES}


class DevServer:
    """A `hookplane dev` process in its own data directory."""

    def __init__(self, binary: str, data_dir: Path, *, grpc_listen: str = "127.0.0.1:0") -> None:
        self.data_dir = data_dir
        self.grpc_address = ""
        self.http_base = ""
        self._lines: queue.Queue[str] = queue.Queue()
        self._process = subprocess.Popen(
            [
                binary,
                "dev",
                "--grpc-listen",
                grpc_listen,
                "--http-listen",
                "127.0.0.1:0",
                "--data-dir",
                str(data_dir),
            ],
            env={**_server_env(), "HOOKPLANE_LOG": "warn"},
            stdout=subprocess.PIPE,
            text=True,
        )
        # Keep draining stdout after the address lines: a full or closed pipe
        # would block or kill the server on its next print.
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        assert self._process.stdout is not None
        with self._process.stdout:
            for line in self._process.stdout:
                self._lines.put(line)

    def wait_ready(self, timeout: float = 60.0) -> DevServer:
        """Waits for the addresses `dev` prints once both planes listen."""
        deadline = time.monotonic() + timeout
        while not (self.grpc_address and self.http_base):
            if self._process.poll() is not None:
                raise AssertionError(f"hookplane dev exited with {self._process.returncode} before it was ready")
            try:
                line = self._lines.get(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise AssertionError(f"hookplane dev printed no addresses within {timeout} s") from None
                continue
            text = line.strip()
            if text.startswith("gRPC API (reflection on):"):
                self.grpc_address = text.split(":", 1)[1].strip()
            elif text.startswith("triggers (data plane):"):
                self.http_base = text.split(":", 1)[1].strip()
        return self

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin-key"

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        # The pipe closes at the server's exit; wait for that so no open file
        # outlives the test.
        self._drainer.join(timeout=10)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Target:
    """A real HTTP server on loopback recording what connectors send it."""

    server: ThreadingHTTPServer
    received: queue.Queue[Received] = field(default_factory=queue.Queue)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def next_request(self, timeout: float = 20.0) -> Received:
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the target received nothing within {timeout} s") from None


def start_target() -> Target:
    """Starts a target answering every POST 200 `{"accepted": true}`."""
    received: queue.Queue[Received] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            received.put(Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            answer = b'{"accepted": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: pytest shows stderr of failing tests, and this would
            # bury the failure under one line per request.
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Target(server, received)
