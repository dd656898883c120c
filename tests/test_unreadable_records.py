"""A stored record the store cannot parse is no session, logged by its session_ref, never a 500.

Broken records are written behind the store's back, as a bad migration or a hand edit would:
with sqlite3 on the real file, with raw commands on the real Redis, into a hug-style store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

import pytest
import redis

from hug_cookie_sessions import SQLiteStore
from hug_cookie_sessions.signing import new_session_id
from hug_cookie_sessions.stores.base import session_ref
from hug_cookie_sessions.stores.hug_adapter import HugStoreAdapter
from hug_cookie_sessions.testing import record

from .support import make_site


def test_session_ref_is_a_short_stable_one_way_name():
    sid = new_session_id()

    assert session_ref(sid) == session_ref(sid) != session_ref(new_session_id())
    assert len(session_ref(sid)) == 12 and sid not in session_ref(sid)
    assert session_ref("\ud800") == session_ref("\ud800")  # any text, lone surrogates too


def assert_logged_by_ref(caplog, sid: str) -> None:
    logged = "\n".join(entry.getMessage() for entry in caplog.records if entry.levelno >= logging.ERROR)
    assert session_ref(sid) in logged and "cannot be read" in logged
    assert sid not in logged


# -- SQLite -------------------------------------------------------------------------------------------


def break_sqlite(path, sid: str, assignment: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"UPDATE sessions SET {assignment} WHERE id = ?", (sid,))
        db.commit()


@pytest.mark.parametrize(
    "assignment",
    ["expires_at = 'abc'", "created_at = 'yesterday'", "idle_timeout = 'x'", "user_id = x'00ff'"],
)
def test_an_unparseable_sqlite_row_is_no_session_and_logged_by_ref(tmp_path, caplog, assignment):
    path, sid = tmp_path / "sessions.sqlite3", new_session_id()
    store = SQLiteStore(str(path))
    store.create(sid, record({"n": "1"}))
    break_sqlite(path, sid, assignment)

    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        assert store.load(sid) is None

    assert_logged_by_ref(caplog, sid)
    store.close()


def test_a_visitor_whose_sqlite_row_is_broken_is_anonymous_not_a_500(serve, clock, tmp_path, caplog):
    path = tmp_path / "sessions.sqlite3"
    site = make_site(serve, SQLiteStore(str(path)), clock)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    with contextlib.closing(sqlite3.connect(path)) as db:
        (sid,) = db.execute("SELECT id FROM sessions").fetchone()
    break_sqlite(path, sid, "expires_at = 'abc'")

    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        response = visitor.get("/get", key="n")

    assert (response.status_code, response.json()) == (200, {"value": None, "present": False})
    assert_logged_by_ref(caplog, sid)


# -- Redis ---------------------------------------------------------------------------------------------


@pytest.fixture
def raw_redis(redis_url):
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


BROKEN_HASHES = {
    "expires not a number": lambda client, key: client.hset(key, "expires", "abc"),
    "expires not finite": lambda client, key: client.hset(key, "expires", "inf"),
    "created missing": lambda client, key: client.hdel(key, "created"),
    "created not a number": lambda client, key: client.hset(key, "created", "x"),
    "idle not a number": lambda client, key: client.hset(key, "idle", "1.5"),
    "a field not UTF-8": lambda client, key: client.hset(key, "d:n", b"\xff\xfe"),
}


@pytest.mark.parametrize("breakage", list(BROKEN_HASHES))
def test_an_unparseable_redis_hash_is_no_session_and_logged_by_ref(
    standalone_store, raw_redis, caplog, breakage
):
    sid = new_session_id()
    standalone_store.create(sid, record({"n": "1"}))
    BROKEN_HASHES[breakage](raw_redis, standalone_store.prefix + sid)

    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        assert standalone_store.load(sid) is None

    assert_logged_by_ref(caplog, sid)


def test_async_redis_store_treats_an_unparseable_hash_the_same(redis_url, redis_prefix, raw_redis, caplog):
    from hug_cookie_sessions import AsyncRedisStore

    sid = new_session_id()

    async def scenario():
        store = AsyncRedisStore(redis_url, prefix=redis_prefix)
        try:
            await store.create(sid, record({"n": "1"}))
            raw_redis.hset(redis_prefix + sid, "expires", "abc")
            return await store.load(sid)
        finally:
            await store.aclose()

    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        assert asyncio.run(scenario()) is None

    assert_logged_by_ref(caplog, sid)


def test_a_visitor_whose_redis_hash_is_broken_is_anonymous_not_a_500(
    serve, clock, standalone_store, raw_redis, caplog
):
    site = make_site(serve, standalone_store, clock)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    (key,) = [key.decode() for key in raw_redis.scan_iter(match=standalone_store.prefix + "*")]
    raw_redis.hset(key, "expires", "abc")

    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        response = visitor.get("/get", key="n")

    assert (response.status_code, response.json()) == (200, {"value": None, "present": False})
    assert_logged_by_ref(caplog, key[len(standalone_store.prefix) :])


def test_a_user_listing_skips_a_hash_it_cannot_parse(standalone_store, raw_redis):
    good, bad = new_session_id(), new_session_id()
    for sid in (good, bad):
        standalone_store.create(sid, record({"n": "1"}, user_id="ada"))
    raw_redis.hset(standalone_store.prefix + bad, "created", "x")

    assert set(standalone_store.user_sessions("ada")) == {good}


# -- the hug store adapter --------------------------------------------------------------------------------


class DictStore:
    """A hug-style store, as ``hug.store.InMemoryStore`` (which needs hug, hence Falcon 2.0) is."""

    def __init__(self) -> None:
        self.values: dict = {}

    def get(self, key):
        return self.values[key]

    def exists(self, key):
        return key in self.values

    def set(self, key, data):
        self.values[key] = data

    def delete(self, key):
        self.values.pop(key, None)


@pytest.mark.parametrize(
    "damage",
    [{"expires_at": "soon"}, {"created_at": None}, {"data": ["n", "1"]}, {"data": {"n": 1}}, {"user_id": 7}],
)
def test_an_unparseable_hug_store_record_is_no_session_and_logged_by_ref(caplog, damage):
    hug_store, sid = DictStore(), new_session_id()
    adapter = HugStoreAdapter(hug_store)
    adapter.create(sid, record({"n": "1"}))
    hug_store.values[sid].update(damage)

    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        assert adapter.load(sid) is None

    assert_logged_by_ref(caplog, sid)


def test_a_plain_hug_session_dict_is_no_session_and_not_an_error(caplog):
    hug_store, sid = DictStore(), new_session_id()
    hug_store.set(sid, {"user": "ada"})  # what hug's own SessionMiddleware keeps

    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        assert HugStoreAdapter(hug_store).load(sid) is None

    assert not caplog.records
