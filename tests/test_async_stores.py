"""Stores under asyncio: blocking stores made async keep their promises and their I/O off the loop."""

from __future__ import annotations

import asyncio
import threading

import falcon
import falcon.testing
import pytest

from hug_cookie_sessions import MemoryStore, SessionMiddleware, SQLiteStore
from hug_cookie_sessions.stores.aio import AsyncStoreAdapter, as_async_store, is_async_store
from hug_cookie_sessions.testing import (
    BlockingFacade,
    LockingConformance,
    StoreConformance,
    UserIndexConformance,
)

from .support import SECRET


@pytest.fixture
def facade():
    facades = []

    def make(store):
        facades.append(BlockingFacade(store))
        return facades[-1]

    yield make
    for made in facades:
        made.close()


class TestAdaptedMemoryStore(StoreConformance, UserIndexConformance, LockingConformance):
    @pytest.fixture
    def store(self, facade):
        return facade(as_async_store(MemoryStore()))


class TestAdaptedSQLiteStore(StoreConformance, UserIndexConformance, LockingConformance):
    @pytest.fixture
    def store(self, facade, tmp_path):
        return facade(as_async_store(SQLiteStore(str(tmp_path / "sessions.sqlite3"))))


def run(coroutine):
    """Await ``coroutine`` on a loop of its own; unlike asyncio.run it leaves the thread's current
    loop alone, which Falcon 3's TestClient needs later in the session."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def threads_of_loads(store_class, *args):
    """The thread that ran the event loop, and the threads the store's ``load`` ran on."""
    seen = []

    class Recording(store_class):
        def load(self, sid):
            seen.append(threading.get_ident())
            return super().load(sid)

    adapted = as_async_store(Recording(*args))

    async def load_twice():
        await adapted.load("unknown")
        await asyncio.gather(adapted.load("a"), adapted.load("b"))
        return threading.get_ident()

    return run(load_twice()), seen


def test_sqlite_runs_in_worker_threads_never_on_the_event_loop(tmp_path):
    loop_thread, load_threads = threads_of_loads(SQLiteStore, str(tmp_path / "s.sqlite3"))
    assert len(load_threads) == 3
    assert loop_thread not in load_threads


def test_the_memory_store_is_called_directly_on_the_loop():
    loop_thread, load_threads = threads_of_loads(MemoryStore)
    assert load_threads == [loop_thread] * 3


def test_an_async_store_is_used_as_it_is():
    adapter = AsyncStoreAdapter(MemoryStore())
    assert is_async_store(adapter)
    assert as_async_store(adapter) is adapter
    assert not is_async_store(MemoryStore())


def test_an_async_store_in_a_wsgi_app_is_a_clear_error():
    middleware = SessionMiddleware(SECRET, AsyncStoreAdapter(MemoryStore()))
    session = middleware.open(None)
    session["n"] = 1
    with pytest.raises(TypeError, match=r"async store: use it with falcon\.asgi\.App"):
        middleware.save(session)


def test_an_async_store_behind_the_wsgi_hooks_is_a_clear_error_when_a_value_changes():
    middleware = SessionMiddleware(SECRET, AsyncStoreAdapter(MemoryStore()))

    async def stored_session():
        new = await middleware.open_async(None)
        new["n"] = 1
        return await middleware.open_async(await middleware.save_async(new))

    session = run(stored_session())
    session["n"] = 2
    req = falcon.Request(falcon.testing.create_environ())
    req.context["session"] = session
    with pytest.raises(TypeError, match=r"async store: use it with falcon\.asgi\.App"):
        middleware.process_response(req, falcon.Response(), None, True)


def test_open_async_and_save_async_carry_a_session_through_a_token():
    middleware = SessionMiddleware(SECRET, MemoryStore())

    async def visit():
        session = await middleware.open_async(None)
        session["n"] = 1
        token = await middleware.save_async(session)
        again = await middleware.open_async(token)
        return token, dict(again), await middleware.save_async(again)

    token, data, same_token = run(visit())
    assert data == {"n": 1}
    assert same_token == token
