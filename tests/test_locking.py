"""Opt-in per-session locking (``lock=True``): exact read-modify-write, leases, clear 503s."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import falcon
import falcon.testing
import pytest

from hug_cookie_sessions import MemoryStore, SessionMiddleware, SessionStoreError, SQLiteStore
from hug_cookie_sessions.locking import RequestLock, SessionLocks
from hug_cookie_sessions.stores.aio import as_async_store
from hug_cookie_sessions.testing import LockingConformance

from .conftest import needs_hug
from .servers import Gunicorn, client, new_session, report, store_env, wait_until
from .support import SECRET, CountingStore, make_site, store_key_of


class TestMemoryStoreLocks(LockingConformance):
    @pytest.fixture
    def store(self):
        return MemoryStore()


class TestSQLiteStoreLocks(LockingConformance):
    @pytest.fixture
    def store(self, tmp_path):
        return SQLiteStore(str(tmp_path / "sessions.sqlite3"))


def on_clock(kind: str, tmp_path, clock):
    """A memory or SQLite store on the test's clock (lock leases then end without waiting)."""
    if kind == "memory":
        return MemoryStore(clock=clock)
    return SQLiteStore(str(tmp_path / "sessions.sqlite3"), clock=clock)


@pytest.fixture(params=["memory", "sqlite"])
def clocked_store(request, tmp_path, clock):
    return on_clock(request.param, tmp_path, clock)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def any_store(request, tmp_path, clock):
    """Every store with locks; memory and SQLite on the test's clock."""
    if request.param == "redis":
        return request.getfixturevalue("standalone_store")
    return on_clock(request.param, tmp_path, clock)


# -- waiting, and who waits -------------------------------------------------------------------


def test_a_second_request_of_a_locked_session_waits_and_builds_on_the_first(serve, clock, any_store):
    counting = CountingStore(any_store)
    site = make_site(serve, counting, clock, lock=True)
    first = site.visitor()
    first.post("/set", key="log", value='["start"]')
    second = site.visitor()
    second.set_cookie(first.cookie)
    with ThreadPoolExecutor(2) as pool:
        holding = pool.submit(first.post, "/set_when_released", key="log", value='["first"]')
        assert site.gates.loaded.wait(10)
        tries = counting.calls["acquire_lock"]
        waiting = pool.submit(second.post, "/append", key="log", value='"second"')
        wait_until(lambda: counting.calls["acquire_lock"] >= tries + 2, "the second request to be refused")
        assert not waiting.done()
        site.gates.proceed.set()
        assert holding.result(10).status_code == 200
        assert waiting.result(10).status_code == 200
    # Unlocked, the second request would have read ["start"] and one of the writes would be lost.
    assert first.value("log") == ["first", "second"]


def test_other_sessions_and_requests_that_do_not_load_the_session_never_wait(serve, clock, any_store):
    site = make_site(serve, any_store, clock, lock=True, lock_timeout=0.2)
    locked, other = site.visitor(), site.visitor()
    locked.post("/set", key="n", value="1")
    other.post("/set", key="n", value="2")
    assert any_store.acquire_lock(store_key_of(locked.cookie), "a request on another worker", 60)
    assert other.post("/set", key="n", value="3").status_code == 200
    assert locked.get("/untouched").status_code == 200
    assert other.value("n") == 3


def test_a_request_that_cannot_get_the_lock_in_time_is_a_clear_503_that_changes_nothing(
    serve, clock, any_store
):
    site = make_site(serve, any_store, clock, lock=True, lock_timeout=0.2)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    sid = store_key_of(visitor.cookie)
    any_store.acquire_lock(sid, "a request on another worker", 60)
    refused = visitor.post("/set", key="n", value="2")
    assert refused.status_code == 503
    assert "Session busy" in refused.text and "Traceback" not in refused.text
    assert refused.headers["Retry-After"] == "1"
    assert "Set-Cookie" not in refused.headers
    any_store.release_lock(sid, "a request on another worker")
    assert visitor.value("n") == 1


def test_a_lock_left_by_a_dead_holder_expires_with_its_lease(serve, clock, clocked_store):
    site = make_site(serve, clocked_store, clock, lock=True, lock_timeout=0.2, lock_lease=30)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    clocked_store.acquire_lock(store_key_of(visitor.cookie), "a worker that was killed", 30)
    assert visitor.post("/set", key="n", value="2").status_code == 503
    clock.advance(29)
    assert visitor.post("/set", key="n", value="2").status_code == 503
    clock.advance(2)
    assert visitor.post("/set", key="n", value="2").status_code == 200
    assert visitor.value("n") == 2


def test_sqlite_purges_locks_whose_lease_ran_out(tmp_path, clock):
    store = SQLiteStore(str(tmp_path / "sessions.sqlite3"), clock=clock)
    store.acquire_lock("crashed", "token", 30)
    store.acquire_lock("alive", "token", 300)
    clock.advance(60)
    store.purge_expired()
    rows = store._connection().execute("SELECT id FROM session_locks").fetchall()
    assert rows == [("alive",)]


# -- every way a request can end releases its lock ---------------------------------------------------


@pytest.mark.parametrize(
    "path, status",
    [
        ("/set_then_raise", 500),
        ("/set_then_503", 503),
        ("/set_unserializable", 500),
        ("/logout", 200),
        ("/login?user=ada", 200),
        ("/clear", 200),
    ],
)
def test_the_lock_is_released_however_the_request_ends(serve, clock, any_store, path, status):
    site = make_site(serve, any_store, clock, lock=True, lock_timeout=0.2)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    token = visitor.cookie
    assert visitor.post(path).status_code == status
    assert any_store.acquire_lock(store_key_of(token), "the next request", 1)


class FailingWrites:
    """A real store whose writes fail while ``failing`` is set, as when its backend drops mid-request."""

    def __init__(self, store) -> None:
        self.store = store
        self.failing = False

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def apply(self, *args, **kwargs):
        if self.failing:
            raise SessionStoreError("the backend went away")
        return self.store.apply(*args, **kwargs)


def test_the_lock_is_released_when_saving_fails(serve, clock, any_store):
    store = FailingWrites(any_store)
    site = make_site(serve, store, clock, lock=True, lock_timeout=0.2)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    store.failing = True
    assert visitor.post("/set", key="n", value="2").status_code == 503
    store.failing = False
    assert visitor.post("/set", key="n", value="3").status_code == 200
    assert visitor.value("n") == 3


# -- configuration -----------------------------------------------------------------------------------


def test_locking_with_a_store_that_has_no_locks_is_refused_at_start_up():
    with pytest.raises(TypeError, match="no session locks"):
        SessionMiddleware(SECRET, HugStyleStore(), lock=True)


class HugStyleStore:
    """The interface of hug's own stores (get/exists/set/delete), which has no locks."""

    def get(self, key):
        return None

    def exists(self, key):
        return False

    def set(self, key, data):
        pass

    def delete(self, key):
        pass


@pytest.mark.parametrize("options", [{"lock_timeout": -1}, {"lock_lease": 0}])
def test_nonsense_lock_timings_are_refused_at_start_up(options):
    with pytest.raises(ValueError):
        SessionMiddleware(SECRET, MemoryStore(), lock=True, **options)


def test_without_lock_the_store_is_never_asked_for_a_lock(serve, clock):
    counting = CountingStore(MemoryStore(clock=clock))
    site = make_site(serve, counting, clock)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    assert visitor.value("n") == 1
    assert counting.calls["acquire_lock"] == 0


# -- exact counts through gunicorn -------------------------------------------------------------------

CLIENTS = 8
INCREMENTS = 5  # per client


def count_concurrently(url: str) -> tuple[list[int], int, float]:
    """CLIENTS clients each send INCREMENTS ``session["n"] += 1`` of one session at once."""
    token = new_session(url, n=0)

    def increments(_: int) -> list[int]:
        http = client(url, token)
        seen = []
        for _ in range(INCREMENTS):
            response = http.post(url + "/incr", params={"key": "n", "pause": "0.005"}, timeout=30)
            assert response.status_code == 200, response.text
            seen.append(response.json()["value"])
        return seen

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        seen = [value for values in pool.map(increments, range(CLIENTS), timeout=120) for value in values]
    seconds = time.perf_counter() - started
    final = client(url, token).get(url + "/get", params={"key": "n"}, timeout=10).json()["value"]
    return seen, final, seconds


@pytest.mark.parametrize(
    "kind, workers, threads",
    [("memory", 1, 8), ("sqlite", 2, 4), ("redis", 2, 4), ("postgres", 2, 4)],
    ids=["memory-1x8", "sqlite-2x4", "redis-2x4", "postgres-2x4"],
)
@needs_hug  # gunicorn serves tests/served_app.py, a hug app
def test_concurrent_increments_of_one_session_all_count(tmp_path, request, kind, workers, threads):
    env = {**store_env(kind, request, tmp_path), "SESSION_LOCK": "1"}
    with Gunicorn(tmp_path, env, workers=workers, threads=threads) as server:
        seen, final, seconds = count_concurrently(server.url)
    total = CLIENTS * INCREMENTS
    report(request, f"locked increments, {kind}, {workers}x{threads}: {total / seconds:.0f} per second")
    assert final == total
    assert sorted(seen) == list(range(1, total + 1))  # each request saw the one before it


# -- Redis -----------------------------------------------------------------------------------------


class TestRedisStoreLocks(LockingConformance):
    @pytest.fixture
    def store(self, redis_store):
        return redis_store


def test_a_redis_lock_is_a_lease_that_redis_ends_by_itself(standalone_store):
    store = standalone_store
    store.acquire_lock("some-session", "a worker that will be killed", 30)
    ttl_ms = store.client.pttl(f"{store.prefix}lock:some-session")
    assert 0 < ttl_ms <= 30_000


def test_a_redis_lock_is_refused_to_others_while_held_and_freed_only_by_its_holder(standalone_store):
    store = standalone_store
    assert store.acquire_lock("s", "holder", 30)
    assert store.acquire_lock("s", "holder", 30)  # a retried call of the holder still holds it
    assert not store.acquire_lock("s", "other", 30)
    store.release_lock("s", "other")
    assert store.client.get(f"{store.prefix}lock:s") in (b"holder", "holder")
    store.release_lock("s", "holder")
    assert store.client.exists(f"{store.prefix}lock:s") == 0


def test_a_session_first_used_after_its_response_hook_is_read_without_taking_the_lock(clock):
    store = MemoryStore(clock=clock)
    middleware = SessionMiddleware(SECRET, store, lock=True, clock=clock)
    seed = middleware.open(None)
    seed["n"] = 1
    token = middleware.save(seed)
    req = falcon.Request(falcon.testing.create_environ(headers={"Cookie": f"session={token}"}))
    resp = falcon.Response()
    middleware.process_request(req, resp)
    middleware.process_response(req, resp, None, True)
    assert req.context["session"].get("n") == 1  # late, but readable
    # Nobody would release a lock taken now: the session's next request must not wait for it.
    assert store.acquire_lock(store_key_of(token), "the next request", 1)


def test_a_lock_taken_after_the_response_hook_is_given_back_at_once():
    """A task that outlives its request (``create_task(session.aget(...))``, never awaited) may
    get the lock only after the response hook ran: nobody would release it, so it goes back."""
    store = MemoryStore()
    locks = SessionLocks(store, as_async_store(store), timeout=5, lease=30)

    async def late_task_then_response_hook() -> None:
        assert store.acquire_lock("k", "earlier request", 30)
        request = RequestLock(locks)
        waiting = asyncio.ensure_future(request.acquire_async("k"))
        await asyncio.sleep(0)  # the task tries once (MemoryStore answers at once) and waits
        await request.finish_async()  # the response hook of the task's request
        store.release_lock("k", "earlier request")
        await waiting  # the task gets the lock now, after the hook
        assert request.held is None

    asyncio.run(late_task_then_response_hook())
    assert store.acquire_lock("k", "next request", 30)  # free, not held for a 30 s lease
