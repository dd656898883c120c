"""RedisStore against a real Redis and a real 3-node Redis Cluster."""

import socket
import subprocess
import sys
import threading
import time

import pytest
import redis

from hug_cookie_sessions import RedisStore, SessionMiddleware, SessionStoreError, store_from_url
from hug_cookie_sessions.signing import new_session_id
from hug_cookie_sessions.store_keys import store_key
from hug_cookie_sessions.stores.memory import MemoryStore
from hug_cookie_sessions.stores.redis import INDEX_MARGIN_MS
from hug_cookie_sessions.stores.sqlite import SQLiteStore
from hug_cookie_sessions.testing import HOUR, StoreConformance, UserIndexConformance, record

from .redis_support import delete_prefix, unique_prefix

SECRET = "redis-tests-secret-key-0123456789abcdef"


class TestRedisStore(StoreConformance, UserIndexConformance):
    @pytest.fixture
    def store(self, standalone_store):
        return standalone_store


class TestRedisStoreOnCluster(StoreConformance, UserIndexConformance):
    @pytest.fixture
    def store(self, cluster_store):
        return cluster_store


# -- layout and expiry -------------------------------------------------------------------------


def test_a_session_is_one_hash_under_the_prefix_with_data_fields_apart_from_metadata(redis_store):
    sid = new_session_id()
    stored = record({"expires": '"a key named like metadata"', "cart": "[1]"}, user_id="alice")
    redis_store.create(sid, stored)
    key = redis_store.prefix + sid
    assert redis_store.client.type(key) == b"hash"
    fields = {name.decode(): value.decode() for name, value in redis_store.client.hgetall(key).items()}
    assert fields == {
        "created": repr(stored.created_at),
        "expires": repr(stored.expires_at),
        "user": "alice",
        "d:expires": '"a key named like metadata"',
        "d:cart": "[1]",
    }
    assert redis_store.load(sid).expires_at == stored.expires_at


def test_the_ttl_is_the_remaining_lifetime_after_create_apply_and_rotate(redis_store):
    def remaining_ms(sid: str) -> int:
        return redis_store.client.pttl(redis_store.prefix + sid)

    sid, new_sid = new_session_id(), new_session_id()
    redis_store.create(sid, record({"a": "1"}, ttl=600))
    assert 590_000 < remaining_ms(sid) <= 600_001
    redis_store.apply(sid, {"a": "2"}, (), time.time() + 1200)
    assert 1_190_000 < remaining_ms(sid) <= 1_200_001
    redis_store.rotate(sid, new_sid, record({"a": "2"}, ttl=300))
    assert 290_000 < remaining_ms(new_sid) <= 300_001


def test_the_absolute_timeout_caps_the_ttl_however_often_the_session_is_used(redis_store, clock):
    middleware = SessionMiddleware(
        SECRET, redis_store, idle_timeout=HOUR, absolute_timeout=2 * HOUR, clock=clock
    )
    session = middleware.open(None)
    session["n"] = 0
    token = middleware.save(session)
    created_at = clock.now
    for n in range(1, 4):
        clock.advance(HOUR / 2)
        session = middleware.open(token)
        assert session["n"] == n - 1
        session["n"] = n
        middleware.save(session)
    stored = redis_store.load(store_key(session.id))
    assert stored.expires_at == pytest.approx(created_at + 2 * HOUR)
    pttl = redis_store.client.pttl(redis_store.prefix + store_key(session.id)) / 1000
    assert pttl == pytest.approx(created_at + 2 * HOUR - time.time(), abs=5)
    clock.advance(HOUR / 2)
    assert middleware.open(token).id is None


def test_a_rotate_run_again_after_a_lost_reply_still_succeeds(redis_store):
    old, new = new_session_id(), new_session_id()
    redis_store.create(old, record({"a": "1"}))
    assert redis_store.rotate(old, new, record({"a": "1"})) is True
    assert redis_store.rotate(old, new, record({"a": "1"})) is True
    assert redis_store.rotate(old, new_session_id(), record({"a": "1"})) is False
    assert redis_store.load(old) is None
    assert redis_store.load(new).data == {"a": "1"}


def test_purge_is_left_to_redis(redis_store):
    redis_store.create(new_session_id(), record({"a": "1"}, ttl=-1))
    assert redis_store.purge_expired() == 0
    assert redis_store.count_expired() == 0


# -- the per-user index ----------------------------------------------------------------------------


def test_the_user_index_is_a_set_of_session_keys_not_counted_as_a_session(redis_store):
    sid = new_session_id()
    redis_store.create(sid, record({"a": "1"}, user_id="alice"))
    index = redis_store.prefix + "user:alice"
    assert redis_store.client.smembers(index) == {(redis_store.prefix + sid).encode()}
    assert len(redis_store) == 1


def test_a_session_moved_to_another_user_is_listed_and_revoked_only_under_that_user(redis_store):
    sid = new_session_id()
    redis_store.create(sid, record({"a": "1"}, user_id="alice"))
    redis_store.apply(sid, {}, (), time.time() + HOUR, user_id="bob")
    assert redis_store.user_sessions("alice") == {}
    assert set(redis_store.user_sessions("bob")) == {sid}
    assert redis_store.delete_user_sessions("alice") == 0
    assert redis_store.load(sid) is not None


def test_the_user_index_expires_with_its_longest_lived_session(redis_store):
    index = redis_store.prefix + "user:alice"

    def index_ttl_beyond_margin() -> int:
        return redis_store.client.pttl(index) - INDEX_MARGIN_MS

    long_lived = new_session_id()
    redis_store.create(new_session_id(), record({"a": "1"}, user_id="alice", ttl=600))
    assert 590_000 < index_ttl_beyond_margin() <= 600_001
    redis_store.create(long_lived, record({"a": "1"}, user_id="alice", ttl=7200))
    assert 7_190_000 < index_ttl_beyond_margin() <= 7_200_001
    redis_store.create(new_session_id(), record({"a": "1"}, user_id="alice", ttl=60))
    assert index_ttl_beyond_margin() > 7_190_000  # a shorter session never shortens it
    redis_store.apply(long_lived, {}, (), time.time() + 20_000, user_id="alice")
    assert 19_990_000 < index_ttl_beyond_margin() <= 20_000_001


def test_a_refreshed_bound_session_keeps_its_user_index_alive(redis_store, clock):
    middleware = SessionMiddleware(SECRET, redis_store, idle_timeout=HOUR, clock=clock)
    session = middleware.open(None)
    session.bind_user("dora")
    session["a"] = 1
    token = middleware.save(session)
    index = redis_store.prefix + "user:dora"
    before = redis_store.client.pttl(index)
    clock.advance(HOUR / 2)
    reader = middleware.open(token)
    assert reader["a"] == 1
    middleware.save(reader)  # the idle refresh is due: the expiry moves, and the index with it
    assert redis_store.client.pttl(index) > before + HOUR / 2 * 1000 - 10_000
    assert set(redis_store.user_sessions("dora")) == {store_key(token.rsplit(".", 1)[0])}


def test_purge_drops_ended_sessions_from_the_user_index(redis_store):
    ended, live = new_session_id(), new_session_id()
    redis_store.create(ended, record({"a": "1"}, user_id="alice"))
    redis_store.create(live, record({"a": "1"}, user_id="carol"))
    redis_store.delete(ended)
    assert redis_store.purge_expired() == 0
    assert redis_store.client.exists(redis_store.prefix + "user:alice") == 0
    assert redis_store.client.smembers(redis_store.prefix + "user:carol") == {
        (redis_store.prefix + live).encode()
    }


# -- Redis Cluster -------------------------------------------------------------------------------


def test_sessions_spread_over_every_cluster_node(cluster_store, redis_cluster):
    for _ in range(60):
        cluster_store.create(new_session_id(), record({"a": "1"}))
    per_node = redis_cluster.keys_per_node(cluster_store.prefix)
    assert sum(per_node.values()) == 60
    assert all(count > 0 for count in per_node.values()), per_node


def test_cluster_regenerate_moves_a_session_across_slots_and_the_old_key_opens_nothing(
    cluster_store, redis_cluster
):
    client = redis_cluster.client
    old = new_session_id()
    new = next(
        sid
        for sid in iter(new_session_id, None)
        if client.keyslot(cluster_store.prefix + sid) != client.keyslot(cluster_store.prefix + old)
    )
    cluster_store.create(old, record({"a": "1"}))
    assert cluster_store.rotate(old, new, record({"a": "1", "b": "2"})) is True
    assert cluster_store.load(new).data == {"a": "1", "b": "2"}
    assert cluster_store.load(old) is None
    assert cluster_store.apply(old, {"c": "3"}, (), time.time() + HOUR) is False
    assert cluster_store.load(old) is None


def test_a_cluster_regenerate_retried_after_its_first_step_still_retires_the_old_id(cluster_store):
    """redis-py runs a script again when its reply is lost: a rotate whose first attempt created
    the new hash before the connection failed must still end the old ID on the retry."""
    old, new = new_session_id(), new_session_id()
    cluster_store.create(old, record({"a": "1"}, user_id="ada"))
    cluster_store.create(new, record({"a": "1"}, user_id="ada"))  # the first attempt's step 1
    assert cluster_store.rotate(old, new, record({"a": "1"}, user_id="ada")) is True
    assert cluster_store.load(old) is None and cluster_store.load(new).data == {"a": "1"}
    assert set(cluster_store.user_sessions("ada")) == {new}


# -- failures ----------------------------------------------------------------------------------


def test_an_unreachable_redis_is_a_store_error_that_does_not_reveal_the_password():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the store connects
    store = RedisStore(f"redis://:hunter2-secret@127.0.0.1:{port}/0")
    with pytest.raises(SessionStoreError) as caught:
        store.load(new_session_id())
    assert "hunter2" not in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_a_redis_that_never_answers_is_a_store_error_after_the_socket_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        store = RedisStore(f"redis://127.0.0.1:{silent.getsockname()[1]}/0?socket_timeout=0.2")
        with pytest.raises(SessionStoreError, match="Timeout"):
            store.create(new_session_id(), record({"a": "1"}))


def test_a_wrong_password_is_a_store_error_that_does_not_reveal_it(start_redis):
    server = start_redis("--requirepass", "right-password")
    store = RedisStore(f"redis://:wrong-password@127.0.0.1:{server.port}/0")
    with pytest.raises(SessionStoreError) as caught:
        store.load(new_session_id())
    assert "wrong-password" not in str(caught.value)
    assert "invalid username-password pair" in str(caught.value)  # Redis says why


def test_a_cluster_store_can_be_made_while_the_cluster_is_down():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisStore(f"redis+cluster://127.0.0.1:{port}")
    with pytest.raises(SessionStoreError):
        store.load(new_session_id())


def test_a_key_of_another_type_under_the_prefix_is_a_store_error(standalone_store):
    sid = new_session_id()
    standalone_store.client.set(standalone_store.prefix + sid, "not a hash")
    with pytest.raises(SessionStoreError, match="WRONGTYPE"):
        standalone_store.load(sid)


# -- construction --------------------------------------------------------------------------------


def test_redis_store_takes_a_client_object_with_decoded_responses(redis_url, redis_prefix):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisStore(client, prefix=redis_prefix)
    sid = new_session_id()
    store.create(sid, record({"ключ": '"значение"'}, idle_timeout=60))
    loaded = store.load(sid)
    assert (loaded.data, loaded.idle_timeout) == ({"ключ": '"значение"'}, 60)
    client.close()


def test_redis_store_rejects_what_is_not_a_client_or_a_redis_url():
    with pytest.raises(TypeError):
        RedisStore(object())
    with pytest.raises(ValueError, match="redis://"):
        RedisStore("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="prefix"):
        RedisStore("redis://127.0.0.1:6379/0", prefix="")


def test_importing_the_package_does_not_import_redis():
    code = "import sys, hug_cookie_sessions; assert 'redis' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- store_from_url ----------------------------------------------------------------------------


def test_store_from_url_memory_and_sqlite(tmp_path, monkeypatch):
    assert isinstance(store_from_url("memory://"), MemoryStore)
    absolute = store_from_url(f"sqlite:///{tmp_path}/absolute.db")
    assert isinstance(absolute, SQLiteStore) and absolute.path == f"{tmp_path}/absolute.db"
    monkeypatch.chdir(tmp_path)
    relative = store_from_url("sqlite:///relative.db")
    relative.create(new_session_id(), record({"a": "1"}))
    assert (tmp_path / "relative.db").exists()


def test_store_from_url_redis_round_trips(redis_url, redis_prefix):
    store = store_from_url(redis_url)
    assert isinstance(store, RedisStore)
    store.prefix = redis_prefix
    sid = new_session_id()
    store.create(sid, record({"a": "1"}))
    assert store.load(sid).data == {"a": "1"}


def test_store_from_url_rediss_makes_a_tls_client():
    store = store_from_url("rediss://:pw@redis.example:6380/2")
    assert isinstance(store, RedisStore)
    assert store.client.connection_pool.connection_class is redis.SSLConnection


def test_store_from_url_unix_socket_round_trips(start_redis, tmp_path):
    path = tmp_path / "redis.sock"
    start_redis("--unixsocket", str(path))
    store = store_from_url(f"unix://{path}?db=0")
    sid = new_session_id()
    store.create(sid, record({"a": "1"}))
    assert store.load(sid).data == {"a": "1"}
    store.close()


def test_store_from_url_redis_cluster_round_trips(redis_cluster):
    store = store_from_url(redis_cluster.url)
    store.prefix = unique_prefix()
    try:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}))
        assert store.load(sid).data == {"a": "1"}
        assert store.client.get_node_from_key(store.prefix + sid) is not None
    finally:
        delete_prefix(redis_cluster.client, store.prefix)
        store.close()


@pytest.mark.parametrize(
    "url",
    ["", "mysql://db/sessions", "sqlite://", "sqlite:///", "memory://x", "redis+sentinel://h:26379"],
)
def test_store_from_url_rejects_unknown_urls_naming_the_accepted_schemes(url):
    with pytest.raises(ValueError) as caught:
        store_from_url(url)
    for scheme in ("memory://", "sqlite:///", "redis://", "redis+cluster://", "postgresql://", "postgres://"):
        assert scheme in str(caught.value)


def test_a_rejected_url_is_reported_without_its_password():
    with pytest.raises(ValueError) as caught:
        store_from_url("mysql://user:hunter2@db/sessions")
    assert "hunter2" not in str(caught.value)


def test_concurrent_first_use_of_a_cluster_url_store_makes_one_client(redis_cluster):
    store = RedisStore(redis_cluster.url, prefix=unique_prefix())
    clients = []
    threads = [threading.Thread(target=lambda: clients.append(store.client)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(clients) == 4  # a thread that raised appended nothing
    assert len({id(client) for client in clients}) == 1
    store.close()
