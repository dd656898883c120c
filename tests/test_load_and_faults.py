"""Many clients, a locked database and killed workers, against gunicorn on loopback.

gunicorn runs ``tests/served_app.py`` with 2 workers x 4 threads (``gthread``),
the deployment shape the README recommends. Throughput is printed, never asserted.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests

from hug_cookie_sessions import SessionStoreError, SQLiteStore

from .servers import Gunicorn, client, new_session, report, store_env, wait_until
from .support import store_key_of

# Load against the hug app of tests/served_app.py: heavy, and the same on every Python and Falcon,
# so the nox matrix leaves it to `make test`.
pytestmark = pytest.mark.main_env_only

CLIENTS = 20
REQUESTS = 200  # per client: alternately a write of its own key and a read of it back
SHARED_SESSIONS = 4  # each session is shared by CLIENTS / SHARED_SESSIONS clients


def sqlite_env(tmp_path, **extra: str) -> dict[str, str]:
    return {**store_env("sqlite", None, tmp_path), **extra}


# -- load -----------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    statuses: Counter = field(default_factory=Counter)
    stale_reads: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def run_load(url: str) -> tuple[LoadResult, list[str]]:
    """CLIENTS clients x REQUESTS requests; client i writes and reads back only its key ``c<i>``."""
    tokens = [new_session(url, owner=index) for index in range(SHARED_SESSIONS)]
    result = LoadResult()

    def one_client(index: int) -> None:
        http = client(url, tokens[index % SHARED_SESSIONS])
        key = f"c{index}"
        for round_ in range(REQUESTS // 2):
            written = http.post(url + "/set", params={"key": key, "value": str(round_)}, timeout=30)
            result.statuses[written.status_code] += 1
            read = http.get(url + "/get", params={"key": key}, timeout=30)
            result.statuses[read.status_code] += 1
            if read.ok and read.json()["value"] != round_:
                result.stale_reads.append((key, round_, read.json()["value"]))

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(one_client, index) for index in range(CLIENTS)]:
            future.result(timeout=300)
    result.seconds = time.perf_counter() - started
    return result, tokens


def check_no_key_lost(url: str, tokens: list[str]) -> None:
    for session_index, token in enumerate(tokens):
        data = client(url, token).get(url + "/all", timeout=10).json()["data"]
        expected = {
            f"c{index}": REQUESTS // 2 - 1
            for index in range(CLIENTS)
            if index % SHARED_SESSIONS == session_index
        }
        assert data == {"owner": session_index, **expected}


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_twenty_clients_get_no_5xx_and_lose_no_key(tmp_path, request, kind):
    with Gunicorn(tmp_path, store_env(kind, request, tmp_path)) as server:
        result, tokens = run_load(server.url)
        check_no_key_lost(server.url, tokens)
    rate = result.requests / result.seconds
    report(request, f"load, {kind}, 2 workers x 4 threads, {CLIENTS} clients: {rate:.0f} requests/s")
    assert result.statuses == Counter({200: CLIENTS * REQUESTS})
    assert result.stale_reads == []


# -- a database locked by another process --------------------------------------------------------


class LockedDatabase:
    """Another process holding SQLite's write lock on ``path`` until the block ends."""

    HOLDER = textwrap.dedent(
        """
        import signal, sqlite3, sys
        signal.alarm(60)  # never outlive a test that forgot us
        db = sqlite3.connect(sys.argv[1], isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        sys.stdin.readline()
        db.execute("ROLLBACK")
        """
    )

    def __init__(self, path) -> None:
        self.path = str(path)

    def __enter__(self) -> LockedDatabase:
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.HOLDER, self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "locked"
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.process.communicate("release\n", timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def test_a_sqlite_file_locked_by_another_process_gives_503_then_recovers(tmp_path):
    with Gunicorn(tmp_path, sqlite_env(tmp_path, SESSION_BUSY_TIMEOUT="0.3")) as server:
        url = server.url
        visitor = client(url, new_session(url, n=1))
        with LockedDatabase(tmp_path / "sessions.sqlite3"):
            refused = visitor.post(url + "/set", params={"key": "n", "value": "2"}, timeout=10)
            assert refused.status_code == 503
            assert "Session store unavailable" in refused.text and "Traceback" not in refused.text
            assert "Set-Cookie" not in refused.headers
            newcomer = client(url).post(url + "/set", params={"key": "n", "value": "1"}, timeout=10)
            assert newcomer.status_code == 503 and "Set-Cookie" not in newcomer.headers
            assert visitor.get(url + "/get", params={"key": "n"}, timeout=10).json() == {"value": 1}
            assert visitor.get(url + "/untouched", timeout=10).status_code == 200
        assert visitor.post(url + "/set", params={"key": "n", "value": "3"}, timeout=10).status_code == 200
        assert visitor.get(url + "/get", params={"key": "n"}, timeout=10).json() == {"value": 3}


# -- a worker killed in the middle of a write -------------------------------------------------------


def stall_and_kill(server: Gunicorn, token: str, path: str) -> int:
    """Send ``path`` (a stalling endpoint) with ``token``, SIGKILL the worker serving it; its PID."""
    with ThreadPoolExecutor(1) as pool:
        stalled = pool.submit(client(server.url, token).post, server.url + path, timeout=60)
        pid = server.stalled_worker()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(requests.ConnectionError):
            stalled.result(timeout=60)
    return pid


def test_a_worker_killed_inside_its_sqlite_transaction_leaves_no_half_written_session(tmp_path):
    db_path = tmp_path / "sessions.sqlite3"
    with Gunicorn(tmp_path, sqlite_env(tmp_path)) as server:
        url = server.url
        token = new_session(url, a="before", b="before")
        sid = store_key_of(token)
        with ThreadPoolExecutor(1) as pool:
            stalled = pool.submit(client(url, token).post, url + "/stall_in_commit", timeout=60)
            pid = server.stalled_worker()
            # The worker is inside its write: it holds the write lock, and nobody sees its rows yet.
            with pytest.raises(SessionStoreError, match="locked"):
                SQLiteStore(str(db_path), busy_timeout=0.1).apply(sid, {"x": "1"}, (), time.time() + 60)
            assert SQLiteStore(str(db_path)).load(sid).data == {"a": '"before"', "b": '"before"'}
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(requests.ConnectionError):
                stalled.result(timeout=60)

        store = SQLiteStore(str(db_path))
        assert store.load(sid).data == {"a": '"before"', "b": '"before"'}
        assert sqlite3.connect(str(db_path)).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        visitor = client(url, token)
        assert visitor.post(url + "/set", params={"key": "a", "value": '"after"'}, timeout=10).ok
        assert visitor.get(url + "/all", timeout=10).json()["data"] == {"a": "after", "b": "before"}
        for _ in range(10):  # both workers (the respawned one too) keep serving
            assert client(url).post(url + "/set", params={"key": "n", "value": "1"}, timeout=10).ok


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_worker_killed_before_saving_leaves_the_session_as_it_was(tmp_path, request, kind):
    with Gunicorn(tmp_path, store_env(kind, request, tmp_path)) as server:
        url = server.url
        token = new_session(url, a="before", b="before")
        stall_and_kill(server, token, "/stall_in_handler")
        visitor = client(url, token)
        assert visitor.get(url + "/all", timeout=10).json()["data"] == {"a": "before", "b": "before"}
        assert visitor.post(url + "/set", params={"key": "c", "value": '"after"'}, timeout=10).ok
        assert visitor.get(url + "/all", timeout=10).json()["data"] == {
            "a": "before",
            "b": "before",
            "c": "after",
        }


# -- Redis restarted under load ----------------------------------------------------------------------


class Writer:
    """A client writing ``round`` to its own key and reading it back, until told to stop."""

    def __init__(self, url: str, token: str, key: str) -> None:
        self.http, self.url, self.key = client(url, token), url, key
        self.acked = self.attempted = -1  # last round answered 200, last round sent
        self.statuses: Counter = Counter()
        self.wrong_reads: list = []
        self.acked_since_mark = False

    def run(self, stop: threading.Event) -> None:
        round_ = 0
        while not stop.is_set():
            self.attempted = round_
            written = self.http.post(
                self.url + "/set", params={"key": self.key, "value": str(round_)}, timeout=30
            )
            self.statuses[written.status_code] += 1
            if written.status_code == 200:
                self.acked, self.acked_since_mark = round_, True
            read = self.http.get(self.url + "/get", params={"key": self.key}, timeout=30)
            self.statuses[read.status_code] += 1
            # Failing closed: a read either fails or shows a value this client wrote, never an empty session.
            value = read.json()["value"] if read.status_code == 200 else "failed"
            if value != "failed" and (value is None or not self.acked <= value <= self.attempted):
                self.wrong_reads.append((round_, value))
            round_ += 1


def test_redis_restarted_under_load_fails_closed_with_503_and_recovers_with_no_session_corrupted(
    tmp_path, start_redis, redis_prefix, request
):
    redis_server = start_redis("--appendonly", "yes", "--appendfsync", "always")  # sessions survive
    env = {"SESSION_STORE": redis_server.url, "SESSION_REDIS_PREFIX": redis_prefix}
    restart_under_load(tmp_path, env, redis_server, request, "Redis")


def test_postgres_restarted_under_load_fails_closed_with_503_and_recovers_with_no_session_corrupted(
    tmp_path, private_postgres, request
):
    """The server is stopped like a crash (``pg_ctl -m immediate``): committed sessions come back
    through its WAL recovery, the app's pools reconnect by themselves."""
    private_postgres.stop_mode = "immediate"
    env = {"SESSION_STORE": private_postgres.url + "?table_prefix=restart"}
    restart_under_load(tmp_path, env, private_postgres, request, "PostgreSQL")


def restart_under_load(tmp_path, env: dict, store_server, request, label: str) -> None:
    """8 writers on 4 sessions through gunicorn while ``store_server`` stops and starts again:
    only 200s and 503s, no foreign or lost value, every writer served again with no app restart."""
    with Gunicorn(tmp_path, env) as server:
        url = server.url
        tokens = [new_session(url, owner=index) for index in range(4)]
        writers = [Writer(url, tokens[index % 4], f"c{index}") for index in range(8)]

        def count(status: int) -> int:
            return sum(writer.statuses[status] for writer in writers)

        stop = threading.Event()
        with ThreadPoolExecutor(len(writers)) as pool:
            running = [pool.submit(writer.run, stop) for writer in writers]
            try:
                wait_until(lambda: count(200) >= 200, "load before the outage", 60)
                store_server.stop()
                wait_until(lambda: count(503) >= 50, "503s during the outage", 60)
                assert client(url).get(url + "/untouched", timeout=10).status_code == 200
                outage_503s = count(503)
                store_server.start()
                for writer in writers:
                    writer.acked_since_mark = False
                wait_until(lambda: all(writer.acked_since_mark for writer in writers), "recovery", 60)
            finally:
                stop.set()
                for future in running:
                    future.result(timeout=60)

        statuses = sum((writer.statuses for writer in writers), Counter())
        report(request, f"{label} restart under load: {dict(statuses)} (503s while down: {outage_503s})")
        assert set(statuses) == {200, 503}
        assert [writer.wrong_reads for writer in writers] == [[]] * len(writers)
        for index, token in enumerate(tokens):
            data = client(url, token).get(url + "/all", timeout=10).json()["data"]
            mine = writers[index::4]
            assert set(data) == {"owner", *(writer.key for writer in mine)}
            assert data["owner"] == index
            for writer in mine:
                assert writer.acked <= data[writer.key] <= writer.attempted
