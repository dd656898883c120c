"""Shared fixtures: an injectable clock, every store, the web frameworks, real HTTP servers on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon
import pytest
import requests

from hug_cookie_sessions import MemoryStore, SQLiteStore

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: hug pins Falcon 2.0, which has no ASGI; Falcon 3 and later run both app kinds.
FALCON_MAJOR = int(falcon.__version__.split(".")[0])
FRAMEWORKS = ["hug"] if FALCON_MAJOR < 3 else ["falcon-wsgi", "falcon-asgi"]

needs_hug = pytest.mark.skipif(FALCON_MAJOR >= 3, reason="hug needs Falcon 2.0")


@pytest.fixture(scope="session")
def unavailable():
    """``unavailable(reason)``: skip a test whose service or tool is missing; under CI=true, fail it."""

    def handle(reason: str) -> None:
        if IN_CI:
            pytest.fail(f"{reason} (tests may not skip under CI)")
        pytest.skip(reason)

    return handle


class FakeClock:
    """Real time at the start, then moved only by :meth:`advance`."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_store(kind: str, tmp_path) -> object:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(str(tmp_path / "sessions.sqlite3"))
    raise ValueError(kind)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    """Each built-in store that needs no outside service."""
    return make_store(request.param, tmp_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address):
        thread = threading.Thread(target=self._serve_one, args=(request, client_address), daemon=True)
        thread.start()

    def _serve_one(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


@pytest.fixture(params=FRAMEWORKS)
def framework(request) -> str:
    """Each web framework this environment has: ``hug``, or ``falcon-wsgi`` and ``falcon-asgi``."""
    return request.param


class Servers:
    """``servers(app) -> base URL``: ``app`` served on 127.0.0.1 for the test, stopped after it.

    WSGI apps run in a threaded ``wsgiref`` server, ASGI apps in uvicorn on its
    own thread and event loop. ``framework`` tells apps which kind to build.
    """

    def __init__(self, framework: str) -> None:
        self.framework = framework
        self._stops: list = []

    def __call__(self, app) -> str:
        if self.framework == "falcon-asgi":
            return self._uvicorn(app)
        server = make_server(
            "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(10)

        self._stops.append(stop)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def _uvicorn(self, app) -> str:
        import uvicorn

        sock = socket.socket()
        # Accepted connections inherit this; without it each response waits ~40 ms for a delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

        def stop() -> None:
            server.should_exit = True
            thread.join(10)
            sock.close()
            assert not thread.is_alive(), "uvicorn did not stop"

        self._stops.append(stop)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop_all(self) -> None:
        for stop in reversed(self._stops):
            stop()


@pytest.fixture
def serve(framework):
    """``serve(app) -> base URL`` of a real HTTP server on 127.0.0.1 for ``framework``'s app."""
    servers = Servers(framework)
    yield servers
    servers.stop_all()


@pytest.fixture
def browser():
    """A real cookie-jar HTTP client with a bounded timeout."""
    with requests.Session() as session:
        session.request = _with_timeout(session.request)
        yield session


def _with_timeout(request):
    def call(method, url, **kwargs):
        kwargs.setdefault("timeout", 10)
        return request(method, url, **kwargs)

    return call


# -- the example app under gunicorn, and reports for fixtures ------------------------------------

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SECRET = "example-app-test-secret"


@dataclass
class ExampleServer:
    """A running ``examples.app``: its base URL, its signing key and the SQLite file of its sessions."""

    url: str
    secret: str
    store_path: Path

    def store(self) -> SQLiteStore:
        """A second, independent handle on the server's store (a real shared SQLite file)."""
        return SQLiteStore(str(self.store_path))


@contextmanager
def run_example_app(workdir: Path, *, workers: int = 2, startup_timeout: float = 30.0):
    """Serve ``examples.app:__hug_wsgi__`` with gunicorn on a free loopback port.

    The server is stopped by PID (its whole process group if it does not stop
    in time) when the block ends.
    """
    port = free_port()
    store_path = workdir / "sessions.sqlite3"
    env = {
        **os.environ,
        "SESSION_SECRET": EXAMPLE_SECRET,
        "SESSION_STORE": str(store_path),
        "SESSION_COOKIE_SECURE": "0",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        *(sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
        *(
            "--chdir",
            str(ROOT),
            "--graceful-timeout",
            "5",
            *_no_control_socket(),
            "examples.app:__hug_wsgi__",
        ),
    ]
    log_path = workdir / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(url, process, log_path, startup_timeout)
        yield ExampleServer(url, EXAMPLE_SECRET, store_path)
    finally:
        _stop(process)


def _no_control_socket() -> list[str]:
    """Newer gunicorns open a control socket at one fixed path per user; servers of parallel
    test runs would fight over it."""
    from gunicorn.config import Config

    return ["--no-control-socket"] if "control_socket_disable" in Config().settings else []


def _wait_until_answering(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            requests.get(url + "/api/session", timeout=2)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer within {timeout}s:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def example_server(tmp_path_factory):
    """The example app served by gunicorn (2 workers) for the tests of one module."""
    with run_example_app(tmp_path_factory.mktemp("example-app")) as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.report_call``), so that fixtures
    can act on a failure in their teardown (the browser tests save a screenshot)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


# -- Redis: the shared server, private servers and a local cluster (helpers in redis_support.py) --


@pytest.fixture(scope="session")
def redis_url(unavailable) -> str:
    """The shared Redis (``REDIS_URL``, else redis://127.0.0.1:6379/0), checked once."""
    from .redis_support import unreachable

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    problem = unreachable(url)
    if problem:
        unavailable(f"no Redis at {url} ({problem}); start one or set REDIS_URL")
    return url


@pytest.fixture
def redis_prefix(redis_url):
    """A key prefix unique to this test on the shared Redis; its keys are deleted afterwards."""
    import redis

    from .redis_support import delete_prefix, unique_prefix

    prefix = unique_prefix()
    yield prefix
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        delete_prefix(client, prefix)
    finally:
        client.close()


def _needs_redis_binaries(unavailable) -> None:
    from .redis_support import REDIS_CLI, REDIS_SERVER

    if not (REDIS_SERVER and REDIS_CLI):
        unavailable("redis-server and redis-cli are not installed")


@pytest.fixture
def start_redis(tmp_path, unavailable):
    """``start_redis(*options) -> RedisServer``: this test's own redis-servers, stopped afterwards."""
    from .redis_support import RedisServer

    _needs_redis_binaries(unavailable)
    servers = []

    def start(*options: str):
        server = RedisServer(tmp_path / f"redis-{len(servers)}", free_port(), *options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def private_redis(start_redis):
    """A ``redis-server`` of this test's own on a free loopback port (``RedisServer``)."""
    return start_redis()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory, unavailable):
    """A 3-primary Redis Cluster on free loopback ports, shared by the whole run (``LocalCluster``)."""
    from .redis_support import LocalCluster

    _needs_redis_binaries(unavailable)
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), [(free_port(), free_port()) for _ in range(3)])
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def standalone_store(redis_url, redis_prefix):
    """A RedisStore on the shared Redis under this test's own prefix."""
    from hug_cookie_sessions import RedisStore

    store = RedisStore(redis_url, prefix=redis_prefix)
    yield store
    store.close()


@pytest.fixture
def cluster_store(redis_cluster):
    """A RedisStore on the local cluster under this test's own prefix, cleaned afterwards."""
    from hug_cookie_sessions import RedisStore

    from .redis_support import delete_prefix, unique_prefix

    prefix = unique_prefix()
    yield RedisStore(redis_cluster.client, prefix=prefix)
    delete_prefix(redis_cluster.client, prefix)


@pytest.fixture(params=["standalone", "cluster"])
def redis_store(request):
    """The same test on a single Redis and on Redis Cluster."""
    return request.getfixturevalue(f"{request.param}_store")


# -- PostgreSQL: this run's own database on the shared server (helpers in postgres_support.py) ------


@pytest.fixture(scope="session")
def postgres_url(unavailable) -> str:
    """A database of this test run's own on the shared PostgreSQL (``PG_URL``, else
    postgresql://postgres@127.0.0.1:5432/postgres), created with a random name and dropped at the end."""
    from .postgres_support import scratch_database, unreachable

    server = os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    problem = unreachable(server)
    if problem:
        unavailable(f"no PostgreSQL at {server} ({problem}); start one or set PG_URL")
    with scratch_database(server) as url:
        yield url


@pytest.fixture
def table_prefix(postgres_url) -> str:
    """Table names of this test's own in the run's database (dropped with it)."""
    import secrets

    return "t" + secrets.token_hex(5)


@pytest.fixture
def postgres_store(postgres_url, table_prefix):
    """A PostgresStore on this run's database under this test's own tables."""
    from hug_cookie_sessions import PostgresStore

    store = PostgresStore(postgres_url, table_prefix=table_prefix)
    yield store
    store.close()


@pytest.fixture
def async_postgres_store(postgres_url, table_prefix):
    """An AsyncPostgresStore on this run's database under this test's own tables, used through a
    blocking facade (its pool lives on the facade's event loop)."""
    from hug_cookie_sessions import AsyncPostgresStore
    from hug_cookie_sessions.testing import BlockingFacade

    async def make():
        return AsyncPostgresStore(postgres_url, table_prefix=table_prefix)

    facade = BlockingFacade(None)
    facade.store = facade.run(make())
    yield facade
    facade.run(facade.store.aclose())
    facade.close()


@pytest.fixture
def private_postgres(tmp_path_factory, unavailable):
    """A PostgreSQL of this test's own on a free loopback port (``PrivateServer``), stopped afterwards."""
    from .postgres_support import PrivateServer, server_binary

    if not (server_binary("initdb") and server_binary("pg_ctl")):
        unavailable("PostgreSQL's initdb and pg_ctl are not installed")
    # Not tmp_path: the server runs as ``postgres``, which must reach its directory.
    directory = Path(tempfile.mkdtemp(prefix="hcs-pg-"))
    os.chmod(directory, 0o755)
    server = PrivateServer(directory / "server", free_port())
    server.start()
    yield server
    server.stop("immediate")
    shutil.rmtree(directory, ignore_errors=True)
