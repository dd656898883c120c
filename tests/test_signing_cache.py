"""The middleware remembers the session IDs of each Cookie header whose session cookies all
verified; that may not weaken verification."""

import asyncio
import logging

import pytest

from hug_cookie_sessions import MemoryStore, SessionMiddleware
from hug_cookie_sessions.middleware import MAX_REMEMBERED_HEADER, REMEMBERED_HEADERS
from hug_cookie_sessions.signing import SessionSigner, new_session_id
from hug_cookie_sessions.testing import record


def _flip(token: str, index: int) -> str:
    char = "A" if token[index] != "A" else "B"
    return token[:index] + char + token[index + 1 :]


def test_a_remembered_cookie_still_opens_and_any_altered_copy_is_rejected_every_time():
    signer = SessionSigner("secret-one")
    sid = new_session_id()
    token = signer.sign(sid)
    assert signer.unsign(token) == (sid, True)
    assert signer.unsign(token) == (sid, True)
    for index in (0, len(sid) - 1, len(sid) + 1, len(token) - 2):
        altered = _flip(token, index)
        assert signer.unsign(altered) is None
        assert signer.unsign(altered) is None


def test_a_cookie_remembered_by_one_signer_opens_nothing_under_other_keys():
    first, other = SessionSigner("secret-one"), SessionSigner("secret-two")
    token = first.sign(new_session_id())
    assert first.unsign(token) is not None
    assert other.unsign(token) is None


def test_a_cookie_signed_with_a_retired_key_is_still_reported_as_such_when_remembered():
    old, rotated = SessionSigner("old"), SessionSigner(["old", "new"])
    sid = new_session_id()
    token = old.sign(sid)
    assert rotated.unsign(token) == (sid, False)
    assert rotated.unsign(token) == (sid, False)


def test_the_memory_of_verified_cookies_is_bounded():
    middleware = SessionMiddleware("secret-one", MemoryStore())
    signer = middleware.signer
    tokens = [signer.sign(new_session_id()) for _ in range(REMEMBERED_HEADERS + 100)]
    for token in tokens:
        assert middleware.verified_cookies(f"session={token}")
    assert len(middleware.verified_cookies) == REMEMBERED_HEADERS
    assert middleware.verified_cookies(f"session={tokens[0]}")


def _middleware_with_session() -> tuple[SessionMiddleware, MemoryStore, str, str]:
    store = MemoryStore()
    middleware = SessionMiddleware("secret-one", store)
    sid = new_session_id()
    store.create(sid, record({"n": "1"}))
    return middleware, store, sid, f"theme=dark; session={middleware.signer.sign(sid)}; lang=en"


def test_a_remembered_cookie_header_still_opens_only_a_live_session():
    middleware, store, sid, header = _middleware_with_session()
    assert middleware._load_cookie(header)[0] == sid
    assert middleware._load_cookie(header)[0] == sid
    store.delete(sid)
    assert middleware._load_cookie(header) == (None, None, False)


def test_a_remembered_cookie_header_with_an_altered_token_is_rejected_every_time():
    middleware, _, sid, header = _middleware_with_session()
    assert middleware._load_cookie(header)[0] == sid  # the genuine header is remembered
    altered = header.replace(sid[:8], _flip(sid, 3)[:8])
    assert altered != header
    for _ in range(3):
        assert middleware._load_cookie(altered) == (None, None, False)


@pytest.mark.parametrize("forged_first", [True, False], ids=["forged-first", "forged-last"])
def test_a_header_with_a_cookie_that_fails_is_checked_and_logged_every_time(caplog, forged_first):
    middleware, _, sid, header = _middleware_with_session()
    forged_cookie = f"session={_flip(middleware.signer.sign(sid), 3)}"
    forged = f"{forged_cookie}; {header}" if forged_first else f"{header}; {forged_cookie}"
    for _ in range(2):
        with caplog.at_level(logging.WARNING, logger="hug_cookie_sessions"):
            caplog.clear()
            assert middleware._load_cookie(forged)[0] == sid  # the genuine cookie opens
        assert "bad signature" in caplog.text
    assert not middleware.verified_cookies.remembers(forged)


class _AsgiRequest:
    """What the ASGI hooks read of a request routed to a ``GET`` responder."""

    method = "GET"

    def __init__(self, cookie_header: str) -> None:
        self.context: dict = {}
        self._cookie_header = cookie_header

    def get_header(self, name: str):
        return self._cookie_header if name.lower() == "cookie" else None


class _Resource:
    async def on_get(self, req, resp) -> None:
        pass


def test_the_asgi_hooks_use_the_remembered_header_too():
    middleware, _, sid, header = _middleware_with_session()
    verified = []
    unsign = middleware.signer.unsign
    middleware.signer.unsign = lambda token: verified.append(token) or unsign(token)  # counts HMAC checks
    loop = asyncio.new_event_loop()  # not asyncio.run: Falcon 3's TestClient needs the thread's loop later
    try:
        for _ in range(3):
            req = _AsgiRequest(header)
            loop.run_until_complete(middleware.process_request_async(req, None))
            loop.run_until_complete(middleware.process_resource_async(req, None, _Resource(), {}))
            assert req.context["session"].id == sid
    finally:
        loop.close()
    assert len(verified) == 1


def test_a_remembered_header_signed_with_a_retired_key_asks_for_a_new_cookie_every_time():
    store = MemoryStore()
    sid = new_session_id()
    store.create(sid, record({"n": "1"}))
    header = f"session={SessionSigner('old').sign(sid)}"
    rotated = SessionMiddleware(["old", "new"], store)
    for _ in range(2):
        assert rotated._load_cookie(header) == (sid, store.load(sid), True)


def test_visitors_whose_cookie_headers_differ_only_at_the_end_each_open_their_own_session():
    middleware, store, sid, header = _middleware_with_session()
    others = [new_session_id() for _ in range(3)]
    for other in others:
        store.create(other, record({"n": "2"}))
    headers = {sid: header}
    for other in others:
        token = middleware.signer.sign(other)
        headers[other] = f"theme=dark; session={token}; lang=en"
    for _ in range(2):
        for owner, cookie_header in headers.items():
            assert middleware._load_cookie(cookie_header)[0] == owner


def test_the_memory_of_cookie_headers_is_bounded_in_count_and_length():
    middleware, _, sid, header = _middleware_with_session()
    for index in range(REMEMBERED_HEADERS + 50):
        middleware._load_cookie(f"n={index}; {header}")
    assert len(middleware.verified_cookies) == REMEMBERED_HEADERS
    long_header = f"pad={'x' * MAX_REMEMBERED_HEADER}; {header}"
    assert middleware._load_cookie(long_header)[0] == sid
    assert not middleware.verified_cookies.remembers(long_header)
