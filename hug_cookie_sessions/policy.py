"""The save policy: what saving a session does, decided without I/O or a web framework.

From what a request changed (:class:`Changes`, made by the session), the stored record
and the time, :meth:`SavePolicy.plan` returns a :class:`Save`: which store
calls to make, in order, and what the cookie becomes. The middleware carries it
out (blocking or awaiting) and nothing else; every rule about expiry, refresh,
rotation and emptiness lives here, where a table of cases can test it.

The rules, in short:

- a clean session saves nothing, unless its stored expiry is due to move (a
  refresh, at most once per ``refresh_fraction`` of the idle timeout, so that
  a busy reader does not write on every request);
- new values for a stored session are one :class:`Apply`, which the store only
  lands in a live session (so a concurrent logout is never undone);
- a new session is a :class:`Create` and ``regenerate()`` a :class:`Rotate`,
  both under a fresh ID; anything that gives the session a new ID, timeout or
  expiry the browser keeps re-issues the cookie;
- a session emptied by the handler, or never stored and left empty, is
  deleted (or never created) and its cookie expired.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Callable, NamedTuple, Optional, Union

from .errors import SessionTooLarge
from .options import number_option, seconds_option
from .session_ids import SessionId
from .stores.base import Record

#: Browsers cap cookie lifetimes at 400 days; with both timeouts disabled a
#: session lives that long after its last refresh.
MAX_LIFETIME = 400 * 24 * 3600


class Changes(NamedTuple):
    """What one request did to its session (:meth:`~.session.Session.changes`): the policy's input."""

    changed: Mapping[str, str]
    removed: frozenset[str] = frozenset()
    regenerate: bool = False
    ended_sid: Optional[SessionId] = None
    user_id: Optional[str] = None
    idle_timeout: Optional[int] = None
    reissue: bool = False
    #: ``invalidate()`` was called: the cookie the request carried expires unless a new session replaces it.
    invalidated: bool = False
    #: ``set_expiry(None)``: back to the middleware's default idle timeout and cookie kind.
    default_expiry: bool = False
    #: Whether these changes only set values: nothing removed, no lifecycle call (worked
    #: out by :meth:`Session.changes`; a ``Changes`` made by hand says False).
    values_only: bool = False
    #: The label ``bind_user`` gave (with ``user_id``); it is stored with the record of the
    #: rotation every bind makes, and an apply cannot carry it.
    label: Optional[str] = None

    @property
    def any(self) -> bool:
        """Whether saving must write to the store."""
        return bool(
            self.changed
            or self.removed
            or self.regenerate
            or self.ended_sid
            or self.user_id is not None
            or self.idle_timeout is not None
            or self.default_expiry
        )


#: What most requests do to their session: nothing (shared, since it cannot change).
NO_CHANGES = Changes(MappingProxyType({}), values_only=True)


class Create(NamedTuple):
    """``store.create(sid, record)``: a session stored for the first time."""

    sid: SessionId
    record: Record


class Apply(NamedTuple):
    """``store.apply(...)``: new values, removed keys and the expiry of a stored session."""

    sid: SessionId
    changed: Mapping[str, str]
    removed: frozenset[str]
    expires_at: float
    user_id: Optional[str] = None
    idle_timeout: Optional[int] = None


class Rotate(NamedTuple):
    """``store.rotate(old_sid, sid, record)``: the session moved to a new ID (``regenerate()``)."""

    old_sid: SessionId
    sid: SessionId
    record: Record


#: The one write a save makes, after its deletes.
Write = Union[Create, Apply, Rotate]


class CookieChange(enum.Enum):
    """What the response does to the session cookie."""

    KEEP = "keep"  #: no ``Set-Cookie``
    ISSUE = "issue"  #: ``Set-Cookie`` with the session's (new) ID and lifetime
    EXPIRE = "expire"  #: ``Set-Cookie`` that removes the cookie


class Save(NamedTuple):
    """What saving a session does: delete ``deletes``, make ``write``, then change the cookie.

    When ``write`` returns False (the session ended meanwhile: a concurrent
    logout or regenerate won), nothing was written and the cookie expires
    whatever ``cookie`` says. Otherwise ``sid`` and ``record`` (when ``record``
    is not None) are the session as now stored, and ``max_age`` is the
    cookie's for :attr:`CookieChange.ISSUE` (None: a browser-session cookie).
    """

    deletes: tuple[SessionId, ...] = ()
    write: Optional[Write] = None
    cookie: CookieChange = CookieChange.KEEP
    sid: Optional[SessionId] = None
    record: Optional[Record] = None
    max_age: Optional[int] = None
    #: The user ``write`` binds the session to (``bind_user``): whose per-user cap to check.
    binds: Optional[str] = None


#: Saving that writes nothing and keeps the cookie: what most requests do.
NOTHING = Save()


class SavePolicy:
    """The timeout and cookie-lifetime rules of one middleware, fixed once made.

    Timeouts are in seconds, None disables one; ``persistent=False`` gives a
    browser-session cookie. Raises ValueError naming the option for a value
    that cannot work.
    """

    def __init__(
        self,
        idle_timeout: Optional[int],
        absolute_timeout: Optional[int],
        refresh_fraction: float,
        persistent: bool,
        new_sid: Callable[[], SessionId] = SessionId.new,
        *,
        max_session_bytes: Optional[int] = None,
    ) -> None:
        self.idle_timeout = seconds_option("idle_timeout", idle_timeout)
        self.absolute_timeout = seconds_option("absolute_timeout", absolute_timeout)
        self.refresh_fraction = number_option("refresh_fraction", refresh_fraction)
        if not 0 <= self.refresh_fraction < 1:
            raise ValueError(f"refresh_fraction must be in [0, 1), not {refresh_fraction!r}")
        self.persistent = persistent
        self.new_sid = new_sid
        self.max_session_bytes = seconds_option("max_session_bytes", max_session_bytes)

    # -- expiry ---------------------------------------------------------------------------

    def idle(self, own: Optional[int]) -> float:
        """The idle timeout in force: the session's ``own`` (0 or None: the default), else
        the middleware's, else :data:`MAX_LIFETIME`."""
        return own or self.idle_timeout or MAX_LIFETIME

    def next_expiry(
        self, old: Optional[Record], idle_timeout: Optional[int], now: float
    ) -> tuple[float, bool]:
        """The expiry a save at ``now`` gives the session stored as ``old`` (None: not stored
        yet), ``idle_timeout`` being the one this request set for it, if any; and whether
        that is a new expiry.

        A stored expiry moves only once it would move by the refresh step (a fraction
        of the idle timeout), so that a busy reader does not write on every request.
        """
        own = old.idle_timeout if idle_timeout is None and old is not None else idle_timeout
        idle = own or self.idle_timeout or MAX_LIFETIME  # self.idle(own), without the call
        expires_at = self._capped(now + idle, old.created_at if old is not None else now)
        if old is None or idle_timeout is not None:
            return expires_at, True
        moved = expires_at - old.expires_at
        if moved >= 1.0 and moved >= idle * self.refresh_fraction:
            return expires_at, True
        return old.expires_at, False

    def _capped(self, expires_at: float, created_at: float) -> float:
        """``expires_at``, brought forward to the absolute timeout of a session created at ``created_at``."""
        if self.absolute_timeout is None:
            return expires_at
        return min(expires_at, created_at + self.absolute_timeout)

    def expiry_due(self, old: Optional[Record], now: float) -> bool:
        """Whether a save at ``now`` moves the expiry of ``old``, a stored record (None: False),
        when the request sets no timeout."""
        return old is not None and self.next_expiry(old, None, now)[1]

    def cookie_max_age(self, record: Record, now: float) -> Optional[int]:
        """The cookie's Max-Age for ``record`` at ``now``; None for a browser-session cookie."""
        if record.idle_timeout == 0 or (record.idle_timeout is None and not self.persistent):
            return None
        return max(round(record.expires_at - now), 0)

    # -- saving ---------------------------------------------------------------------------

    def plan(
        self,
        changes: Changes,
        sid: Optional[SessionId],
        old: Optional[Record],
        now: float,
        keep_empty: bool = False,
    ) -> Save:
        """How to persist ``changes`` to the session stored as ``sid``/``old`` (None: not stored).

        ``keep_empty`` (an explicit ``save()``) stores a session even when it is
        empty; at the end of a request an empty session is not kept.
        """
        if changes.values_only and old is not None and not self.expiry_due(old, now):
            # A stored session whose expiry stays, only read or given new values: what nearly
            # every request that uses its session does.
            return NOTHING if changes is NO_CHANGES else self._values_saved(changes, sid, old)
        if changes.changed and self.max_session_bytes is not None:
            self._check_size(_full_data(old, changes))
        if changes.default_expiry:  # back to the default timeout: a new expiry from now
            expires_at, refreshed = self._capped(now + self.idle(None), old.created_at if old else now), True
        else:
            expires_at, refreshed = self.next_expiry(old, changes.idle_timeout, now)
        if not changes.any and not (keep_empty if old is None else refreshed):
            return self._unchanged(changes, sid, old, now)
        deletes = (changes.ended_sid,) if changes.ended_sid else ()
        # A store's apply cannot take an own timeout away: going back to the default rewrites
        # the whole session, under a new ID as any such change of the session's terms.
        if old is not None and not (changes.regenerate or changes.default_expiry):
            assert sid is not None
            return self._update(changes, sid, old, now, expires_at, refreshed, deletes, keep_empty)
        return self._replace(changes, sid, old, now, expires_at, deletes, keep_empty)

    def _check_size(self, data: dict[str, str]) -> None:
        """Raise :class:`SessionTooLarge` when ``data`` (keys as UTF-8, JSON texts) is over the limit."""
        size = len("".join(data).encode()) + sum(map(len, data.values()))
        if self.max_session_bytes is not None and size > self.max_session_bytes:
            largest = max(data, key=lambda key: len(key) + len(data[key]))
            raise SessionTooLarge(size, self.max_session_bytes, largest, len(largest) + len(data[largest]))

    def _values_saved(self, changes: Changes, sid: Optional[SessionId], old: Record) -> Save:
        """New values for a stored session whose expiry stays: one apply at the stored expiry,
        the cookie kept. PERF(values-only): :meth:`_update` gives the same save, here worked
        out without the expiry and cookie rules (0.97 µs less per write: 40 rounds, medians, side by side)."""
        assert sid is not None
        record = old.updated(changes.changed, (), old.expires_at)
        if changes.changed and self.max_session_bytes is not None:
            self._check_size(record.data)  # the session's whole data, as it will be stored
        write = Apply(sid, changes.changed, changes.removed, old.expires_at)
        return Save(write=write, sid=sid, record=record)

    def _update(
        self,
        changes: Changes,
        sid: SessionId,
        old: Record,
        now: float,
        expires_at: float,
        refreshed: bool,
        deletes: tuple[SessionId, ...],
        keep_empty: bool,
    ) -> Save:
        """A stored session keeps its ID: one apply, or a delete when the handler emptied it."""
        if changes.removed and not keep_empty and not _full_data(old, changes):
            return Save((*deletes, sid), cookie=CookieChange.EXPIRE)
        # A bound session whose expiry moves names its user again, so that a
        # store's user index can move its own expiry too (Redis).
        user_id = changes.user_id or (old.user_id if refreshed else None)
        # A store gets a dict, never the shared read-only mapping of NO_CHANGES.
        write = Apply(sid, changes.changed or {}, changes.removed, expires_at, user_id, changes.idle_timeout)
        record = old.updated(write.changed, write.removed, expires_at, user_id, changes.idle_timeout)
        max_age = self.cookie_max_age(record, now)
        # A moved expiry alone means nothing to a browser-session cookie (no Max-Age).
        issue = changes.reissue or changes.idle_timeout is not None or (refreshed and max_age is not None)
        cookie = CookieChange.ISSUE if issue else CookieChange.KEEP
        return Save(deletes, write, cookie, sid, record, max_age, changes.user_id)

    def _replace(
        self,
        changes: Changes,
        sid: Optional[SessionId],
        old: Optional[Record],
        now: float,
        expires_at: float,
        deletes: tuple[SessionId, ...],
        keep_empty: bool,
    ) -> Save:
        """A new session, or one regenerated: a fresh ID holding the whole data, or nothing
        stored (and the old session deleted) when that data is empty."""
        data = _full_data(old, changes)
        if not data and not keep_empty and (old is None or changes.removed):
            if sid is not None:
                deletes = (*deletes, sid)
            expire = deletes or changes.invalidated
            return Save(deletes, cookie=CookieChange.EXPIRE if expire else CookieChange.KEEP)
        record = Record(
            data,
            old.created_at if old is not None else now,
            expires_at,
            changes.user_id or (old.user_id if old is not None else None),
            _own_idle(changes, old),
            _label(changes, old),
        )
        fresh = self.new_sid()
        write: Write = Create(fresh, record) if sid is None else Rotate(sid, fresh, record)
        max_age = self.cookie_max_age(record, now)
        return Save(deletes, write, CookieChange.ISSUE, fresh, record, max_age, changes.user_id)

    def _unchanged(
        self, changes: Changes, sid: Optional[SessionId], old: Optional[Record], now: float
    ) -> Save:
        """Nothing to store. The cookie still expires after ``invalidate()`` (whatever the request
        carried: a bogus cookie, or one of a session already gone), and is sent again when it was
        signed with a retired key."""
        if changes.invalidated:
            return Save(cookie=CookieChange.EXPIRE)
        if changes.reissue and old is not None:
            return Save(cookie=CookieChange.ISSUE, sid=sid, max_age=self.cookie_max_age(old, now))
        return NOTHING


def _own_idle(changes: Changes, old: Optional[Record]) -> Optional[int]:
    """The session's own idle timeout once ``changes`` apply to ``old`` (None: the default)."""
    if changes.default_expiry:
        return None
    if changes.idle_timeout is not None or old is None:
        return changes.idle_timeout
    return old.idle_timeout


def _label(changes: Changes, old: Optional[Record]) -> Optional[str]:
    """The session's label once ``changes`` apply to ``old``: a bind's own, else the stored one."""
    if changes.user_id is not None:
        return changes.label
    return old.label if old is not None else None


def _full_data(old: Optional[Record], changes: Changes) -> dict[str, str]:
    """Every key's JSON text once ``changes`` apply to ``old`` (None: an empty session)."""
    data = {key: text for key, text in old.data.items() if key not in changes.removed} if old else {}
    data.update(changes.changed)
    return data
