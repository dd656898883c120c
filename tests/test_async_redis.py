"""AsyncRedisStore on a real Redis: the store protocol, RedisStore's layout, and an ASGI app in uvicorn."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hug_cookie_sessions import RedisStore, SessionMiddleware
from hug_cookie_sessions.policy import Apply
from hug_cookie_sessions.session_ids import SessionId
from hug_cookie_sessions.signing import new_session_id
from hug_cookie_sessions.store_keys import write_async
from hug_cookie_sessions.stores.base import Record
from hug_cookie_sessions.stores.redis_async import AsyncRedisStore
from hug_cookie_sessions.testing import (
    BlockingFacade,
    HashedKeyConformance,
    LockingConformance,
    StoreConformance,
    UserIndexConformance,
    record,
)

from .conftest import FALCON_MAJOR, Servers
from .support import make_site, store_key_of
from .test_lifecycle import in_background

needs_asgi = pytest.mark.skipif(FALCON_MAJOR < 3, reason="ASGI needs Falcon 3 or later")


@pytest.fixture
def async_store(redis_url, redis_prefix):
    """An AsyncRedisStore on the shared Redis under this test's prefix, used through a blocking facade."""
    facade = BlockingFacade(None)
    facade.store = facade.run(_make(redis_url, redis_prefix))
    yield facade
    facade.run(facade.store.aclose())
    facade.close()


async def _make(url: str, prefix: str) -> AsyncRedisStore:
    return AsyncRedisStore(url, prefix=prefix)


class TestAsyncRedisStore(StoreConformance, UserIndexConformance, LockingConformance, HashedKeyConformance):
    @pytest.fixture
    def store(self, async_store):
        return async_store


# -- one layout for both stores -------------------------------------------------------------------


def test_a_session_written_by_either_store_reads_the_same_through_the_other(async_store, standalone_store):
    first, second = new_session_id(), new_session_id()
    standalone_store.create(first, record({"cart": "[1]"}, user_id="alice", idle_timeout=600))
    async_store.create(second, record({"cart": "[1]"}, user_id="alice", idle_timeout=600))
    assert async_store.load(first) == standalone_store.load(first)
    assert standalone_store.load(second) == async_store.load(second)
    assert standalone_store.client.hgetall(standalone_store.prefix + first).keys() == (
        standalone_store.client.hgetall(standalone_store.prefix + second).keys()
    )
    assert set(standalone_store.user_sessions("alice")) == set(async_store.user_sessions("alice"))
    assert set(async_store.user_sessions("alice")) == {first, second}


def test_writes_from_either_store_apply_rotate_and_end_sessions_of_the_other(async_store, standalone_store):
    sid, new_sid = new_session_id(), new_session_id()
    standalone_store.create(sid, record({"a": "1"}))
    assert async_store.apply(sid, {"b": "2"}, {"a"}, record().expires_at, user_id="bob")
    assert standalone_store.load(sid).data == {"b": "2"}
    assert async_store.rotate(sid, new_sid, record({"b": "2"}, user_id="bob"))
    assert standalone_store.load(sid) is None
    assert set(standalone_store.user_sessions("bob")) == {new_sid}
    assert standalone_store.delete_user_sessions("bob") == 1
    assert async_store.load(new_sid) is None


def test_a_redis_outage_is_a_store_error_without_the_password(private_redis):
    from hug_cookie_sessions import SessionStoreError

    url = f"redis://:hunter2secret@127.0.0.1:{private_redis.port}/0"
    facade = BlockingFacade(None)
    try:
        facade.store = facade.run(_make(url, "s:"))
        private_redis.stop()
        with pytest.raises(SessionStoreError) as failure:
            facade.load(new_session_id())
        assert "hunter2secret" not in str(failure.value)
        with pytest.raises(SessionStoreError, match="apply failed") as failure:
            facade.apply(new_session_id(), {"cart": "2"}, (), time.time() + 3600)
        assert "hunter2secret" not in str(failure.value)
        facade.run(facade.store.aclose())
    finally:
        facade.close()


def test_writes_still_apply_after_redis_forgets_its_scripts(private_redis):
    """A restarted or failed-over Redis has no scripts loaded: the store loads them again itself,
    and a session deleted meanwhile stays deleted."""
    import redis

    facade = BlockingFacade(None)
    admin = redis.Redis(port=private_redis.port)
    try:
        facade.store = facade.run(_make(f"redis://127.0.0.1:{private_redis.port}/0", "s:"))
        kept, ended = new_session_id(), new_session_id()
        facade.create(kept, record({"cart": "1"}))
        facade.create(ended, record({"cart": "1"}))
        admin.script_flush()
        assert facade.apply(kept, {"cart": "2"}, (), time.time() + 3600) is True
        facade.delete(ended)
        admin.script_flush()
        assert facade.apply(ended, {"cart": "2"}, (), time.time() + 3600) is False
        assert facade.load(kept).data == {"cart": "2"}
        assert facade.load(ended) is None
        facade.run(facade.store.aclose())
    finally:
        admin.close()
        facade.close()


# -- an ASGI app in uvicorn, a WSGI app beside it ---------------------------------------------------


@pytest.fixture
def sites(redis_url, redis_prefix, clock):
    """``sites(framework, store)``: the test app of ``framework`` on ``store``, served on loopback."""
    all_servers = []

    def make(framework: str, store):
        all_servers.append(Servers(framework))
        return make_site(all_servers[-1], store, clock, idle_timeout=3600)

    yield make
    for servers in all_servers:
        servers.stop_all()


@needs_asgi
def test_an_asgi_app_on_async_redis_and_a_wsgi_app_on_redis_share_their_sessions(
    sites, redis_url, redis_prefix
):
    wsgi = sites("falcon-wsgi", RedisStore(redis_url, prefix=redis_prefix))
    asgi = sites("falcon-asgi", AsyncRedisStore(redis_url, prefix=redis_prefix))
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
def test_overlapping_asgi_requests_on_async_redis_changing_different_keys_both_persist(
    sites, redis_url, redis_prefix
):
    site = sites("falcon-asgi", AsyncRedisStore(redis_url, prefix=redis_prefix))
    visitor = site.visitor()
    visitor.post("/set", key="base", value="0")
    slow = in_background(lambda: visitor.post("/set_when_released", key="left", value="1"))
    assert site.gates.loaded.wait(10)
    visitor.post("/set", key="right", value="2")
    site.gates.proceed.set()
    assert slow().status_code == 200
    assert visitor.get("/all").json()["data"] == {"base": 0, "left": 1, "right": 2}


def test_a_users_sessions_are_listed_and_revoked_through_the_async_methods(async_store):
    middleware = SessionMiddleware("async-user-secret", async_store.store)

    async def log_in(user: str) -> str:
        session = await middleware.open_async(None)
        session.bind_user(user)
        session["user"] = user
        return await middleware.save_async(session)

    laptop, phone = async_store.run(log_in("ada")), async_store.run(log_in("ada"))
    async_store.run(log_in("bob"))
    listed = async_store.run(middleware.user_sessions_async("ada"))
    assert len(listed) == 2
    phone_handle = next(
        info.handle for info in listed if info.handle != middleware.signer.handle("ada", store_key_of(laptop))
    )
    assert async_store.run(middleware.revoke_async(phone_handle)) is True
    assert async_store.load(store_key_of(phone)) is None
    assert async_store.run(middleware.revoke_user_async("ada")) == 1
    assert async_store.run(middleware.user_sessions_async("ada")) == []
    assert len(async_store.run(middleware.user_sessions_async("bob"))) == 1
    with pytest.raises(TypeError, match="async store"):
        middleware.user_sessions("bob")


@needs_asgi
def test_with_lock_overlapping_asgi_requests_of_one_session_take_turns_on_async_redis(
    sites, redis_url, redis_prefix, clock
):
    servers = Servers("falcon-asgi")
    try:
        store = AsyncRedisStore(redis_url, prefix=redis_prefix)
        site = make_site(servers, store, clock, lock=True, lock_timeout=5)
        visitor = site.visitor()
        visitor.post("/set", key="n", value="0")
        slow = in_background(lambda: visitor.post("/set_when_released", key="n", value="1"))
        assert site.gates.loaded.wait(10)
        waiting = in_background(lambda: visitor.post("/append", key="log", value='"second"'))
        # Waiting for the lock does not block the event loop: another visitor is served meanwhile.
        assert site.visitor().get("/get", key="n").json()["value"] is None
        site.gates.proceed.set()
        assert slow().status_code == 200 and waiting().status_code == 200
        assert visitor.get("/all").json()["data"] == {"n": 1, "log": ["second"]}
    finally:
        servers.stop_all()


# -- Redis Cluster ----------------------------------------------------------------------------------


@pytest.fixture
def async_cluster_store(redis_cluster):
    """An AsyncRedisStore on the local cluster (from its ``redis+cluster://`` URL) under this test's
    own prefix, through a blocking facade; its keys are deleted afterwards."""
    from .redis_support import delete_prefix, unique_prefix

    prefix = unique_prefix()
    facade = BlockingFacade(None)
    facade.store = facade.run(_make(redis_cluster.url, prefix))
    yield facade
    facade.run(facade.store.aclose())
    facade.close()
    delete_prefix(redis_cluster.client, prefix)


class TestAsyncRedisStoreOnCluster(
    StoreConformance, UserIndexConformance, LockingConformance, HashedKeyConformance
):
    @pytest.fixture
    def store(self, async_cluster_store):
        return async_cluster_store


def test_async_cluster_regenerate_moves_a_session_across_slots_leaving_a_tombstone(
    async_cluster_store, redis_cluster
):
    client, prefix = redis_cluster.client, async_cluster_store.store.prefix
    old = new_session_id()
    new = next(
        sid
        for sid in iter(new_session_id, None)
        if client.keyslot(prefix + sid) != client.keyslot(prefix + old)
    )
    async_cluster_store.create(old, record({"a": "1"}, user_id="ada"))
    assert async_cluster_store.rotate(old, new, record({"a": "1", "b": "2"}, user_id="ada")) is True
    assert async_cluster_store.load(new).data == {"a": "1", "b": "2"}
    assert async_cluster_store.load(old) is None
    assert client.hgetall(prefix + old) == {b"moved": new.encode()}  # RedisStore's tombstone
    assert async_cluster_store.apply(old, {"c": "3"}, (), record().expires_at) is False
    assert set(async_cluster_store.user_sessions("ada")) == {new}
    # A rotate of a session that is gone creates nothing under the new ID.
    gone, unused = new_session_id(), new_session_id()
    assert async_cluster_store.rotate(gone, unused, record({"a": "1"})) is False
    assert client.exists(prefix + unused) == 0


def test_the_async_and_the_blocking_store_share_sessions_on_a_cluster(async_cluster_store, redis_cluster):
    blocking = RedisStore(redis_cluster.client, prefix=async_cluster_store.store.prefix)
    sid, new_sid = new_session_id(), new_session_id()
    blocking.create(sid, record({"a": "1"}))
    assert async_cluster_store.rotate(sid, new_sid, record({"a": "1"}, user_id="bob"))
    assert blocking.load(sid) is None and blocking.load(new_sid).data == {"a": "1"}
    assert set(blocking.user_sessions("bob")) == {new_sid}


def test_two_async_writes_racing_the_move_of_a_legacy_session_both_persist(async_store):
    """``write_async`` through AsyncRedisStore: the second of two writes of one legacy session has
    read the raw ID when the first moves the session to its key and writes. Both changes persist.
    (Not on Redis Cluster: see the blocking test in test_hashed_ids.py.)"""
    facade = async_store
    store = facade.store
    raw = new_session_id()
    now = time.time()
    facade.create(raw, Record({"n": "1"}, now, now + 3600))  # as the previous release stored it
    legacy = SessionId(raw, legacy=True)
    first = Apply(legacy, {"a": "1"}, frozenset(), now + 3600)
    second = Apply(legacy, {"b": "2"}, frozenset(), now + 3600)

    class FirstWriteLandsBeforeSecondMoves:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def rotate(self, old: str, new: str, record: Record) -> bool:
            assert await write_async(store, first)
            return await store.rotate(old, new, record)

    assert facade.run(write_async(FirstWriteLandsBeforeSecondMoves(), second))

    assert facade.load(legacy.key).data == {"n": "1", "a": "1", "b": "2"}
    assert facade.load(raw) is None
