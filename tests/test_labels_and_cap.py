"""Session labels in a user's listing, and ``max_sessions_per_user``, through real servers and stores.

Every HTTP test runs on each store that keeps a user index (memory, SQLite, Redis,
Redis Cluster, PostgreSQL) and each framework of the environment. The stores' own
keeping of labels is in the conformance suites (``hug_cookie_sessions.testing``);
here are what a user sees, and the upgrade of stores made by release 0.1.0.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import psycopg
import pytest

from hug_cookie_sessions import (
    MemoryStore,
    PostgresStore,
    Session,
    SessionMiddleware,
    SessionStoreError,
    SQLiteStore,
)
from hug_cookie_sessions.stores import sqlite_schema
from hug_cookie_sessions.testing import record, run_together

from .conftest import make_store, needs_hug
from .support import SECRET, make_site
from .test_lifecycle import in_background

DATA = Path(__file__).with_name("data")

#: The ID, user and values of the signed-in session in the stores release 0.1.0 made (tests/data).
RELEASE_010_SESSION = "release-0-1-0-session-of-ada-0123456789abcd"

STORES = {"redis": "standalone_store", "redis-cluster": "cluster_store", "postgres": "postgres_store"}


@pytest.fixture(params=["memory", "sqlite", *STORES])
def store(request, tmp_path):
    """Each store with a user index: in-process, a real SQLite file, Redis, Redis Cluster, PostgreSQL."""
    if request.param in STORES:
        return request.getfixturevalue(STORES[request.param])
    return make_store(request.param, tmp_path)


@pytest.fixture
def site(serve, store, clock):
    return make_site(serve, store, clock, idle_timeout=3600, max_sessions_per_user=2)


def logged_in(site, label=None, user="ada"):
    visitor = site.visitor()
    params = {"user": user} if label is None else {"user": user, "label": label}
    assert visitor.post("/login", **params).status_code == 200
    return visitor


def labels(visitor) -> list:
    return sorted(str(entry["label"]) for entry in visitor.get("/my_sessions").json()["sessions"])


# -- labels ------------------------------------------------------------------------------------------


def test_the_listing_shows_the_label_each_login_gave(site):
    laptop = logged_in(site, "Firefox on Linux")
    logged_in(site, "Safari on iPhone 🍏")
    logged_in(site, "Chrome on Android", user="bob")

    listed = laptop.get("/my_sessions").json()["sessions"]

    assert sorted((entry["label"], entry["current"]) for entry in listed) == [
        ("Firefox on Linux", True),
        ("Safari on iPhone 🍏", False),
    ]


def test_logging_in_again_replaces_the_label_and_a_login_without_one_shows_none(site):
    laptop = logged_in(site, "Firefox on Linux")
    laptop.post("/login", user="ada", label="Firefox 128 on Linux")
    logged_in(site)

    assert labels(laptop) == ["Firefox 128 on Linux", "None"]


def test_the_label_survives_writes_and_expiry_refreshes(site, clock):
    laptop = logged_in(site, "Firefox on Linux")
    laptop.post("/set", key="cart", value='["apple"]')
    clock.advance(1000)  # past the refresh step: the expiry moves
    assert laptop.value("cart") == ["apple"]

    assert labels(laptop) == ["Firefox on Linux"]


def loaded_session() -> Session:
    return Session(lambda source: (None, None, False))


@pytest.mark.parametrize(
    "label",
    [
        "x" * 101,
        "Firefox\non Linux",
        "tab\there",
        "nul\x00",
        "del\x7f",
        "c1\x85",
        "\u202eelif",
        "\u2028",
        "\ud800",
    ],
)
def test_a_label_that_is_too_long_or_holds_control_characters_is_refused(label):
    session = loaded_session()

    with pytest.raises(ValueError, match="label"):
        session.bind_user("ada", label)

    assert session.user_id is None and not session.modified


@pytest.mark.parametrize("label", [b"Firefox", 42, ["Firefox"]])
def test_a_label_that_is_not_text_is_refused(label):
    with pytest.raises(ValueError, match="label"):
        loaded_session().bind_user("ada", label)


@pytest.mark.parametrize("label", ["x" * 100, "Firefox на Linux 🦊", "", "Edge (Windows 11) — work"])
def test_short_printable_labels_in_any_script_are_taken(label):
    session = loaded_session()
    session["n"] = 1
    session.bind_user("ada", label)

    assert session.changes().label == label


# -- the per-user cap --------------------------------------------------------------------------------


def test_a_third_login_ends_the_first_browsers_session(site, clock):
    first = logged_in(site, "first")
    clock.advance(10)
    second = logged_in(site, "second")
    clock.advance(10)
    third = logged_in(site, "third")

    assert first.value("user") is None  # anonymous now
    assert (second.value("user"), third.value("user")) == ("ada", "ada")
    assert labels(third) == ["second", "third"]
    assert len(site.middleware.user_sessions("ada")) == 2


def test_with_a_cap_of_one_each_login_ends_the_browser_before_it(serve, store, clock):
    site = make_site(serve, store, clock, idle_timeout=3600, max_sessions_per_user=1)
    laptop = logged_in(site, "laptop")
    clock.advance(10)
    phone = logged_in(site, "phone")

    assert (laptop.value("user"), phone.value("user")) == (None, "ada")
    assert labels(phone) == ["phone"]


def test_the_cap_ends_the_least_recently_active_session_not_the_oldest(site, clock):
    laptop = logged_in(site, "laptop")
    clock.advance(10)
    phone = logged_in(site, "phone")
    clock.advance(1000)  # past the refresh step: the laptop's next request records its activity
    assert laptop.value("user") == "ada"

    logged_in(site, "tablet")

    assert phone.value("user") is None
    assert labels(laptop) == ["laptop", "tablet"]


def test_logging_in_again_in_one_browser_does_not_count_twice(site, clock):
    laptop = logged_in(site, "laptop")
    phone = logged_in(site, "phone")
    clock.advance(10)
    laptop.post("/login", user="ada", label="laptop again")

    assert phone.value("user") == "ada"
    assert labels(phone) == ["laptop again", "phone"]


def test_the_cap_counts_each_user_apart(site):
    logged_in(site, "ada 1")
    logged_in(site, "ada 2")
    bobs = [logged_in(site, f"bob {n}", user="bob") for n in range(2)]

    assert [bob.value("user") for bob in bobs] == ["bob", "bob"]
    assert len(site.middleware.user_sessions("ada")) == 2


def test_a_request_in_flight_for_a_session_the_cap_ended_cannot_bring_it_back(site, clock):
    laptop = logged_in(site, "laptop")
    clock.advance(10)
    logged_in(site, "phone")
    clock.advance(10)
    slow = in_background(lambda: laptop.post("/set_when_released", key="late", value="1"))
    assert site.gates.loaded.wait(10)

    tablet = logged_in(site, "tablet")  # ends the laptop's session, loaded by the slow request
    site.gates.proceed.set()
    slow()

    assert laptop.value("user") is None
    assert labels(tablet) == ["phone", "tablet"]


def test_without_a_cap_every_login_stays(serve, store, clock):
    site = make_site(serve, store, clock, idle_timeout=3600)
    visitors = [logged_in(site, f"browser {n}") for n in range(4)]

    assert [visitor.value("user") for visitor in visitors] == ["ada"] * 4


def test_a_store_failure_while_ending_old_sessions_still_logs_the_user_in(serve, store, clock, caplog):
    """The cap runs once the login is saved: if the store fails then, the login keeps its new
    cookie (a 503 would leave the browser holding a cookie of the session it rotated away)."""

    class ListingFails:
        def __getattr__(self, name: str):
            return getattr(store, name)

        def user_sessions(self, user_id: str):
            raise SessionStoreError("the store went away while listing")

    site = make_site(serve, ListingFails(), clock, max_sessions_per_user=1)
    laptop = logged_in(site, "laptop")
    phone = logged_in(site, "phone")

    assert (laptop.value("user"), phone.value("user")) == ("ada", "ada")  # the cap could not act
    assert "max_sessions_per_user: the login is saved" in caplog.text


@pytest.mark.parametrize("cap", [0, -1, 1.5, 2.0, "2", True])
def test_a_cap_that_is_not_a_whole_number_of_at_least_one_is_refused(cap):
    with pytest.raises(ValueError, match="max_sessions_per_user"):
        SessionMiddleware(SECRET, MemoryStore(), max_sessions_per_user=cap)


@needs_hug
def test_a_cap_on_a_store_without_a_user_index_is_refused_at_start_up():
    from hug.store import InMemoryStore

    with pytest.raises(ValueError, match="max_sessions_per_user"):
        SessionMiddleware(SECRET, InMemoryStore(), max_sessions_per_user=3)
    SessionMiddleware(SECRET, InMemoryStore())  # without the cap it is fine


@needs_hug
def test_a_hug_store_keeps_the_label_through_a_login_and_a_write():
    from hug.store import InMemoryStore

    from hug_cookie_sessions.stores.hug_adapter import HugStoreAdapter

    adapter = HugStoreAdapter(InMemoryStore())
    adapter.create("old", record({"a": "1"}))
    adapter.rotate("old", "new", record({"a": "1"}, user_id="ada", label="Firefox on Linux"))
    adapter.apply("new", {"a": "2"}, (), record().expires_at)

    assert adapter.load("new").label == "Firefox on Linux"


# -- stores made by release 0.1.0 (before labels) keep working -----------------------------------------


def release_010_sqlite_file(tmp_path) -> str:
    path = tmp_path / "sessions.sqlite3"
    shutil.copyfile(DATA / "sessions-0.1.0.sqlite3", path)
    return str(path)


def columns(path: str) -> list:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute("SELECT * FROM pragma_table_info('sessions')")]


def test_a_sqlite_file_of_release_010_gains_labels_and_its_sessions_stay_open(serve, tmp_path, clock):
    path = release_010_sqlite_file(tmp_path)
    sqlite_schema.check_session_file(path)  # the CLI still recognises it before the upgrade
    site = make_site(serve, SQLiteStore(path), clock, idle_timeout=3600)
    old_browser = site.visitor()
    old_browser.set_cookie(site.middleware.signer.sign(RELEASE_010_SESSION))

    assert old_browser.value("user") == "ada"
    logged_in(site, "Firefox on Linux")
    assert labels(old_browser) == ["Firefox on Linux", "None"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == sqlite_schema.SCHEMA_VERSION == 2
    sqlite_schema.check_session_file(path)


def test_workers_opening_a_release_010_file_together_add_the_column_once(tmp_path):
    path = release_010_sqlite_file(tmp_path)
    stores = [SQLiteStore(path) for _ in range(4)]

    errors = run_together(4, lambda index: stores[index].user_sessions("ada"))

    assert errors == []
    assert columns(path).count("label") == 1
    assert stores[0].load(RELEASE_010_SESSION).data["user"] == '"ada"'


def release_010_postgres_tables(url: str, prefix: str) -> None:
    """The tables and sessions of PostgresStore 0.1.0, from its dump (tests/data), under ``prefix``."""
    dump = (DATA / "postgres-0.1.0.sql").read_text(encoding="utf-8").replace("release010", prefix)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(dump)


def schema_version(url: str, prefix: str) -> str:
    with psycopg.connect(url) as db:
        return db.execute(f"SELECT value FROM {prefix}_meta WHERE name = 'version'").fetchone()[0]


def test_postgres_tables_of_release_010_gain_labels_and_their_sessions_stay_open(
    serve, postgres_url, table_prefix, clock
):
    release_010_postgres_tables(postgres_url, table_prefix)
    checker = PostgresStore(postgres_url, table_prefix=table_prefix)
    checker.check_schema()  # what the CLI runs first: the old tables pass, unchanged
    checker.close()
    assert schema_version(postgres_url, table_prefix) == "1"
    store = PostgresStore(postgres_url, table_prefix=table_prefix)
    site = make_site(serve, store, clock, idle_timeout=3600)
    old_browser = site.visitor()
    old_browser.set_cookie(site.middleware.signer.sign(RELEASE_010_SESSION))

    try:
        assert old_browser.value("user") == "ada"
        logged_in(site, "Firefox on Linux")
        assert labels(old_browser) == ["Firefox on Linux", "None"]
        assert schema_version(postgres_url, table_prefix) == "2"
    finally:
        store.close()


def test_the_async_postgres_store_upgrades_release_010_tables_too(postgres_url, table_prefix, request):
    release_010_postgres_tables(postgres_url, table_prefix)
    store = request.getfixturevalue("async_postgres_store")  # on the same tables

    store.create("new", record({"a": "1"}, user_id="ada", label="Firefox on Linux"))

    listed = store.user_sessions("ada")
    assert {sid: entry.label for sid, entry in listed.items()} == {
        RELEASE_010_SESSION: None,
        "new": "Firefox on Linux",
    }
    assert schema_version(postgres_url, table_prefix) == "2"
