"""Secure by default, round two: tossed cookies open nothing, sessions have a size limit.
Through a real HTTP server and cookie jar, on every framework, with real stores."""

from __future__ import annotations

import logging
import uuid

import pytest

from hug_cookie_sessions import SessionMiddleware, SessionTooLarge, SessionValueError
from hug_cookie_sessions.cookies import MAX_COOKIES_CHECKED

from .support import SECRET, make_site, store_key_of


@pytest.fixture
def site(serve, store, clock):
    return make_site(serve, store, clock, max_session_bytes=2000)


def _signed_in(site, user: str):
    visitor = site.visitor()
    visitor.post("/login", user=user)
    return visitor


# -- tossed cookies ----------------------------------------------------------------------------


def test_two_live_sessions_in_one_request_open_neither(site, caplog):
    victim, attacker = _signed_in(site, "victim"), _signed_in(site, "attacker")
    victim_sid = store_key_of(victim.cookie)
    before = site.store.load(victim_sid).data
    header = f"session={attacker.cookie}; session={victim.cookie}"
    with caplog.at_level(logging.WARNING, logger="hug_cookie_sessions"):
        response = site.visitor().http.post(
            site.url + "/set", params={"key": "card", "value": '"4111"'}, headers={"Cookie": header}
        )
    assert response.status_code == 200
    assert "2 validly signed cookies" in caplog.text
    assert attacker.cookie not in caplog.text and victim.cookie not in caplog.text
    assert site.store.load(victim_sid).data == before  # the victim's write did not land in either
    attacker_sid = store_key_of(attacker.cookie)
    assert "card" not in site.store.load(attacker_sid).data


def test_the_same_cookie_sent_twice_still_opens_its_session(site):
    visitor = _signed_in(site, "ada")
    header = f"session={visitor.cookie}; session={visitor.cookie}"
    response = site.visitor().http.get(site.url + "/all", headers={"Cookie": header})
    assert response.json()["data"] == {"user": "ada"}


def test_one_live_session_among_invalid_cookies_opens(site):
    visitor = _signed_in(site, "ada")
    header = f"session=forged.value; session={visitor.cookie}; session={visitor.cookie[:-3]}abc"
    response = site.visitor().http.get(site.url + "/all", headers={"Cookie": header})
    assert response.json()["data"] == {"user": "ada"}


def test_a_flood_of_session_cookies_opens_nothing(site):
    visitor = _signed_in(site, "ada")
    junk = "; ".join(f"session=junk{index}" for index in range(MAX_COOKIES_CHECKED))
    response = site.visitor().http.get(
        site.url + "/all", headers={"Cookie": f"{junk}; session={visitor.cookie}"}
    )
    assert response.json()["data"] == {}


# -- size limit --------------------------------------------------------------------------------


def test_a_session_over_the_size_limit_is_a_logged_500_and_nothing_changes(site, caplog):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        response = visitor.post("/set", key="blob", value='"' + "x" * 3000 + '"')
    assert response.status_code == 500
    assert "max_session_bytes=2000" in caplog.text and "'blob'" in caplog.text
    assert visitor.get("/all").json()["data"] == {"n": 1}


def test_many_keys_add_up_to_the_limit(site):
    visitor = site.visitor()
    for index in range(30):
        response = visitor.post("/set", key=f"key{index:02d}", value='"' + "v" * 100 + '"')
    assert response.status_code == 500
    assert 10 < len(visitor.get("/all").json()["data"]) < 30


def test_the_size_limit_is_a_session_value_error_naming_the_largest_key(store):
    middleware = SessionMiddleware(SECRET, store, max_session_bytes=100)
    session = middleware.open(None)
    session["small"] = 1
    session["big"] = "y" * 200
    with pytest.raises(Exception) as raised:
        middleware.save(session)
    error = raised.value.__cause__
    assert isinstance(error, SessionTooLarge) and isinstance(error, SessionValueError)
    assert error.key == "big"
    assert len(store) == 0


def test_no_size_limit_when_disabled(store):
    middleware = SessionMiddleware(SECRET, store, max_session_bytes=None)
    session = middleware.open(None)
    session["big"] = "z" * 200_000
    assert middleware.open(middleware.save(session))["big"] == "z" * 200_000


# -- login hygiene -----------------------------------------------------------------------------


def test_binding_a_user_gives_the_session_a_new_id(store):
    middleware = SessionMiddleware(SECRET, store)
    session = middleware.open(None)
    session["cart"] = [1]
    token = middleware.save(session)
    again = middleware.open(token)
    again.bind_user("ada")
    new_token = middleware.save(again)
    assert new_token != token
    assert middleware.open(token).is_new  # the pre-login ID opens nothing
    assert dict(middleware.open(new_token)) == {"cart": [1]}  # a visitor's own data stays


def test_logging_in_as_another_user_clears_the_previous_users_data(site):
    visitor = _signed_in(site, "alice")
    visitor.post("/set", key="private", value='"alice only"')
    visitor.post("/login", user="bob")
    assert visitor.get("/all").json()["data"] == {"user": "bob"}


def test_binding_the_same_user_again_keeps_the_data(site):
    visitor = _signed_in(site, "ada")
    visitor.post("/set", key="theme", value='"dark"')
    visitor.post("/login", user="ada")
    assert visitor.get("/all").json()["data"] == {"user": "ada", "theme": "dark"}


# -- configuration traps are said out loud -----------------------------------------------------------


def test_a_short_secret_warns_naming_the_command_that_makes_one(caplog, store):
    with caplog.at_level(logging.WARNING, logger="hug_cookie_sessions"):
        SessionMiddleware("short", store)
    assert "hug-sessions secret" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hug_cookie_sessions"):
        SessionMiddleware("k" * 32, store)
    assert caplog.text == ""


def test_a_middleware_without_a_store_says_sessions_live_in_memory(caplog):
    with caplog.at_level(logging.WARNING, logger="hug_cookie_sessions"):
        SessionMiddleware("k" * 32)
    assert "this process's memory" in caplog.text


def test_a_secure_cookie_over_plain_http_to_another_host_warns_once(serve, store, clock, caplog):
    site = make_site(serve, store, clock, cookie_secure=True)
    host = f"app-{uuid.uuid4().hex[:8]}.lan"  # the warning is once per host per process
    with caplog.at_level(logging.WARNING, logger="hug_cookie_sessions"):
        for _ in range(3):
            response = site.visitor().http.post(
                site.url + "/set", params={"key": "n", "value": "1"}, headers={"Host": host}
            )
            assert "Secure" in response.headers["Set-Cookie"]
    assert caplog.text.count("cookie_secure=False") == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hug_cookie_sessions"):
        site.visitor().post("/set", key="n", value="1")  # 127.0.0.1: browsers accept it there
    assert "cookie_secure=False" not in caplog.text
