"""The operations CLI on PostgreSQL: stats, purge and revoke; foreign or missing tables left alone."""

import json
import time

import psycopg

from hug_cookie_sessions import PostgresStore, Record
from hug_cookie_sessions.signing import new_session_id

from .conftest import free_port
from .test_cli import assert_one_line_error, hug_sessions


def seeded(url: str, prefix: str) -> str:
    """Two live sessions of ``ada``, one of ``bob``, three expired; the CLI's URL for them."""
    store = PostgresStore(url, table_prefix=prefix, purge_interval=1e9)
    store.create(new_session_id(), Record({}, 0, 0))  # purged at once: the first write purges
    now = time.time()
    for user in ("ada", "ada", "bob"):
        store.create(new_session_id(), Record({"n": "1"}, now, now + 600, user))
    for _ in range(3):
        store.create(new_session_id(), Record({"n": "1"}, now - 900, now - 300))
    store.close()
    return f"{url}?table_prefix={prefix}"


def test_stats_purge_and_revoke_on_postgres(postgres_url, table_prefix):
    url = seeded(postgres_url, table_prefix)
    stats = hug_sessions("stats", "--json", url)
    assert stats.returncode == 0, stats.stderr
    report = json.loads(stats.stdout)
    assert (report["store"], report["live"], report["expired"]) == ("PostgresStore", 3, 3)
    assert report["size_bytes"] > 0
    purge = hug_sessions("purge", "--batch-size", "2", url)
    assert (purge.returncode, purge.stdout) == (0, "removed 3 expired sessions\n")
    revoke = hug_sessions("revoke", url, "ada")
    assert (revoke.returncode, revoke.stdout) == (0, "ended 2 sessions of user 'ada'\n")


def test_a_database_without_session_tables_is_refused_and_left_without_them(postgres_url, table_prefix):
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table_prefix}_sessions (id int)")
    for prefix in (table_prefix, table_prefix + "x"):
        result = hug_sessions("purge", f"{postgres_url}?table_prefix={prefix}")
        assert_one_line_error(result, 3, "PostgreSQL")
    with psycopg.connect(postgres_url) as db:
        found = db.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (table_prefix + "%",))
        assert [name for (name,) in found] == [f"{table_prefix}_sessions"]


def test_an_unreachable_server_is_a_one_line_error_without_the_password():
    result = hug_sessions(
        "stats", f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/db?password=hunter3"
    )
    assert_one_line_error(result, 3, "PostgreSQL session store")
    assert "hunter2" not in result.stderr and "hunter3" not in result.stderr
