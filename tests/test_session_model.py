"""Random request sequences checked against a plain-dict model of what sessions should hold.

Hypothesis plays two browsers against a small Falcon app: setting, popping and
clearing keys, mutating nested values in place, regenerating, invalidating, and
moving the injected clock across the refresh step and the idle and absolute
timeouts. After every request the answer, the cookie and the store itself must
agree with the model, every retired token (logged out, regenerated away,
emptied, expired) must open nothing, and the store must hold no session the
model does not know about.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import falcon
import falcon.testing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from hug_cookie_sessions import MemoryStore, Record, RedisStore, SessionMiddleware, SQLiteStore
from hug_cookie_sessions.store_keys import store_key

from .conftest import FakeClock
from .properties import budget
from .redis_support import delete_prefix, unique_prefix
from .support import SECRET

IDLE = 1000
ABSOLUTE = 3000
STEP = max(IDLE * 0.1, 1.0)  # the middleware's default refresh step for this idle timeout

keys = st.sampled_from(["a", "b", "cart"])
fields = st.sampled_from(["x", "y"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


class Operations:
    """``POST /<op>`` with a JSON body: one thing a handler can do to its session."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, op: str) -> None:
        session = req.context["session"]
        args = req.media or {}
        key, value = args.get("key"), args.get("value")
        if op == "all":
            resp.media = {"data": dict(session), "id": session.id, "is_new": session.is_new}
            return
        if op == "set":
            session[key] = value
        elif op == "pop":
            session.pop(key, None)
        elif op == "clear":
            session.clear()
        elif op == "nested":
            current = session.get(key)
            if isinstance(current, dict):
                current[args["field"]] = value
            else:
                session[key] = {args["field"]: value}
        elif op == "append":
            current = session.get(key)
            if isinstance(current, list):
                current.append(value)
            else:
                session[key] = [value]
        elif op == "regenerate":
            session.regenerate()
        elif op == "invalidate":
            session.invalidate()
        elif op == "invalidate_then_set":
            session.invalidate()
            session[key] = value
        else:
            raise falcon.HTTPNotFound()
        resp.media = {"ok": True}


def apply_to_model(data: dict[str, Any], op: str, args: dict[str, Any]) -> dict[str, Any]:
    """What ``op`` does to the data, as plain dict operations."""
    data = json.loads(json.dumps(data))
    key, value = args.get("key"), args.get("value")
    if op == "set":
        data[key] = value
    elif op == "pop":
        data.pop(key, None)
    elif op in ("clear", "invalidate"):
        data = {}
    elif op == "nested":
        if isinstance(data.get(key), dict):
            data[key][args["field"]] = value
        else:
            data[key] = {args["field"]: value}
    elif op == "append":
        if isinstance(data.get(key), list):
            data[key].append(value)
        else:
            data[key] = [value]
    elif op == "invalidate_then_set":
        data = {key: value}
    return data


@dataclass
class Browser:
    """One client: the cookie it sends and the session the model says it has."""

    cookie: Optional[str] = None
    sid: Optional[str] = None
    data: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    expires_at: float = 0.0

    def forget(self) -> None:
        self.sid, self.data = None, {}


def _sid(token: str) -> str:
    return token.rpartition(".")[0]


class SessionModel(RuleBasedStateMachine):
    """The model machine, on a fresh store from ``open_store(clock, directory)``.

    Memory and SQLite take the injected clock; Redis keeps real time, so what a
    store holds is judged by the clock here (as the middleware judges it), and a
    session counts as held while its expiry is ahead of that clock.
    """

    def __init__(self, open_store: Callable[[FakeClock, str], Any]) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.directory = tempfile.mkdtemp(prefix="session-model-")
        self.store = open_store(self.clock, self.directory)
        middleware = SessionMiddleware(
            SECRET,
            self.store,
            idle_timeout=IDLE,
            absolute_timeout=ABSOLUTE,
            cookie_secure=False,
            clock=self.clock,
        )
        app = (getattr(falcon, "App", None) or falcon.API)(middleware=[middleware])
        app.add_route("/{op}", Operations())
        self.client = falcon.testing.TestClient(app)
        self.browsers = [Browser(), Browser()]
        self.retired: list[str] = []

    def teardown(self) -> None:
        if isinstance(self.store, RedisStore):
            delete_prefix(self.store.client, self.store.prefix)
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- one request, and what the model expects of it ----------------------------------------

    def request(self, browser: Browser, op: str, **args: Any) -> Any:
        now = self.clock()
        if browser.sid is not None and browser.expires_at <= now:
            self.retired.append(browser.cookie)
            browser.forget()
        live = browser.sid is not None
        headers = {"Cookie": f"session={browser.cookie}"} if browser.cookie else {}
        result = self.client.simulate_post(f"/{op}", json=args, headers=headers)
        assert result.status_code == 200, result.text
        cookie = result.headers.get("set-cookie")
        if op == "all":
            assert result.json == {"data": browser.data, "id": browser.sid, "is_new": not live}

        data = apply_to_model(browser.data, op, args)
        ends = live and (op.startswith("invalidate") or not data)
        if ends:
            self.retired.append(browser.cookie)
            browser.forget()
        if browser.sid is None:
            if data:
                self._expect_new_session(browser, cookie, data, created_at=now)
            elif ends or (op.startswith("invalidate") and headers):
                # Logout expires whatever cookie the request carried, live, stale or bogus (Django).
                assert cookie is not None and "Max-Age=0" in cookie, "an ended session expires its cookie"
                browser.cookie = None
            else:
                assert cookie is None, "a visitor who stores nothing gets no cookie"
            return result

        candidate = min(now + IDLE, browser.created_at + ABSOLUTE)
        refreshed = candidate - browser.expires_at >= STEP
        if refreshed:
            browser.expires_at = candidate
        browser.data = data
        if op == "regenerate":
            self.retired.append(browser.cookie)
            self._expect_new_session(browser, cookie, data, created_at=browser.created_at)
        elif refreshed:
            assert cookie is not None and cookie.startswith(f"session={browser.cookie};")
        else:
            assert cookie is None, "an unchanged cookie is not sent again"
        return result

    def _expect_new_session(
        self, browser: Browser, cookie: Optional[str], data: dict, *, created_at: float
    ) -> None:
        assert cookie is not None, "a new session sends its cookie"
        token = cookie.split(";", 1)[0].split("=", 1)[1]
        assert token not in self.retired and token != browser.cookie, "IDs are never reused"
        expires_at = browser.expires_at if browser.sid is not None else None
        browser.cookie, browser.sid, browser.data = token, _sid(token), data
        browser.created_at = created_at
        browser.expires_at = expires_at or min(self.clock() + IDLE, created_at + ABSOLUTE)

    # -- rules -----------------------------------------------------------------------------

    browser_index = st.integers(0, 1)

    @rule(index=browser_index)
    def read_everything(self, index):
        self.request(self.browsers[index], "all")

    @rule(index=browser_index, key=keys, value=json_values)
    def set_a_key(self, index, key, value):
        self.request(self.browsers[index], "set", key=key, value=value)

    @rule(index=browser_index, key=keys)
    def pop_a_key(self, index, key):
        self.request(self.browsers[index], "pop", key=key)

    @rule(index=browser_index)
    def clear_everything(self, index):
        self.request(self.browsers[index], "clear")

    @rule(index=browser_index, key=keys, name=fields, value=json_values)
    def change_a_nested_dict_in_place(self, index, key, name, value):
        self.request(self.browsers[index], "nested", key=key, field=name, value=value)

    @rule(index=browser_index, key=keys, value=json_values)
    def append_to_a_list_in_place(self, index, key, value):
        self.request(self.browsers[index], "append", key=key, value=value)

    @rule(index=browser_index)
    def regenerate(self, index):
        self.request(self.browsers[index], "regenerate")

    @rule(index=browser_index)
    def invalidate(self, index):
        self.request(self.browsers[index], "invalidate")

    @rule(index=browser_index, key=keys, value=json_values)
    def invalidate_then_store_again(self, index, key, value):
        self.request(self.browsers[index], "invalidate_then_set", key=key, value=value)

    @rule(seconds=st.sampled_from([0.5, 30, STEP - 1, STEP + 1, IDLE / 2, IDLE - 1, IDLE + 1, ABSOLUTE]))
    def let_time_pass(self, seconds):
        self.clock.advance(seconds)

    @precondition(lambda self: any(browser.sid for browser in self.browsers))
    @rule(index=browser_index, early=st.sampled_from([0.0, 0.001]))
    def move_the_clock_to_an_expiry(self, index, early):
        browser = self.browsers[index] if self.browsers[index].sid else self.browsers[1 - index]
        self.clock.now = max(self.clock.now, browser.expires_at - early)

    @precondition(lambda self: self.retired)
    @rule(pick=st.integers(0, 1000))
    def replay_a_retired_cookie(self, pick):
        token = self.retired[pick % len(self.retired)]
        result = self.client.simulate_post("/all", json={}, headers={"Cookie": f"session={token}"})
        assert result.json == {"data": {}, "id": None, "is_new": True}

    # -- what must always hold --------------------------------------------------------------

    @invariant()
    def the_store_holds_exactly_the_models_sessions(self):
        now = self.clock()
        live = [browser for browser in self.browsers if browser.sid and browser.expires_at > now]
        for browser in live:
            stored = self.stored(browser.sid)
            assert stored is not None, "a live session is missing from the store"
            assert {key: json.loads(text) for key, text in stored.data.items()} == browser.data
            assert (stored.created_at, stored.expires_at) == (browser.created_at, browser.expires_at)
        for token in self.retired:
            assert self.stored(_sid(token)) is None, "a retired session can still be loaded"
        assert self.sessions_held() == len(live), "the store holds sessions nobody can reach"

    def stored(self, sid: str) -> Optional[Record]:
        """The record of session ``sid`` if it is live by this machine's clock."""
        return self.live_record(store_key(sid))

    def live_record(self, key: str) -> Optional[Record]:
        """The record stored under ``key`` if it is live by this machine's clock."""
        record = self.store.load(key)
        return record if record is not None and record.expires_at > self.clock() else None

    def sessions_held(self) -> int:
        """How many sessions the store holds that are live by this machine's clock."""
        if not isinstance(self.store, RedisStore):
            return len(self.store)
        keys = self.store.client.scan_iter(match=self.store.prefix + "*", count=1000)
        return sum(1 for key in keys if self.live_record(_text(key)[len(self.store.prefix) :]) is not None)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def check_against_the_model(open_store: Callable[[FakeClock, str], Any], sequences: int) -> None:
    run_state_machine_as_test(
        lambda: SessionModel(open_store), settings=settings(budget(sequences), stateful_step_count=30)
    )


def test_memory_sessions_follow_the_model():
    check_against_the_model(lambda clock, directory: MemoryStore(clock=clock), 400)


def test_sqlite_sessions_follow_the_model():
    check_against_the_model(
        lambda clock, directory: SQLiteStore(f"{directory}/sessions.sqlite3", clock=clock), 200
    )


def test_redis_sessions_follow_the_model(private_redis):
    """On a private redis-server, so that counting what it holds scans only this test's keys."""
    check_against_the_model(
        lambda clock, directory: RedisStore(private_redis.url, prefix=unique_prefix()), 200
    )


@pytest.mark.parametrize("own_idle", [None, 0])
@pytest.mark.parametrize("ulps", [-1000, -3, -1, 0, 1, 3, 1000])
def test_the_quick_expiry_check_agrees_with_the_full_rule_at_the_refresh_boundary(own_idle, ulps):
    now = 1_790_000_000.123
    middleware = SessionMiddleware(SECRET, idle_timeout=3600, refresh_fraction=0.1, clock=lambda: now)
    boundary = now + 3600 - 360  # the expiry whose move is exactly the refresh step
    expires_at = boundary
    for _ in range(abs(ulps)):
        expires_at = math.nextafter(expires_at, math.inf if ulps > 0 else -math.inf)
    stored = Record({}, now - 10, expires_at, None, own_idle)
    assert middleware.policy.expiry_due(stored, now) == middleware.policy.next_expiry(stored, None, now)[1]
    if abs(ulps) == 1000:  # clear of any rounding: due before the boundary, not after it
        assert middleware.policy.expiry_due(stored, now) == (ulps < 0)


def test_the_timeouts_the_refresh_check_is_worked_out_from_are_fixed_once_made():
    middleware = SessionMiddleware(SECRET, idle_timeout=60, refresh_fraction=0.2)
    assert (middleware.idle_timeout, middleware.refresh_fraction) == (60, 0.2)
    with pytest.raises(AttributeError):
        middleware.idle_timeout = 3600
    with pytest.raises(AttributeError):
        middleware.refresh_fraction = 0.5


def test_a_read_writes_the_expiry_exactly_when_the_full_rule_says_it_is_due():
    """The quick check every clean request makes agrees with the rule a save applies,
    whatever the timeouts, the refresh step and the session's own timeout."""

    @budget(2000)
    @given(
        idle=st.none() | st.integers(1, 10**7),
        absolute=st.none() | st.integers(1, 10**7),
        fraction=st.floats(0, 0.99),
        own_idle=st.none() | st.integers(0, 10**7),
        created=st.floats(0, 10**9),
        expires_in=st.floats(0, 10**7),
        elapsed=st.floats(0, 10**7),
    )
    def check(idle, absolute, fraction, own_idle, created, expires_in, elapsed):
        now = created + elapsed
        middleware = SessionMiddleware(
            SECRET, idle_timeout=idle, absolute_timeout=absolute, refresh_fraction=fraction, clock=lambda: now
        )
        stored = Record({}, created, now + expires_in, None, own_idle)
        assert (
            middleware.policy.expiry_due(stored, now) == middleware.policy.next_expiry(stored, None, now)[1]
        )

    check()
