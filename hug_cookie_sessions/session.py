"""The session a handler sees: a lazily loaded mapping that knows what changed.

Nothing here touches HTTP or a store. The session asks its loader for the
stored record on first use, decodes a value only when a key is read, and at the
end of the request reports exactly which keys changed (including values mutated
in place, such as ``session["cart"].append(item)``) so that the middleware can
write back just those.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Optional

from .async_access import AsyncAccess, AsyncLoader, Loader, Opened
from .errors import SessionValueError
from .labels import check_label
from .policy import NO_CHANGES, Changes
from .session_ids import SessionId
from .stores.base import Record, session_ref

# Values of these types cannot change in place, so reading one never makes the
# session dirty and needs no re-encoding when the request ends.
_IMMUTABLE = (str, int, float, bool, type(None))

# ensure_ascii: every value is stored as ASCII, so a lone surrogate ("\ud800", easy to send
# as JSON) is kept as its escape and read back exactly, where UTF-8 could not hold it.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode
_decode = json.JSONDecoder().decode

_MISSING = object()

log = logging.getLogger("hug_cookie_sessions")

__all__ = ["NO_CHANGES", "AsyncLoader", "Changes", "Loader", "Opened", "Session", "SessionValueError"]

#: The shared empty set of a session that has written (deleted) nothing yet.
_NO_KEYS: frozenset[str] = frozenset()


class Session(AsyncAccess):
    """A dict-like session, loaded on first use and saved by the middleware.

    ``id`` is None until the session is stored; ``is_new`` stays True until
    then. Call :meth:`regenerate` after a login (a new ID for the same data,
    the old ID deleted) and :meth:`invalidate` on logout (the stored session
    deleted and the cookie expired). Keys are strings; values must be
    JSON-serializable.

    A session is in one of two states: not loaded (it holds a loader and its
    source) or loaded (it holds the stored record and what this request changed).
    Loading happens on first use, so a request that never touches its session
    costs no cookie check and no store I/O. On ASGI a first use that must await
    the store goes through the async accessors (:class:`~.async_access.AsyncAccess`).
    """

    __slots__: tuple[str, ...] = ("loaded", "_loader", "_source", "_async_loader", "_loading", "_sid")
    __slots__ += ("_record", "_raw", "_values", "_assigned", "_removed", "dirty", "_asked")

    def __init__(
        self, loader: Loader, source: Any = None, async_loader: Optional[AsyncLoader] = None
    ) -> None:
        """A session that calls ``loader(source)`` on first use to find its stored state, or
        awaits ``async_loader(source)`` when it has one and is first used by an async accessor.

        The source is kept rather than a closure over the request: the request
        holds the session, and that cycle would leave every request to the
        garbage collector.
        """
        #: Whether anything has used this session (so it was loaded) during the request.
        #: Read-only: the session sets it when it loads.
        self.loaded = False
        self._loader: Optional[Loader] = loader
        self._source = source
        self._async_loader = async_loader
        # While an async load is under way: the futures of the other tasks waiting for it.
        self._loading: Optional[list[Any]] = None

    # -- loading -----------------------------------------------------------------

    def _load(self) -> None:
        assert self._loader is not None
        self.stored_as(*self._loader(self._source))

    def stored_as(self, sid: Optional[SessionId], record: Optional[Record], reissue: bool = False) -> None:
        """Make ``record``, stored under ``sid``, the session's clean state; ``reissue``: the
        next save sends the cookie again (what loading found is these three, :data:`Opened`).

        Package-internal: loading calls it, and the middleware after a save, so
        that code running later in the request sees what was stored.
        """
        self.loaded = True
        self._loader = self._source = self._async_loader = None
        self._sid = sid if record is not None else None
        self._record = record
        self._raw = record.data if record is not None else {}
        self._values: dict[str, Any] = {}
        # The shared empty set until the first write (delete): most requests make none.
        self._assigned: AbstractSet[str] = _NO_KEYS
        self._removed: AbstractSet[str] = _NO_KEYS
        #: Whether this request may have changed the session: a value set or deleted, a
        #: mutable value handed out (it may be changed in place), a lifecycle call. While it
        #: is False a save writes nothing unless the expiry is due to move. Read-only.
        self.dirty = False
        # None until a lifecycle call (or a reissue) asks something of the save: most requests make none.
        self._asked: Optional[_Lifecycle] = None
        if reissue:
            self._lifecycle().reissue = True

    def _lifecycle(self) -> _Lifecycle:
        """What lifecycle calls asked of the next save, to add one more (the session becomes dirty)."""
        if not self.loaded:
            self._load()
        self.dirty = True
        if self._asked is None:
            self._asked = _Lifecycle()
        return self._asked

    # -- the mapping ---------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """``session[key]``, or ``default`` if there is no such key (decoded on first read)."""
        if not self.loaded:
            self._load()
        value = self._values.get(key, _MISSING)
        if value is not _MISSING:
            return value
        text = self._raw.get(key)
        if text is None or key in self._removed:
            return default
        if text.isdigit() and text.isascii() and (text[0] != "0" or len(text) == 1):
            # PERF(counter-decode): a counter is the commonest value; int() reads it in a
            # tenth of the JSON decoder's time (0.45 µs less per read, side by side).
            value = int(text)
        else:
            try:
                value = _decode(text)
            except ValueError:
                self._drop_unreadable(key)
                return default
        self._values[key] = value
        if not isinstance(value, _IMMUTABLE):
            self.dirty = True  # it may be changed in place
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        if not self.loaded:
            self._load()
        self._values[key] = value
        if not isinstance(self._assigned, set):  # still the shared _NO_KEYS
            self._assigned = set()
        self._assigned.add(key)
        if isinstance(self._removed, set):
            self._removed.discard(key)
        self.dirty = True

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._values.pop(key, None)
        if isinstance(self._assigned, set):
            self._assigned.discard(key)
        if key in self._raw:
            if not isinstance(self._removed, set):
                self._removed = set()
            self._removed.add(key)
        self.dirty = True

    def __contains__(self, key: object) -> bool:
        if not self.loaded:
            self._load()
        return key in self._values or (key in self._raw and key not in self._removed)

    def _drop_unreadable(self, key: str) -> None:
        """Forget a stored value that is not JSON (a tampered store, a bad migration): the
        request goes on without it, and the next save of that key overwrites it. Logged by
        the session's reference, never its ID."""
        assert self._sid is not None  # stored values come from a stored record, which has an ID
        log.error(
            "Session %s: dropped the stored value of %r, which is not JSON", session_ref(self._sid), key
        )
        self._raw = {name: text for name, text in self._raw.items() if name != key}

    def _read_all(self) -> None:
        """Read every stored value once, so that iterating never names a key whose value turns out
        unreadable (:meth:`_drop_unreadable`)."""
        for key in [key for key in self._raw if key not in self._values]:
            self.get(key)

    def __iter__(self) -> Iterator[str]:
        if not self.loaded:
            self._load()
        self._read_all()
        # A snapshot: reading values while iterating (items(), values()) caches
        # keys in _values, which a lazy generator would then yield twice.
        keys = [key for key in self._raw if key not in self._removed and key not in self._values]
        keys.extend(self._values)
        yield from keys

    def __len__(self) -> int:
        if not self.loaded:
            self._load()
        self._read_all()
        return len(self._values) + sum(
            1 for key in self._raw if key not in self._removed and key not in self._values
        )

    def __repr__(self) -> str:
        if not self.loaded:
            return "<Session not loaded>"
        return f"<Session id={self._sid} {dict(self)}>"

    # -- lifecycle -----------------------------------------------------------------

    @property
    def id(self) -> Optional[SessionId]:
        """The stored session's ID, or None while the session has not been stored."""
        if not self.loaded:
            self._load()
        return self._sid

    @property
    def is_new(self) -> bool:
        """True until the session has been stored."""
        if not self.loaded:
            self._load()
        return self._record is None

    @property
    def record(self) -> Optional[Record]:
        """The record as loaded from the store, or as last saved (None for a new session).

        Its ``created_at`` and ``expires_at`` say when the session began and when
        it ends unless used again. Read-only: stores may share the object.
        """
        if not self.loaded:
            self._load()
        return self._record

    @property
    def modified(self) -> bool:
        """Whether saving now would write anything to the store."""
        try:
            return self.changes().any
        except SessionValueError:
            return True

    def regenerate(self) -> None:
        """Give this session a new ID when it is saved, keeping its data.

        The old ID stops working at once. Call it when the user logs in, so an
        ID planted before login (session fixation) is worthless afterwards.
        """
        if not self.loaded:
            self._load()
        if self._record is not None:
            self._lifecycle().regenerate = True

    def invalidate(self) -> None:
        """End the session: delete it from the store and expire the cookie.

        Anything stored afterwards in the same request starts a new session
        under a new ID.
        """
        if not self.loaded:
            self._load()
        ended_sid = self._sid or (self._asked.ended_sid if self._asked is not None else None)
        self.stored_as(None, None)
        asked = self._lifecycle()
        asked.ended_sid = ended_sid
        asked.invalidated = True

    @property
    def user_id(self) -> Optional[str]:
        """The user this session was bound to with :meth:`bind_user`, if any."""
        if not self.loaded:
            self._load()
        if self._asked is not None and self._asked.user_id is not None:
            return self._asked.user_id
        return self._record.user_id if self._record is not None else None

    def bind_user(self, user_id: str, label: Optional[str] = None) -> None:
        """Record that this session belongs to ``user_id`` (see ``user_sessions``): call it on login.

        The session gets a new ID when it is saved, as with :meth:`regenerate` (a new session
        token on authentication), and when it belonged to another user its data is cleared
        first, so that Bob never inherits what Alice left in a shared browser. Binding the same
        user again keeps the data.

        ``label`` is what the user's session listings show to tell this session from their
        others, such as "Firefox on Linux" (see :func:`~.labels.check_label`). Each bind sets
        it anew; None leaves the session without one.
        """
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        check_label(label)
        if self.user_id not in (None, user_id):
            self.clear()
        self.regenerate()
        asked = self._lifecycle()
        asked.user_id, asked.label = user_id, label

    def set_expiry(self, seconds: Optional[int]) -> None:
        """Override the idle timeout for this session only ("remember me").

        A positive number keeps the session for that many idle seconds with a
        persistent cookie; 0 gives a browser-session cookie with the default
        idle timeout; None goes back to the middleware's default timeout and
        cookie kind (a later login without "remember me"). The middleware's
        absolute timeout still applies.
        """
        if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0):
            raise ValueError("seconds must be an int >= 0, or None for the default")
        asked = self._lifecycle()
        asked.idle_timeout = seconds
        # Only a session stored with a timeout of its own has one to give up.
        asked.default_expiry = (
            seconds is None and self._record is not None and self._record.idle_timeout is not None
        )

    # -- what the middleware reads when saving ---------------------------------------

    def changes(self) -> Changes:
        """Everything saving must persist, values as JSON text.

        Raises :class:`SessionValueError` naming the first value that cannot be
        encoded; nothing is written in that case.
        """
        if not self.loaded:
            self._load()
        if not self.dirty:
            return NO_CHANGES
        changed = {}
        for key, value in self._values.items():
            if key not in self._assigned and isinstance(value, _IMMUTABLE):
                continue
            try:
                # PERF(counter-encode): an int's JSON text is its repr, which spares the encoder
                # building its C encoder object (0.65 µs less per int written, side by side).
                text = repr(value) if type(value) is int else _encode(value)
            except (TypeError, ValueError) as error:  # not JSON; an int too long to convert
                raise SessionValueError(key, value) from error
            if self._raw.get(key) != text:
                if not _is_unicode_text(key):
                    raise SessionValueError(
                        key, value, f"session key {key!r} holds a lone surrogate, which no store can keep"
                    )
                changed[key] = text
        if self._asked is None and not self._removed:
            return Changes(changed, values_only=True) if changed else NO_CHANGES
        asked = self._asked or _NOTHING_ASKED
        if asked.user_id is not None and not _is_unicode_text(asked.user_id):
            raise SessionValueError(
                "user_id", asked.user_id, f"user ID {asked.user_id!r} holds a lone surrogate"
            )
        return Changes(
            changed,
            frozenset(self._removed),
            asked.regenerate,
            asked.ended_sid,
            asked.user_id,
            asked.idle_timeout,
            asked.reissue,
            asked.invalidated,
            asked.default_expiry,
            label=asked.label,
        )

    def full_data(self, changed: Mapping[str, str]) -> dict[str, str]:
        """Every key's JSON text once ``changed`` (from :meth:`changes`) is applied."""
        if not self.loaded:
            self._load()
        data = {key: text for key, text in self._raw.items() if key not in self._removed}
        data.update(changed)
        return data


class _Lifecycle:
    """What lifecycle calls asked of a session's next save (see :class:`Changes`)."""

    __slots__ = (
        "regenerate",
        "ended_sid",
        "user_id",
        "idle_timeout",
        "reissue",
        "invalidated",
        "default_expiry",
        "label",
    )

    def __init__(self) -> None:
        self.regenerate = False
        self.ended_sid: Optional[SessionId] = None
        self.user_id: Optional[str] = None
        self.idle_timeout: Optional[int] = None
        self.reissue = False
        self.invalidated = False
        self.default_expiry = False
        self.label: Optional[str] = None


def _is_unicode_text(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (it holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: A session no lifecycle call asked anything of.
_NOTHING_ASKED = _Lifecycle()
