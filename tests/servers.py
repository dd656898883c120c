"""gunicorn serving ``tests/served_app.py`` on loopback, and helpers to drive it from many clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import requests

from .conftest import ROOT, _no_control_socket, _stop, free_port


class Gunicorn:
    """``gunicorn --worker-class gthread`` serving the test app with ``env`` added; stopped by PID.

    Use as a context manager. ``stall_dir`` is where a stalled worker writes its PID.
    """

    def __init__(self, workdir: Path, env: dict[str, str], *, workers: int = 2, threads: int = 4) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stall_dir = workdir / "stall"
        self.stall_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"gunicorn-{self.port}.log"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "STALL_DIR": str(self.stall_dir), **env}
        self.command = [
            *(sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}"),
            *("--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread"),
            *("--chdir", str(ROOT), "--graceful-timeout", "3", "--timeout", "120"),
            *_no_control_socket(),
            "tests.served_app:__hug_wsgi__",
        ]
        self.process: Optional[subprocess.Popen] = None

    def __enter__(self) -> Gunicorn:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self.wait_until_answering()
        except BaseException:
            _stop(self.process)
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        _stop(self.process)

    def wait_until_answering(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/untouched", timeout=2).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer within {timeout}s:\n{self.log()}")

    def stalled_worker(self, timeout: float = 30.0) -> int:
        """The PID of the worker that announced a stall (see ``served_app``)."""
        path = self.stall_dir / "stalled.pid"
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"no worker stalled within {timeout}s:\n{self.log()}")
            time.sleep(0.02)
        pid = int(path.read_text())
        path.unlink()
        return pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def report(request, line: str) -> None:
    """Print ``line`` in pytest's output even when output is captured (measured figures)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


def client(url: str, token: Optional[str] = None) -> requests.Session:
    """A cookie-jar client, already holding the session cookie ``token`` if given."""
    http = requests.Session()
    if token is not None:
        http.cookies.set("session", token, domain="127.0.0.1", path="/")
    return http


def new_session(url: str, **values: object) -> str:
    """A stored session holding ``values``; its cookie value."""
    http = client(url)
    for key, value in values.items():
        assert http.post(url + "/set", params={"key": key, "value": json.dumps(value)}, timeout=10).ok
    return http.cookies["session"]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def store_env(kind: str, request: Any, tmp_path: Path) -> dict[str, str]:
    """The served app's store settings for ``kind`` (Redis: the shared server, a prefix of this test's;
    PostgreSQL: the run's database, tables of this test's)."""
    if kind == "postgres":
        url, prefix = request.getfixturevalue("postgres_url"), request.getfixturevalue("table_prefix")
        return {"SESSION_STORE": f"{url}?table_prefix={prefix}"}
    if kind == "memory":
        return {"SESSION_STORE": "memory://"}
    if kind == "sqlite":
        return {"SESSION_STORE": f"sqlite:///{tmp_path / 'sessions.sqlite3'}"}
    redis_url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    return {"SESSION_STORE": redis_url, "SESSION_REDIS_PREFIX": prefix}
