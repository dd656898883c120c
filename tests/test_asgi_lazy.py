"""ASGI without the waste, through uvicorn: requests that do not use the session do no store I/O,
and responders of resources with ``session_preload = False`` load it through the async accessors.

Every store call is counted on a real store (memory, SQLite file, AsyncRedisStore on the real Redis).
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from hug_cookie_sessions import SessionMiddleware, SessionStoreError

from .apps import Gates
from .conftest import FALCON_MAJOR, Servers, make_store
from .servers import wait_until
from .support import SECRET, CountingStore, Site
from .test_lifecycle import in_background

pytestmark = pytest.mark.skipif(FALCON_MAJOR < 3, reason="ASGI needs Falcon 3 or later")


class Untouched:
    """Opted out, and never touches the session (a health check, a static-like route)."""

    session_preload = False

    async def on_get(self, req, resp):
        resp.media = {"ok": True}


class Preloaded:
    """Today's way: the session is loaded before the responder, which uses it synchronously."""

    async def on_get(self, req, resp):
        resp.media = {"value": req.context.session.get(req.params["key"])}

    async def on_post(self, req, resp):
        req.context.session[req.params["key"]] = json.loads(req.params["value"])
        resp.media = {"ok": True}

    async def on_get_item(self, req, resp, key):
        """Routed with a suffix (``on_get_item``): preloaded all the same."""
        resp.media = {"value": req.context.session.get(key)}


class SyncWithoutPreload:
    """A mistake: opted out, then used synchronously."""

    session_preload = False

    async def on_get(self, req, resp):
        resp.media = {"value": req.context.session.get("n")}


class Lazy:
    """Opted out: the responders use only the async accessors (one route per suffix)."""

    session_preload = False

    def __init__(self, gates: Gates) -> None:
        self.gates = gates

    async def on_get_value(self, req, resp):
        resp.media = {"value": await req.context.session.aget(req.params["key"])}

    async def on_get_all(self, req, resp):
        session = req.context.session
        items, keys, values = await session.aitems(), await session.akeys(), await session.avalues()
        resp.media = {"items": dict(items), "keys": sorted(keys), "values": len(values)}

    async def on_post_set(self, req, resp):
        await req.context.session.aset(req.params["key"], json.loads(req.params["value"]))
        resp.media = {"ok": True}

    async def on_post_append(self, req, resp):
        session, key = req.context.session, req.params["key"]
        await session.aset(key, [*await session.aget(key, []), json.loads(req.params["value"])])
        resp.media = {"ok": True}

    async def on_post_set_when_released(self, req, resp):
        """Load now (and, with ``lock=True``, lock), wait for the test, then write."""
        session, key = req.context.session, req.params["key"]
        await session.aget(key)
        self.gates.loaded.set()
        assert await asyncio.to_thread(self.gates.proceed.wait, 10), "test never released the request"
        await session.aset(key, json.loads(req.params["value"]))
        resp.media = {"ok": True}

    async def on_post_incr(self, req, resp):
        session, key = req.context.session, req.params["key"]
        value = await session.aget(key, 0) + 1
        await asyncio.sleep(0)  # let the other requests run between the read and the write
        await session.aset(key, value)
        resp.media = {"value": value}

    async def on_post_both(self, req, resp):
        """Two tasks of one request use the session at once."""
        session = req.context.session
        await asyncio.gather(session.aset("a", 1), session.aset("b", 2))
        resp.media = {"ok": True}

    async def on_post_pop(self, req, resp):
        resp.media = {"value": await req.context.session.apop(req.params["key"], None)}

    async def on_post_delete(self, req, resp):
        await req.context.session.adelete(req.params["key"])
        resp.media = {"ok": True}

    async def on_post_clear(self, req, resp):
        await req.context.session.aclear()
        resp.media = {"ok": True}

    async def on_post_logout(self, req, resp):
        await req.context.session.aload()
        req.context.session.invalidate()
        resp.media = {"ok": True}


async def sink(req, resp, **params):
    """Falcon calls no resource hook for a sink: it is never preloaded, and uses the accessors."""
    resp.media = {"value": await req.context.session.aget("n")}


LAZY_ROUTES = ("value", "all", "set", "append", "set_when_released", "incr", "both", "pop", "delete")
LAZY_ROUTES += ("clear", "logout")


def lazy_app(middleware: SessionMiddleware, gates: Gates):
    from falcon.asgi import App

    app = App(middleware=[middleware])
    app.add_route("/untouched", Untouched())
    app.add_route("/preloaded", Preloaded())
    app.add_route("/preloaded/{key}", Preloaded(), suffix="item")
    app.add_route("/sync_without_preload", SyncWithoutPreload())
    lazy = Lazy(gates)
    for suffix in LAZY_ROUTES:
        app.add_route(f"/lazy/{suffix}", lazy, suffix=suffix)
    app.add_sink(sink, "/sink")
    return app


@pytest.fixture(params=["memory", "sqlite", "async-redis"])
def store(request, tmp_path):
    if request.param == "async-redis":
        from hug_cookie_sessions import AsyncRedisStore

        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        return AsyncRedisStore(url, prefix=prefix)
    return make_store(request.param, tmp_path)


@pytest.fixture
def site_for(store, clock):
    """``site_for(**options) -> (site, counting)``: the lazy app in uvicorn on ``store``, counted."""
    servers = Servers("falcon-asgi")

    def make(**options):
        counting = CountingStore(store)
        middleware = SessionMiddleware(SECRET, counting, clock=clock, cookie_secure=False, **options)
        gates = Gates()
        return Site(servers(lazy_app(middleware, gates)), "falcon-asgi", middleware, gates), counting

    yield make
    servers.stop_all()


def signed_in(site: Site, counting: CountingStore, **values):
    """A visitor whose session holds ``values``, the store's call counts cleared afterwards."""
    visitor = site.visitor()
    for key, value in values.items():
        assert visitor.post("/preloaded", key=key, value=json.dumps(value)).status_code == 200
    assert visitor.cookie is not None
    counting.calls.clear()
    return visitor


# -- no store I/O for requests that do not use the session ----------------------------------------


@pytest.mark.parametrize("lock", [False, True], ids=["unlocked", "lock"])
def test_an_untouched_request_to_an_opted_out_resource_costs_no_store_call(site_for, lock):
    site, counting = site_for(lock=lock)
    visitor = signed_in(site, counting, n=1)
    response = visitor.get("/untouched")
    assert response.status_code == 200
    assert dict(counting.calls) == {}  # not even a lock
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers
    assert visitor.get("/preloaded", key="n").json() == {"value": 1}


@pytest.mark.parametrize("lock", [False, True], ids=["unlocked", "lock"])
def test_requests_that_reach_no_responder_cost_no_store_call(site_for, lock):
    site, counting = site_for(lock=lock)
    visitor = signed_in(site, counting, n=1)
    for method, path, status in [("GET", "/nowhere", 404), ("DELETE", "/preloaded", 405)]:
        response = visitor.http.request(method, site.url + path, timeout=10)
        assert response.status_code == status, path
        assert "Set-Cookie" not in response.headers
    options = visitor.http.options(site.url + "/preloaded", timeout=10)  # Falcon's default OPTIONS
    assert options.status_code == 200
    assert "GET" in options.headers["Allow"]
    assert dict(counting.calls) == {}


def test_a_responder_of_a_resource_that_does_not_opt_out_still_reads_synchronously(site_for):
    site, counting = site_for()
    visitor = signed_in(site, counting, n=1)
    assert visitor.get("/preloaded", key="n").json() == {"value": 1}
    assert visitor.get("/preloaded/n").json() == {"value": 1}  # a suffixed responder too
    assert dict(counting.calls) == {"load": 2}


def test_sync_access_to_a_session_that_was_not_loaded_is_a_clear_error(site_for, caplog):
    site, counting = site_for()
    visitor = signed_in(site, counting, n=1)
    with caplog.at_level(logging.ERROR):
        response = visitor.get("/sync_without_preload")
    assert response.status_code == 500
    raised = [record.exc_info[1] for record in caplog.records if record.exc_info]
    assert any(isinstance(error, RuntimeError) and "await session.aload()" in str(error) for error in raised)
    assert dict(counting.calls) == {}  # never a silently empty session that could be saved
    assert visitor.get("/preloaded", key="n").json() == {"value": 1}


# -- the async accessors ----------------------------------------------------------------------------


def test_async_accessors_load_on_first_use_and_save_like_sync_access(site_for):
    site, counting = site_for()
    visitor = site.visitor()
    assert visitor.post("/lazy/set", key="n", value="1").status_code == 200
    assert visitor.cookie is not None  # a new visitor's first write creates the session
    counting.calls.clear()
    assert visitor.get("/lazy/value", key="n").json() == {"value": 1}
    assert dict(counting.calls) == {"load": 1}
    counting.calls.clear()
    assert visitor.post("/lazy/append", key="cart", value='"apple"').status_code == 200
    assert dict(counting.calls) == {"load": 1, "apply": 1}
    assert visitor.get("/preloaded", key="cart").json() == {"value": ["apple"]}  # sync access sees it
    assert visitor.get("/sink/anything").json() == {"value": 1}
    assert visitor.get("/lazy/all").json() == {
        "items": {"n": 1, "cart": ["apple"]},
        "keys": ["cart", "n"],
        "values": 2,
    }
    assert visitor.post("/lazy/pop", key="n").json() == {"value": 1}
    assert visitor.post("/lazy/pop", key="n").json() == {"value": None}
    assert visitor.post("/lazy/delete", key="missing").status_code == 500  # a KeyError, as del would
    assert visitor.post("/lazy/delete", key="cart").status_code == 200
    assert visitor.cookie is None  # emptied: the session is deleted with its cookie
    assert visitor.get("/lazy/all").json()["items"] == {}


def test_a_session_emptied_by_aclear_is_deleted_with_its_cookie(site_for):
    site, counting = site_for()
    visitor = signed_in(site, counting, a=1, b=2)
    token = visitor.cookie
    response = visitor.post("/lazy/clear")
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert counting.calls["delete"] == 1
    replay = site.visitor()
    replay.set_cookie(token)
    assert replay.get("/lazy/all").json()["items"] == {}


def test_tasks_of_one_request_share_one_load_and_both_writes_persist(site_for):
    site, counting = site_for()
    visitor = signed_in(site, counting, n=0)
    assert visitor.post("/lazy/both").status_code == 200
    assert dict(counting.calls) == {"load": 1, "apply": 1}
    assert visitor.get("/lazy/all").json()["items"] == {"n": 0, "a": 1, "b": 2}


def test_overlapping_lazy_requests_changing_different_keys_both_persist(site_for):
    site, counting = site_for()
    visitor = signed_in(site, counting, base=0)
    slow = in_background(lambda: visitor.post("/lazy/set_when_released", key="left", value="1"))
    assert site.gates.loaded.wait(10)
    assert visitor.post("/lazy/set", key="right", value="2").status_code == 200
    site.gates.proceed.set()
    assert slow().status_code == 200
    assert visitor.get("/lazy/all").json()["items"] == {"base": 0, "left": 1, "right": 2}


def test_a_lazy_request_that_loaded_before_a_logout_cannot_bring_the_session_back(site_for):
    site, counting = site_for()
    visitor = signed_in(site, counting, user="ada")
    token = visitor.cookie
    slow = in_background(lambda: visitor.post("/lazy/set_when_released", key="cart", value='["apple"]'))
    assert site.gates.loaded.wait(10)
    other_tab = site.visitor()
    other_tab.set_cookie(token)
    assert other_tab.post("/lazy/logout").status_code == 200
    site.gates.proceed.set()
    response = slow()
    assert response.status_code == 200
    assert "Max-Age=0" in response.headers["Set-Cookie"]  # its changes dropped, the cookie expired
    replay = site.visitor()
    replay.set_cookie(token)
    assert replay.get("/lazy/all").json()["items"] == {}


# -- lock=True: the first load takes the lock, wherever it happens ----------------------------------


def test_with_lock_a_second_request_waits_for_the_first_aget_and_builds_on_it(site_for):
    site, counting = site_for(lock=True)
    first = signed_in(site, counting, log=["start"])
    second = site.visitor()
    second.set_cookie(first.cookie)
    with ThreadPoolExecutor(2) as pool:
        holding = pool.submit(first.post, "/lazy/set_when_released", key="log", value='["first"]')
        assert site.gates.loaded.wait(10)
        tries = counting.calls["acquire_lock"]
        waiting = pool.submit(second.post, "/lazy/append", key="log", value='"second"')
        wait_until(lambda: counting.calls["acquire_lock"] >= tries + 2, "the second request to be refused")
        assert not waiting.done()
        site.gates.proceed.set()
        assert holding.result(10).status_code == 200
        assert waiting.result(10).status_code == 200
    assert first.get("/lazy/value", key="log").json() == {"value": ["first", "second"]}
    assert counting.calls["release_lock"] == counting.calls["load"]  # every lock taken was released


CLIENTS = 6
INCREMENTS = 5  # per client


def test_with_lock_concurrent_lazy_increments_of_one_session_all_count(site_for):
    site, counting = site_for(lock=True)
    token = signed_in(site, counting, n=0).cookie

    def increments(_: int) -> list[int]:
        visitor = site.visitor()
        visitor.set_cookie(token)
        return [visitor.post("/lazy/incr", key="n").json()["value"] for _ in range(INCREMENTS)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        seen = [value for values in pool.map(increments, range(CLIENTS), timeout=120) for value in values]
    total = CLIENTS * INCREMENTS
    assert sorted(seen) == list(range(1, total + 1))  # each request saw the one before it
    reader = site.visitor()
    reader.set_cookie(token)
    assert reader.get("/lazy/value", key="n").json() == {"value": total}


# -- a store outage ---------------------------------------------------------------------------------


class FailingLoads:
    """A real blocking store whose loads fail while ``failing`` is set, as when its backend drops."""

    def __init__(self, store) -> None:
        self.store = store
        self.failing = False

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def load(self, sid):
        if self.failing:
            raise SessionStoreError("the backend went away")
        return self.store.load(sid)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_store_outage_is_a_503_where_the_session_is_used_and_nothing_elsewhere(kind, tmp_path, clock):
    store = FailingLoads(make_store(kind, tmp_path))
    servers = Servers("falcon-asgi")
    try:
        middleware = SessionMiddleware(SECRET, store, clock=clock, cookie_secure=False)
        gates = Gates()
        site = Site(servers(lazy_app(middleware, gates)), "falcon-asgi", middleware, gates)
        visitor = site.visitor()
        assert visitor.post("/lazy/set", key="n", value="1").status_code == 200
        store.failing = True
        for path in ("/lazy/value", "/preloaded"):
            refused = visitor.get(path, key="n")
            assert refused.status_code == 503, path
            assert "Session store unavailable" in refused.text and "Traceback" not in refused.text
        assert visitor.get("/untouched").status_code == 200
        store.failing = False
        assert visitor.get("/lazy/value", key="n").json() == {"value": 1}
    finally:
        servers.stop_all()
