"""Two app servers in separate gunicorn processes share their sessions through one Redis."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import free_port
from redis_support import WAIT, wait_until

TESTS = Path(__file__).parent


class Gunicorn:
    """``gunicorn redis_app:app`` on a free loopback port, stopped by PID."""

    def __init__(self, environment: dict, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1",
            "--timeout", "20",
            "--graceful-timeout", "2",
            "--chdir", str(TESTS),
            "redis_app:app",
        ]  # fmt: skip
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                command, env=environment, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        wait_until(self._ready, f"gunicorn on port {self.port}")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{self.log.read_text(errors='replace')[-3000:]}")
        try:
            return requests.get(f"{self.base}/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture
def two_app_servers(redis_url, redis_prefix, tmp_path):
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
        "REDIS_URL": redis_url,
        "SESSION_PREFIX": redis_prefix,
        "SESSION_SECRET": "two-app-servers-secret-0123456789abcdef",
    }
    servers = []
    try:
        for name in ("first", "second"):
            servers.append(Gunicorn(environment, tmp_path / f"{name}.log"))
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_a_session_made_through_one_app_server_is_read_and_changed_through_the_other(two_app_servers):
    first, second = two_app_servers
    assert first.process.pid != second.process.pid
    with requests.Session() as browser:
        made = browser.post(f"{first.base}/session", params={"key": "cart", "value": "apples"}, timeout=WAIT)
        assert made.status_code == 200 and "session" in browser.cookies
        assert browser.get(f"{second.base}/session", timeout=WAIT).json() == {"data": {"cart": "apples"}}
        changed = browser.post(
            f"{second.base}/session", params={"key": "user", "value": "alice"}, timeout=WAIT
        )
        assert changed.status_code == 200
        assert browser.get(f"{first.base}/session", timeout=WAIT).json() == {
            "data": {"cart": "apples", "user": "alice"}
        }
        assert browser.post(f"{first.base}/logout", timeout=WAIT).status_code == 200
        assert browser.get(f"{second.base}/session", timeout=WAIT).json() == {"data": {}}
