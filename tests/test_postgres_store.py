"""PostgresStore and AsyncPostgresStore on a real PostgreSQL: the protocol, the schema, outages."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import psycopg
import pytest

from hug_cookie_sessions import PostgresStore, SessionStoreError, store_from_url
from hug_cookie_sessions.signing import new_session_id
from hug_cookie_sessions.stores import postgres_schema as schema
from hug_cookie_sessions.stores.base import redacted_url
from hug_cookie_sessions.testing import (
    LockingConformance,
    StoreConformance,
    UserIndexConformance,
    record,
    run_together,
)

from .conftest import free_port


class TestPostgresStore(StoreConformance, UserIndexConformance, LockingConformance):
    @pytest.fixture
    def store(self, postgres_store):
        return postgres_store


class TestAsyncPostgresStore(StoreConformance, UserIndexConformance, LockingConformance):
    @pytest.fixture
    def store(self, async_postgres_store):
        return async_postgres_store


# -- the schema -----------------------------------------------------------------------------------


def tables(url: str, prefix: str) -> set[str]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (prefix + "%",))
        return {name for (name,) in rows}


def test_the_tables_are_made_on_first_use_with_a_schema_version(postgres_store, postgres_url, table_prefix):
    assert tables(postgres_url, table_prefix) == set()
    postgres_store.create(new_session_id(), record({"a": "1"}))
    names = {f"{table_prefix}_{name}" for name in ("sessions", "locks", "meta")}
    assert tables(postgres_url, table_prefix) == names
    with psycopg.connect(postgres_url) as db:
        meta = dict(db.execute(f"SELECT name, value FROM {table_prefix}_meta").fetchall())
    assert meta == {"schema": "hug-cookie-sessions", "version": str(schema.SCHEMA_VERSION)}


def test_workers_starting_together_all_get_the_same_tables(postgres_url, table_prefix):
    stores = [PostgresStore(postgres_url, table_prefix=table_prefix) for _ in range(8)]
    try:
        errors = run_together(8, lambda index: stores[index].create(new_session_id(), record({"n": "1"})))
        assert errors == []
        assert len(stores[0]) == 8
    finally:
        for store in stores:
            store.close()


def test_tables_of_the_same_names_made_by_someone_else_are_refused_and_left_alone(postgres_url, table_prefix):
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table_prefix}_sessions (id int, payload text)")
    store = PostgresStore(postgres_url, table_prefix=table_prefix)
    try:
        with pytest.raises(SessionStoreError, match="not made by hug-cookie-sessions"):
            store.load(new_session_id())
    finally:
        store.close()
    assert tables(postgres_url, table_prefix) == {f"{table_prefix}_sessions"}


def test_a_schema_version_this_release_does_not_know_is_refused(postgres_store, postgres_url, table_prefix):
    postgres_store.create(new_session_id(), record())
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"UPDATE {table_prefix}_meta SET value = '99' WHERE name = 'version'")
    store = PostgresStore(postgres_url, table_prefix=table_prefix)
    try:
        with pytest.raises(SessionStoreError, match="schema version '99'"):
            store.load(new_session_id())
    finally:
        store.close()


def test_a_session_is_one_row_its_values_json_text_in_a_jsonb_column(
    postgres_store, postgres_url, table_prefix
):
    sid = new_session_id()
    postgres_store.create(sid, record({"cart": '["apple"]', "nul\x00key": "1"}, user_id="ada"))
    with psycopg.connect(postgres_url) as db:
        rows = db.execute(
            f"SELECT data, user_id FROM {table_prefix}_sessions WHERE id = %s", (sid,)
        ).fetchall()
    assert rows == [({"cart": '["apple"]', "\x01" + b"nul\x00key".hex(): "1"}, "ada")]
    assert postgres_store.load(sid).data == {"cart": '["apple"]', "nul\x00key": "1"}


def test_a_table_prefix_that_is_not_a_plain_identifier_is_refused(postgres_url):
    for prefix in ("", "Session", "s; DROP TABLE x", "1abc", "a" * 41):
        with pytest.raises(ValueError, match="table_prefix"):
            PostgresStore(postgres_url, table_prefix=prefix)


# -- purging and leases -----------------------------------------------------------------------------


def test_purge_deletes_expired_sessions_in_batches_and_keeps_live_ones(postgres_store):
    live = new_session_id()
    postgres_store.create(live, record({"a": "1"}))
    for _ in range(25):
        postgres_store.create(new_session_id(), record({"a": "1"}, ttl=-1))
    assert postgres_store.count_expired() == 25
    seen = []
    assert postgres_store.purge_expired(batch_size=10, progress=seen.append) == 25
    assert seen == [10, 20, 25]
    assert (postgres_store.count_expired(), len(postgres_store)) == (0, 1)
    assert postgres_store.load(live) is not None


def test_a_new_session_purges_expired_ones_at_most_once_per_interval(postgres_url, table_prefix):
    store = PostgresStore(postgres_url, table_prefix=table_prefix, purge_interval=3600)
    try:
        store.create(new_session_id(), record({"a": "1"}, ttl=-1))  # the first write purges
        assert store.count_expired() == 0
        store.create(new_session_id(), record({"a": "1"}, ttl=-1))
        store.create(new_session_id(), record({"a": "1"}))
        assert store.count_expired() == 1
    finally:
        store.close()


def test_a_lock_whose_lease_ended_is_taken_over_and_purged(postgres_store, postgres_url, table_prefix):
    sid = new_session_id()
    assert postgres_store.acquire_lock(sid, "dead worker", -1)  # a lease already over
    assert postgres_store.acquire_lock(sid, "next", 30)
    assert not postgres_store.acquire_lock(sid, "third", 30)
    assert postgres_store.acquire_lock(sid, "next", 30)  # the holder's retried call
    postgres_store.acquire_lock(new_session_id(), "crashed", -1)
    postgres_store.purge_expired()
    with psycopg.connect(postgres_url) as db:
        assert db.execute(f"SELECT token FROM {table_prefix}_locks").fetchall() == [("next",)]


# -- outages and timeouts --------------------------------------------------------------------------------


def test_an_unreachable_server_is_a_store_error_in_bounded_time_without_the_password():
    url = f"postgresql://postgres:hunter2secret@127.0.0.1:{free_port()}/db?table_prefix=s"
    store = store_from_url(url)
    started = time.monotonic()
    try:
        with pytest.raises(SessionStoreError) as failure:
            store.load(new_session_id())
    finally:
        store.close()
    assert time.monotonic() - started < 5
    assert "hunter2secret" not in str(failure.value)


def test_a_statement_held_up_past_the_statement_timeout_is_a_store_error(postgres_url, table_prefix):
    store = PostgresStore(postgres_url, table_prefix=table_prefix, statement_timeout=0.3)
    sid = new_session_id()
    try:
        store.create(sid, record({"a": "1"}))
        with psycopg.connect(postgres_url) as blocker:
            blocker.execute(f"SELECT 1 FROM {table_prefix}_sessions WHERE id = %s FOR UPDATE", (sid,))
            started = time.monotonic()
            with pytest.raises(SessionStoreError, match="statement timeout"):
                store.apply(sid, {"a": "2"}, (), time.time() + 60)
            assert time.monotonic() - started < 2
        assert store.apply(sid, {"a": "2"}, (), time.time() + 60)
    finally:
        store.close()


def test_the_store_reconnects_by_itself_after_a_server_restart(private_postgres):
    url = private_postgres.url
    store = PostgresStore(url, table_prefix="s")
    try:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}))
        private_postgres.stop()
        with pytest.raises(SessionStoreError):
            store.load(sid)
        private_postgres.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                assert store.load(sid).data == {"a": "1"}
                break
            except SessionStoreError:
                assert time.monotonic() < deadline, "the store did not reconnect"
                time.sleep(0.1)
    finally:
        store.close()


# -- URLs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_store_from_url_takes_a_libpq_url_and_its_table_prefix(postgres_url, table_prefix, scheme):
    url = postgres_url.replace("postgresql://", f"{scheme}://", 1) + f"?table_prefix={table_prefix}"
    store = store_from_url(url)
    try:
        assert isinstance(store, PostgresStore) and store.table_prefix == table_prefix
        sid = new_session_id()
        store.create(sid, record({"a": "1"}))
        assert store.load(sid).data == {"a": "1"}
    finally:
        store.close()
    assert f"{table_prefix}_sessions" in tables(postgres_url, table_prefix)


def test_the_table_prefix_parameter_is_taken_out_and_the_rest_left_to_libpq():
    url = "postgresql://u@h/db?sslmode=disable&table_prefix=app&options=-c%20x%3D1"
    assert schema.split_url(url) == ("postgresql://u@h/db?sslmode=disable&options=-c%20x%3D1", "app")
    assert schema.split_url("postgresql://h/db") == ("postgresql://h/db", None)
    conninfo = schema.with_timeouts("postgresql://h/db?connect_timeout=9", 2.0, 1.5)
    assert "connect_timeout=9" in conninfo and "statement_timeout=1500" in conninfo


def test_passwords_in_a_url_are_redacted_wherever_they_are():
    assert (
        redacted_url("postgresql://u:pw1@h/db?password=pw2&x=1") == "postgresql://u:***@h/db?password=***&x=1"
    )


def test_importing_the_package_does_not_import_psycopg():
    code = "import sys, hug_cookie_sessions as h; assert 'psycopg' not in sys.modules; h.PostgresStore"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_pool_taking_its_conninfo_from_a_function_serves_sessions(postgres_url, table_prefix):
    import psycopg_pool
    from psycopg_pool import ConnectionPool

    if tuple(int(part) for part in psycopg_pool.__version__.split(".")[:2]) < (3, 3):
        pytest.skip(f"psycopg_pool {psycopg_pool.__version__} takes no conninfo function (3.3+ does)")
    pool = ConnectionPool(lambda: postgres_url, kwargs={"autocommit": True}, min_size=1, open=True)
    try:
        store = PostgresStore(pool, table_prefix=table_prefix)
        sid = new_session_id()
        store.create(sid, record({"a": "1"}))
        assert store.load(sid).data == {"a": "1"}
    finally:
        pool.close()


def test_an_async_store_used_again_after_aclose_makes_a_new_pool(postgres_url, table_prefix):
    from hug_cookie_sessions import AsyncPostgresStore
    from hug_cookie_sessions.stores.base import Record

    async def scenario() -> None:
        store = AsyncPostgresStore(postgres_url, table_prefix=table_prefix)
        sid, now = new_session_id(), time.time()
        await store.create(sid, Record({"n": "1"}, now, now + 60))
        first = store.pool
        await store.aclose()
        record = await store.load(sid)  # not PoolClosed (a 503): a fresh pool
        assert record is not None and record.data == {"n": "1"}
        assert store.pool is not first
        await store.aclose()

    asyncio.run(scenario())


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_closing_the_store_in_a_forked_worker_leaves_the_parents_connections_working(postgres_store):
    """A worker forked from a process that used the store (gunicorn --preload) and closes the
    store on its way out must not end the connections it inherited: they are the parent's."""
    sid = new_session_id()
    postgres_store.create(sid, record({"a": "1"}))
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's status is what the parent checks
        status = 1
        try:
            postgres_store.close()
            status = 0
        finally:
            os._exit(status)
    assert os.waitpid(child, 0)[1] == 0
    assert all(postgres_store.load(sid).data == {"a": "1"} for _ in range(8))
