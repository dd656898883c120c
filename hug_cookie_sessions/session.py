"""The session a handler sees: a lazily loaded mapping that knows what changed.

Nothing here touches HTTP or a store directly. The session asks its loader for
the stored record on first use, decodes a value only when a key is read, and
at the end of the request reports exactly which keys changed (including values
mutated in place, such as ``session["cart"].append(item)``) so that the
middleware can write back just those.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, MutableMapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import Any, Callable, NamedTuple, Optional

from .stores.base import Record

#: Called with the session's source (such as its Cookie header), returns ``(session id,
#: record, reissue)``: the stored session (both None for none) and whether the client
#: must be sent its reference again (for example, a cookie signed with a retired key).
Loader = Callable[[Any], "tuple[Optional[str], Optional[Record], bool]"]

# Values of these types cannot change in place, so reading one never makes the
# session dirty and needs no re-encoding when the request ends.
_IMMUTABLE = (str, int, float, bool, type(None))

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
# What json.loads(text) calls for a str, without its per-call argument checks.
_json_decode = json.JSONDecoder().decode

_MISSING = object()


class SessionValueError(TypeError):
    """A session value cannot be stored because it is not JSON-serializable."""

    def __init__(self, key: str, value: Any) -> None:
        self.key = key
        super().__init__(
            f"session[{key!r}] holds a {type(value).__name__}, which is not JSON-serializable; "
            "store only dicts, lists, strings, numbers, booleans and None"
        )


_NO_KEYS: frozenset[str] = frozenset()


class Changes(NamedTuple):
    """What one request did to its session, as the middleware persists it."""

    changed: Mapping[str, str]
    removed: frozenset[str] = _NO_KEYS
    regenerate: bool = False
    ended_sid: Optional[str] = None
    user_id: Optional[str] = None
    idle_timeout: Optional[int] = None
    reissue: bool = False
    #: Whether these changes only set values: nothing removed, no lifecycle call (worked out
    #: by :meth:`Session.changes`; a ``Changes`` made by hand says False).
    values_only: bool = False

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
        )


#: What most requests do to their session: nothing (shared, since it cannot change).
NO_CHANGES = Changes(MappingProxyType({}))


class Session(MutableMapping):
    """A dict-like session, loaded on first use and saved by the middleware.

    ``id`` is None until the session is stored; ``is_new`` stays True until
    then. Call :meth:`regenerate` after a login (a new ID for the same data,
    the old ID deleted) and :meth:`invalidate` on logout (the stored session
    deleted and the cookie expired). Keys are strings; values must be
    JSON-serializable.
    """

    __slots__ = (
        "_loader",
        "_source",
        "_sid",
        "_record",
        "_raw",
        "_values",
        "_assigned",
        "_removed",
        "_dirty",
        "_asked",
    )

    def __init__(self, loader: Loader, source: Any = None) -> None:
        """A session that calls ``loader(source)`` on first use to load its stored state."""
        # SessionMiddleware.process_request sets these two fields itself, without calling
        # __init__: anything added here must be added there.
        self._loader: Optional[Loader] = loader  # None once loaded (the middleware checks it)
        self._source = source

    # -- loading -----------------------------------------------------------------

    def _load(self) -> None:
        sid, record, reissue = self._loader(self._source)
        self._loader = self._source = None
        self.stored_as(sid, record)
        if reissue:
            self._lifecycle().reissue = True

    def stored_as(self, sid: Optional[str], record: Optional[Record]) -> None:
        """Make ``record``, stored under ``sid``, the session's clean state (after loading or saving)."""
        self._sid = sid if record is not None else None
        self._record = record
        self._raw = record.data if record is not None else {}
        self._values: dict[str, Any] = {}
        # The shared empty set until the first write (delete): most requests make none.
        self._assigned: AbstractSet[str] = _NO_KEYS
        self._removed: AbstractSet[str] = _NO_KEYS
        # False until something may need saving: a write, a mutable value handed out, a lifecycle call.
        self._dirty = False
        # None until a lifecycle call (or a reissue) asks something of the save: most requests make none.
        self._asked: Optional[_Lifecycle] = None

    def _lifecycle(self) -> _Lifecycle:
        """What lifecycle calls asked of the next save, to add one more (the session becomes dirty)."""
        self._ensure_loaded()
        self._dirty = True
        if self._asked is None:
            self._asked = _Lifecycle()
        return self._asked

    def values_saved(self, changes: Changes) -> None:
        """Record that ``changes``, which only set values (:attr:`Changes.values_only`), were
        stored with the expiry unchanged. The state they lead to becomes the clean state,
        worked out only if the session is used again: after the end of a request it seldom is."""
        self._loader = _after_values_saved
        self._source = (self._sid, self._record, changes)

    @property
    def loaded(self) -> bool:
        """Whether anything has used this session during the request."""
        return self._loader is None or self._loader is _after_values_saved

    def _ensure_loaded(self) -> None:
        if self._loader is not None:
            self._load()

    # -- the mapping ---------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        # A value already read or set in this request is served without a call to get().
        value = self._values.get(key, _MISSING) if self._loader is None else _MISSING
        if value is _MISSING:
            value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """``session[key]``, or ``default`` if there is no such key (decoded on first read)."""
        if self._loader is not None:
            self._load()
        value = self._values.get(key, _MISSING)
        if value is not _MISSING:
            return value
        text = self._raw.get(key)
        if text is None or key in self._removed:
            return default
        if text.isdigit() and text.isascii() and (text[0] != "0" or len(text) == 1):
            value = int(text)  # a counter, the commonest value: a fraction of the decoder's cost
        else:
            value = _json_decode(text)
        self._values[key] = value
        if not isinstance(value, _IMMUTABLE):
            self._dirty = True  # it may be changed in place
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        if self._loader is not None:
            self._load()
        self._values[key] = value
        if self._assigned is _NO_KEYS:
            self._assigned = set()
        self._assigned.add(key)
        if key in self._removed:
            self._removed.remove(key)
        self._dirty = True

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._values.pop(key, None)
        if key in self._assigned:
            self._assigned.remove(key)
        if key in self._raw:
            if self._removed is _NO_KEYS:
                self._removed = set()
            self._removed.add(key)
        self._dirty = True

    def __contains__(self, key: object) -> bool:
        if self._loader is not None:
            self._load()
        return key in self._values or (key in self._raw and key not in self._removed)

    def __iter__(self) -> Iterator[str]:
        if self._loader is not None:
            self._load()
        # A snapshot: reading values while iterating (items(), values()) caches
        # keys in _values, which a lazy generator would then yield twice.
        keys = [key for key in self._raw if key not in self._removed and key not in self._values]
        keys.extend(self._values)
        yield from keys

    def __len__(self) -> int:
        if self._loader is not None:
            self._load()
        return len(self._values) + sum(
            1 for key in self._raw if key not in self._removed and key not in self._values
        )

    def __repr__(self) -> str:
        if not self.loaded:
            return "<Session not loaded>"
        return f"<Session id={self._sid} {dict(self)}>"

    # -- lifecycle -----------------------------------------------------------------

    @property
    def id(self) -> Optional[str]:
        """The stored session's ID, or None while the session has not been stored."""
        if self._loader is not None:  # inline: the middleware asks on every save
            self._load()
        return self._sid

    @property
    def is_new(self) -> bool:
        """True until the session has been stored."""
        self._ensure_loaded()
        return self._record is None

    @property
    def record(self) -> Optional[Record]:
        """The record as loaded from the store (None for a new session); read-only, as stores may share it."""
        if self._loader is not None:  # inline: the middleware asks on every save
            self._load()
        return self._record

    @property
    def modified(self) -> bool:
        """Whether saving now would write anything to the store."""
        self._ensure_loaded()
        try:
            return self.changes().any
        except SessionValueError:
            return True

    def regenerate(self) -> None:
        """Give this session a new ID when it is saved, keeping its data.

        The old ID stops working at once. Call it when the user logs in, so an
        ID planted before login (session fixation) is worthless afterwards.
        """
        self._ensure_loaded()
        if self._record is not None:
            self._lifecycle().regenerate = True

    def invalidate(self) -> None:
        """End the session: delete it from the store and expire the cookie.

        Anything stored afterwards in the same request starts a new session
        under a new ID.
        """
        self._ensure_loaded()
        ended_sid = self._sid or (self._asked.ended_sid if self._asked is not None else None)
        self.stored_as(None, None)
        self._dirty = True
        if ended_sid:
            self._lifecycle().ended_sid = ended_sid

    @property
    def user_id(self) -> Optional[str]:
        """The user this session was bound to with :meth:`bind_user`, if any."""
        self._ensure_loaded()
        if self._asked is not None and self._asked.user_id is not None:
            return self._asked.user_id
        return self._record.user_id if self._record is not None else None

    def bind_user(self, user_id: str) -> None:
        """Record that this session belongs to ``user_id`` (see ``user_sessions``)."""
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        self._lifecycle().user_id = user_id

    def set_expiry(self, seconds: int) -> None:
        """Override the idle timeout for this session only ("remember me").

        A positive number keeps the session for that many idle seconds with a
        persistent cookie; 0 gives a browser-session cookie with the default
        idle timeout. The middleware's absolute timeout still applies.
        """
        if not isinstance(seconds, int) or seconds < 0:
            raise ValueError("seconds must be an int >= 0")
        self._lifecycle().idle_timeout = seconds

    # -- what the middleware reads when saving ---------------------------------------

    def changes(self) -> Changes:
        """Everything saving must persist, values as JSON text.

        Raises :class:`SessionValueError` naming the first value that cannot be
        encoded; nothing is written in that case.
        """
        if self._loader is not None:
            self._load()
        if not self._dirty:
            return NO_CHANGES
        changed = {}
        raw = self._raw
        for key, value in self._values.items():
            if key not in self._assigned and isinstance(value, _IMMUTABLE):
                continue
            try:
                # A counter, the commonest value: an int's JSON text is its repr, which spares
                # the encoder building a C encoder object for it.
                text = repr(value) if type(value) is int else _encode(value)
            except (TypeError, ValueError) as error:  # not JSON; an int too long to convert
                raise SessionValueError(key, value) from error
            if raw.get(key) != text:
                changed[key] = text
        removed = frozenset(self._removed) if self._removed else _NO_KEYS
        asked = self._asked
        if asked is None:
            if not (changed or removed):
                return NO_CHANGES
            # The commonest write. tuple.__new__ skips the NamedTuple's own __new__, Python
            # code: every field is given, in order.
            return tuple.__new__(Changes, (changed, removed, False, None, None, None, False, not removed))
        return Changes(
            changed,
            removed,
            asked.regenerate,
            asked.ended_sid,
            asked.user_id,
            asked.idle_timeout,
            asked.reissue,
        )

    def full_data(self, changed: Mapping[str, str]) -> dict[str, str]:
        """Every key's JSON text once ``changed`` (from :meth:`changes`) is applied."""
        self._ensure_loaded()
        data = {key: text for key, text in self._raw.items() if key not in self._removed}
        data.update(changed)
        return data


class _Lifecycle:
    """What lifecycle calls asked of a session's next save (see :class:`Changes`)."""

    __slots__ = ("regenerate", "ended_sid", "user_id", "idle_timeout", "reissue")

    def __init__(self) -> None:
        self.regenerate = False
        self.ended_sid: Optional[str] = None
        self.user_id: Optional[str] = None
        self.idle_timeout: Optional[int] = None
        self.reissue = False


def _after_values_saved(source: tuple[str, Record, Changes]) -> tuple[str, Record, bool]:
    """The loader of a session after :meth:`Session.values_saved`."""
    sid, record, changes = source
    return sid, record.updated(changes.changed, changes.removed, record.expires_at), False
