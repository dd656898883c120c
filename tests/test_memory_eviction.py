"""A full MemoryStore makes room in a fixed order, in constant time (checklist 29).

Expired sessions go first, then sessions bound to no user (least recently written
first), and signed-in ones only when no anonymous session is left. Time comes from
an injected clock; cost is checked by counting what a create touches, never by timing.
"""

from __future__ import annotations

import pytest

from hug_cookie_sessions import MemoryStore, Record
from hug_cookie_sessions.signing import new_session_id

CAPACITY = 50
START = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(clock):
    return MemoryStore(max_sessions=CAPACITY, clock=clock)


def new(store: MemoryStore, clock: Clock, *, user: str | None = None, ttl: float = 3600) -> str:
    sid = new_session_id()
    store.create(sid, Record({"n": "1"}, clock.now, clock.now + ttl, user))
    return sid


def alive(store: MemoryStore, sids: list[str]) -> list[str]:
    return [sid for sid in sids if store.load(sid) is not None]


def test_a_signed_in_users_session_survives_a_flood_of_anonymous_sessions(store, clock):
    alice = new(store, clock, user="alice")
    for _ in range(100 * CAPACITY):
        new(store, clock)
        assert len(store._records) <= CAPACITY
    assert store.load(alice).user_id == "alice"
    assert len(store) == CAPACITY


def test_anonymous_sessions_go_least_recently_written_first(store, clock):
    sids = [new(store, clock) for _ in range(CAPACITY)]
    expires_at = store.load(sids[0]).expires_at
    assert store.apply(sids[0], {"n": "2"}, (), expires_at)  # a write: now the most recent
    newcomers = [new(store, clock) for _ in range(3)]
    assert alive(store, sids[1:4]) == []
    assert alive(store, [sids[0], *sids[4:], *newcomers]) == [sids[0], *sids[4:], *newcomers]


def test_a_read_does_not_count_as_activity(store, clock):
    sids = [new(store, clock) for _ in range(CAPACITY)]
    assert store.load(sids[0]) is not None
    new(store, clock)
    assert store.load(sids[0]) is None


def test_a_rotated_session_counts_as_just_written(store, clock):
    sids = [new(store, clock) for _ in range(CAPACITY)]
    rotated = new_session_id()
    assert store.rotate(sids[0], rotated, store.load(sids[0]))
    new(store, clock)
    assert store.load(rotated) is not None and store.load(sids[1]) is None


def test_expired_sessions_go_before_live_ones_whatever_their_age(store, clock):
    oldest_live = new(store, clock, ttl=10_000)
    short = [new(store, clock, ttl=10) for _ in range(5)]
    signed_in_short = new(store, clock, user="bob", ttl=10)
    rest = [new(store, clock, ttl=10_000) for _ in range(CAPACITY - 7)]
    clock.now += 100
    newcomers = [new(store, clock, ttl=10_000) for _ in range(6)]
    assert store._records.keys().isdisjoint([*short, signed_in_short])
    assert alive(store, [oldest_live, *rest, *newcomers]) == [oldest_live, *rest, *newcomers]


def test_an_expired_signed_in_session_goes_before_a_live_anonymous_one(store, clock):
    bound = new(store, clock, user="bob", ttl=10)
    anonymous = [new(store, clock, ttl=10_000) for _ in range(CAPACITY - 1)]
    clock.now += 11  # expired, but its expiry's slot of the index has not wholly passed
    new(store, clock)
    assert bound not in store._records
    assert alive(store, anonymous) == anonymous


def test_signed_in_sessions_go_only_when_no_anonymous_one_is_left(store, clock):
    users = [new(store, clock, user=f"u{index}") for index in range(CAPACITY - 2)]
    anonymous = [new(store, clock) for _ in range(2)]
    assert store.apply(users[0], {"n": "2"}, (), store.load(users[0]).expires_at)  # written last
    zoe = [new(store, clock, user="zoe") for _ in range(2)]
    assert alive(store, anonymous) == [] and alive(store, users) == users
    zoe += [new(store, clock, user="zoe") for _ in range(2)]
    assert alive(store, users) == [users[0], *users[3:]]  # least recently written first
    new(store, clock)
    assert alive(store, users) == [users[0], *users[4:]]
    assert alive(store, zoe) == zoe
    assert len(store) == CAPACITY


def test_a_write_that_binds_a_user_protects_the_session(store, clock):
    first = new(store, clock)
    for _ in range(CAPACITY - 1):
        new(store, clock)
    assert store.apply(first, {}, (), store.load(first).expires_at, user_id="carol")
    for _ in range(3 * CAPACITY):
        new(store, clock)
    assert store.load(first).user_id == "carol"
    assert store.user_sessions("carol").keys() == {first}


def test_user_listing_and_logout_everywhere_keep_the_indexes_whole(store, clock):
    mine = [new(store, clock, user="dan") for _ in range(3)]
    other = new(store, clock, user="eve")
    assert store.user_sessions("dan").keys() == set(mine)
    assert store.delete_user_sessions("dan") == 3
    for _ in range(2 * CAPACITY):
        new(store, clock)
    assert store.load(other) is not None
    assert len(store._anonymous) + len(store._bound) == len(store._records) == CAPACITY


def test_purge_expired_drops_exactly_the_expired_sessions(store, clock):
    short = [new(store, clock, ttl=30) for _ in range(10)]
    long = [new(store, clock, ttl=10_000, user="fay") for _ in range(10)]
    clock.now += 31
    assert store.purge_expired() == 10
    assert store.purge_expired() == 0
    assert store._records.keys() == set(long)
    assert alive(store, short) == []


class CountingDict(dict):
    """The store's records, counting every access by key and refusing any walk over them."""

    touched = 0

    def get(self, *args):
        CountingDict.touched += 1
        return super().get(*args)

    def pop(self, *args):
        CountingDict.touched += 1
        return super().pop(*args)

    def __getitem__(self, key):
        CountingDict.touched += 1
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        CountingDict.touched += 1
        super().__setitem__(key, value)

    def _walk(self, *args):
        raise AssertionError("a create walked over the records")

    __iter__ = keys = values = items = _walk


@pytest.mark.parametrize("signed_in_share", [0, 2, CAPACITY])
def test_a_create_at_capacity_touches_a_bounded_number_of_records(clock, signed_in_share):
    store = MemoryStore(max_sessions=CAPACITY, clock=clock)
    store._records = CountingDict()
    for index in range(CAPACITY * 20):
        clock.now += 7
        new(store, clock, user="u" if index % CAPACITY < signed_in_share else None, ttl=(index % 5) * 60)
    CountingDict.touched = 0
    creates = CAPACITY * 20
    for index in range(creates):
        clock.now += 7
        new(store, clock, user="u" if index % 3 == 0 else None, ttl=(index % 7) * 60)
        assert len(store._records) <= CAPACITY
    # Per create: forget a reused ID (1), check the oldest signed-in one (1), evict (2), store (1).
    assert CountingDict.touched <= 5 * creates
    assert len(store._slots) == len(store._expiring) <= 20
