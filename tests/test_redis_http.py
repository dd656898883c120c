"""Sessions in Redis behind a hug app on a real HTTP server: what a request costs, and outages."""

from __future__ import annotations

from collections import Counter

import pytest

from hug_cookie_sessions import RedisStore
from hug_cookie_sessions.store_keys import store_key

from .support import make_site

IDLE = 3600


class RedisActivity:
    """What clients did to a private Redis since the last :meth:`since` call.

    Round trips are Redis' own count of network reads of client commands
    (``total_reads_processed``); commands are ``INFO commandstats``, which also
    counts the commands a script runs inside one ``EVALSHA``.
    """

    def __init__(self, client) -> None:
        self.client = client
        self._last = self._read()

    def _read(self) -> tuple[int, Counter, int]:
        info = self.client.info("stats", "commandstats", "persistence")
        calls = Counter(
            {name[len("cmdstat_") :]: info[name]["calls"] for name in info if name.startswith("cmdstat_")}
        )
        return info["total_reads_processed"], calls, info["rdb_changes_since_last_save"]

    def since(self) -> tuple[int, Counter, int]:
        """``(round trips, {command: calls}, keys changed)``, leaving out this object's own INFO."""
        now = self._read()
        (reads, calls, changes), (last_reads, last_calls, last_changes) = now, self._last
        self._last = now
        commands = calls - last_calls
        del commands["info"]
        return reads - last_reads - 1, commands, changes - last_changes


@pytest.fixture
def measured(private_redis, serve, clock):
    """A visitor whose session on a private Redis was already written twice (scripts loaded)."""
    store = RedisStore(private_redis.url)
    site = make_site(serve, store, clock, idle_timeout=IDLE)
    visitor = site.visitor()
    assert visitor.post("/set", key="n", value="1").status_code == 200
    assert visitor.post("/set", key="n", value="2").status_code == 200
    inspector = private_redis.client()
    yield visitor, RedisActivity(inspector)
    inspector.close()
    store.close()


def test_a_read_only_request_is_one_hgetall_and_changes_nothing(measured):
    visitor, activity = measured
    response = visitor.get("/get", key="n")
    assert response.json()["value"] == 2
    assert "Set-Cookie" not in response.headers
    assert activity.since() == (1, {"hgetall": 1}, 0)


def test_a_write_is_one_load_and_one_script_call(measured):
    visitor, activity = measured
    assert visitor.post("/set", key="n", value="3").status_code == 200
    round_trips, commands, changes = activity.since()
    assert (round_trips, commands["hgetall"], commands["evalsha"]) == (2, 1, 1)  # load, then write
    assert changes > 0


def test_a_new_session_is_one_script_call(measured):
    visitor, activity = measured
    newcomer = visitor.site.visitor()
    assert newcomer.post("/set", key="n", value="1").status_code == 200
    assert newcomer.cookie
    round_trips, commands, changes = activity.since()
    assert (round_trips, commands["evalsha"]) == (1, 1)
    assert changes > 0


def test_a_login_that_regenerates_and_binds_a_user_is_one_load_and_one_script_call(measured):
    visitor, activity = measured
    first = visitor.site.visitor()
    first.post("/set", key="n", value="1")
    first.post("/login", user="grace")  # the first use of the rotate script loads it into Redis
    activity.since()
    assert visitor.post("/login", user="ada").status_code == 200
    round_trips, commands, _ = activity.since()
    assert (round_trips, commands["hgetall"], commands["evalsha"]) == (2, 1, 1)
    assert commands["sadd"] == 1  # the user index, inside the same script


def test_a_request_that_never_touches_the_session_costs_no_redis_command(measured):
    visitor, activity = measured
    assert visitor.get("/untouched").status_code == 200
    # ASGI loads the session of a request with a cookie before the handler runs: one HGETALL.
    expected = (1, {"hgetall": 1}, 0) if visitor.site.framework == "falcon-asgi" else (0, {}, 0)
    assert activity.since() == expected


def test_a_read_only_request_writes_once_only_when_the_idle_refresh_is_due(measured, clock):
    visitor, activity = measured
    clock.advance(IDLE * 0.2)  # past refresh_fraction (0.1) of the idle timeout
    response = visitor.get("/all")
    assert "Set-Cookie" in response.headers
    round_trips, commands, changes = activity.since()
    assert (round_trips, commands["hgetall"], commands["evalsha"]) == (2, 1, 1)
    assert changes > 0
    sid = response.json()["id"]
    assert visitor.site.store.load(store_key(sid)).expires_at == pytest.approx(clock.now + IDLE)


def test_a_redis_outage_is_a_503_for_session_users_only_and_the_same_app_recovers(
    private_redis, serve, clock
):
    store = RedisStore(private_redis.url)
    site = make_site(serve, store, clock, idle_timeout=IDLE)
    visitor, newcomer = site.visitor(), site.visitor()
    assert visitor.post("/set", key="n", value="1").status_code == 200

    private_redis.stop()
    for response in (
        visitor.get("/all"),
        visitor.post("/set", key="n", value="2"),
        newcomer.post("/set", key="n", value="1"),
    ):
        assert response.status_code == 503
        assert response.headers["Content-Type"].startswith("application/json")
        assert "Session store unavailable" in str(response.json())
        assert "Traceback" not in response.text and "127.0.0.1" not in response.text
        assert "Set-Cookie" not in response.headers
    assert visitor.get("/untouched").json() == {"ok": True}

    private_redis.start()  # same port, same app and middleware; empty, as nothing was persisted
    assert visitor.get("/all").json()["data"] == {}
    assert visitor.post("/set", key="n", value="3").status_code == 200
    assert visitor.value("n") == 3
    store.close()
