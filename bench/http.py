"""Over HTTP: each app under gunicorn on a loopback port, loaded by ``wrk``.

One gunicorn (one gthread worker) per app runs for the whole measurement; wrk
runs for a bounded time per (app, path), the cells in a new random order each
round. The load generator shares the machine's cores with the server, so these
figures are context: differences under about 10% are noise here, and the
in-process figures decide the targets.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .apps import PATHS
from .inprocess import STAND_IN_COOKIE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``gunicorn 'bench.apps:wsgi("kind")'`` on 127.0.0.1, stopped by PID."""

    def __init__(self, kind: str, env: dict[str, str]) -> None:
        self.kind = kind
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--timeout",
            "30",
            "--graceful-timeout",
            "3",
            "--log-level",
            "warning",
            f'bench.apps:wsgi("{kind}")',
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_ready(timeout=30)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn for {self.kind} exited with {self.process.returncode}")
            try:
                self.request("untouched", None)
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn for {self.kind} did not answer within {timeout}s")

    def request(self, path: str, cookie: Optional[str]) -> tuple[int, list[tuple[str, str]]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", f"/{path}", headers={"Cookie": cookie} if cookie else {})
            response = connection.getresponse()
            response.read()
            return response.status, response.getheaders()
        finally:
            connection.close()

    def session_cookie(self) -> str:
        """``name=value`` of a session created by a write, or the stand-in for apps without one."""
        status, headers = self.request("write", None)
        if status != 200:
            raise RuntimeError(f"{self.kind}: preparing a session failed with {status}")
        for name, value in headers:
            if name.lower() == "set-cookie":
                return value.split(";", 1)[0]
        return STAND_IN_COOKIE

    def stop(self) -> None:
        stop_group(self.process)


def stop_group(process: subprocess.Popen) -> None:
    """End ``process`` and its process group (started with ``start_new_session``): TERM, then KILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wrk(url: str, cookie: str, seconds: float, connections: int) -> float:
    """Requests per second that ``wrk`` reached against ``url``."""
    command = [
        "wrk",
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{seconds:g}s",
        "--timeout",
        "5s",
        "--header",
        f"Cookie: {cookie}",
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    if re.search(r"Non-2xx or 3xx responses: \d+", output):
        raise RuntimeError(f"wrk saw error responses from {url}:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return float(match.group(1))


@dataclass
class HttpResults:
    """Per (app, path): requests per second in each round."""

    rounds: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def median_rps(self, kind: str, path: str) -> float:
        return statistics.median(self.rounds[kind, path])

    def ratio(self, kind: str, path: str, baseline: str) -> float:
        """Median per-round ratio of time per request (baseline rps / kind rps)."""
        return statistics.median(b / a for a, b in zip(self.rounds[kind, path], self.rounds[baseline, path]))


def available() -> Optional[str]:
    """Why the HTTP benchmark cannot run here (None when it can)."""
    if shutil.which("wrk") is None:
        return "wrk is not installed"
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return "gunicorn is not installed"
    return None


def measure(
    kinds: list[str],
    env: dict[str, str],
    *,
    rounds: int,
    seconds: float,
    connections: int = 4,
    progress: Optional[Callable[[str], None]] = None,
) -> HttpResults:
    """Start one server per app, then run wrk on every (app, path), interleaved."""
    servers: dict[str, Server] = {}
    try:
        for kind in kinds:
            servers[kind] = Server(kind, env)
        cookies = {kind: server.session_cookie() for kind, server in servers.items()}
        cells = [(kind, path) for kind in kinds for path in PATHS]
        results = HttpResults({cell: [] for cell in cells})
        shuffle = random.Random(2).shuffle
        for round_no in range(1, rounds + 1):
            shuffle(cells)
            for kind, path in cells:
                url = f"http://127.0.0.1:{servers[kind].port}/{path}"
                results.rounds[kind, path].append(wrk(url, cookies[kind], seconds, connections))
            if progress is not None:
                progress(f"HTTP round {round_no}/{rounds}")
        return results
    finally:
        for server in servers.values():
            server.stop()
