"""One user's sessions: listing, "log out everywhere", revoking one device, and "remember me"."""

from __future__ import annotations

import pytest

from .support import CountingStore, make_site
from .test_lifecycle import in_background

DAY = 86400


@pytest.fixture
def site(serve, store, clock):
    return make_site(serve, CountingStore(store), clock, idle_timeout=3600)


def logged_in(site, user="ada"):
    visitor = site.visitor()
    visitor.post("/login", user=user)
    return visitor


def test_two_devices_of_one_user_are_listed_with_handles_not_ids(site):
    laptop, phone = logged_in(site), logged_in(site)
    logged_in(site, user="bob")
    listed = laptop.get("/my_sessions").json()["sessions"]
    assert len(listed) == 2
    assert [entry["current"] for entry in listed].count(True) == 1
    for entry in listed:
        for cookie in (laptop.cookie, phone.cookie):
            sid = cookie.rsplit(".", 1)[0]
            assert sid not in entry["handle"] and cookie not in entry["handle"]
        assert entry["created_at"] <= entry["last_active"] < entry["expires_at"]


def test_log_out_everywhere_from_one_device_ends_the_other(site):
    laptop, phone = logged_in(site), logged_in(site)
    bob = logged_in(site, user="bob")
    assert laptop.post("/logout_everywhere").json() == {"ended": 2}
    assert phone.value("user") is None
    assert laptop.value("user") is None
    assert bob.value("user") == "bob"


def test_revoking_one_handle_ends_that_device_only(site):
    laptop, phone = logged_in(site), logged_in(site)
    other = next(e for e in laptop.get("/my_sessions").json()["sessions"] if not e["current"])
    assert laptop.post("/revoke", handle=other["handle"]).json() == {"revoked": True}
    assert phone.value("user") is None
    assert laptop.value("user") == "ada"
    assert laptop.post("/revoke", handle=other["handle"]).json() == {"revoked": False}


def test_a_handle_of_another_user_or_garbage_revokes_nothing(site):
    ada, bob = logged_in(site), logged_in(site, user="bob")
    bobs = bob.get("/my_sessions").json()["sessions"][0]["handle"]
    assert ada.post("/revoke", handle=bobs).json() == {"revoked": False}
    assert ada.post("/revoke", handle="not-a-handle").json() == {"revoked": False}
    assert site.middleware.revoke("Ym9i.AAAA") is False
    assert bob.value("user") == "bob"


def test_a_request_in_flight_for_a_revoked_session_cannot_bring_it_back(site):
    laptop, phone = logged_in(site), logged_in(site)
    slow = in_background(lambda: phone.post("/set_when_released", key="late", value="1"))
    assert site.gates.loaded.wait(10)
    laptop.post("/logout_everywhere")
    site.gates.proceed.set()
    slow()
    assert phone.value("user") is None
    assert site.middleware.user_sessions("ada") == []


def test_unbound_sessions_cost_nothing_extra(site):
    visitor = site.visitor()
    visitor.post("/set", key="n", value="1")
    site.store.calls.clear()
    visitor.get("/get", key="n")
    assert dict(site.store.calls) == {"load": 1}


def test_remember_me_gives_a_longer_idle_timeout_and_a_persistent_cookie(serve, store, clock):
    site = make_site(serve, store, clock, idle_timeout=3600, persistent=False)
    visitor = site.visitor()
    visitor.post("/login", user="ada")
    response = visitor.post("/remember_me", seconds=30 * DAY)
    assert f"Max-Age={30 * DAY}" in response.headers["Set-Cookie"]
    clock.advance(10 * DAY)  # far past the default idle timeout
    assert visitor.value("user") == "ada"


def test_remember_me_zero_gives_a_browser_session_cookie(serve, store, clock):
    site = make_site(serve, store, clock, idle_timeout=3600)
    visitor = site.visitor()
    visitor.post("/login", user="ada")
    header = visitor.post("/remember_me", seconds=0).headers["Set-Cookie"]
    assert "Max-Age" not in header and "Expires" not in header
    clock.advance(3601)
    assert visitor.value("user") is None


def test_remember_me_does_not_outlive_the_absolute_timeout(serve, store, clock):
    site = make_site(serve, store, clock, idle_timeout=3600, absolute_timeout=2 * DAY)
    visitor = site.visitor()
    visitor.post("/login", user="ada")
    header = visitor.post("/remember_me", seconds=30 * DAY).headers["Set-Cookie"]
    assert f"Max-Age={2 * DAY}" in header
    clock.advance(2 * DAY + 1)
    assert visitor.value("user") is None


def test_an_expired_session_drops_out_of_the_listing_by_itself(site, clock):
    logged_in(site)
    assert len(site.middleware.user_sessions("ada")) == 1
    clock.advance(3601)
    assert site.middleware.user_sessions("ada") == []
