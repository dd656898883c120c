"""PostgreSQL behind real apps: round trips per request, and AsyncPostgresStore behind falcon.asgi.App."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from hug_cookie_sessions import AsyncPostgresStore, PostgresStore

from .conftest import FALCON_MAJOR, Servers
from .servers import report
from .support import make_site
from .test_lifecycle import in_background

needs_asgi = pytest.mark.skipif(FALCON_MAJOR < 3, reason="ASGI needs Falcon 3 or later")


class CountingConnection(psycopg.Connection):
    """Counts the statements run through it. The store runs each with ``execute`` in autocommit
    mode, where a statement is one round trip: no ``BEGIN`` or ``COMMIT`` is sent around it."""

    statements = 0

    def execute(self, *args, **kwargs):
        CountingConnection.statements += 1
        return super().execute(*args, **kwargs)


class TracedPool:
    """A pool of counting connections."""

    def __init__(self, url: str) -> None:
        self.pool = ConnectionPool(
            url, connection_class=CountingConnection, kwargs={"autocommit": True}, min_size=1, open=True
        )

    def round_trips(self) -> int:
        return CountingConnection.statements


def test_round_trips_per_request(serve, clock, postgres_url, table_prefix, request):
    traced = TracedPool(postgres_url)
    store = PostgresStore(traced.pool, table_prefix=table_prefix)
    store.create("warm-up", store_record())  # tables made, the first write's purge done
    site = make_site(serve, store, clock)
    visitor = site.visitor()
    costs = {}

    def cost(name: str, call) -> None:
        before = traced.round_trips()
        assert call().status_code == 200
        costs[name] = traced.round_trips() - before

    cost("new visitor's first write", lambda: visitor.post("/set", key="n", value="1"))
    cost("untouched", lambda: visitor.get("/untouched"))
    cost("read", lambda: visitor.get("/get", key="n"))
    cost("write", lambda: visitor.post("/set", key="n", value="2"))
    cost("login", lambda: visitor.post("/login", user="ada"))
    cost("logout", lambda: visitor.post("/logout"))
    report(request, f"PostgresStore round trips on {serve.framework}: {costs}")
    untouched = 1 if serve.framework == "falcon-asgi" else 0  # ASGI loads a session with a cookie up front
    assert costs == {
        "new visitor's first write": 1,
        "untouched": untouched,
        "read": 1,
        "write": 2,
        "login": 2,
        "logout": 2,
    }
    traced.pool.close()


def store_record():
    from hug_cookie_sessions.testing import record

    return record({"a": "1"})


@pytest.fixture
def asgi_site(clock):
    servers = []

    def make(framework: str, store, **options):
        servers.append(Servers(framework))
        return make_site(servers[-1], store, clock, idle_timeout=3600, **options)

    yield make
    for server in servers:
        server.stop_all()


@needs_asgi
def test_an_asgi_app_on_async_postgres_and_a_wsgi_app_on_postgres_share_their_sessions(
    asgi_site, postgres_url, table_prefix
):
    wsgi = asgi_site("falcon-wsgi", PostgresStore(postgres_url, table_prefix=table_prefix))
    asgi = asgi_site("falcon-asgi", AsyncPostgresStore(postgres_url, table_prefix=table_prefix))
    visitor = wsgi.visitor()
    visitor.post("/set", key="cart", value='["apple"]')
    visitor.site = asgi
    assert visitor.value("cart") == ["apple"]
    before = visitor.cookie
    visitor.post("/login", user="ada")
    assert visitor.cookie != before
    visitor.site = wsgi
    assert visitor.get("/all").json()["data"] == {"cart": ["apple"], "user": "ada"}
    visitor.post("/logout")
    visitor.site = asgi
    assert visitor.value("user") is None


@needs_asgi
def test_overlapping_asgi_requests_on_async_postgres_changing_different_keys_both_persist(
    asgi_site, postgres_url, table_prefix
):
    site = asgi_site("falcon-asgi", AsyncPostgresStore(postgres_url, table_prefix=table_prefix))
    visitor = site.visitor()
    visitor.post("/set", key="base", value="0")
    slow = in_background(lambda: visitor.post("/set_when_released", key="left", value="1"))
    assert site.gates.loaded.wait(10)
    visitor.post("/set", key="right", value="2")
    site.gates.proceed.set()
    assert slow().status_code == 200
    assert visitor.get("/all").json()["data"] == {"base": 0, "left": 1, "right": 2}


@needs_asgi
def test_with_lock_overlapping_asgi_requests_take_turns_on_async_postgres(
    asgi_site, postgres_url, table_prefix
):
    store = AsyncPostgresStore(postgres_url, table_prefix=table_prefix)
    site = asgi_site("falcon-asgi", store, lock=True, lock_timeout=5)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="0")
    slow = in_background(lambda: visitor.post("/set_when_released", key="n", value="1"))
    assert site.gates.loaded.wait(10)
    waiting = in_background(lambda: visitor.post("/append", key="log", value='"second"'))
    site.gates.proceed.set()
    assert slow().status_code == 200 and waiting().status_code == 200
    assert visitor.get("/all").json()["data"] == {"n": 1, "log": ["second"]}
