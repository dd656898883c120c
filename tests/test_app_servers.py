"""Two app servers in separate gunicorn processes share their sessions through one Redis, or one
PostgreSQL database."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import _no_control_socket, _stop, free_port
from .redis_support import WAIT, wait_until

ROOT = Path(__file__).parent.parent


class Gunicorn:
    """``gunicorn <app>`` (``tests.redis_app:app`` by default) on a free loopback port, stopped by PID."""

    def __init__(self, environment: dict, log: Path, app: str = "tests.redis_app:app") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1",
            "--timeout", "20",
            "--graceful-timeout", "2",
            *_no_control_socket(),
            "--chdir", str(ROOT),
            app,
        ]  # fmt: skip
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                command,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so that _stop can kill the whole group if it hangs
            )
        try:
            wait_until(self._ready, f"gunicorn on port {self.port}")
        except BaseException:
            _stop(self.process)
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{self.log.read_text(errors='replace')[-3000:]}")
        try:
            return requests.get(f"{self.base}/untouched", timeout=2).status_code == 200
        except requests.RequestException:  # not listening yet, or the worker still booting
            return False


@pytest.fixture(params=["redis", "postgres"])
def two_app_servers(request, tmp_path):
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "SESSION_SECRET": "two-app-servers-secret-0123456789abcdef",
    }
    if request.param == "redis":
        environment["REDIS_URL"] = request.getfixturevalue("redis_url")
        environment["SESSION_PREFIX"] = request.getfixturevalue("redis_prefix")
        app = "tests.redis_app:app"
    else:
        environment["SESSION_STORE"] = request.getfixturevalue("postgres_url")
        environment["SESSION_PREFIX"] = request.getfixturevalue("table_prefix")
        app = "tests.postgres_app:app"
    servers = []
    try:
        for name in ("first", "second"):
            servers.append(Gunicorn(environment, tmp_path / f"{name}.log", app))
        yield servers
    finally:
        for server in servers:
            _stop(server.process)


def test_a_session_made_through_one_app_server_is_read_and_changed_through_the_other(two_app_servers):
    first, second = two_app_servers
    with requests.Session() as browser:

        def call(method: str, server: Gunicorn, path: str, **params: str) -> dict:
            response = browser.request(method, server.base + path, params=params, timeout=WAIT)
            assert response.status_code == 200, response.text
            return response.json()

        call("POST", first, "/set", key="cart", value='["apples"]')
        assert "session" in browser.cookies
        assert call("GET", second, "/all")["data"] == {"cart": ["apples"]}
        call("POST", second, "/append", key="cart", value='"pears"')
        call("POST", second, "/set", key="user", value='"alice"')
        assert call("GET", first, "/all")["data"] == {"cart": ["apples", "pears"], "user": "alice"}
        call("POST", first, "/logout")
        assert call("GET", second, "/all")["data"] == {}
