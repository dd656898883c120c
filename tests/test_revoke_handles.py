"""Revoke handles: any string is an answer (never an error), any user ID works, key rotation keeps
them working. Through the test app on a real server, with MemoryStore and an SQLite file
(``test_redis_revoke_handles.py`` runs the same tests on Redis and Redis Cluster)."""

from __future__ import annotations

import base64

import pytest

from hug_cookie_sessions import SessionMiddleware
from hug_cookie_sessions.signing import SessionSigner, new_session_id

from .support import make_site

#: 64 characters of four UTF-8 bytes each, a space, a dot and a base64-looking tail: far past
#: the ~175 bytes that made handles unusable before.
LONG_USER = "\U0001f642" * 64 + " Zoë.Ym9i"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def login(site, user: str):
    visitor = site.visitor()
    assert visitor.post("/login", user=user).status_code == 200
    return visitor


def other_handle(visitor) -> str:
    return next(e["handle"] for e in visitor.get("/my_sessions").json()["sessions"] if not e["current"])


@pytest.fixture
def site(serve, store, clock):
    return make_site(serve, store, clock, idle_timeout=3600)


@pytest.mark.parametrize(
    "user",
    [LONG_USER, "x" * 5000, "ünïcödé", "a.b", "日本語のユーザー"],
    ids=["emoji-264-bytes", "ascii-5000", "accents", "dot", "cjk"],
)
def test_long_and_non_ascii_user_ids_get_handles_that_revoke(site, user):
    laptop, phone = login(site, user), login(site, user)
    handle = other_handle(laptop)
    assert site.middleware.signer.handle_user(handle) == user
    assert laptop.post("/revoke", handle=handle).json() == {"revoked": True}
    assert phone.value("user") is None
    assert laptop.value("user") == user


def hostile_handles(real: str) -> list:
    """Strings that are not a live session's handle, several of them nearly ``real``."""
    user, _, mac = real.partition(".")
    surrogate, not_utf8 = b64(b"\xed\xa0\x80"), b64(b"\xff\xfe")
    return [
        "",
        ".",
        "..",
        "None",
        "null",
        "undefined",
        "not-a-handle",
        "é",
        "\x00",
        "\ud800",
        "\U0001f642.\U0001f642",
        real + "é",
        "é" + real,
        real + "x",
        real[:-1],
        real + "=",
        f"{user}==.{mac}",
        f"{user}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}",  # another MAC
        f"{user}.{mac[:-1]}{chr(ord(mac[-1]) + 1)}",  # a non-canonical spelling, perhaps of the same MAC
        f"{user}.{mac}.{mac}",
        f"{user} .{mac}",
        f"{user}.{mac}\n",
        f"{b64(b'bob')}.{mac}",  # another user's name on this MAC
        f"{surrogate}.{mac}",  # a lone surrogate as the user
        f"{not_utf8}.{mac}",  # not UTF-8
        f"{b64(b'ada')}.{'A' * 22}",
        "a" * 1_000_000,
        f"{'QQ' * 500_000}.{mac}",
    ]


def test_any_string_revokes_nothing_and_raises_nothing(site):
    ada, laptop = login(site, "ada"), login(site, "ada")
    login(site, "bob")
    real = other_handle(laptop)
    for handle in hostile_handles(real):
        assert site.middleware.revoke(handle) is False, repr(handle[:40])
        assert isinstance(site.middleware.signer.handle_user(handle), (str, type(None)))
    for not_a_string in (None, b"", 42, object()):
        assert site.middleware.revoke(not_a_string) is False
        assert site.middleware.signer.handle_user(not_a_string) is None
    assert len(site.middleware.user_sessions("ada")) == 2
    assert len(site.middleware.user_sessions("bob")) == 1
    assert ada.value("user") == "ada"


def test_any_string_posted_to_the_revoke_endpoint_is_an_answer_not_an_error(site):
    laptop, phone = login(site, "ada"), login(site, "ada")
    real = other_handle(laptop)
    # The URL-sized ones, but "" (Falcon drops a blank query parameter); the others went direct above.
    for handle in hostile_handles(real)[1:-2]:
        response = laptop.post("/revoke", handle=handle.encode("utf-8", "surrogatepass"))  # bytes: as sent
        assert response.status_code == 200, repr(handle[:40])
        assert response.json() == {"revoked": False}
    assert phone.value("user") == "ada"
    assert laptop.post("/revoke", handle=real).json() == {"revoked": True}


def test_handles_shown_before_a_key_rotation_keep_working_while_the_old_key_is_listed(serve, store, clock):
    before = make_site(serve, store, clock, idle_timeout=3600, secret_key="old-key-0123456789")
    laptop = login(before, "ada")
    phone, tablet = login(before, "ada"), login(before, "ada")
    old_handles = [e["handle"] for e in laptop.get("/my_sessions").json()["sessions"] if not e["current"]]
    assert len(old_handles) == 2

    rotated = SessionMiddleware(["old-key-0123456789", "new-key-0123456789"], store, clock=clock)
    assert {info.handle for info in rotated.user_sessions("ada")}.isdisjoint(old_handles)  # new key signs
    assert rotated.revoke(old_handles[0]) is True
    assert len(rotated.user_sessions("ada")) == 2

    retired = SessionMiddleware("new-key-0123456789", store, clock=clock)
    assert retired.revoke(old_handles[1]) is False  # its key is gone: it names nothing any more
    assert len(retired.user_sessions("ada")) == 2
    assert [phone.value("user"), tablet.value("user")].count(None) == 1


def test_every_handle_issued_names_its_user_and_only_grows_with_it():
    signer = SessionSigner(["old-key-0123456789", "new-key-0123456789"])
    for user in ["a", "ada", LONG_USER, "x" * 100_000, "\ud800", "a.b", "=", "\x00"]:
        handle = signer.handle(user, new_session_id())
        assert signer.handle_user(handle) == user
        assert len(handle) == len(b64(user.encode("utf-8", "surrogatepass"))) + 23
        assert handle.isascii() and ";" not in handle and " " not in handle
