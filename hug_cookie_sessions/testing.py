"""A conformance suite for session stores, ours or yours (needs pytest).

Subclass :class:`StoreConformance` in a test module and provide a ``store``
fixture that returns a fresh, empty store::

    from hug_cookie_sessions.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self):
            return MyStore(...)

Every test states one promise of the store protocol in its name. Times are
real Unix times: records are created already expired rather than waited on.

An async store (``falcon.asgi.App``) is checked the same way: return
``BlockingFacade(MyAsyncStore(...))`` from the fixture, and close the facade
after the test. :class:`HashedKeyConformance` drives a ``SessionMiddleware``
over the store and checks that no call ever hands it a session ID.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

import pytest

from .signing import new_session_id
from .stores.base import Record
from .testing_keys import HashedKeyConformance

__all__ = ["BlockingFacade", "HashedKeyConformance", "LockingConformance", "StoreConformance"]
__all__ += ["UserIndexConformance", "record", "run_together"]

HOUR = 3600.0


def record(data: dict[str, str] | None = None, *, ttl: float = HOUR, **meta: Any) -> Record:
    """A record that expires ``ttl`` seconds from now."""
    now = time.time()
    return Record(dict(data or {}), now, now + ttl, **meta)


def run_together(count: int, target: Callable[[int], Any], timeout: float = 30) -> list[BaseException]:
    """Run ``target(index)`` for ``index`` in ``range(count)``, one thread each, all released at
    the same moment; what they raised (a thread's exception would not fail a test by itself).
    Fails if a thread is still running after ``timeout`` seconds."""
    start = threading.Barrier(count, timeout=timeout)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            target(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running"
    return errors


class BlockingFacade:
    """An async store's methods as blocking calls, awaited on the facade's own event loop.

    The loop runs on one background thread for the facade's life, so a store
    whose connections belong to a loop (``redis.asyncio``) keeps working
    across calls; calls from several threads are awaited concurrently there.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self.store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self._loop).result(30)

        return call

    def run(self, coroutine: Any) -> Any:
        """Await ``coroutine`` on the facade's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def close(self) -> None:
        """Stop the loop and its thread (call ``aclose`` on the store first, if it has one)."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class StoreConformance:
    """The store protocol, one test per promise."""

    def test_unknown_id_loads_nothing(self, store: Any) -> None:
        assert store.load(new_session_id()) is None

    def test_created_record_loads_back_with_its_metadata(self, store: Any) -> None:
        sid = new_session_id()
        original = record({"n": "1", "cart": '["apple"]'}, user_id="alice", idle_timeout=600)
        store.create(sid, original)
        loaded = store.load(sid)
        assert loaded.data == {"n": "1", "cart": '["apple"]'}
        assert loaded.created_at == pytest.approx(original.created_at, abs=0.001)
        assert loaded.expires_at == pytest.approx(original.expires_at, abs=0.001)
        assert (loaded.user_id, loaded.idle_timeout) == ("alice", 600)

    def test_a_label_is_kept_through_create_rotate_and_apply(self, store: Any) -> None:
        old, new = new_session_id(), new_session_id()
        store.create(old, record({"a": "1"}, user_id="alice", label="Firefox on Linux"))
        assert store.load(old).label == "Firefox on Linux"
        store.rotate(old, new, record({"a": "1"}, user_id="alice", label="Safari on iPhone ✓"))
        assert store.apply(new, {"a": "2"}, (), time.time() + HOUR, user_id="alice", idle_timeout=60)
        loaded = store.load(new)
        assert (loaded.label, loaded.data) == ("Safari on iPhone ✓", {"a": "2"})
        unlabelled = new_session_id()
        store.create(unlabelled, record({"a": "1"}, user_id="alice"))
        assert store.load(unlabelled).label is None

    def test_a_loaded_record_is_a_snapshot_that_later_writes_leave_alone(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1", "b": "2"}))
        loaded = store.load(sid)
        assert store.apply(sid, {"a": "3"}, {"b"}, time.time() + HOUR)
        assert (loaded.data, store.load(sid).data) == ({"a": "1", "b": "2"}, {"a": "3"})

    def test_sessions_are_independent(self, store: Any) -> None:
        first, second = new_session_id(), new_session_id()
        store.create(first, record({"who": '"first"'}))
        store.create(second, record({"who": '"second"'}))
        store.apply(first, {"who": '"changed"'}, (), time.time() + HOUR)
        assert store.load(second).data == {"who": '"second"'}

    def test_apply_writes_changed_keys_and_deletes_removed_ones(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"keep": "1", "change": "2", "drop": "3"}))
        assert store.apply(sid, {"change": "20", "new": "4"}, {"drop"}, time.time() + HOUR) is True
        assert store.load(sid).data == {"keep": "1", "change": "20", "new": "4"}

    def test_apply_moves_the_expiry(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}, ttl=60))
        later = time.time() + 2 * HOUR
        store.apply(sid, {}, (), later)
        assert store.load(sid).expires_at == pytest.approx(later, abs=0.001)

    def test_apply_changes_user_and_idle_timeout_only_when_given(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}, user_id="alice", idle_timeout=600))
        store.apply(sid, {"a": "2"}, (), time.time() + HOUR)
        loaded = store.load(sid)
        assert (loaded.user_id, loaded.idle_timeout) == ("alice", 600)
        store.apply(sid, {}, (), time.time() + HOUR, user_id="bob", idle_timeout=0)
        loaded = store.load(sid)
        assert (loaded.user_id, loaded.idle_timeout) == ("bob", 0)

    def test_a_value_write_at_the_stored_expiry_keeps_everything_else(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1", "b": "2"}, user_id="alice", idle_timeout=600))
        expires_at = store.load(sid).expires_at
        assert store.apply(sid, {"a": "10", "c": "3"}, (), expires_at) is True
        loaded = store.load(sid)
        assert loaded.data == {"a": "10", "b": "2", "c": "3"}
        assert (loaded.expires_at, loaded.user_id, loaded.idle_timeout) == (expires_at, "alice", 600)

    def test_a_value_write_at_the_stored_expiry_of_an_expired_session_returns_false(self, store: Any) -> None:
        sid = new_session_id()
        expired = record({"a": "1"}, ttl=-1)
        store.create(sid, expired)
        assert store.apply(sid, {"a": "2"}, (), expired.expires_at) is False
        assert store.load(sid) is None

    def test_a_key_both_changed_and_removed_in_one_apply_ends_removed(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1", "b": "2"}))
        assert store.apply(sid, {"a": "10", "c": "3"}, {"a"}, time.time() + HOUR) is True
        assert store.load(sid).data == {"b": "2", "c": "3"}

    def test_applies_to_different_keys_both_persist(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"base": "0"}))
        store.load(sid), store.load(sid)  # two requests load the same state
        store.apply(sid, {"left": "1"}, (), time.time() + HOUR)
        store.apply(sid, {"right": "2"}, (), time.time() + HOUR)
        assert store.load(sid).data == {"base": "0", "left": "1", "right": "2"}

    def test_concurrent_applies_from_threads_lose_no_key(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"base": "0"}))
        expires_at = time.time() + HOUR

        def write(index: int) -> None:
            for round_ in range(10):
                store.apply(sid, {f"k{index}": str(round_)}, (), expires_at)

        threads = [threading.Thread(target=write, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.load(sid).data == {"base": "0", **{f"k{index}": "9" for index in range(8)}}

    def test_apply_to_an_unknown_session_returns_false_and_creates_nothing(self, store: Any) -> None:
        sid = new_session_id()
        assert store.apply(sid, {"a": "1"}, (), time.time() + HOUR) is False
        assert store.load(sid) is None

    def test_apply_after_delete_does_not_bring_the_session_back(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}))
        store.delete(sid)
        assert store.apply(sid, {"b": "2"}, {"a"}, time.time() + HOUR) is False
        assert store.load(sid) is None

    def test_rotate_moves_the_record_and_the_old_id_opens_nothing(self, store: Any) -> None:
        old, new = new_session_id(), new_session_id()
        store.create(old, record({"a": "1"}))
        assert store.rotate(old, new, record({"a": "1", "b": "2"}, user_id="alice")) is True
        assert store.load(old) is None
        loaded = store.load(new)
        assert loaded.data == {"a": "1", "b": "2"}
        assert loaded.user_id == "alice"

    def test_rotate_of_a_deleted_session_returns_false_and_creates_nothing(self, store: Any) -> None:
        old, new = new_session_id(), new_session_id()
        store.create(old, record({"a": "1"}))
        store.delete(old)
        assert store.rotate(old, new, record({"a": "1"})) is False
        assert store.load(new) is None

    def test_after_rotate_the_old_id_cannot_be_written(self, store: Any) -> None:
        old, new = new_session_id(), new_session_id()
        store.create(old, record({"a": "1"}))
        store.rotate(old, new, record({"a": "1"}))
        assert store.apply(old, {"a": "2"}, (), time.time() + HOUR) is False
        assert store.load(new).data == {"a": "1"}

    def test_delete_removes_the_session_and_tolerates_unknown_ids(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}))
        store.delete(sid)
        store.delete(sid)
        store.delete(new_session_id())
        assert store.load(sid) is None

    def test_an_expired_record_is_never_returned(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}, ttl=-1))
        assert store.load(sid) is None

    def test_apply_to_an_expired_record_returns_false(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}, ttl=-1))
        assert store.apply(sid, {"a": "2"}, (), time.time() + HOUR) is False
        assert store.load(sid) is None

    def test_keys_and_values_with_awkward_characters_round_trip(self, store: Any) -> None:
        sid = new_session_id()
        data = {
            "'; DROP TABLE sessions; --": '"x"',
            "../../etc/passwd": "1",
            "tab\tnew\nline\x00nul": '"\\u0000"',
            "ключ 🍪": '"значение 🍪"',
            "": "null",
        }
        store.create(sid, record(data))
        assert store.load(sid).data == data
        store.apply(sid, {"ключ 🍪": '"ещё"'}, {"../../etc/passwd"}, time.time() + HOUR)
        assert store.load(sid).data["ключ 🍪"] == '"ещё"'
        assert "../../etc/passwd" not in store.load(sid).data

    def test_an_empty_session_can_be_stored(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({}))
        assert store.load(sid).data == {}

    def test_len_counts_live_sessions(self, store: Any) -> None:
        if not hasattr(store, "__len__"):
            pytest.skip("this store does not count its sessions")
        before = len(store)
        live, expired = new_session_id(), new_session_id()
        store.create(live, record({"a": "1"}))
        store.create(expired, record({"a": "1"}, ttl=-1))
        assert len(store) == before + 1


class UserIndexConformance:
    """The optional per-user index (``UserIndex``): listing and ending one user's sessions."""

    def test_a_user_lists_only_their_own_live_sessions(self, store: Any) -> None:
        mine, theirs, expired, unbound = (new_session_id() for _ in range(4))
        store.create(mine, record({"a": "1"}, user_id="alice"))
        store.create(theirs, record({"a": "1"}, user_id="bob"))
        store.create(expired, record({"a": "1"}, user_id="alice", ttl=-1))
        store.create(unbound, record({"a": "1"}))
        listed = store.user_sessions("alice")
        assert set(listed) == {mine}
        assert listed[mine].user_id == "alice"
        assert store.user_sessions("nobody") == {}

    def test_a_users_listing_carries_each_sessions_label(self, store: Any) -> None:
        laptop, phone, old = new_session_id(), new_session_id(), new_session_id()
        store.create(laptop, record({"a": "1"}, user_id="alice", label="Firefox on Linux"))
        store.create(old, record({"a": "1"}, user_id="alice", label="Chrome on Android"))
        store.rotate(old, phone, record({"a": "1"}, user_id="alice", label="Safari on iPhone"))
        store.create(new_session_id(), record({"a": "1"}, user_id="alice"))
        labels = sorted(str(listed.label) for listed in store.user_sessions("alice").values())
        assert labels == ["Firefox on Linux", "None", "Safari on iPhone"]

    def test_binding_a_stored_session_adds_it_to_the_index(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}))
        store.apply(sid, {}, (), time.time() + HOUR, user_id="alice")
        assert set(store.user_sessions("alice")) == {sid}

    def test_rotating_keeps_the_binding_under_the_new_id_only(self, store: Any) -> None:
        old, new = new_session_id(), new_session_id()
        store.create(old, record({"a": "1"}, user_id="alice"))
        store.rotate(old, new, record({"a": "1"}, user_id="alice"))
        assert set(store.user_sessions("alice")) == {new}

    def test_a_deleted_session_leaves_the_index(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}, user_id="alice"))
        store.delete(sid)
        assert store.user_sessions("alice") == {}

    def test_deleting_a_users_sessions_ends_all_of_them_and_no_one_elses(self, store: Any) -> None:
        alice = [new_session_id() for _ in range(3)]
        bob = new_session_id()
        for sid in alice:
            store.create(sid, record({"a": "1"}, user_id="alice"))
        store.create(bob, record({"a": "1"}, user_id="bob"))
        assert store.delete_user_sessions("alice") == 3
        assert all(store.load(sid) is None for sid in alice)
        assert store.load(bob) is not None
        assert store.user_sessions("alice") == {}
        assert store.apply(alice[0], {"a": "2"}, (), time.time() + HOUR) is False


class LockingConformance:
    """The optional lock primitive (``LockingStore``) behind ``SessionMiddleware(lock=True)``.

    Lease expiry needs time to pass, so it is left to each store's own tests.
    """

    def test_a_free_lock_is_taken_and_a_held_one_refused(self, store: Any) -> None:
        sid = new_session_id()
        assert store.acquire_lock(sid, "first", 30) is True
        assert store.acquire_lock(sid, "second", 30) is False

    def test_only_the_holder_releases_a_lock(self, store: Any) -> None:
        sid = new_session_id()
        store.acquire_lock(sid, "holder", 30)
        store.release_lock(sid, "someone else")
        assert store.acquire_lock(sid, "other", 30) is False
        store.release_lock(sid, "holder")
        assert store.acquire_lock(sid, "other", 30) is True

    def test_releasing_a_lock_nobody_holds_is_harmless(self, store: Any) -> None:
        store.release_lock(new_session_id(), "nobody")

    def test_locks_of_different_sessions_are_independent(self, store: Any) -> None:
        first, second = new_session_id(), new_session_id()
        assert store.acquire_lock(first, "a", 30) is True
        assert store.acquire_lock(second, "b", 30) is True

    def test_a_lock_does_not_touch_the_session_it_guards(self, store: Any) -> None:
        sid = new_session_id()
        store.create(sid, record({"a": "1"}))
        store.acquire_lock(sid, "holder", 30)
        assert store.load(sid).data == {"a": "1"}
        store.delete(sid)
        store.release_lock(sid, "holder")
        assert store.load(sid) is None

    def test_of_threads_racing_for_one_lock_exactly_one_wins(self, store: Any) -> None:
        sid = new_session_id()
        winners: list[int] = []

        def race(index: int) -> None:
            if store.acquire_lock(sid, f"token-{index}", 30):
                winners.append(index)

        assert run_together(8, race) == []
        assert len(winners) == 1
