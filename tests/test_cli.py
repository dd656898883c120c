"""The operations CLI, run as a real command (``python -m hug_cookie_sessions``) on real SQLite files."""

import base64
import configparser
import contextlib
import hashlib
import importlib
import json
import os
import pty
import select
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hug_cookie_sessions
from hug_cookie_sessions import Record, RedisStore, SQLiteStore
from hug_cookie_sessions.signing import new_session_id
from hug_cookie_sessions.stores import sqlite_schema

ROOT = Path(__file__).resolve().parents[1]


def hug_sessions(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess, as an operator would, with this tree's package.

    Output is decoded by hand: text mode would turn the progress bar's carriage returns into newlines.
    """
    result = subprocess.run(
        [sys.executable, "-m", "hug_cookie_sessions", *args],
        capture_output=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def seed(path: Path, *, live: int, expired: int) -> dict:
    """A session database with ``live`` and ``expired`` sessions; returns the live IDs' data."""
    now = time.time()
    # A clock in 1970: the store's own purge (run on its first write) must not remove
    # the expired rows this test wants the CLI to find.
    store = SQLiteStore(str(path), clock=lambda: 0.0)
    live_ids = {}
    for index in range(live):
        sid = new_session_id()
        store.create(sid, Record({"n": str(index)}, now, now + 3600))
        live_ids[sid] = {"n": str(index)}
    for _ in range(expired):
        store.create(new_session_id(), Record({"n": "0"}, now - 7200, now - 3600))
    store.close()
    return live_ids


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert result.returncode == code
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("hug-sessions: error: ")
    for fragment in fragments:
        assert fragment in result.stderr


# -- secret ---------------------------------------------------------------------------------------


def test_secret_prints_a_new_256_bit_key_each_time():
    first, second = hug_sessions("secret"), hug_sessions("secret")

    assert first.returncode == second.returncode == 0
    key = first.stdout.strip()
    assert len(base64.urlsafe_b64decode(key + "=")) == 32
    assert key != second.stdout.strip()


# -- stats ------------------------------------------------------------------------------------------


def test_stats_counts_live_and_expired_sessions_and_the_size_on_disk(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    seed(path, live=3, expired=2)

    result = hug_sessions("stats", url(path), "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["store"] == "SQLiteStore"
    assert (report["live"], report["expired"]) == (3, 2)
    assert report["size_bytes"] >= path.stat().st_size > 0


def test_stats_as_text_names_each_figure(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    seed(path, live=4, expired=1)

    result = hug_sessions("stats", url(path))

    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["live sessions"].strip() == "4"
    assert lines["expired, not purged yet"].strip() == "1"
    assert "database" in lines["store size"] and "KiB" in lines["store size"]


def test_stats_reads_a_store_that_a_server_is_writing(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    seed(path, live=1, expired=0)
    writer = SQLiteStore(str(path))
    writer.create(new_session_id(), Record({}, time.time(), time.time() + 60))

    result = hug_sessions("stats", url(path), "--json")

    assert json.loads(result.stdout)["live"] == 2
    writer.close()


# -- purge ------------------------------------------------------------------------------------------


def test_purge_removes_expired_sessions_and_keeps_live_ones(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    live = seed(path, live=3, expired=5)

    result = hug_sessions("purge", url(path))

    assert result.returncode == 0, result.stderr
    assert result.stdout == "removed 5 expired sessions\n"
    store = SQLiteStore(str(path))
    assert (len(store), store.count_expired()) == (3, 0)
    assert {sid: store.load(sid).data for sid in live} == live


def test_purge_of_a_clean_store_removes_nothing(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    seed(path, live=1, expired=0)

    result = hug_sessions("purge", url(path))

    assert (result.returncode, result.stdout) == (0, "removed 0 expired sessions\n")


def test_purge_draws_a_progress_bar_on_stderr(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    seed(path, live=1, expired=550)

    result = hug_sessions("purge", url(path), "--batch-size", "100", "--progress", "always")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "removed 550 expired sessions\n"
    frames = result.stderr.rstrip("\n").split("\r")[1:]
    assert len(frames) == 6
    assert frames[0].startswith("purging [") and "100/550" in frames[0]
    assert frames[-1].endswith("550/550 100%")


def test_purge_draws_the_bar_by_itself_on_a_terminal(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    seed(path, live=0, expired=250)
    terminal, stderr = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "hug_cookie_sessions", "purge", url(path), "--batch-size", "100"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        readable, _, _ = select.select([terminal], [], [], 10)
        drawn = os.read(terminal, 65536).decode() if readable else ""
    finally:
        os.close(stderr)
        os.close(terminal)

    assert result.returncode == 0
    assert "purging [" in drawn and "250/250 100%" in drawn


def test_purge_draws_no_bar_when_stderr_is_not_a_terminal(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    seed(path, live=0, expired=250)

    result = hug_sessions("purge", url(path), "--batch-size", "100")

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "removed 250 expired sessions\n"


# -- errors -------------------------------------------------------------------------------------------


def test_no_command_is_a_usage_error():
    result = hug_sessions()

    assert result.returncode == 2
    assert "usage: hug-sessions" in result.stderr


@pytest.mark.parametrize("command", ["purge", "stats"])
def test_an_unknown_scheme_is_a_one_line_error(command):
    result = hug_sessions(command, "mysql://user:hunter2@localhost/db")

    assert_one_line_error(result, 2, "unsupported session store URL", "sqlite:///")
    assert "hunter2" not in result.stderr


def test_a_bare_path_is_refused_with_the_url_to_use_instead():
    result = hug_sessions("stats", "sessions.sqlite3")

    assert_one_line_error(result, 2, "sqlite:///sessions.sqlite3")


def test_a_memory_store_cannot_be_reached_from_outside():
    assert_one_line_error(hug_sessions("stats", "memory://"), 2, "inside the serving process")


def test_a_missing_database_is_an_error_and_is_not_created(tmp_path):
    path = tmp_path / "typo.sqlite3"

    result = hug_sessions("purge", url(path))

    assert_one_line_error(result, 3, "no SQLite database at")
    assert not path.exists()


def test_a_corrupt_database_is_an_error(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    path.write_bytes(b"this is not a database" * 100)

    assert_one_line_error(hug_sessions("stats", url(path)), 3, "cannot read the SQLite database")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def another_apps_database(path: Path) -> None:
    """A database of another program that happens to have a ``sessions`` table, with an expired row."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY, expires_at REAL, payload BLOB)")
        db.execute("INSERT INTO sessions VALUES ('abc', 1.0, x'00')")
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        db.commit()


@pytest.mark.parametrize("command", [("purge",), ("stats",), ("stats", "--json"), ("revoke", "ada")])
def test_another_applications_sessions_table_is_refused_and_left_byte_for_byte(tmp_path, command):
    path = tmp_path / "app.sqlite3"
    another_apps_database(path)
    before = sha256(path)

    result = hug_sessions(command[0], url(path), *command[1:])

    assert_one_line_error(result, 3, "not a session store", "other columns", "left as it was")
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite3"]  # no -wal, no -shm


def test_a_database_without_sessions_is_refused_and_left_byte_for_byte(tmp_path):
    path = tmp_path / "orders.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    before = sha256(path)

    assert_one_line_error(hug_sessions("purge", url(path)), 3, "no sessions table")
    assert sha256(path) == before


def test_another_programs_marked_database_is_refused_even_with_our_tables(tmp_path):
    path = tmp_path / "other.sqlite3"
    seed(path, live=1, expired=1)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA application_id = 1234")
    before = sha256(path)

    assert_one_line_error(hug_sessions("purge", url(path)), 3, "another program", "0x4d2")
    assert sha256(path) == before


def test_a_file_that_is_not_sqlite_is_refused_and_left_byte_for_byte(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"SQLite format 3? no: plain text\n" * 200)
    before = sha256(path)

    assert_one_line_error(hug_sessions("purge", url(path)), 3, "cannot read the SQLite database")
    assert sha256(path) == before


def test_a_new_store_file_carries_the_marker(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    seed(path, live=1, expired=0)

    with contextlib.closing(sqlite3.connect(path)) as db:
        marker = (
            db.execute("PRAGMA application_id").fetchone()[0],
            db.execute("PRAGMA user_version").fetchone()[0],
        )

    assert marker == (sqlite_schema.APPLICATION_ID, sqlite_schema.SCHEMA_VERSION)


def earlier_versions_store(path: Path, *, with_locks: bool) -> None:
    """A store as versions before the marker made it: these tables (without the label column, which
    came later), no application_id, no user_version."""
    schema = sqlite_schema.SCHEMA.replace(",\n    label TEXT", "")
    if not with_locks:  # the first versions had no lock table
        schema = schema[: schema.index("CREATE TABLE IF NOT EXISTS session_locks")]
    now = time.time()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(schema)
        db.execute("INSERT INTO sessions VALUES ('live', ?, ?, NULL, NULL)", (now, now + 3600))
        db.execute("INSERT INTO sessions VALUES ('gone', ?, ?, NULL, NULL)", (now - 7200, now - 3600))
        db.commit()


@pytest.mark.parametrize("with_locks", [True, False])
def test_a_store_made_by_an_earlier_version_is_recognised_and_marked(tmp_path, with_locks):
    path = tmp_path / "sessions.sqlite3"
    earlier_versions_store(path, with_locks=with_locks)

    result = hug_sessions("purge", url(path))

    assert (result.returncode, result.stdout) == (0, "removed 1 expired session\n"), result.stderr
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == sqlite_schema.APPLICATION_ID


def test_sessions_kept_in_an_apps_own_database_work_and_its_user_version_is_left_alone(tmp_path):
    path = tmp_path / "app.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        db.execute("PRAGMA user_version = 7")  # the app's own migrations
    seed(path, live=2, expired=1)

    result = hug_sessions("stats", url(path), "--json")

    assert result.returncode == 0, result.stderr
    assert (json.loads(result.stdout)["live"], json.loads(result.stdout)["expired"]) == (2, 1)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert (
            db.execute("PRAGMA application_id").fetchone()[0],
            db.execute("PRAGMA user_version").fetchone()[0],
        ) == (0, 7)


# -- usage ------------------------------------------------------------------------------------------


def test_version_prints_the_packages_version():
    result = hug_sessions("--version")

    assert (result.returncode, result.stdout) == (0, f"hug-sessions {hug_cookie_sessions.__version__}\n")


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_a_bad_batch_size_names_the_option_and_the_expected_kind(value):
    result = hug_sessions("purge", "sqlite:///x.sqlite3", "--batch-size", value)

    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last
        == f"hug-sessions purge: error: argument --batch-size: expected a positive integer, got {value!r}"
    )
    assert "_positive_int" not in result.stderr


# -- Redis ----------------------------------------------------------------------------------------------


@pytest.fixture
def redis_url(unavailable):
    """The shared Redis (``REDIS_URL``, else redis://127.0.0.1:6379/0)."""
    import redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as error:
        unavailable(f"no Redis at {url} ({error}); start one or set REDIS_URL")
    return url


def test_stats_counts_the_sessions_in_redis(redis_url):
    store = RedisStore(redis_url)
    now = time.time()
    sids = [new_session_id() for _ in range(3)]
    for sid in sids:
        store.create(sid, Record({"k": '"v"'}, now, now + 600))
    try:
        result = hug_sessions("stats", redis_url, "--json")
    finally:
        for sid in sids:
            store.delete(sid)
        store.close()

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["store"] == "RedisStore"
    assert report["live"] >= 3  # other tests may share this database, never fewer
    assert report["expired"] == 0


@pytest.mark.parametrize("command", ["purge", "stats"])
def test_a_redis_server_that_does_not_answer_is_a_one_line_error(command):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]

    result = hug_sessions(command, f"redis://:hunter2@127.0.0.1:{closed_port}/0")

    assert_one_line_error(result, 3, "Redis session store", "Connection refused")
    assert "hunter2" not in result.stderr


# -- packaging -----------------------------------------------------------------------------------------


def test_the_console_script_runs_the_cli():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    scripts = {name.strip(): target.strip() for name, target in (line.split("=", 1) for line in lines)}

    module, _, function = scripts["hug-sessions"].partition(":")

    assert getattr(importlib.import_module(module), function)(["secret"]) == 0


# -- revoke ---------------------------------------------------------------------------------------


def test_revoke_ends_every_session_of_one_user_and_no_one_elses(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    store = SQLiteStore(str(path))
    now = time.time()
    for user in ("ada", "ada", "bob"):
        store.create(new_session_id(), Record({"n": "1"}, now, now + 3600, user_id=user))
    result = hug_sessions("revoke", url(path), "ada")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ended 2 sessions of user 'ada'\n"
    assert store.user_sessions("ada") == {}
    assert len(store.user_sessions("bob")) == 1


def test_revoke_on_a_missing_database_is_a_one_line_error(tmp_path):
    result = hug_sessions("revoke", url(tmp_path / "missing.sqlite3"), "ada")
    assert_one_line_error(result, 3)
