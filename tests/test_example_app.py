"""The example app: the article's endpoints, their cookie counterparts and the page.

Most tests go through gunicorn (two worker processes sharing one SQLite file)
on a loopback port with ``requests.Session`` as the cookie jar; quick checks of
configuration and rendering run in-process with ``falcon.testing``.
"""

import base64
import importlib
import logging
import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import falcon
import falcon.testing
import pytest
import requests

from hug_cookie_sessions import MemoryStore, Session, SQLiteStore
from hug_cookie_sessions.signing import SessionSigner, new_session_id

from .conftest import ROOT, needs_hug
from .support import store_key_of

pytestmark = needs_hug  # the example is a hug app

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# -- helpers ---------------------------------------------------------------------------------------


def _client(server) -> requests.Session:
    session = requests.Session()
    session.request = _bounded(session.request)
    session.base = server.url
    return session


def _bounded(request):
    def call(method, url, **kwargs):
        kwargs.setdefault("timeout", 10)
        return request(method, url, **kwargs)

    return call


@pytest.fixture
def http(example_server):
    """A cookie-jar client of the gunicorn-served example app."""
    with _client(example_server) as client:
        yield client


def _sid(token: str) -> str:
    """The session ID inside a signed token (or cookie value)."""
    return token.rpartition(".")[0]


def _tampered(token: str) -> str:
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


def _utc(text: str) -> datetime:
    """An ISO 8601 UTC time as the app writes it (``2026-12-07T03:25:28Z``); anything else fails."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


# -- the article's endpoints ------------------------------------------------------------------


def test_create_session_returns_a_signed_token_not_a_raw_store_key(http, example_server):
    body = http.get(f"{http.base}/create_session").json()

    token = body["session_id"]
    assert set(body) == {"session_id"}
    assert SessionSigner(example_server.secret).unsign(token) == (_sid(token), True)
    store = example_server.store()
    assert store.load(store_key_of(token)) is not None
    assert store.load(token) is None


def test_stored_value_reads_back_with_the_articles_parameters(http):
    token = http.get(f"{http.base}/create_session").json()["session_id"]

    stored = http.post(
        f"{http.base}/store_data", params={"session_id": token, "key": "lang", "value": "한국어"}
    )
    read = http.get(f"{http.base}/get_data", params={"session_id": token, "key": "lang"})

    assert stored.json() == {"success": True}
    assert read.json() == {"value": "한국어"}


def test_the_article_endpoints_need_no_cookie(http, example_server):
    token = http.get(f"{http.base}/create_session").json()["session_id"]
    http.post(f"{http.base}/store_data", params={"session_id": token, "key": "k", "value": "v"})

    assert not http.cookies
    with _client(example_server) as stranger:
        read = stranger.get(f"{http.base}/get_data", params={"session_id": token, "key": "k"})
    assert read.json() == {"value": "v"}


def test_unknown_key_is_an_invalid_key(http):
    token = http.get(f"{http.base}/create_session").json()["session_id"]

    read = http.get(f"{http.base}/get_data", params={"session_id": token, "key": "missing"})

    assert read.json() == {"error": "Invalid key"}


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda token, secret: _tampered(token), id="tampered-signature"),
        pytest.param(lambda token, secret: "x" + token, id="tampered-id"),
        pytest.param(lambda token, secret: _sid(token), id="unsigned-store-key"),
        pytest.param(lambda token, secret: str(uuid.uuid4()), id="article-style-uuid"),
        pytest.param(
            lambda token, secret: SessionSigner(secret).sign(new_session_id()), id="signed-but-unknown"
        ),
        pytest.param(lambda token, secret: SessionSigner("another key").sign(_sid(token)), id="other-key"),
    ],
)
def test_session_ids_the_server_did_not_issue_are_invalid(http, example_server, make_token):
    token = http.get(f"{http.base}/create_session").json()["session_id"]
    http.post(f"{http.base}/store_data", params={"session_id": token, "key": "k", "value": "v"})
    bad = make_token(token, example_server.secret)

    stored = http.post(f"{http.base}/store_data", params={"session_id": bad, "key": "k", "value": "evil"})
    read = http.get(f"{http.base}/get_data", params={"session_id": bad, "key": "k"})

    assert stored.json() == {"error": "Invalid session ID"}
    assert read.json() == {"error": "Invalid session ID"}
    assert http.get(f"{http.base}/get_data", params={"session_id": token, "key": "k"}).json() == {
        "value": "v"
    }


# -- cookie endpoints ---------------------------------------------------------------------------


def test_cookie_session_keeps_data_between_requests(http):
    saved = http.post(f"{http.base}/api/data", data={"key": "colour", "value": "teal"})

    assert saved.json() == {"success": True}
    assert http.get(f"{http.base}/api/data", params={"key": "colour"}).json() == {"value": "teal"}
    assert http.get(f"{http.base}/api/data", params={"key": "size"}).json() == {"error": "Invalid key"}


def test_session_cookie_is_httponly_lax_and_not_secure_by_default(http):
    saved = http.post(f"{http.base}/api/data", data={"key": "k", "value": "v"})

    attributes = [part.strip() for part in saved.headers["Set-Cookie"].split(";")]
    assert attributes[0].startswith("session=")
    assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= set(attributes)
    assert "Secure" not in attributes


def test_each_browser_counts_its_own_visits(example_server):
    with _client(example_server) as first, _client(example_server) as second:
        counts = [first.post(f"{first.base}/api/visits").json()["visits"] for _ in range(3)]
        other = second.post(f"{second.base}/api/visits").json()["visits"]

    assert counts == [1, 2, 3]
    assert other == 1


def test_login_regenerates_the_session_and_the_old_cookie_opens_nothing(http, example_server):
    http.post(f"{http.base}/api/data", data={"key": "cart", "value": "3 apples"})
    before = http.cookies["session"]

    logged_in = http.post(f"{http.base}/login", data={"username": "alice"})
    after = http.cookies["session"]

    assert logged_in.json() == {"user": "alice"}
    assert after != before
    state = http.get(f"{http.base}/api/session").json()["session"]
    assert state["user"] == "alice"
    assert state["data"]["cart"] == "3 apples"
    assert example_server.store().load(store_key_of(before)) is None
    with _client(example_server) as replay:
        replay.cookies.set("session", before)
        assert replay.get(f"{replay.base}/api/session").json() == {"session": None}
        assert replay.get(f"{replay.base}/api/data", params={"key": "cart"}).json() == {
            "error": "Invalid key"
        }


def test_logout_expires_the_cookie_and_deletes_the_stored_session(http, example_server):
    http.post(f"{http.base}/login", data={"username": "bob"})
    cookie = http.cookies["session"]
    assert example_server.store().load(store_key_of(cookie)) is not None

    logged_out = http.post(f"{http.base}/logout")

    assert logged_out.json() == {"success": True}
    assert "Max-Age=0" in logged_out.headers["Set-Cookie"]
    assert "session" not in http.cookies
    assert example_server.store().load(store_key_of(cookie)) is None
    with _client(example_server) as replay:
        replay.cookies.set("session", cookie)
        assert replay.get(f"{replay.base}/api/session").json() == {"session": None}


def test_remember_me_gives_a_30_day_cookie(http):
    response = http.post(f"{http.base}/login", data={"username": "carol", "remember": "true"})
    assert f"Max-Age={30 * 24 * 3600}" in response.headers["Set-Cookie"]
    plain = requests.post(f"{http.base}/login", data={"username": "dan"}, timeout=10)
    assert f"Max-Age={14 * 24 * 3600}" in plain.headers["Set-Cookie"]


def test_two_browsers_of_one_user_see_each_other_and_log_out_everywhere(example_server):
    with _client(example_server) as laptop, _client(example_server) as phone:
        for browser in (laptop, phone):
            browser.post(f"{browser.base}/login", data={"username": "erin"})
        listed = laptop.get(f"{laptop.base}/api/sessions").json()["sessions"]
        assert len(listed) == 2
        assert sorted(entry["current"] for entry in listed) == [False, True]
        assert all(phone.cookies["session"].split(".")[0] not in entry["handle"] for entry in listed)

        ended = laptop.post(f"{laptop.base}/logout_everywhere").json()

        assert ended == {"ended": 2}
        assert phone.get(f"{phone.base}/api/session").json() == {"session": None}
        assert laptop.get(f"{laptop.base}/api/session").json() == {"session": None}


def test_a_user_can_end_another_of_their_sessions_but_not_someone_elses(example_server):
    with (
        _client(example_server) as laptop,
        _client(example_server) as phone,
        _client(example_server) as stranger,
    ):
        laptop.post(f"{laptop.base}/login", data={"username": "fay"})
        phone.post(f"{phone.base}/login", data={"username": "fay"})
        stranger.post(f"{stranger.base}/login", data={"username": "gus"})
        other = next(
            e for e in laptop.get(f"{laptop.base}/api/sessions").json()["sessions"] if not e["current"]
        )

        refused = stranger.post(f"{stranger.base}/sessions/revoke", data={"handle": other["handle"]})
        assert refused.status_code == 400
        assert phone.get(f"{phone.base}/api/session").json()["session"]["user"] == "fay"

        assert laptop.post(f"{laptop.base}/sessions/revoke", data={"handle": other["handle"]}).json() == {
            "revoked": True
        }
        assert phone.get(f"{phone.base}/api/session").json() == {"session": None}
        assert laptop.get(f"{laptop.base}/api/session").json()["session"]["user"] == "fay"


def test_the_page_lists_active_sessions_once_logged_in(http):
    assert "Log in to see your active sessions" in http.get(f"{http.base}/").text
    http.post(f"{http.base}/login", data={"username": "hal"})
    page = http.get(f"{http.base}/").text
    assert 'id="devices"' in page and "this browser" in page and "Log out everywhere" in page


FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
needs_ua_parser = pytest.mark.skipif(sys.version_info < (3, 10), reason="ua-parser 1.x needs Python 3.10")


@needs_ua_parser
def test_each_session_is_listed_with_the_browser_and_system_it_logged_in_from(example_server):
    with _client(example_server) as laptop, _client(example_server) as script:
        laptop.post(
            f"{laptop.base}/login", data={"username": "ivy"}, headers={"User-Agent": FIREFOX_ON_LINUX}
        )
        script.post(f"{script.base}/login", data={"username": "ivy"}, headers={"User-Agent": ""})

        listed = laptop.get(f"{laptop.base}/api/sessions").json()["sessions"]

        assert sorted((entry["label"] or "", entry["current"]) for entry in listed) == [
            ("", False),
            ("Firefox on Linux", True),
        ]


@needs_ua_parser
@pytest.mark.parametrize(
    "user_agent", ["Evil\x01\x7f\u202eBrowser/1.0 (Linux)", "Mozilla/5.0 " + "x" * 10_000, "\u00e9" * 300]
)
def test_any_user_agent_gives_a_label_bind_user_takes(app, user_agent):
    label = app.device_label(user_agent)

    Session(lambda source: (None, None, False)).bind_user("ivy", label)  # no ValueError
    assert label is None or (len(label) <= 100 and label.isprintable())


def test_a_tampered_cookie_is_an_anonymous_visitor(http, example_server):
    http.post(f"{http.base}/api/data", data={"key": "k", "value": "v"})
    with _client(example_server) as forger:
        forger.cookies.set("session", _tampered(http.cookies["session"]))

        assert forger.get(f"{forger.base}/api/session").json() == {"session": None}


# -- the page over HTTP ----------------------------------------------------------------------------


def test_a_page_view_without_a_session_stores_nothing_and_sets_no_cookie(http, example_server):
    live_before = len(example_server.store())

    page = http.get(f"{http.base}/")

    assert page.status_code == 200
    assert "No session yet" in page.text
    assert "Set-Cookie" not in page.headers
    assert len(example_server.store()) == live_before


def test_the_page_form_stores_a_value_and_comes_back_to_the_page(http):
    page = http.post(f"{http.base}/api/data", data={"key": "note", "value": "hello", "return_to": "/"})

    assert [step.status_code for step in page.history] == [303]
    assert page.url == f"{http.base}/?done=stored"
    assert '<p id="notice" role="status">Saved.</p>' in page.text
    assert "<td>note</td><td>hello</td>" in page.text
    assert '<dd id="visits">1</dd>' in page.text


@pytest.mark.parametrize("value", ["apples, pears", "a,b,c", ","])
def test_a_value_holding_commas_is_stored_as_written(http, value):
    token = http.get(f"{http.base}/create_session").json()["session_id"]

    in_query = http.post(f"{http.base}/store_data", params={"session_id": token, "key": "q", "value": value})
    in_form = http.post(f"{http.base}/api/data", data={"key": "f", "value": value})
    in_json = http.post(f"{http.base}/api/data", json={"key": "j", "value": value})

    assert [in_query.json(), in_form.json(), in_json.json()] == [{"success": True}] * 3
    assert http.get(f"{http.base}/get_data", params={"session_id": token, "key": "q"}).json() == {
        "value": value
    }
    for key in ("f", "j"):
        assert http.get(f"{http.base}/api/data", params={"key": key}).json() == {"value": value}


def test_a_repeated_parameter_is_a_400(http):
    token = http.get(f"{http.base}/create_session").json()["session_id"]

    repeated = http.post(
        f"{http.base}/store_data", params={"session_id": token, "key": ["a", "b"], "value": "v"}
    )

    assert repeated.status_code == 400
    assert repeated.json() == {"error": "key must be one text value, not a list"}


def test_session_times_are_iso_8601_in_utc(http):
    http.post(f"{http.base}/login", data={"username": "iris", "remember": "true"})
    now = datetime.now(timezone.utc)

    state = http.get(f"{http.base}/api/session").json()["session"]
    (listed,) = http.get(f"{http.base}/api/sessions").json()["sessions"]

    assert timedelta(days=29) < _utc(state["expires_at"]) - now <= timedelta(days=30)
    started, active, expires = (_utc(listed[name]) for name in ("created_at", "last_active", "expires_at"))
    assert abs(started - now) < timedelta(minutes=5)
    assert started <= active < expires == _utc(state["expires_at"])


def test_the_page_confirms_what_its_forms_did(example_server):
    with _client(example_server) as laptop, _client(example_server) as phone:
        for browser in (laptop, phone):
            browser.post(f"{browser.base}/login", data={"username": "ida"})
        sessions = laptop.get(f"{laptop.base}/api/sessions").json()["sessions"]
        other = next(entry["handle"] for entry in sessions if not entry["current"])

        def submit(path: str, **fields: str) -> requests.Response:
            return laptop.post(f"{laptop.base}{path}", data={**fields, "return_to": "/"})

        stored = submit("/api/data", key="k", value="v")
        ended = submit("/sessions/revoke", handle=other)
        again = submit("/sessions/revoke", handle=other)
        everywhere = submit("/logout_everywhere")
        laptop.post(f"{laptop.base}/api/data", data={"key": "k", "value": "v"})
        logged_out = submit("/logout")

    notices = [
        re.search(r'<p id="notice" role="status">([^<]*)</p>', page.text).group(1)
        for page in (stored, ended, again, everywhere, logged_out)
    ]
    assert notices == [
        "Saved.",
        "Ended: that session is logged out.",
        "That session had already ended.",
        "Logged out everywhere: every one of your sessions has ended.",
        "Logged out: this browser&#x27;s session has ended.",
    ]
    assert 'id="notice"' not in laptop.get(f"{laptop.base}/", params={"done": "<b>hi</b>"}).text


def test_the_sessions_list_marks_this_browser_and_offers_to_end_only_the_others(example_server):
    with _client(example_server) as laptop, _client(example_server) as phone:
        for browser in (laptop, phone):
            browser.post(f"{browser.base}/login", data={"username": "jo"})
        sessions = laptop.get(f"{laptop.base}/api/sessions").json()["sessions"]
        page = laptop.get(f"{laptop.base}/").text

    rows = re.findall(
        r"<tr( class=\"current\" aria-current=\"true\")?>(.*?)</tr>",
        page.split('id="devices"')[1].split("<tbody>")[1],
    )
    marked = [cells for current, cells in rows if current]
    others = [cells for current, cells in rows if not current]
    (phone_handle,) = (entry["handle"] for entry in sessions if not entry["current"])
    assert len(marked) == 1 and "this browser" in marked[0] and "End" not in marked[0]
    assert len(others) == 1 and f'name="handle" value="{phone_handle}"' in others[0]


# -- in-process checks ------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The example module, its sessions in a fresh SQLite file for this test."""
    monkeypatch.setenv("SESSION_SECRET", "in-process-secret")
    monkeypatch.setenv("SESSION_STORE", str(tmp_path / "first-import.sqlite3"))
    module = importlib.import_module("examples.app")
    monkeypatch.setattr(module.middleware, "store", SQLiteStore(str(tmp_path / "sessions.sqlite3")))
    return module


@pytest.fixture
def client(app):
    return falcon.testing.TestClient(app.__hug_wsgi__)


def _cookie(result) -> dict:
    return {"Cookie": result.headers["Set-Cookie"].split(";")[0]}


def test_page_escapes_stored_keys_and_values(client):
    saved = client.simulate_post(
        "/api/data", params={"key": "<i>k</i>", "value": '<script>alert("x")</script>'}
    )

    page = client.simulate_get("/", headers=_cookie(saved))

    assert "&lt;i&gt;k&lt;/i&gt;" in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.text
    assert "<script>" not in page.text


def test_page_shows_the_user_and_the_expiry(client, app):
    logged_in = client.simulate_post("/login", params={"username": "carol"})

    page = client.simulate_get("/", headers=_cookie(logged_in))

    assert '<dd id="user">carol</dd>' in page.text
    assert 'id="expires"' in page.text and "(in 13 days)" in page.text


def test_page_does_not_let_scripts_or_other_origins_in(client):
    page = client.simulate_get("/")

    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_only_the_page_itself_is_a_redirect_target(client):
    followed = client.simulate_post("/api/data", params={"key": "k", "value": "v", "return_to": "/"})
    elsewhere = client.simulate_post(
        "/api/data", params={"key": "k", "value": "v", "return_to": "https://example.com/"}
    )

    assert followed.status_code == 303 and followed.headers["Location"] == "/?done=stored"
    assert elsewhere.status_code == 400 and "Location" not in elsewhere.headers
    assert elsewhere.json == {"error": "return_to must be / (back to the page) or left out"}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"key": "k" * 65, "value": "v"}, "key must be at most 64 characters, not 65"),
        ({"key": "k", "value": "v" * 1001}, "value must be at most 1000 characters, not 1001"),
        ({"key": "   ", "value": "v"}, "key must not be blank"),
    ],
)
def test_oversized_or_blank_form_input_is_a_400_and_stores_nothing(client, app, params, error):
    result = client.simulate_post("/api/data", params=params)

    assert result.status_code == 400
    assert result.json == {"error": error}
    assert "Set-Cookie" not in result.headers
    assert len(app.middleware.store) == 0


def test_a_session_holds_a_bounded_number_of_keys(client, app):
    cookie = _cookie(client.simulate_post("/api/data", params={"key": "k0", "value": "v"}))
    for index in range(1, app.MAX_KEYS):
        client.simulate_post("/api/data", params={"key": f"k{index}", "value": "v"}, headers=cookie)

    one_more = client.simulate_post("/api/data", params={"key": "extra", "value": "v"}, headers=cookie)
    overwrite = client.simulate_post("/api/data", params={"key": "k0", "value": "w"}, headers=cookie)

    assert one_more.status_code == 400
    assert overwrite.json == {"success": True}


def test_login_rejects_a_blank_name(client):
    result = client.simulate_post("/login", params={"username": "  "})

    assert result.status_code == 400
    assert "Set-Cookie" not in result.headers


def test_a_non_number_under_visits_restarts_the_count(client):
    cookie = _cookie(client.simulate_post("/api/data", params={"key": "visits", "value": "many"}))

    assert client.simulate_post("/api/visits", headers=cookie).json == {"visits": 1}


@pytest.fixture
def token(client) -> str:
    """A session of the article's endpoints, empty."""
    return client.simulate_get("/create_session").json["session_id"]


@pytest.mark.parametrize(
    ("method", "path", "params", "error"),
    [
        ("POST", "/store_data", {"key": "k" * 65, "value": "v"}, "key must be at most 64 characters, not 65"),
        (
            "POST",
            "/store_data",
            {"key": "k", "value": "v" * 20_000_000},
            "value must be at most 1000 characters, not 20000000",
        ),
        (
            "POST",
            "/store_data",
            {"key": "a\x00b", "value": "v"},
            "key must not hold U+0000, a control character",
        ),
        ("POST", "/store_data", {"key": "k"}, "Required parameter 'value' not supplied"),
        ("GET", "/get_data", {"key": "k" * 65}, "key must be at most 64 characters, not 65"),
        (
            "GET",
            "/get_data",
            {"session_id": "x" * 201, "key": "k"},
            "session_id must be at most 200 characters, not 201",
        ),
        ("GET", "/api/data", {"key": "\t"}, "key must not be blank"),
        (
            "POST",
            "/api/data",
            {"key": "k", "value": "v", "return_to": "//evil.example"},
            "return_to must be / (back to the page) or left out",
        ),
        ("POST", "/login", {"username": "bob\x07"}, "username must not hold U+0007, a control character"),
        ("POST", "/login", {"username": "bob", "remember": "maybe"}, "remember must be true or false"),
        ("POST", "/sessions/revoke", {"handle": "h" * 501}, "handle must be at most 500 characters, not 501"),
        (
            "POST",
            "/logout",
            {"return_to": "https://example.com/"},
            "return_to must be / (back to the page) or left out",
        ),
    ],
)
def test_malformed_input_is_a_400_naming_the_parameter_and_changes_nothing(
    client, app, token, method, path, params, error
):
    sent = {"session_id": token, **params} if path in ("/store_data", "/get_data") else params
    stored = len(app.middleware.store)

    result = client.simulate_request(method, path, params=sent)

    assert result.status_code == 400
    assert result.json == {"error": error}
    assert "Set-Cookie" not in result.headers
    assert len(app.middleware.store) == stored
    assert client.simulate_get("/get_data", params={"session_id": token, "key": "k"}).json == {
        "error": "Invalid key"
    }


def test_json_bodies_must_carry_text_and_parse(client, token):
    typed = client.simulate_post("/store_data", json={"session_id": token, "key": 5, "value": {"x": 1}})
    broken = client.simulate_post("/login", body="{nope", headers={"Content-Type": "application/json"})
    not_utf8 = client.simulate_post("/login", body=b"username=caf\xe9", headers=FORM)
    multipart = client.simulate_post(
        "/login", body=b"garbage", headers={"Content-Type": "multipart/form-data; boundary=b"}
    )

    assert typed.status_code == 400
    assert typed.json == {
        "error": "key must be one text value, not a number; value must be one text value, not an object"
    }
    assert (broken.status_code, broken.json) == (400, {"error": "the request body is not JSON"})
    assert (not_utf8.status_code, not_utf8.json) == (400, {"error": "the request body is not utf-8 text"})
    assert multipart.status_code == 400 and "not as multipart" in multipart.json["error"]


def test_a_request_body_over_the_limit_is_refused_unread(client, app):
    result = client.simulate_post("/api/data", body="key=k&value=" + "v" * app.MAX_BODY, headers=FORM)

    assert result.status_code == 413
    assert result.json == {"error": f"a request body holds at most {app.MAX_BODY} bytes"}
    assert "Set-Cookie" not in result.headers


def test_the_articles_store_data_holds_a_bounded_number_of_keys(client, app, token):
    for index in range(app.MAX_KEYS):
        client.simulate_post("/store_data", params={"session_id": token, "key": f"k{index}", "value": "v"})

    one_more = client.simulate_post("/store_data", params={"session_id": token, "key": "extra", "value": "v"})

    assert one_more.status_code == 400
    assert one_more.json == {"error": f"a session holds at most {app.MAX_KEYS} keys"}
    assert client.simulate_get("/get_data", params={"session_id": token, "key": "extra"}).json == {
        "error": "Invalid key"
    }


def test_a_session_stays_within_its_size_and_still_logs_in_and_shows(client, app):
    wide = "\U0001f642" * app.MAX_VALUE  # 12,002 bytes as stored JSON (ASCII-escaped)
    cookie = _cookie(client.simulate_post("/api/data", params={"key": "k0", "value": wide}))

    writes = [
        client.simulate_post("/api/data", params={"key": f"k{index}", "value": wide}, headers=cookie)
        for index in range(1, 6)
    ]
    logged_in = client.simulate_post(
        "/login", params={"username": "\U0001f642" * app.MAX_KEY}, headers=cookie
    )
    page = client.simulate_get("/", headers=_cookie(logged_in))

    assert [write.status_code for write in writes] == [200, 200, 200, 200, 400]
    assert writes[-1].json == {
        "error": "the session would hold 72024 bytes of keys and values, over this app's limit of 64512"
    }
    assert logged_in.status_code == 200
    assert page.status_code == 200
    assert "<td>k4</td>" in page.text and "<td>k5</td>" not in page.text


# -- configuration from the environment -------------------------------------------------------------


def _cookie_header_from(middleware) -> str:
    """The Set-Cookie header ``middleware`` sends for a new session."""

    class Write:
        def on_get(self, req, resp):
            req.context["session"]["k"] = "v"

    api = falcon.API(middleware=[middleware])
    api.add_route("/", Write())
    return falcon.testing.TestClient(api).simulate_get("/").headers["Set-Cookie"]


def test_without_a_secret_the_app_warns_and_sessions_do_not_survive_a_restart(app, tmp_path, caplog):
    environ = {"SESSION_STORE": str(tmp_path / "s.sqlite3")}
    with caplog.at_level(logging.WARNING, logger="examples.app"):
        first = app.middleware_from_env(environ)
        restarted = app.middleware_from_env(environ)

    assert "SESSION_SECRET is not set" in caplog.text
    assert "will NOT survive a restart" in caplog.text
    assert "export SESSION_SECRET=$(.venv/bin/hug-sessions secret)" in caplog.text
    token = first.save(first.open(None))
    assert first.open(token).is_new is False
    assert restarted.open(token).is_new is True


def test_cookie_secure_setting(app, tmp_path):
    store = {"SESSION_SECRET": "s", "SESSION_STORE": str(tmp_path / "s.sqlite3")}

    default = _cookie_header_from(app.middleware_from_env(store))
    secure = _cookie_header_from(app.middleware_from_env({**store, "SESSION_COOKIE_SECURE": "1"}))

    assert "Secure" not in default and default.startswith("session=")
    # Secure, the cookie takes the __Host- prefix: no other host or plain-http page can set it.
    assert "; Secure" in secure and secure.startswith("__Host-session=") and "Path=/" in secure
    assert "Domain" not in secure
    with pytest.raises(ValueError, match="SESSION_COOKIE_SECURE must be 0 or 1"):
        app.middleware_from_env({**store, "SESSION_COOKIE_SECURE": "yes"})


def test_session_store_setting_takes_a_url_or_a_path(app, tmp_path):
    path = tmp_path / "sessions.sqlite3"

    from_path = app.store_from_setting(str(path))
    from_url = app.store_from_setting(f"sqlite:///{path}")

    assert isinstance(from_path, SQLiteStore) and from_path.path == str(path)
    assert isinstance(from_url, SQLiteStore) and from_url.path == str(path)
    assert isinstance(app.store_from_setting("memory://"), MemoryStore)
    with pytest.raises(ValueError, match="unsupported session store URL"):
        app.store_from_setting("mysql://localhost/db")


def test_a_user_with_a_long_non_ascii_name_can_end_another_of_their_sessions(example_server):
    name = "\U0001f642" * 63 + "é"  # 64 characters, the longest the app takes: 254 UTF-8 bytes
    with _client(example_server) as laptop, _client(example_server) as phone:
        for browser in (laptop, phone):
            assert browser.post(f"{browser.base}/login", data={"username": name}).json() == {"user": name}
        listed = laptop.get(f"{laptop.base}/api/sessions").json()["sessions"]
        other = next(entry["handle"] for entry in listed if not entry["current"])

        revoked = laptop.post(f"{laptop.base}/sessions/revoke", data={"handle": other})
        garbage = laptop.post(f"{laptop.base}/sessions/revoke", data={"handle": other + "é"})
        raw = base64.urlsafe_b64decode(other + "==")
        forged = base64.urlsafe_b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode().rstrip("=")  # another MAC
        assert laptop.post(f"{laptop.base}/sessions/revoke", data={"handle": forged}).status_code == 400

        assert len(other) == 64  # whatever the user ID's length
        assert revoked.json() == {"revoked": True}
        assert garbage.status_code == 400  # not a handle of theirs; it was a 500 (TypeError)
        assert phone.get(f"{phone.base}/api/session").json() == {"session": None}
        assert laptop.get(f"{laptop.base}/api/session").json()["session"]["user"] == name


def test_the_banners_secret_command_runs_from_the_checkout(app, unavailable):
    command = app.SECRET_COMMAND.split()
    if not (ROOT / command[0]).exists():
        unavailable(f"{command[0]} is not there: `make .venv/.installed` makes it")

    made = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert len(secret) >= 43 and re.fullmatch(r"[A-Za-z0-9_-]+", secret)
    signed = app.middleware_from_env({"SESSION_SECRET": secret, "SESSION_STORE": "memory://"})
    assert signed.open(signed.save(signed.open(None))).is_new is False
