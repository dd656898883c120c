"""The cookie as a browser receives it, the signature on it, and the settings refused at start-up."""

from __future__ import annotations

import base64
import hashlib
import logging
from http.cookies import SimpleCookie

import pytest
from falcon import testing
from itsdangerous import Signer

from hug_cookie_sessions import MemoryStore, SessionMiddleware
from hug_cookie_sessions.signing import SALT, new_session_id

from .apps import build_app
from .support import SECRET, make_site


def client_for(framework: str, **options) -> tuple[testing.TestClient, SessionMiddleware]:
    """Falcon's simulated-request client for the test app of ``framework`` (no server)."""
    middleware = SessionMiddleware(options.pop("secret_key", SECRET), options.pop("store", None), **options)
    return testing.TestClient(build_app(middleware, framework=framework)), middleware


def cookie_header(result) -> str:
    return result.headers["set-cookie"]


def first_write(client: testing.TestClient, cookie: str | None = None):
    headers = {"Cookie": cookie} if cookie else {}
    return client.simulate_post("/set", params={"key": "n", "value": "1"}, headers=headers)


def value_of(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]


# -- the cookie ------------------------------------------------------------------------------


def test_the_default_cookie_is_httponly_secure_lax_on_the_whole_site_with_an_expiry(framework):
    client, _ = client_for(framework)
    header = cookie_header(first_write(client))
    attributes = [part.strip() for part in header.split(";")[1:]]
    names = {part.split("=", 1)[0] for part in attributes}
    assert {"HttpOnly", "Secure", "SameSite", "Path", "Max-Age", "Expires"} == names
    assert "SameSite=Lax" in attributes and "Path=/" in attributes
    assert "Max-Age=1209600" in attributes
    assert header.startswith("session=")


def test_the_cookie_carries_a_256_bit_id_signed_with_hmac_sha256_by_itsdangerous(framework):
    client, _ = client_for(framework)
    token = value_of(cookie_header(first_write(client)))
    signer = Signer(SECRET, salt=SALT, key_derivation="hmac", digest_method=hashlib.sha256)
    sid = signer.unsign(token).decode()
    assert len(base64.urlsafe_b64decode(sid + "=")) == 32
    assert len(base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "=")) == 32  # SHA-256 MAC


def test_changing_any_single_character_of_the_cookie_breaks_it():
    middleware = SessionMiddleware(SECRET)
    token = middleware.signer.sign(new_session_id())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for position, original in enumerate(token):
        for replacement in alphabet:
            if replacement != original:
                changed = token[:position] + replacement + token[position + 1 :]
                assert middleware.signer.unsign(changed) is None, changed


def test_a_signed_value_that_is_not_a_session_id_opens_nothing():
    middleware = SessionMiddleware(SECRET)
    for not_an_id in ("user:alice", "lock:" + new_session_id(), "x" * 42, new_session_id() + "="):
        assert middleware.signer.unsign(middleware.signer.sign(not_an_id)) is None
    sid = new_session_id()
    assert middleware.signer.unsign(middleware.signer.sign(sid)) == (sid, True)


def test_a_thousand_new_ids_are_all_distinct():
    assert len({new_session_id() for _ in range(1000)}) == 1000


def test_new_visitors_get_distinct_sessions(framework):
    client, _ = client_for(framework)
    tokens = {value_of(cookie_header(first_write(client))) for _ in range(50)}
    assert len(tokens) == 50


def test_the_set_cookie_header_stays_small_whatever_the_session_holds(framework):
    client, _ = client_for(framework)
    big = '"' + "x" * 60_000 + '"'  # under the default max_session_bytes (64 KiB)
    result = client.simulate_post("/set", params={"key": "blob", "value": big})
    assert result.status_code == 200
    assert len(cookie_header(result)) < 300


def test_domain_and_path_options_reach_the_cookie(framework):
    options = {"cookie_domain": "example.test", "cookie_path": "/app", "cookie_same_site": "Strict"}
    client, _ = client_for(framework, **options)
    header = cookie_header(first_write(client))
    assert "Domain=example.test" in header and "Path=/app" in header and "SameSite=Strict" in header


def test_logout_expires_the_cookie_with_the_same_name_path_domain_and_flags(framework):
    client, _ = client_for(framework, cookie_name="__Host-sid", cookie_same_site="Strict")
    token = value_of(cookie_header(first_write(client)))
    result = client.simulate_post("/logout", headers={"Cookie": f"__Host-sid={token}"})
    deletion = cookie_header(result)
    parsed = SimpleCookie()
    parsed.load(deletion)
    morsel = parsed["__Host-sid"]
    assert morsel.value == ""
    assert morsel["max-age"] == "0"
    assert morsel["path"] == "/" and morsel["secure"] and morsel["httponly"]
    assert morsel["samesite"] == "Strict"
    assert "Domain" not in deletion


def test_set_cookie_headers_are_byte_for_byte_the_same_on_every_framework(serve, clock):
    site = make_site(serve, MemoryStore(), clock, idle_timeout=3600, cookie_domain="127.0.0.1")
    clock.now = 4_102_444_800.0  # 2100-01-01 00:00:00 GMT (stores also expire by real time)
    visitor = site.visitor()
    written = raw_set_cookies(visitor.post("/set", key="n", value="1"))
    token = value_of(written[0])
    attributes = "Domain=127.0.0.1; Path=/; HttpOnly; SameSite=Lax"
    assert written == [f"session={token}; Expires=Fri, 01 Jan 2100 01:00:00 GMT; Max-Age=3600; {attributes}"]
    visitor.set_cookie(token)  # the jar keeps no Domain cookie for an IP address
    ended = raw_set_cookies(visitor.post("/logout"))
    assert ended == [f"session=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; {attributes}"]


def test_the_session_cookie_and_an_app_cookie_travel_as_separate_header_lines(serve, clock):
    site = make_site(serve, MemoryStore(), clock)
    visitor = site.visitor()
    lines = raw_set_cookies(visitor.get("/own_cookie"))
    assert len(lines) == 2
    assert "theme=dark; Path=/" in lines
    assert any(line.startswith("session=") for line in lines)
    assert visitor.http.cookies.get("theme") == "dark" and visitor.cookie


def raw_set_cookies(response) -> list[str]:
    """Each ``Set-Cookie`` line exactly as the server sent it."""
    return response.raw.headers.getlist("Set-Cookie")


# -- keys ----------------------------------------------------------------------------------


def test_a_cookie_signed_with_an_older_key_opens_the_session_and_is_reissued_with_the_newest(framework):
    store = MemoryStore()
    old_client, _ = client_for(framework, secret_key="old-key", store=store)
    token = value_of(cookie_header(first_write(old_client)))
    client, _ = client_for(framework, secret_key=["old-key", "new-key"], store=store)
    result = client.simulate_get("/get", params={"key": "n"}, headers={"Cookie": f"session={token}"})
    assert result.json["value"] == 1
    reissued = value_of(cookie_header(result))
    assert reissued != token
    assert reissued.split(".")[0] == token.split(".")[0]
    new_only, _ = client_for(framework, secret_key="new-key", store=store)
    result = new_only.simulate_get("/get", params={"key": "n"}, headers={"Cookie": f"session={reissued}"})
    assert result.json["value"] == 1


def test_once_the_old_key_is_dropped_its_cookies_open_nothing(framework):
    store = MemoryStore()
    old_client, _ = client_for(framework, secret_key="old-key", store=store)
    token = value_of(cookie_header(first_write(old_client)))
    new_only, _ = client_for(framework, secret_key="new-key", store=store)
    result = new_only.simulate_get("/get", params={"key": "n"}, headers={"Cookie": f"session={token}"})
    assert result.json["value"] is None


def test_a_token_signed_for_another_purpose_is_rejected(framework):
    client, middleware = client_for(framework)
    first_write(client)
    sid = next(iter(middleware.store._records))
    other_purpose = Signer(SECRET, salt="password-reset", key_derivation="hmac", digest_method=hashlib.sha256)
    token = other_purpose.sign(sid).decode()
    result = client.simulate_get("/get", params={"key": "n"}, headers={"Cookie": f"session={token}"})
    assert result.json["value"] is None


# -- configuration refused at start-up --------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", b"", [], [""], 42])
def test_a_missing_or_empty_secret_is_refused(secret):
    with pytest.raises(ValueError, match="secret_key"):
        SessionMiddleware(secret)


@pytest.mark.parametrize(
    "options",
    [
        {"cookie_same_site": "None", "cookie_secure": False},
        {"cookie_name": "__Host-sid", "cookie_domain": "example.test"},
        {"cookie_name": "__Host-sid", "cookie_secure": False},
        {"cookie_name": "__Host-sid", "cookie_path": "/app"},
        {"cookie_name": "__Secure-sid", "cookie_secure": False},
        {"cookie_same_site": "sometimes"},
        {"cookie_name": "bad;name"},
        {"idle_timeout": 0},
        {"absolute_timeout": -5},
    ],
)
def test_unsafe_or_impossible_settings_are_refused_at_start_up(options):
    with pytest.raises(ValueError):
        SessionMiddleware(SECRET, **options)


def test_a_store_that_speaks_no_known_protocol_is_refused():
    with pytest.raises(TypeError, match="store must implement"):
        SessionMiddleware(SECRET, store=object())


def test_without_a_store_sessions_live_in_memory():
    assert isinstance(SessionMiddleware(SECRET).store, MemoryStore)


def test_the_session_is_available_as_item_and_attribute_of_the_request_context(framework):
    client, _ = client_for(framework)
    result = client.simulate_get("/context")
    assert result.status_code == 200 and result.json == {"same": True}
    assert "session=" in cookie_header(result)


def test_warning_for_a_bad_cookie_names_no_secret(framework, caplog):
    client, _ = client_for(framework)
    with caplog.at_level(logging.WARNING, logger="hug_cookie_sessions"):
        client.simulate_get("/get", params={"key": "n"}, headers={"Cookie": "session=abc.def"})
    assert caplog.records and SECRET not in caplog.text
