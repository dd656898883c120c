"""What a visitor and a handler see of a session, through a real HTTP server and cookie jar."""

from __future__ import annotations

import json
import logging
import threading

import falcon
import falcon.testing
import pytest
import requests

from hug_cookie_sessions import MemoryStore, SessionMiddleware

from .support import SECRET, CountingStore, make_site

IDLE = 3600


@pytest.fixture
def counting(store):
    return CountingStore(store)


@pytest.fixture
def site(serve, counting, clock):
    return make_site(serve, counting, clock, idle_timeout=IDLE)


def in_background(call):
    """Run ``call`` in a thread; returns a function giving its result."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=call()), daemon=True)
    thread.start()

    def join():
        thread.join(10)
        assert not thread.is_alive(), "background request did not finish"
        return result["value"]

    return join


# -- cost of sessions nobody uses ------------------------------------------------------------


def test_a_request_that_never_touches_the_session_writes_nothing_and_sends_no_cookie(site, counting):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    counting.calls.clear()
    response = visitor.get("/untouched")
    assert response.status_code == 200
    # WSGI loads on first use; ASGI must load before the handler (a mapping access cannot await).
    assert dict(counting.calls) == ({"load": 1} if site.framework == "falcon-asgi" else {})
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers


def test_a_visitor_without_a_session_cookie_costs_no_store_io(site, counting):
    visitor = site.visitor()
    for path in ("/untouched", "/get?key=n", "/all"):
        assert visitor.get(path).status_code == 200
    assert counting.io() == 0


def test_an_anonymous_visitor_who_stores_nothing_gets_no_cookie_and_no_session(site, counting):
    visitor = site.visitor()
    response = visitor.get("/get", key="n")
    assert response.json() == {"value": None, "present": False}
    assert "Set-Cookie" not in response.headers
    assert counting.calls["create"] == 0
    assert len(counting) == 0


# -- storing and reading -------------------------------------------------------------------


def test_values_persist_across_requests_through_the_cookie(site):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="41")
    visitor.post("/set", key="name", value='"Ada"')
    assert visitor.value("n") == 41
    assert visitor.value("name") == "Ada"
    assert site.visitor().value("n") is None  # another visitor sees nothing


def test_a_read_only_request_loads_once_writes_nothing_and_sends_no_cookie(site, counting):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    counting.calls.clear()
    response = visitor.get("/get", key="n")
    assert response.json()["value"] == 1
    assert dict(counting.calls) == {"load": 1}
    assert "Set-Cookie" not in response.headers


def test_a_write_is_saved_once_after_the_handler(site, counting):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    counting.calls.clear()
    response = visitor.post("/set", key="n", value="2")
    assert dict(counting.calls) == {"load": 1, "apply": 1}
    assert "Set-Cookie" not in response.headers  # same ID, expiry not due to move: the cookie stands
    assert visitor.value("n") == 2


def test_setting_a_key_to_its_current_value_writes_nothing(site, counting):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    counting.calls.clear()
    visitor.post("/set", key="n", value="1")
    assert dict(counting.calls) == {"load": 1}


def test_nested_mutation_is_saved_without_the_handler_saying_so(site):
    visitor = site.visitor()
    visitor.post("/append", key="cart", value='"apple"')
    visitor.post("/append", key="cart", value='"pear"')
    assert visitor.value("cart") == ["apple", "pear"]
    visitor.post("/set", key="profile", value='{"lang": "en"}')
    visitor.post("/nested", key="profile", field="lang", value='"ko"')
    assert visitor.value("profile") == {"lang": "ko"}


def test_a_deleted_key_is_gone_and_the_others_stay(site):
    visitor = site.visitor()
    visitor.post("/set", key="a", value="1")
    visitor.post("/set", key="b", value="2")
    visitor.post("/delete", key="a")
    assert visitor.get("/all").json()["data"] == {"b": 2}


def test_a_session_emptied_by_the_handler_is_deleted_with_its_cookie(site, counting):
    visitor = site.visitor()
    visitor.post("/set", key="a", value="1")
    response = visitor.post("/clear")
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert visitor.cookie is None
    assert len(counting) == 0


def test_session_id_and_is_new_reflect_whether_it_is_stored(site):
    visitor = site.visitor()
    assert visitor.get("/all").json() == {"data": {}, "id": None, "is_new": True}
    visitor.post("/set", key="a", value="1")
    info = visitor.get("/all").json()
    assert info["is_new"] is False
    assert info["id"] and info["id"] in visitor.cookie


# -- hostile and broken cookies -------------------------------------------------------------


def test_a_tampered_cookie_is_an_anonymous_visitor_and_never_reaches_the_store(site, counting):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    cookie = visitor.cookie
    for position in (0, len(cookie) // 2, len(cookie) - 1):
        flipped = "A" if cookie[position] != "A" else "B"
        intruder = site.visitor()
        intruder.set_cookie(cookie[:position] + flipped + cookie[position + 1 :])
        counting.calls.clear()
        response = intruder.get("/get", key="n")
        assert response.status_code == 200
        assert response.json()["value"] is None
        assert counting.calls["load"] == 0


@pytest.mark.parametrize(
    "garbage",
    ["", ".", "..", "x" * 5000, "%00%ff", "word", "a.b.c", "\u00e9t\u00e9.sig", "'; DROP TABLE sessions"],
    ids=["empty", "dot", "dots", "oversized", "escapes", "word", "three-parts", "non-ascii", "sql"],
)
def test_garbage_cookies_are_anonymous_visitors_never_errors(site, counting, garbage):
    response = _raw_request(site, garbage)
    assert response.status_code == 200
    assert response.json()["value"] is None
    assert counting.calls["load"] == 0


def _raw_request(site, cookie_value):
    header = f"{site.middleware.cookie.name}={cookie_value}".encode("utf-8", "surrogateescape")
    return requests.get(site.url + "/get", params={"key": "n"}, headers={"Cookie": header}, timeout=10)


def test_a_signed_id_the_store_does_not_know_is_not_adopted(site, counting):
    unknown_sid = "U" * 43
    visitor = site.visitor()
    visitor.set_cookie(site.middleware.signer.sign(unknown_sid))
    visitor.post("/set", key="n", value="1")
    assert unknown_sid not in visitor.cookie
    assert counting.load(unknown_sid) is None
    assert visitor.value("n") == 1


def test_with_duplicate_cookies_the_first_that_verifies_and_exists_wins(site):
    victim = site.visitor()
    victim.post("/set", key="owner", value='"victim"')
    name, real = site.middleware.cookie.name, victim.cookie
    forged = site.middleware.signer.sign("F" * 43)
    response = requests.get(
        site.url + "/get",
        params={"key": "owner"},
        headers={"Cookie": f"{name}=garbage; {name}={forged}; {name}={real}"},
        timeout=10,
    )
    assert response.json()["value"] == "victim"


def test_tampering_is_logged_without_the_secret_or_the_whole_cookie(site, caplog):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    tampered = visitor.cookie[:-3] + "xyz"
    intruder = site.visitor()
    intruder.set_cookie(tampered)
    with caplog.at_level(logging.WARNING, logger="hug_cookie_sessions"):
        intruder.get("/get", key="n")
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "bad signature" in messages
    assert tampered not in messages
    assert "test-secret-key" not in messages


# -- regenerate and invalidate ---------------------------------------------------------------


def test_login_regenerates_the_id_keeps_the_data_and_the_old_cookie_opens_nothing(site, counting):
    visitor = site.visitor()
    visitor.post("/set", key="cart", value='["apple"]')
    before = visitor.cookie
    old_sid = before.rsplit(".", 1)[0]
    visitor.post("/login", user="ada")
    assert visitor.cookie != before
    assert visitor.value("cart") == ["apple"]
    assert visitor.value("user") == "ada"
    assert counting.load(old_sid) is None
    replay = site.visitor()
    replay.set_cookie(before)
    assert replay.value("cart") is None


def test_logout_deletes_the_session_and_expires_the_cookie(site, counting):
    visitor = site.visitor()
    visitor.post("/login", user="ada")
    cookie = visitor.cookie
    response = visitor.post("/logout")
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert visitor.cookie is None
    assert counting.load(cookie.rsplit(".", 1)[0]) is None
    replay = site.visitor()
    replay.set_cookie(cookie)
    assert replay.value("user") is None


def test_storing_after_logout_starts_a_new_session_under_a_new_id(site):
    visitor = site.visitor()
    visitor.post("/login", user="ada")
    old = visitor.cookie
    visitor.post("/logout_then_set", key="flash", value='"bye"')
    assert visitor.cookie and visitor.cookie != old
    assert visitor.get("/all").json()["data"] == {"flash": "bye"}


# -- timeouts -----------------------------------------------------------------------------------


def test_an_idle_session_expires_on_the_server_whatever_the_client_keeps(site, clock):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    clock.advance(IDLE + 1)
    assert visitor.value("n") is None


def test_activity_slides_the_idle_timeout(site, clock):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    for _ in range(4):
        clock.advance(IDLE * 0.6)
        assert visitor.value("n") == 1


def test_the_idle_refresh_is_throttled_so_busy_readers_do_not_write(site, clock, counting):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    counting.calls.clear()
    clock.advance(IDLE * 0.05)
    response = visitor.get("/get", key="n")
    assert counting.calls["apply"] == 0
    assert "Set-Cookie" not in response.headers
    clock.advance(IDLE * 0.1)
    response = visitor.get("/get", key="n")
    assert counting.calls["apply"] == 1
    assert f"Max-Age={IDLE}" in response.headers["Set-Cookie"]


def test_the_absolute_timeout_ends_even_an_active_session(serve, store, clock):
    site = make_site(serve, store, clock, idle_timeout=60, absolute_timeout=100)
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    for _ in range(3):
        clock.advance(30)
        assert visitor.value("n") == 1
    clock.advance(11)
    assert visitor.value("n") is None


def test_the_cookie_max_age_never_outlives_the_absolute_timeout(serve, store, clock):
    site = make_site(serve, store, clock, idle_timeout=600, absolute_timeout=100)
    response = site.visitor().post("/set", key="n", value="1")
    assert "Max-Age=100;" in response.headers["Set-Cookie"]


def test_a_browser_session_cookie_has_no_max_age_when_not_persistent(serve, store, clock):
    site = make_site(serve, store, clock, persistent=False)
    header = site.visitor().post("/set", key="n", value="1").headers["Set-Cookie"]
    assert "Max-Age" not in header
    assert "Expires" not in header


# -- failed requests and bad values ------------------------------------------------------------


def test_nothing_is_saved_when_the_handler_raises(site, counting):
    visitor = site.visitor()
    response = visitor.post("/set_then_raise")
    assert response.status_code == 500
    assert "Set-Cookie" not in response.headers
    assert len(counting) == 0
    visitor.post("/set", key="n", value="1")
    visitor.post("/set_then_raise")
    assert visitor.get("/all").json()["data"] == {"n": 1}


def test_nothing_is_saved_when_the_response_is_a_5xx(site):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    response = visitor.post("/set_then_503")
    assert response.status_code == 503
    assert visitor.get("/all").json()["data"] == {"n": 1}


def test_a_value_that_is_not_json_is_a_500_naming_the_key_and_nothing_is_stored(site, counting, caplog):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    counting.calls.clear()
    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        response = visitor.post("/set_unserializable")
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("application/json")
    assert "Traceback" not in response.text
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "'tags'" in logged and "set" in logged
    assert counting.calls["apply"] == 0
    assert visitor.get("/all").json()["data"] == {"n": 1}


# -- concurrency -------------------------------------------------------------------------------


def test_overlapping_requests_changing_different_keys_both_persist(site):
    visitor = site.visitor()
    visitor.post("/set", key="base", value="0")
    slow = in_background(lambda: visitor.post("/set_when_released", key="left", value="1"))
    assert site.gates.loaded.wait(10)
    visitor.post("/set", key="right", value="2")
    site.gates.proceed.set()
    assert slow().status_code == 200
    assert visitor.get("/all").json()["data"] == {"base": 0, "left": 1, "right": 2}


def test_overlapping_requests_changing_the_same_key_last_writer_wins(site):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="0")
    slow = in_background(lambda: visitor.post("/set_when_released", key="n", value="1"))
    assert site.gates.loaded.wait(10)
    visitor.post("/set", key="n", value="2")
    site.gates.proceed.set()
    slow()
    assert visitor.value("n") == 1


def test_a_request_that_loaded_before_a_logout_cannot_bring_the_session_back(site, counting):
    visitor = site.visitor()
    visitor.post("/login", user="ada")
    cookie = visitor.cookie
    other_tab = site.visitor()
    other_tab.set_cookie(cookie)
    slow = in_background(lambda: other_tab.post("/set_when_released", key="late", value="1"))
    assert site.gates.loaded.wait(10)
    visitor.post("/logout")
    site.gates.proceed.set()
    response = slow()
    assert response.status_code == 200
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert counting.load(cookie.rsplit(".", 1)[0]) is None
    assert len(counting) == 0


def test_a_request_that_loaded_before_a_regenerate_cannot_revive_the_old_id(site, counting):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    old = visitor.cookie
    other_tab = site.visitor()
    other_tab.set_cookie(old)
    slow = in_background(lambda: other_tab.post("/set_when_released", key="late", value="1"))
    assert site.gates.loaded.wait(10)
    visitor.post("/login", user="ada")
    site.gates.proceed.set()
    slow()
    assert counting.load(old.rsplit(".", 1)[0]) is None
    assert len(counting) == 1
    assert visitor.get("/all").json()["data"] == {"n": 1, "user": "ada"}


# -- caching headers ---------------------------------------------------------------------------


def test_responses_that_used_the_session_vary_on_cookie(site):
    visitor = site.visitor()
    assert visitor.get("/get", key="n").headers["Vary"] == "Cookie"
    assert "Vary" not in visitor.get("/untouched").headers


def test_responses_that_set_the_cookie_are_not_cached(site):
    response = site.visitor().post("/set", key="n", value="1")
    assert response.headers["Cache-Control"] == "no-store"


def test_a_handler_cache_control_is_kept(site):
    response = site.visitor().get("/cached")
    assert "Set-Cookie" in response.headers
    assert response.headers["Cache-Control"] == "private, max-age=60"


def test_values_round_trip_as_json(site):
    visitor = site.visitor()
    value = {"list": [1, 2.5, None, True], "text": "\u00e9\U0001f36a", "nested": {"a": {"b": []}}}
    visitor.post("/set", key="v", value=json.dumps(value))
    assert visitor.value("v") == value


class _AttributeContext(falcon.Context):
    """A context type of the app's own, as Falcon allows."""


class _SeparateItemsContext(falcon.Context):
    """A context type whose items are not its attributes."""

    def __init__(self) -> None:
        self.__dict__["items_"] = {}

    def __getitem__(self, key):
        return self.items_[key]

    def __setitem__(self, key, value):
        self.items_[key] = value

    def get(self, key, default=None):
        return self.items_.get(key, default)


@pytest.mark.parametrize("context_type", [falcon.Context, _AttributeContext, _SeparateItemsContext, dict])
def test_sessions_work_with_whatever_context_type_the_app_gives_its_requests(context_type):
    class Request(falcon.Request):
        pass

    Request.context_type = context_type

    class Counter:
        def on_get(self, req, resp):
            session = req.context["session"]
            session["n"] = session.get("n", 0) + 1
            resp.media = {"n": session["n"]}

    middleware = SessionMiddleware(SECRET, MemoryStore(), cookie_secure=False)
    app = (getattr(falcon, "App", None) or falcon.API)(middleware=[middleware], request_type=Request)
    app.add_route("/", Counter())
    client = falcon.testing.TestClient(app)
    first = client.simulate_get("/")
    cookie = first.headers["Set-Cookie"].split(";", 1)[0]
    assert [first.json, client.simulate_get("/", headers={"Cookie": cookie}).json] == [{"n": 1}, {"n": 2}]
