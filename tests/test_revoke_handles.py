"""Revoke handles: any string is an answer (never an error), any user ID works and gives a handle
of one length, key rotation keeps them working, handles of the earlier form still work. Through the
test app on a real server, with MemoryStore and an SQLite file (``test_redis_revoke_handles.py`` runs
the same tests on Redis and Redis Cluster)."""

from __future__ import annotations

import base64

import pytest

from hug_cookie_sessions import MemoryStore, SessionMiddleware
from hug_cookie_sessions.signing import HANDLE_LENGTH, SessionSigner, new_session_id
from hug_cookie_sessions.store_keys import store_key

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
    assert len(handle) == HANDLE_LENGTH
    assert site.middleware.signer.handle_belongs_to(handle, user)
    assert not site.middleware.signer.handle_belongs_to(handle, user + "x")
    assert laptop.post("/revoke", handle=handle).json() == {"revoked": True}
    assert phone.value("user") is None
    assert laptop.value("user") == user


def hostile_handles(real: str, bobs: str) -> list:
    """Strings that are not a live session's handle, several of them nearly ``real`` (one of
    ada's); ``bobs`` is a handle of bob's."""
    raw = base64.urlsafe_b64decode(real + "==")
    key, mac = raw[:32], raw[32:]
    flipped_key, flipped_mac = bytes([key[0] ^ 1]) + key[1:], mac[:-1] + bytes([mac[-1] ^ 1])
    bob_key = base64.urlsafe_b64decode(bobs + "==")[:32]
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
        real + "==",
        real.upper(),
        f" {real}",
        f"{real}\n",
        f"{real}.{real}",
        real[:-1] + ("B" if real[-1] == "A" else "A"),  # a non-canonical spelling, or another MAC
        b64(flipped_key + mac),  # another key under this MAC
        b64(key + flipped_mac),  # this key under another MAC
        b64(bob_key + mac),  # bob's session under ada's MAC
        b64(key + mac + b"\x00"),
        b64(key),
        "A" * HANDLE_LENGTH,
        f"{b64(b'ada')}.{b64(mac)}",  # the earlier form, with a MAC of the wrong kind
        f"{b64(b'ada')}.{'A' * 22}",
        f"{surrogate}.{'A' * 22}",  # a lone surrogate as the user
        f"{not_utf8}.{'A' * 22}",  # not UTF-8
        "a" * 1_000_000,
        f"{'QQ' * 500_000}.{'A' * 22}",
    ]


def test_any_string_revokes_nothing_and_raises_nothing(site):
    ada, laptop = login(site, "ada"), login(site, "ada")
    bob = login(site, "bob")
    real, bobs = other_handle(laptop), bob_handle(site, bob)
    signer = site.middleware.signer
    for handle in hostile_handles(real, bobs):
        assert site.middleware.revoke(handle) is False, repr(handle[:40])
        assert site.middleware.revoke(handle, "ada") is False, repr(handle[:40])
        assert isinstance(signer.handle_user(handle), (str, type(None)))
        # Only the earlier form, which names its user unsigned (revoke checks its MAC), can claim ada.
        claimed = signer.handle_user(handle) == "ada"
        assert signer.handle_belongs_to(handle, "ada") is claimed, repr(handle[:40])
    for not_a_string in (None, b"", 42, object()):
        assert site.middleware.revoke(not_a_string) is False
        assert signer.handle_user(not_a_string) is None
        assert signer.handle_belongs_to(not_a_string, "ada") is False
        assert signer.handle_belongs_to(real, not_a_string) is False
    assert len(site.middleware.user_sessions("ada")) == 2
    assert len(site.middleware.user_sessions("bob")) == 1
    assert ada.value("user") == "ada"


def bob_handle(site, bob) -> str:
    return site.middleware.session_handle(site.middleware.open(bob.cookie))


def test_any_string_posted_to_the_revoke_endpoint_is_an_answer_not_an_error(site):
    laptop, phone = login(site, "ada"), login(site, "ada")
    real, bobs = other_handle(laptop), bob_handle(site, login(site, "bob"))
    # The URL-sized ones, but "" (Falcon drops a blank query parameter); the others went direct above.
    for handle in hostile_handles(real, bobs)[1:-2]:
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


def test_a_handle_revokes_on_a_users_behalf_only_a_session_of_that_user(site):
    ada_laptop, ada_phone, bob = login(site, "ada"), login(site, "ada"), login(site, "bob")
    adas, bobs = other_handle(ada_laptop), bob_handle(site, bob)
    assert site.middleware.revoke(bobs, "ada") is False
    assert site.middleware.revoke(adas, "bob") is False
    assert bob.value("user") == "bob" and ada_phone.value("user") == "ada"
    assert ada_laptop.post("/revoke", handle=bobs).json() == {"revoked": False}
    assert bob.value("user") == "bob"
    assert site.middleware.revoke(adas, "ada") is True
    assert ada_phone.value("user") is None
    assert site.middleware.revoke(adas, "ada") is False  # gone already


def test_a_handle_of_the_earlier_form_shown_before_an_upgrade_still_revokes(site):
    laptop, phone = login(site, "ada"), login(site, "ada")
    signer = site.middleware.signer
    key = store_key(phone.cookie.rpartition(".")[0])
    earlier = f"{b64(b'ada')}.{b64(signer._handle_mac(signer._handle_keys[0], key))}"
    assert signer.handle_user(earlier) == "ada" and signer.handle_belongs_to(earlier, "ada")
    assert site.middleware.revoke(earlier, "bob") is False
    assert laptop.post("/revoke", handle=earlier).json() == {"revoked": True}
    assert phone.value("user") is None
    assert laptop.value("user") == "ada"


def test_every_handle_issued_has_one_length_whatever_its_user_and_names_only_that_user():
    signer = SessionSigner(["old-key-0123456789", "new-key-0123456789"])
    for user in ["a", "ada", LONG_USER, "x" * 100_000, "\ud800", "a.b", "=", "\x00"]:
        key = store_key(new_session_id())
        handle = signer.handle(user, key)
        assert len(handle) == HANDLE_LENGTH
        assert handle.isascii() and ";" not in handle and " " not in handle and "." not in handle
        assert signer.handle_store_key(handle) == key
        assert signer.handle_belongs_to(handle, user)
        assert not signer.handle_belongs_to(handle, user + "x") and not signer.handle_belongs_to(handle, "")
        assert signer.handle_user(handle) is None  # it does not carry its user


def test_a_session_stored_under_its_raw_id_keeps_a_handle_of_the_earlier_form_until_it_moves():
    signer = SessionSigner("key-0123456789")
    raw = new_session_id()
    handle = signer.handle(LONG_USER, raw)
    assert signer.handle_user(handle) == LONG_USER and signer.handle_belongs_to(handle, LONG_USER)
    assert signer.handle_session(handle, [store_key(raw), raw]) == raw


class LoadCountingStore(MemoryStore):
    """A real MemoryStore that counts its loads."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def load(self, sid: str):
        self.loads += 1
        return super().load(sid)


def test_on_a_users_behalf_a_handle_not_issued_for_them_costs_no_store_read():
    store = LoadCountingStore()
    middleware = SessionMiddleware("k" * 32, store)
    sessions = {}
    for user in ("ada", "bob"):
        session = sessions[user] = middleware.open(None)
        session.bind_user(user)
        middleware.save(session)
    bobs = middleware.session_handle(sessions["bob"])
    forged = b64(bytes(48))
    store.loads = 0
    assert middleware.revoke(bobs, "ada") is False
    assert middleware.revoke(forged, "ada") is False
    assert store.loads == 0
    assert middleware.revoke(bobs, "bob") is True
    assert store.loads == 1
    assert middleware.user_sessions("bob") == [] and len(middleware.user_sessions("ada")) == 1
