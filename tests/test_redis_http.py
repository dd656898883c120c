"""Sessions in Redis through a hug app on a real HTTP server: cost, concurrency, regenerate, outage."""

import threading
from collections import Counter
from dataclasses import dataclass

import pytest
import requests
from redis_support import WAIT, Pause, session_app

from hug_cookie_sessions import RedisStore, SessionMiddleware
from hug_cookie_sessions.testing import HOUR

SECRET = "redis-http-tests-secret-key-0123456789"


def middleware_for(store, **options) -> SessionMiddleware:
    return SessionMiddleware(SECRET, store, cookie_secure=False, idle_timeout=HOUR, **options)


@dataclass
class Served:
    """A hug app on a real HTTP server, with the middleware and store behind it."""

    base: str
    middleware: SessionMiddleware
    store: RedisStore
    pause: Pause

    def sid(self, token: str) -> str:
        """The session ID inside a cookie value."""
        return self.middleware.signer.unsign(token)[0]


def serve_sessions(serve, store, **options) -> Served:
    middleware = middleware_for(store, **options)
    pause = Pause()
    return Served(serve(session_app(middleware, pause)), middleware, store, pause)


# -- what a request costs in Redis ---------------------------------------------------------------


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
def measured(private_redis, serve, browser, clock):
    """A served app on a private Redis with one session already used twice (scripts loaded)."""
    store = RedisStore(private_redis.url)
    app = serve_sessions(serve, store, clock=clock)
    assert browser.post(f"{app.base}/session", params={"key": "n", "value": "1"}).status_code == 200
    assert browser.post(f"{app.base}/session", params={"key": "n", "value": "2"}).status_code == 200
    inspector = private_redis.client()
    yield app, RedisActivity(inspector)
    inspector.close()
    store.close()


def test_a_read_only_request_is_one_hgetall_and_changes_nothing(measured, browser):
    app, activity = measured
    response = browser.get(f"{app.base}/session")
    assert response.json() == {"data": {"n": "2"}}
    assert "Set-Cookie" not in response.headers
    assert activity.since() == (1, {"hgetall": 1}, 0)


def test_a_write_is_one_load_and_one_script_call(measured, browser):
    app, activity = measured
    assert browser.post(f"{app.base}/session", params={"key": "n", "value": "3"}).status_code == 200
    round_trips, commands, changes = activity.since()
    assert (round_trips, commands["hgetall"], commands["evalsha"]) == (2, 1, 1)  # load, then write
    assert changes > 0


def test_a_new_session_is_one_script_call(measured):
    app, activity = measured
    response = requests.post(f"{app.base}/session", params={"key": "n", "value": "1"}, timeout=WAIT)
    assert "session" in response.cookies
    round_trips, commands, changes = activity.since()
    assert (round_trips, commands["evalsha"]) == (1, 1)
    assert changes > 0


def test_a_request_that_never_touches_the_session_costs_no_redis_command(measured, browser):
    app, activity = measured
    assert browser.get(f"{app.base}/health").status_code == 200
    assert activity.since() == (0, {}, 0)


def test_a_read_only_request_writes_once_only_when_the_idle_refresh_is_due(measured, browser, clock):
    app, activity = measured
    clock.advance(HOUR * 0.2)  # past refresh_fraction (0.1) of the idle timeout
    response = browser.get(f"{app.base}/session")
    assert "Set-Cookie" in response.headers
    round_trips, commands, changes = activity.since()
    assert (round_trips, commands["hgetall"], commands["evalsha"]) == (2, 1, 1)
    assert changes > 0
    assert app.store.load(app.sid(browser.cookies["session"])).expires_at == pytest.approx(clock.now + HOUR)


# -- concurrency, on a single Redis and on Redis Cluster -------------------------------------------


def overlapping(app: Served, requests_to_send: list[tuple[str, dict]], token: str) -> list[requests.Response]:
    """Send slow writes that all load the session before any of them writes; their responses."""
    responses: list = [None] * len(requests_to_send)

    def send(index: int, params: dict) -> None:
        responses[index] = requests.post(
            f"{app.base}/slow-session", params=params, cookies={"session": token}, timeout=WAIT
        )

    threads = [
        threading.Thread(target=send, args=(index, params))
        for index, (_, params) in enumerate(requests_to_send)
    ]
    for thread in threads:
        thread.start()
    app.pause.wait_for(len(threads))
    app.pause.release()
    for thread in threads:
        thread.join(timeout=WAIT)
    return responses


def test_overlapping_requests_changing_different_keys_both_persist(redis_store, serve, browser):
    app = serve_sessions(serve, redis_store)
    browser.post(f"{app.base}/session", params={"key": "base", "value": "0"})
    token = browser.cookies["session"]
    responses = overlapping(
        app, [("left", {"key": "left", "value": "L"}), ("right", {"key": "right", "value": "R"})], token
    )
    assert [response.status_code for response in responses] == [200, 200]
    assert browser.get(f"{app.base}/session").json() == {"data": {"base": "0", "left": "L", "right": "R"}}


def paused_write(app: Served, token: str) -> tuple[threading.Thread, list]:
    """Start a slow write with ``token`` and return once it has loaded the session."""
    result: list = []

    def send() -> None:
        result.append(
            requests.post(
                f"{app.base}/slow-session",
                params={"key": "late", "value": "write"},
                cookies={"session": token},
                timeout=WAIT,
            )
        )

    thread = threading.Thread(target=send)
    thread.start()
    app.pause.wait_for(1)
    return thread, result


def test_a_request_that_loaded_before_logout_cannot_bring_the_session_back(redis_store, serve, browser):
    app = serve_sessions(serve, redis_store)
    browser.post(f"{app.base}/session", params={"key": "n", "value": "1"})
    token = browser.cookies["session"]
    thread, result = paused_write(app, token)
    assert browser.post(f"{app.base}/logout").status_code == 200
    app.pause.release()
    thread.join(timeout=WAIT)
    late = result[0]
    assert late.status_code == 200
    assert late.headers["Set-Cookie"].startswith("session=;")  # told to drop the cookie
    assert redis_store.load(app.sid(token)) is None
    replay = requests.get(f"{app.base}/session", cookies={"session": token}, timeout=WAIT)
    assert replay.json() == {"data": {}}


def test_a_request_that_loaded_before_regenerate_cannot_revive_the_old_id(redis_store, serve, browser):
    app = serve_sessions(serve, redis_store)
    browser.post(f"{app.base}/session", params={"key": "n", "value": "1"})
    old_token = browser.cookies["session"]
    thread, result = paused_write(app, old_token)
    assert browser.post(f"{app.base}/login", params={"user": "alice"}).status_code == 200
    app.pause.release()
    thread.join(timeout=WAIT)
    assert result[0].status_code == 200
    assert redis_store.load(app.sid(old_token)) is None
    assert browser.get(f"{app.base}/session").json() == {"data": {"n": "1", "user": "alice"}}


def test_regenerate_moves_the_data_and_the_old_cookie_opens_nothing(redis_store, serve, browser):
    app = serve_sessions(serve, redis_store)
    browser.post(f"{app.base}/session", params={"key": "cart", "value": "apples"})
    old_token = browser.cookies["session"]
    login = browser.post(f"{app.base}/login", params={"user": "alice"})
    new_token = browser.cookies["session"]
    assert login.status_code == 200 and new_token != old_token
    assert browser.get(f"{app.base}/session").json() == {"data": {"cart": "apples", "user": "alice"}}
    assert redis_store.load(app.sid(new_token)).user_id == "alice"
    replay = requests.get(f"{app.base}/session", cookies={"session": old_token}, timeout=WAIT)
    assert replay.json() == {"data": {}}
    assert redis_store.load(app.sid(old_token)) is None


# -- outage --------------------------------------------------------------------------------------


def test_a_redis_outage_is_a_503_for_session_users_only_and_the_same_app_recovers(
    private_redis, serve, browser
):
    store = RedisStore(private_redis.url)
    app = serve_sessions(serve, store)
    assert browser.post(f"{app.base}/session", params={"key": "n", "value": "1"}).status_code == 200

    private_redis.stop()
    for response in (
        browser.get(f"{app.base}/session"),
        browser.post(f"{app.base}/session", params={"key": "n", "value": "2"}),
        requests.post(f"{app.base}/session", params={"key": "n", "value": "1"}, timeout=WAIT),
    ):
        assert response.status_code == 503
        assert response.headers["Content-Type"].startswith("application/json")
        assert "Session store unavailable" in response.json()["errors"]
        assert "Traceback" not in response.text and "127.0.0.1" not in response.text
        assert "Set-Cookie" not in response.headers
    assert browser.get(f"{app.base}/health").json() == {"ok": True}

    private_redis.start()  # same port, empty: nothing is persisted
    assert browser.get(f"{app.base}/session").json() == {"data": {}}
    assert browser.post(f"{app.base}/session", params={"key": "n", "value": "3"}).status_code == 200
    assert browser.get(f"{app.base}/session").json() == {"data": {"n": "3"}}
    store.close()
