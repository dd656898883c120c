"""Store-specific promises: SQLite restarts, processes, corruption and locks; memory bounds; hug stores."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from hug_cookie_sessions import MemoryStore, SQLiteStore
from hug_cookie_sessions.signing import new_session_id
from hug_cookie_sessions.testing import record, run_together

from .conftest import needs_hug
from .support import make_site


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "sessions.sqlite3")


# -- SQLite ----------------------------------------------------------------------------------


def test_sqlite_sessions_survive_a_restart_of_the_app(serve, clock, db_path):
    before = make_site(serve, SQLiteStore(db_path), clock)
    visitor = before.visitor()
    visitor.post("/set", key="n", value="7")
    after = make_site(serve, SQLiteStore(db_path), clock)
    visitor.site = after
    assert visitor.value("n") == 7


def test_sqlite_is_safe_for_several_worker_processes(db_path):
    sid = new_session_id()
    SQLiteStore(db_path).create(sid, record({"base": "0"}))
    worker = textwrap.dedent(
        f"""
        import sys, time
        from hug_cookie_sessions import SQLiteStore
        from hug_cookie_sessions.signing import new_session_id
        from hug_cookie_sessions.testing import record, run_together
        store = SQLiteStore({db_path!r})
        name = sys.argv[1]
        for i in range(50):
            assert store.apply({sid!r}, {{name + str(i): str(i)}}, (), time.time() + 3600)
            store.create(new_session_id(), record({{"owner": '"' + name + '"'}}))
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", worker, f"w{index}"], cwd=".") for index in range(3)]
    for process in processes:
        assert process.wait(timeout=60) == 0
    store = SQLiteStore(db_path)
    assert len(store.load(sid).data) == 1 + 3 * 50
    assert len(store) == 1 + 3 * 50


def test_a_corrupt_sqlite_file_is_a_503_and_the_app_recovers_once_it_is_replaced(serve, clock, db_path):
    site = make_site(serve, SQLiteStore(db_path), clock)
    with open(db_path, "wb") as file:
        file.write(b"this is not a database" * 100)
    visitor = site.visitor()
    response = visitor.post("/set", key="n", value="1")
    assert response.status_code == 503
    assert "Session store unavailable" in str(response.json())  # hug's or Falcon's error shape
    assert "Traceback" not in response.text and "Set-Cookie" not in response.headers
    assert visitor.get("/untouched").status_code == 200
    os.remove(db_path)
    assert visitor.post("/set", key="n", value="1").status_code == 200
    assert visitor.value("n") == 1


def test_during_an_outage_a_visitor_with_a_session_still_gets_pages_that_do_not_use_it(
    serve, clock, db_path, tmp_path
):
    visitor = make_site(serve, SQLiteStore(db_path), clock).visitor()
    visitor.post("/set", key="n", value="1")
    visitor.site = make_site(serve, SQLiteStore(str(tmp_path / "missing-dir" / "s.sqlite3")), clock)
    assert visitor.get("/untouched").status_code == 200
    assert visitor.get("/get", key="n").status_code == 503


def test_an_unreachable_sqlite_path_is_a_503_not_a_crash(serve, clock, tmp_path):
    site = make_site(serve, SQLiteStore(str(tmp_path / "missing-dir" / "s.sqlite3")), clock)
    response = site.visitor().post("/set", key="n", value="1")
    assert response.status_code == 503


def test_a_write_lock_held_past_the_busy_timeout_is_a_503_then_recovers(serve, clock, db_path):
    site = make_site(serve, SQLiteStore(db_path, busy_timeout=0.2), clock)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        assert visitor.post("/set", key="n", value="2").status_code == 503
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert visitor.value("n") == 1
    assert visitor.post("/set", key="n", value="3").status_code == 200
    assert visitor.value("n") == 3


def test_sqlite_purges_expired_sessions_on_demand_and_by_itself(db_path):
    now = [time.time()]
    store = SQLiteStore(db_path, purge_interval=60, clock=lambda: now[0])
    for _ in range(5):
        store.create(new_session_id(), record({"a": "1"}, ttl=10))
    store.create(new_session_id(), record({"a": "1"}, ttl=10_000))
    now[0] += 100
    assert store.count_expired() == 5 and len(store) == 1
    assert store.purge_expired() == 5
    assert store.count_expired() == 0
    for _ in range(3):
        store.create(new_session_id(), record({"a": "1"}, ttl=10))
    now[0] += 100  # past the purge interval: the next new session's write purges
    store.create(new_session_id(), record({"a": "1"}, ttl=10_000))
    assert store.count_expired() == 0
    assert len(store) == 2


def test_a_sqlite_value_write_at_the_stored_expiry_is_one_statement(db_path):
    store = SQLiteStore(db_path)
    sid = new_session_id()
    store.create(sid, record({"n": "1"}))
    expires_at = store.load(sid).expires_at
    statements = []
    store._connection().set_trace_callback(statements.append)
    assert store.apply(sid, {"n": "2"}, (), expires_at)
    assert len(statements) == 1 and statements[0].startswith("INSERT INTO session_values")
    statements.clear()
    assert store.apply(sid, {"n": "3"}, (), expires_at + 60)  # the expiry moves: a transaction
    assert statements[-1] == "COMMIT"
    assert store.load(sid).data == {"n": "3"}
    statements.clear()
    # Several values, one of them new, at the stored expiry: still one statement.
    assert store.apply(sid, {"n": "4", "cart": "[1]"}, (), expires_at + 60)
    assert len(statements) == 1
    assert store.load(sid).data == {"n": "4", "cart": "[1]"}


def test_sqlite_older_than_upserts_is_refused_by_name(db_path, monkeypatch):
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 22, 0))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.22.0")
    with pytest.raises(RuntimeError, match=r"SQLite 3\.24 or newer; this Python has 3\.22\.0"):
        SQLiteStore(db_path)


def test_a_sqlite_write_of_many_values_at_once_lands_whole(db_path):
    store = SQLiteStore(db_path)
    sid = new_session_id()
    store.create(sid, record({"n": "1"}))
    expires_at = store.load(sid).expires_at
    many = {f"k{index}": str(index) for index in range(5000)}
    assert store.apply(sid, many, (), expires_at)
    assert store.load(sid).data == {"n": "1", **many}


def test_sqlite_keeps_the_page_cache_size_it_is_given(db_path):
    def cache_kib(store):
        return -store._connection().execute("PRAGMA cache_size").fetchone()[0]

    assert cache_kib(SQLiteStore(db_path)) == 32 * 1024
    assert cache_kib(SQLiteStore(db_path, cache_mib=4)) == 4 * 1024


def test_sqlite_workers_opening_a_new_file_at_once_all_get_in_and_it_runs_in_wal_mode(tmp_path):
    # Workers started together each open the new file and switch it to WAL mode; SQLite
    # answers "database is locked" to that switch at once, without waiting busy_timeout.
    # A race: each new file catches a store without the fix only sometimes, so 30 are tried.
    for attempt in range(30):
        path = str(tmp_path / f"new-{attempt}.sqlite3")
        errors = run_together(
            8, lambda _, path=path: SQLiteStore(path).create(new_session_id(), record({"n": "1"}))
        )
        assert errors == []
        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 8
        finally:
            db.close()


def test_sqlite_refuses_an_in_memory_database():
    with pytest.raises(ValueError, match="file path"):
        SQLiteStore(":memory:")


# -- memory ----------------------------------------------------------------------------------


def test_the_memory_store_evicts_its_oldest_session_when_full():
    store = MemoryStore(max_sessions=3)
    sids = [new_session_id() for _ in range(4)]
    for sid in sids:
        store.create(sid, record({"a": "1"}))
    assert store.load(sids[0]) is None
    assert all(store.load(sid) for sid in sids[1:])
    assert len(store) == 3


def test_the_memory_store_drops_expired_sessions_before_evicting_live_ones():
    now = [time.time()]
    store = MemoryStore(max_sessions=2, clock=lambda: now[0])
    short, long = new_session_id(), new_session_id()
    store.create(short, record({"a": "1"}, ttl=10))
    store.create(long, record({"a": "1"}, ttl=10_000))
    now[0] += 100
    newest = new_session_id()
    store.create(newest, record({"a": "1"}, ttl=10_000))
    assert store.load(long) and store.load(newest)
    assert len(store) == 2


# -- hug's own stores ------------------------------------------------------------------------


@needs_hug
def test_a_hug_store_works_through_the_adapter(serve, clock):
    import hug.store

    site = make_site(serve, hug.store.InMemoryStore(), clock)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    visitor.post("/append", key="cart", value='"apple"')
    old = visitor.cookie
    visitor.post("/login", user="ada")
    assert visitor.cookie != old
    assert visitor.get("/all").json()["data"] == {"n": 1, "cart": ["apple"], "user": "ada"}
    visitor.post("/logout")
    assert visitor.value("n") is None
    assert site.store.store._data == {}
