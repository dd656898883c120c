"""Shared fixtures: an injectable clock, every store, and real HTTP servers on loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests

from hug_cookie_sessions import MemoryStore, SQLiteStore

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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


@pytest.fixture
def serve():
    """``serve(wsgi_app) -> base URL`` of a real threaded HTTP server on 127.0.0.1."""
    servers = []

    def start(app) -> str:
        server = make_server(
            "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


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
