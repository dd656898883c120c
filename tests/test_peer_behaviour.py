"""Where the mature session libraries agree (Django, Flask, Starlette, aiohttp-session), this one
behaves the same: redirects save, logout expires any cookie, expiry can be reset, bad stored data
and odd input never make a 500. Through a real HTTP server and cookie jar, on every framework."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from hug_cookie_sessions import MemoryStore, SessionMiddleware, SessionValueError, SQLiteStore
from hug_cookie_sessions.stores.base import session_ref

from .support import SECRET, make_site, store_key_of

IDLE = 3600


@pytest.fixture
def site(serve, store, clock):
    return make_site(serve, store, clock, idle_timeout=IDLE)


# -- the saving rule ---------------------------------------------------------------------------


def test_a_value_set_before_a_raised_redirect_is_saved(site):
    visitor = site.visitor()
    response = visitor.post("/set_then_redirect", user="ada")
    assert response.history[0].status_code == 302  # followed to /all by requests
    assert response.json()["data"] == {"user": "ada"}


def test_hugs_own_redirect_helper_keeps_the_login(site):
    if site.framework != "hug":
        pytest.skip("hug needs Falcon 2.0")
    visitor = site.visitor()
    visitor.post("/set_then_hug_redirect", user="ada")
    assert visitor.get("/all").json()["data"] == {"user": "ada"}


def test_a_value_set_before_a_raised_4xx_is_saved(site):
    visitor = site.visitor()
    response = visitor.post("/set_then_4xx", tries="3")
    assert response.status_code == 403
    assert visitor.value("tries") == 3


def test_a_raised_5xx_error_saves_nothing(site):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    response = visitor.post("/set_then_5xx_error")
    assert response.status_code == 503
    assert visitor.get("/all").json()["data"] == {"n": 1}


def test_any_other_exception_still_saves_nothing(site):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    assert visitor.post("/set_then_raise").status_code == 500
    assert visitor.get("/all").json()["data"] == {"n": 1}


# -- logout ------------------------------------------------------------------------------------


def _expired(response) -> bool:
    header = response.headers.get("Set-Cookie", "")
    return header.startswith("session=;") and "Max-Age=0" in header


def test_logout_with_a_bogus_cookie_expires_it(site):
    visitor = site.visitor()
    visitor.set_cookie("not-a-session.at-all")
    response = visitor.post("/logout")
    assert _expired(response)
    assert visitor.cookie is None


def test_logout_with_the_cookie_of_an_expired_session_expires_it(site, clock):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    clock.advance(IDLE + 1)
    response = visitor.post("/logout")
    assert _expired(response)
    assert visitor.cookie is None


def test_logout_with_the_cookie_of_a_deleted_session_expires_it(site):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    other = site.visitor()
    other.set_cookie(visitor.cookie)
    other.post("/logout")
    response = visitor.post("/logout")
    assert _expired(response)


def test_logout_without_a_cookie_sends_none(site):
    response = site.visitor().post("/logout")
    assert "Set-Cookie" not in response.headers


# -- expiry ------------------------------------------------------------------------------------


def test_set_expiry_none_goes_back_to_the_default_after_remember_me(site):
    visitor = site.visitor()
    visitor.post("/remember_me", seconds=str(30 * 24 * 3600))
    remembered = visitor.cookie
    response = visitor.post("/default_expiry")
    assert f"Max-Age={IDLE};" in response.headers["Set-Cookie"]
    assert visitor.cookie != remembered  # a change of the session's terms gets a new ID
    record = site.store.load(store_key_of(visitor.cookie))
    assert record.idle_timeout is None
    assert visitor.get("/all").json()["data"] == {"remembered": None}


def test_set_expiry_none_on_a_session_without_its_own_timeout_changes_nothing(site):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    before = visitor.cookie
    response = visitor.post("/default_expiry")
    assert visitor.cookie == before
    assert "Set-Cookie" not in response.headers


# -- bad stored data ---------------------------------------------------------------------------


def test_a_corrupt_stored_value_is_dropped_and_logged_by_reference_not_id(site, caplog):
    visitor = site.visitor()
    visitor.post("/set", key="good", value="1")
    visitor.post("/set", key="bad", value="2")
    sid = visitor.cookie.rpartition(".")[0]
    _corrupt(site.store, store_key_of(visitor.cookie), "bad")
    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        response = visitor.get("/all")
    assert response.status_code == 200
    assert response.json()["data"] == {"good": 1}
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert session_ref(sid) in logged and "'bad'" in logged
    assert sid not in logged
    visitor.post("/set", key="bad", value="3")  # the next save of that key overwrites it
    assert visitor.value("bad") == 3


def _corrupt(store, sid: str, key: str) -> None:
    """Put text that is not JSON under ``key``, as a tampered store or a bad migration would."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            db.execute(
                "UPDATE session_values SET value = '{nope' WHERE session_id = ? AND key = ?", (sid, key)
            )
        return
    assert isinstance(store, MemoryStore)
    record = store.load(sid)
    store.create(sid, type(record)({**record.data, key: "{nope"}, record.created_at, record.expires_at))


# -- odd input ---------------------------------------------------------------------------------


def _stored_and_read_back(store) -> None:
    middleware = SessionMiddleware(SECRET, store)
    session = middleware.open(None)
    session["text"] = "a\ud800b"
    session["nested"] = {"k": ["\udfff"]}
    token = middleware.save(session)
    again = middleware.open(token)
    assert (again["text"], again["nested"]) == ("a\ud800b", {"k": ["\udfff"]})


def test_a_lone_surrogate_value_is_stored_and_read_back_exactly(store):
    _stored_and_read_back(store)


def test_a_lone_surrogate_value_is_stored_and_read_back_exactly_in_redis(redis_store):
    _stored_and_read_back(redis_store)


def test_a_lone_surrogate_value_sent_as_json_is_stored_without_a_500(site):
    visitor = site.visitor()
    assert visitor.post("/set", key="text", value='"a\\ud800b"').status_code == 200
    assert visitor.get("/get", key="other").json() == {"value": None, "present": False}


def test_a_lone_surrogate_key_is_a_clear_500_naming_it_and_nothing_is_stored(store, caplog):
    middleware = SessionMiddleware(SECRET, store)
    session = middleware.open(None)
    session["fine"] = 1
    session["bad\ud800"] = 2
    with pytest.raises(Exception) as raised, caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        middleware.save(session)
    assert raised.value.__cause__.__class__ is SessionValueError
    assert "lone surrogate" in caplog.text
    assert len(store) == 0


def test_a_lone_surrogate_user_id_is_refused_at_save_and_nothing_is_stored(store):
    middleware = SessionMiddleware(SECRET, store)
    session = middleware.open(None)
    session["fine"] = 1
    session.bind_user("ada\udfff")
    with pytest.raises(Exception) as raised:
        middleware.save(session)
    assert isinstance(raised.value.__cause__, SessionValueError)
    assert len(store) == 0


# -- options from the environment ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "text", "expected"),
    [
        ("idle_timeout", "3600", 3600),
        ("absolute_timeout", "86400", 86400),
        ("refresh_fraction", "0.25", 0.25),
    ],
)
def test_numeric_options_given_as_text_are_read(option, text, expected):
    middleware = SessionMiddleware(SECRET, **{option: text})
    assert getattr(middleware, option) == expected


@pytest.mark.parametrize(
    "option", ["idle_timeout", "absolute_timeout", "refresh_fraction", "lock_timeout", "lock_lease"]
)
def test_a_numeric_option_that_is_not_a_number_names_itself_and_the_value(option):
    extra = {"lock": True} if option.startswith("lock_") else {}
    with pytest.raises(ValueError, match=rf"{option}.*'an hour'"):
        SessionMiddleware(SECRET, **{option: "an hour"}, **extra)


def test_a_store_given_as_a_url_is_built_from_it(tmp_path):
    middleware = SessionMiddleware(SECRET, f"sqlite:///{tmp_path}/sessions.db")
    assert isinstance(middleware.store, SQLiteStore)


def test_a_store_string_that_is_no_url_names_store_from_url():
    with pytest.raises(ValueError, match="store_from_url"):
        SessionMiddleware(SECRET, "sessions.db")
