"""The cookie's name, Path and Domain: refused at start-up unless they are safe to write raw into
``Set-Cookie``, and written exactly as given when they are."""

from __future__ import annotations

import pytest

from hug_cookie_sessions import MemoryStore, SessionMiddleware
from hug_cookie_sessions.cookies import TOKEN_CHARACTERS

from .support import SECRET, make_site

#: Each refused value, with what it would do if it were written raw into ``Set-Cookie``.
BAD_NAMES = [
    "bad\r\nname",  # splits the header: a response-splitting vector
    "a;b",  # ends the cookie early
    "a=b",  # the browser reads name "a"
    "two words",
    "tab\tname",
    "nul\x00",
    "del\x7f",
    "sessión",  # non-ASCII
    "",
    '"quoted"',
    *"()<>@,:\\/[]?{}",  # every other RFC 2616 separator
]
BAD_PATHS = ["/x; Domain=evil.example", "/a b", "/a\tb", "/a\r\nSet-Cookie: x=1", "/\x00", "/\x7f", "/ü", ""]
BAD_DOMAINS = ["evil.example; Path=/", "a b.example", "a\nb.example", "\x01.example", "exämple.com", "x\x7f"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_cookie_name_that_is_not_an_rfc_6265_token_is_refused_naming_the_option(name):
    with pytest.raises(ValueError, match="cookie_name"):
        SessionMiddleware(SECRET, cookie_name=name)


@pytest.mark.parametrize("path", BAD_PATHS)
def test_a_cookie_path_with_separators_controls_whitespace_or_non_ascii_is_refused(path):
    with pytest.raises(ValueError, match="cookie_path"):
        SessionMiddleware(SECRET, cookie_path=path)


def test_a_cookie_path_not_starting_with_a_slash_is_refused():
    with pytest.raises(ValueError, match="cookie_path"):
        SessionMiddleware(SECRET, cookie_path="app")


@pytest.mark.parametrize("domain", BAD_DOMAINS)
def test_a_cookie_domain_with_separators_controls_whitespace_or_non_ascii_is_refused(domain):
    with pytest.raises(ValueError, match="cookie_domain"):
        SessionMiddleware(SECRET, cookie_domain=domain)


@pytest.mark.parametrize("option", ["cookie_name", "cookie_path", "cookie_domain"])
def test_a_cookie_option_that_is_not_a_string_is_refused_naming_it(option):
    with pytest.raises(ValueError, match=option):
        SessionMiddleware(SECRET, **{option: b"/session"})


def test_the_message_shows_the_refused_value_escaped():
    with pytest.raises(ValueError) as refused:
        SessionMiddleware(SECRET, cookie_name="bad\r\nname")
    assert "\r" not in str(refused.value) and "'bad\\r\\nname'" in str(refused.value)


def test_every_token_character_is_accepted_in_a_name():
    assert len(TOKEN_CHARACTERS) == 77  # 94 visible ASCII characters less 17 separators
    SessionMiddleware(SECRET, cookie_name="".join(sorted(TOKEN_CHARACTERS)))


def first_set_cookie(site) -> str:
    response = site.visitor().post("/set", key="n", value="1")
    assert response.status_code == 200
    (header,) = response.raw.headers.getlist("Set-Cookie")
    return header


def test_a_host_prefixed_name_reaches_the_browser_exactly(serve, clock):
    site = make_site(
        serve, MemoryStore(), clock, idle_timeout=3600, cookie_name="__Host-sid", cookie_secure=True
    )
    header = first_set_cookie(site)
    assert header.startswith("__Host-sid=")
    assert header.endswith("; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=Lax")


def test_a_token_name_a_path_and_a_parent_domain_reach_the_browser_exactly(serve, clock):
    name = "sid_v2!#$%&'*+-.^`|~"
    options = {"cookie_name": name, "cookie_path": "/app", "cookie_domain": ".example.com"}
    site = make_site(serve, MemoryStore(), clock, idle_timeout=3600, **options)
    header = first_set_cookie(site)
    assert header.startswith(f"{name}=")
    assert header.endswith("; Max-Age=3600; Domain=.example.com; Path=/app; HttpOnly; SameSite=Lax")
