"""The session behaves like a dict, and knows what saving it would write."""

import falcon
import falcon.testing
import pytest

from hug_cookie_sessions import MemoryStore, Record, Session, SessionMiddleware
from hug_cookie_sessions.session import SessionValueError
from hug_cookie_sessions.store_keys import store_key

from .support import SECRET


def _stored_session(data: dict) -> Session:
    return Session(lambda _: ("sid", Record(data, 0.0, 1e12), False))


def test_items_lists_each_stored_key_once():
    session = _stored_session({"a": "1", "b": '"two"'})

    assert sorted(session.items()) == [("a", 1), ("b", "two")]
    assert sorted(session.values(), key=str) == [1, "two"]


def test_items_include_new_and_skip_removed_keys():
    session = _stored_session({"a": "1", "b": "2"})
    session["c"] = 3
    del session["a"]

    assert sorted(session.items()) == [("b", 2), ("c", 3)]


def test_modified_says_whether_saving_would_write():
    session = _stored_session({"n": "1", "cart": "[]"})
    assert session.modified is False
    assert session["n"] == 1 and session["cart"] == []
    assert session.modified is False  # reads alone change nothing
    session["cart"].append("apple")
    assert session.modified is True  # an in-place change counts
    fresh = _stored_session({"n": "1"})
    fresh["n"] = 1
    assert fresh.modified is False  # the same value again writes nothing
    fresh["tags"] = {"a"}
    assert fresh.modified is True  # not JSON: saving would fail loudly, so it is pending
    ended = _stored_session({"n": "1"})
    ended.invalidate()
    assert ended.modified is True


def test_lifecycle_calls_are_pending_writes_and_a_deleted_new_key_is_not():
    for call in (Session.regenerate, lambda s: s.bind_user("ada"), lambda s: s.set_expiry(60)):
        session = _stored_session({"n": "1"})
        call(session)
        assert session.modified is True
    new = Session(lambda _: (None, None, False))
    new.regenerate()  # nothing stored yet: nothing to move to a new ID
    assert new.modified is False
    new["draft"] = 1
    del new["draft"]
    assert new.modified is False


def test_an_int_too_long_for_json_is_a_value_error_naming_its_key():
    session = _stored_session({})
    session["huge"] = 10**5000  # longer than Python's int-to-text limit

    with pytest.raises(SessionValueError, match=r"session\['huge'\]"):
        session.changes()
    assert session.modified is True


def test_stored_numbers_read_back_as_json_would_read_them():
    session = _stored_session({"n": "42", "zero": "0", "neg": "-7", "big": str(2**70), "f": "1.5"})

    assert [session[key] for key in ("n", "zero", "neg", "big", "f")] == [42, 0, -7, 2**70, 1.5]


class _PublicHeadersOnly:
    """A response that offers only Falcon's public header methods."""

    def __init__(self, vary=None):
        self.headers = {} if vary is None else {"vary": vary}
        self.status = "200 OK"

    def get_header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def set_header(self, name, value):
        self.headers[name.lower()] = value


@pytest.mark.parametrize("make_response", [falcon.Response, _PublicHeadersOnly], ids=["falcon", "public-api"])
@pytest.mark.parametrize(
    ("vary", "expected"),
    [(None, "Cookie"), ("Accept-Encoding", "Accept-Encoding, Cookie"), ("accept, cookie", "accept, cookie")],
)
def test_a_response_that_used_the_session_varies_on_cookie_once(make_response, vary, expected):
    middleware = SessionMiddleware(SECRET, MemoryStore())
    req = falcon.Request(falcon.testing.create_environ())
    resp = make_response()
    if vary is not None:
        resp.set_header("Vary", vary)
    middleware.process_request(req, resp)
    req.context["session"].get("n")

    middleware.process_response(req, resp, None, True)

    assert resp.get_header("Vary") == expected


def test_after_the_end_of_request_save_the_session_reads_as_saved():
    store = MemoryStore()
    middleware = SessionMiddleware(SECRET, store)
    seed = middleware.open(None)
    seed.update(n=1, name="ada")
    token = middleware.save(seed)
    req = falcon.Request(falcon.testing.create_environ(headers={"Cookie": f"session={token}"}))
    resp = falcon.Response()
    middleware.process_request(req, resp)
    session = req.context["session"]
    session["n"] += 1  # a plain write: saved with one apply, the new state made only if asked for

    middleware.process_response(req, resp, None, True)

    assert store.load(store_key(seed.id)).data == {"n": "2", "name": '"ada"'}
    assert resp.get_header("Vary") == "Cookie"
    assert session.loaded  # later middleware sees a used session, and its saved state:
    assert session.full_data({}) == {"n": "2", "name": '"ada"'}
    assert not session.modified
    assert session.id == seed.id and session.record.data == {"n": "2", "name": '"ada"'}
    assert dict(session) == {"n": 2, "name": "ada"}
    session["n"] = 3
    assert session.changes().changed == {"n": "3"}  # what is still unsaved, against the saved state
