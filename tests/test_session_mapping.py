"""The session behaves like a dict when it is iterated while being read."""

from hug_cookie_sessions import Record, Session


def _stored_session(data: dict) -> Session:
    return Session(lambda: ("sid", Record(data, 0.0, 1e12), False))


def test_items_lists_each_stored_key_once():
    session = _stored_session({"a": "1", "b": '"two"'})

    assert sorted(session.items()) == [("a", 1), ("b", "two")]
    assert sorted(session.values(), key=str) == [1, "two"]


def test_items_include_new_and_skip_removed_keys():
    session = _stored_session({"a": "1", "b": "2"})
    session["c"] = 3
    del session["a"]

    assert sorted(session.items()) == [("b", 2), ("c", 3)]
