"""The save policy, alone: from a request's changes, the stored record and the clock, what saving
does. No web framework, no store: each row is one situation and the save it must produce."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from hug_cookie_sessions.policy import (
    NO_CHANGES,
    NOTHING,
    Apply,
    Changes,
    CookieChange,
    Create,
    Rotate,
    Save,
    SavePolicy,
)
from hug_cookie_sessions.stores.base import Record

NOW = 1_800_000_000.0
HOUR = 3600
IDLE = 14 * 24 * HOUR
OLD_SID = "old-session-id"
NEW_SID = "fresh-session-id"


def stored(data: Optional[dict] = None, *, age: float = 60, user: Optional[str] = None, idle=None) -> Record:
    """A session stored ``age`` seconds ago, last refreshed then."""
    created = NOW - age
    return Record(dict(data or {"n": "1"}), created, created + (idle or IDLE), user, idle)


def changes(**fields: Any) -> Changes:
    fields.setdefault("changed", {})
    fields["removed"] = frozenset(fields.get("removed", ()))
    return Changes(**fields)


def plan(
    what: Changes, old: Optional[Record], *, keep_empty: bool = False, policy: Optional[SavePolicy] = None
) -> Save:
    policy = policy or SavePolicy(IDLE, None, 0.1, True)
    policy.new_sid = lambda: NEW_SID
    return policy.plan(what, OLD_SID if old is not None else None, old, NOW, keep_empty)


ROWS = [
    # (what happened, stored record, keep_empty, expected write, expected cookie, deletes)
    ("a clean session is not written", NO_CHANGES, stored(), False, None, CookieChange.KEEP, ()),
    ("a visitor who stored nothing creates nothing", NO_CHANGES, None, False, None, CookieChange.KEEP, ()),
    ("an explicit save keeps an empty session", changes(), None, True, Create, CookieChange.ISSUE, ()),
    (
        "an explicit save keeps a new session never used",
        NO_CHANGES,
        None,
        True,
        Create,
        CookieChange.ISSUE,
        (),
    ),
    (
        "new values for a stored session: one apply",
        changes(changed={"n": "2"}),
        stored(),
        False,
        Apply,
        CookieChange.KEEP,
        (),
    ),
    (
        "a new session with a value is created",
        changes(changed={"n": "1"}),
        None,
        False,
        Create,
        CookieChange.ISSUE,
        (),
    ),
    (
        "a session emptied by the handler is deleted",
        changes(removed={"n"}),
        stored(),
        False,
        None,
        CookieChange.EXPIRE,
        (OLD_SID,),
    ),
    (
        "regenerate moves the data to a new ID",
        changes(regenerate=True),
        stored(),
        False,
        Rotate,
        CookieChange.ISSUE,
        (),
    ),
    (
        "logout deletes the old session",
        changes(ended_sid=OLD_SID),
        None,
        False,
        None,
        CookieChange.EXPIRE,
        (OLD_SID,),
    ),
    (
        "a value after logout starts a new session",
        changes(ended_sid=OLD_SID, changed={"a": "1"}),
        None,
        False,
        Create,
        CookieChange.ISSUE,
        (OLD_SID,),
    ),
    (
        "binding a user is an apply naming the user",
        changes(user_id="ada"),
        stored(),
        False,
        Apply,
        CookieChange.KEEP,
        (),
    ),
    (
        "remember me re-issues the cookie",
        changes(idle_timeout=30 * 24 * HOUR),
        stored(),
        False,
        Apply,
        CookieChange.ISSUE,
        (),
    ),
    (
        "a cookie signed with a retired key is re-issued",
        changes(reissue=True),
        stored(),
        False,
        None,
        CookieChange.ISSUE,
        (),
    ),
    (
        "a clean session due for a refresh moves its expiry",
        NO_CHANGES,
        stored(age=2 * IDLE / 10),
        False,
        Apply,
        CookieChange.ISSUE,
        (),
    ),
]


@pytest.mark.parametrize(
    ("what", "old", "keep_empty", "write", "cookie", "deletes"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_each_situation_saves_as_the_policy_says(what, old, keep_empty, write, cookie, deletes):
    save = plan(what, old, keep_empty=keep_empty)
    assert type(save.write) is (write if write is not None else type(None))
    assert save.cookie is cookie
    assert save.deletes == deletes


@pytest.mark.parametrize("age", [60, IDLE / 20, IDLE / 5], ids=["fresh", "near-refresh", "refresh-due"])
def test_values_only_changes_save_as_the_general_rules_would(age):
    """Session.changes() marks a write of values alone, which the policy then plans quickly."""
    old = stored(age=age)
    quick = plan(Changes({"n": "2"}, values_only=True), old)
    general = plan(Changes({"n": "2"}), old)
    assert (quick.deletes, quick.write, quick.cookie, quick.sid, quick.record) == (
        general.deletes,
        general.write,
        general.cookie,
        general.sid,
        general.record,
    )


def test_nothing_to_do_is_the_shared_empty_save():
    assert plan(NO_CHANGES, stored()) is NOTHING
    assert plan(NO_CHANGES, None) is NOTHING


def test_new_values_keep_the_stored_expiry_until_the_refresh_step():
    old = stored()
    save = plan(changes(changed={"n": "2"}), old)
    assert save.write == Apply(OLD_SID, {"n": "2"}, frozenset(), old.expires_at, None, None)
    assert save.record == Record({"n": "2"}, old.created_at, old.expires_at)
    assert save.sid == OLD_SID


def test_a_new_session_starts_now_and_expires_after_the_idle_timeout():
    save = plan(changes(changed={"n": "1"}), None)
    assert save.write == Create(NEW_SID, Record({"n": "1"}, NOW, NOW + IDLE))
    assert (save.sid, save.max_age) == (NEW_SID, IDLE)


def test_a_regenerated_session_keeps_its_data_creation_time_and_user():
    old = stored({"n": "1", "cart": "[1]"}, user="ada")
    save = plan(changes(regenerate=True, changed={"n": "2"}), old)
    assert save.write == Rotate(
        OLD_SID, NEW_SID, Record({"n": "2", "cart": "[1]"}, old.created_at, old.expires_at, "ada")
    )


def test_a_refresh_names_the_bound_user_so_the_store_can_move_its_index():
    old = stored(age=IDLE / 5, user="ada")
    save = plan(NO_CHANGES, old)
    assert isinstance(save.write, Apply)
    assert (save.write.user_id, save.write.expires_at) == ("ada", NOW + IDLE)


def test_the_absolute_timeout_caps_the_expiry():
    policy = SavePolicy(IDLE, 3 * HOUR, 0.1, True)
    old = stored(age=2 * HOUR)
    save = plan(changes(changed={"n": "2"}, idle_timeout=IDLE), old, policy=policy)
    assert save.write.expires_at == old.created_at + 3 * HOUR
    assert save.max_age == HOUR


@pytest.mark.parametrize(
    ("persistent", "own_idle", "max_age"),
    [
        (True, None, IDLE),
        (False, None, None),
        (True, 0, None),
        (False, 3600, 3600),
    ],
)
def test_the_cookie_lives_as_long_as_the_session_unless_it_is_a_browser_session_cookie(
    persistent, own_idle, max_age
):
    policy = SavePolicy(IDLE, None, 0.1, persistent)
    save = plan(changes(changed={"n": "1"}, idle_timeout=own_idle), None, policy=policy)
    assert save.max_age == max_age


def test_a_moved_expiry_alone_sends_no_cookie_to_a_browser_session():
    policy = SavePolicy(IDLE, None, 0.1, False)
    save = plan(NO_CHANGES, stored(age=IDLE / 5), policy=policy)
    assert isinstance(save.write, Apply)
    assert save.cookie is CookieChange.KEEP


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        ("idle_timeout", {"idle_timeout": 0}),
        ("absolute_timeout", {"absolute_timeout": -1}),
        ("refresh_fraction", {"refresh_fraction": 1.0}),
    ],
)
def test_timeouts_that_cannot_work_are_refused_by_name(option, kwargs):
    settings = {"idle_timeout": IDLE, "absolute_timeout": None, "refresh_fraction": 0.1, "persistent": True}
    with pytest.raises(ValueError, match=option):
        SavePolicy(**{**settings, **kwargs})
