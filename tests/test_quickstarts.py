"""Every quickstart of the README, run as the README says, so that the README cannot go stale.

A quickstart is the fenced blocks that follow ``<!-- quickstart: NAME ROLE -->`` markers:
``install`` (a shell block that makes a venv and pip-installs), ``app.py`` (the file to save),
``serve`` (the shell lines that start the server), and optionally ``variant-install`` plus
``variant-app.py`` (lines that replace the lines of ``app.py`` starting the same way). Each runs in
an empty directory under bash, everything after the install block in the venv it made, with two
changes only: ``pip install`` takes this checkout instead of the package from the index (same
extras), and port 8000 becomes a free loopback port. A ``requests.Session`` cookie jar then drives
it over http://127.0.0.1 as a browser would: the default cookie is Secure, which browsers and curl
keep and send to 127.0.0.1 over plain http.

Slow (a venv and an install per quickstart, from pip's cache), hence main_env_only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from .conftest import ROOT, free_port

pytestmark = pytest.mark.main_env_only

README = ROOT / "README.md"
MARKER = re.compile(
    r"<!-- quickstart: (?P<name>[\w-]+) (?P<role>[\w.-]+) -->\n```\w*\n(?P<body>.*?)```", re.S
)
NAMES = ["hug", "falcon-wsgi", "falcon-asgi"]


@dataclass
class Quickstart:
    name: str
    blocks: dict[str, str] = field(default_factory=dict)


def quickstarts() -> dict[str, Quickstart]:
    found: dict[str, Quickstart] = {}
    for match in MARKER.finditer(README.read_text()):
        found.setdefault(match["name"], Quickstart(match["name"])).blocks[match["role"]] = match["body"]
    return found


def from_this_checkout(shell: str) -> str:
    """The README's ``pip install`` lines with this checkout in place of the published package."""
    return re.sub(r"(?<![\w/-])hug-cookie-sessions(?=[\s\[']|$)", str(ROOT), shell, flags=re.M)


def run_shell(script: str, cwd: Path, timeout: float = 600) -> None:
    """``script`` under bash in ``cwd``; pip refuses to install anywhere but a venv."""
    env = {**shell_env(), "PIP_REQUIRE_VIRTUALENV": "1"}
    result = subprocess.run(
        ["bash", "-euc", script], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert result.returncode == 0, f"{script}\nexited {result.returncode}:\n{result.stdout}\n{result.stderr}"


def in_the_venv(script: str) -> str:
    """What the reader types after the install block: in the same shell, the venv active."""
    return ". venv/bin/activate\n" + script


def shell_env() -> dict[str, str]:
    """The environment a person's shell would have: no venv of ours, gunicorn without the control
    socket that parallel test runs would fight over."""
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(ROOT)))
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["GUNICORN_CMD_ARGS"] = "--no-control-socket" if gunicorn_has_control_socket() else ""
    return env


def gunicorn_has_control_socket() -> bool:
    from gunicorn.config import Config

    return "control_socket_disable" in Config().settings


class Browser(requests.Session):
    """A cookie jar that sends Secure cookies back to http://127.0.0.1, as browsers and curl do
    (Python's cookie jar sends them over https only)."""

    def request(self, *args, **kwargs) -> requests.Response:
        response = super().request(*args, **kwargs)
        for cookie in self.cookies:
            if cookie.domain in ("127.0.0.1", "localhost", "localhost.local"):
                cookie.secure = False
        return response


class Served:
    """The quickstart's serve block running in ``workdir``, on a free port; stopped by PID."""

    def __init__(self, serve: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        lines = serve.replace("8000", str(self.port)).strip().splitlines()
        script = in_the_venv("\n".join([*lines[:-1], f"exec {lines[-1]}"]))
        self.log_path = workdir / f"serve-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-euc", script],
                cwd=workdir,
                env=shell_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def __enter__(self) -> Served:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited:\n{self.log()}"
            try:
                requests.get(self.url + "/", timeout=2)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the server did not answer within 60 s:\n{self.log()}")

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        """The whole process group: a development server may have started a reloader child."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=10)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def assert_counts_visits(served: Served) -> None:
    """What the quickstart promises: one visitor's count goes up, another visitor starts afresh,
    under a cookie with the safe defaults."""
    visitor, other = Browser(), Browser()
    first = visitor.get(served.url + "/visits", timeout=10)
    counts = [first.json()] + [visitor.get(served.url + "/visits", timeout=10).json() for _ in range(2)]
    assert counts == [{"n": 1}, {"n": 2}, {"n": 3}], served.log()
    assert other.get(served.url + "/visits", timeout=10).json() == {"n": 1}
    attributes = {part.strip().split("=")[0].lower() for part in first.headers["Set-Cookie"].split(";")}
    assert {"secure", "httponly", "samesite"} <= attributes


def with_variant(app: str, variant: str) -> str:
    """``app`` with the lines that ``variant`` replaces: an import from the same module, an
    assignment to the same name."""
    replacements = {line_key(line): line for line in variant.splitlines() if line.strip()}
    lines = [replacements.pop(line_key(line), line) if line.strip() else line for line in app.splitlines()]
    assert not replacements, f"variant lines with no counterpart in the app: {list(replacements.values())}"
    return "\n".join(lines) + "\n"


def line_key(line: str) -> str:
    return line.split(" import ")[0] if line.startswith(("from ", "import ")) else line.split("=")[0].strip()


def test_the_readme_marks_every_quickstart_completely():
    found = quickstarts()

    assert sorted(found) == sorted(NAMES)
    for quickstart in found.values():
        assert {"install", "app.py", "serve"} <= set(quickstart.blocks), quickstart.name
        assert "export SESSION_SECRET=" in quickstart.blocks["serve"], quickstart.name


@pytest.fixture
def redis_session_keys(redis_url):
    """The README's Redis variant writes under the default prefix: its keys go afterwards."""
    import redis

    client = redis.Redis.from_url(redis_url)
    before = set(client.scan_iter(match="session:*", count=1000))
    yield
    for key in set(client.scan_iter(match="session:*", count=1000)) - before:
        client.delete(key)
    client.close()


@pytest.mark.parametrize("name", NAMES)
def test_quickstart_runs_as_written(name, tmp_path, request):
    quickstart = quickstarts()[name]
    run_shell(from_this_checkout(quickstart.blocks["install"]), tmp_path)
    (tmp_path / "app.py").write_text(quickstart.blocks["app.py"])

    with Served(quickstart.blocks["serve"], tmp_path) as served:
        assert_counts_visits(served)
    assert (tmp_path / "sessions.sqlite3").exists(), "the sessions live in the SQLite file the app names"

    if "variant-app.py" in quickstart.blocks:
        request.getfixturevalue("redis_session_keys")
        run_shell(in_the_venv(from_this_checkout(quickstart.blocks["variant-install"])), tmp_path)
        app = with_variant(quickstart.blocks["app.py"], quickstart.blocks["variant-app.py"])
        (tmp_path / "app.py").write_text(app)
        with Served(quickstart.blocks["serve"], tmp_path) as served:
            assert_counts_visits(served)
