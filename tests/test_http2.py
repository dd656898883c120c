"""Cookies split over several header fields, as HTTP/2 clients may send them (RFC 9113 8.2.3).

Through a real HTTP/2 server: Hypercorn (with h2) serving the ``falcon.asgi.App`` test app on
loopback, spoken to by an HTTP/2 client (the ``h2`` library over a socket, cleartext with prior
knowledge). And through uvicorn, an ASGI server that passes repeated ``Cookie`` fields on one by
one, where Falcon's ``req.get_header("Cookie")`` keeps only the last field. Without Hypercorn or
h2 the HTTP/2 test skips, and fails under CI=true.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from typing import Any

import pytest

from hug_cookie_sessions import MemoryStore, SessionMiddleware

from .apps import build_app
from .conftest import FALCON_MAJOR, Servers, free_port
from .support import SECRET

pytestmark = pytest.mark.skipif(FALCON_MAJOR < 3, reason="ASGI needs Falcon 3 or later")


def asgi_app(seen: list) -> Any:
    """The test app on ``falcon.asgi.App``; ``seen`` gets each request's HTTP version and the
    ``cookie`` fields exactly as the server passed them to the app."""
    app = build_app(SessionMiddleware(SECRET, MemoryStore(), cookie_secure=False), framework="falcon-asgi")

    async def recording(scope, receive, send):
        if scope["type"] == "http":
            seen.append((scope["http_version"], [v for n, v in scope["headers"] if n == b"cookie"]))
        await app(scope, receive, send)

    return recording


class Hypercorn:
    """``app`` served by Hypercorn on a free loopback port, on its own thread and event loop."""

    def __init__(self, app: Any) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        self.port = free_port()
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = config.errorlog = None
        self.loop = asyncio.new_event_loop()
        self.stopping = asyncio.Event()
        shutdown = self.stopping.wait
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(serve(app, config, shutdown_trigger=shutdown),)
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.thread.is_alive() and time.monotonic() < deadline, "hypercorn did not start"
                time.sleep(0.02)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)
        assert not self.thread.is_alive(), "hypercorn did not stop"
        self.loop.close()


def h2_request(port: int, method: str, path: str, headers: list[tuple[str, str]]) -> tuple[dict, Any]:
    """One HTTP/2 request (h2c, prior knowledge) with exactly the header fields given, in order;
    the response's headers (repeated ones as lists) and its JSON body."""
    import h2.config
    import h2.connection
    import h2.events

    connection = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    connection.initiate_connection()
    stream = connection.get_next_available_stream_id()
    request = [(":method", method), (":scheme", "http"), (":authority", f"127.0.0.1:{port}")]
    connection.send_headers(stream, [*request, (":path", path), *headers], end_stream=True)
    response: dict = {}
    body = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(connection.data_to_send())
        ended = False
        while not ended:
            data = sock.recv(65536)
            assert data, "the server closed the HTTP/2 connection"
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    for name, value in event.headers:
                        response.setdefault(name, []).append(value)
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    connection.acknowledge_received_data(event.flow_controlled_length, stream)
                ended = ended or isinstance(event, h2.events.StreamEnded)
            sock.sendall(connection.data_to_send())
    return response, json.loads(body)


@pytest.fixture
def hypercorn(unavailable):
    """``hypercorn(app) -> port``: ``app`` served over HTTP/2 (and 1.1) for the test."""
    try:
        import h2  # noqa: F401
        import hypercorn  # noqa: F401
    except ImportError:
        unavailable("hypercorn and h2 are not installed (pip install hypercorn)")
    servers: list[Hypercorn] = []

    def start(app: Any) -> int:
        servers.append(Hypercorn(app))
        return servers[-1].port

    yield start
    for server in servers:
        server.stop()


def test_a_session_cookie_in_any_of_several_http2_cookie_fields_opens_the_session(hypercorn):
    seen: list = []
    port = hypercorn(asgi_app(seen))
    written, _ = h2_request(port, "POST", "/set?key=n&value=1", [])
    (set_cookie,) = written["set-cookie"]
    session = set_cookie.split(";", 1)[0]
    for fields in (
        [("cookie", "theme=dark"), ("cookie", session), ("cookie", "lang=en")],
        [("cookie", session), ("cookie", "theme=dark")],
        [("cookie", "theme=dark"), ("cookie", session)],
    ):
        headers, body = h2_request(port, "GET", "/get?key=n", fields)
        assert headers[":status"] == ["200"] and body == {"value": 1, "present": True}, fields
    assert {version for version, _ in seen} == {"2"}  # really HTTP/2, every time


def http1_get(url: str, path: str, cookie_lines: list[str]) -> Any:
    """An HTTP/1.1 GET with one ``Cookie`` header line per item of ``cookie_lines``."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("GET", path)
        for line in cookie_lines:
            connection.putheader("Cookie", line)
        connection.endheaders()
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def test_cookie_fields_an_asgi_server_passes_one_by_one_are_all_read():
    seen: list = []
    servers = Servers("falcon-asgi")
    try:
        url = servers(asgi_app(seen))
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        connection.request("POST", "/set?key=n&value=1")
        response = connection.getresponse()
        session = response.getheader("Set-Cookie").split(";", 1)[0]
        response.read()
        connection.close()
        for lines in ([session, "theme=dark"], ["theme=dark", session], ["a=1", session, "b=2"]):
            assert http1_get(url, "/get?key=n", lines) == {"value": 1, "present": True}, lines
        assert len(seen[-1][1]) == 3  # uvicorn passed the three fields separately
    finally:
        servers.stop_all()
