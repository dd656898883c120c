"""What stores key a session by: a one-way hash of its ID, never the ID itself.

The session ID is what the cookie carries: signed with the secret, it opens the
session. So stores never see it. Every store call the middleware makes passes
:func:`store_key` of the ID instead (its SHA-256, 64 hex digits), and that key is
all a store can write: in its data rows, per-user indexes, lock keys and
tombstones. The hash cannot be turned back into the ID, so a store dump or a
backup opens nothing, even together with the secret (Rack has done the same
since CVE-2019-16782). Hashing here, above the store protocol, gives every
store this, a third-party one included, without a change to it.

A session stored by a release before this one sits under its raw ID: *legacy*.
When a session's key finds nothing, :func:`load` asks once more with the ID
itself, so such sessions keep working after an upgrade with no manual step. The
next write of a legacy session moves it to its key (a ``rotate`` from the raw ID
to the key, so that, as with any rotate, no moment has both opening it), and
deleting it removes both. Reads alone leave it where it is. A move carries the
session as stored, and the write's changes follow as an ``apply`` to the key:
two requests that move one session at once both land their changes, key by
key, as on any other session (on every store whose rotate is atomic: not on a
Redis Cluster).
"""

from __future__ import annotations

from typing import Any, Optional

from .policy import Apply, Rotate, Write
from .session_ids import SessionId, store_key
from .stores.base import Record, UserIndex, provides

__all__ = ["SessionId", "delete", "delete_async", "load", "load_async", "store_key", "write", "write_async"]


def load(store: Any, sid: SessionId) -> tuple[SessionId, Optional[Record]]:
    """``sid`` (marked legacy when found under its raw ID) and its record from a blocking store."""
    record = store.load(sid.key)
    if record is not None:
        return sid, record
    record = store.load(str(sid))
    return (SessionId(sid, legacy=True), record) if record is not None else (sid, None)


async def load_async(store: Any, sid: SessionId) -> tuple[SessionId, Optional[Record]]:
    """:func:`load` with an async store."""
    record = await store.load(sid.key)
    if record is not None:
        return sid, record
    record = await store.load(str(sid))
    return (SessionId(sid, legacy=True), record) if record is not None else (sid, None)


def write(store: Any, change: Write) -> bool:
    """Make ``change`` with a blocking ``store``; False if the session had ended meanwhile.

    A legacy session is first moved from its raw ID to its key (unless a concurrent request
    has moved it already); new values then go to the key like any other session's. A
    regenerated one goes from its raw ID straight to its new key.
    """
    if isinstance(change, Apply):
        sid, changed, removed, expires_at, user_id, idle = change
        if sid.legacy:
            _moved(store, sid, sid.key)
        applied = store.apply(sid.key, changed, removed, expires_at, user_id=user_id, idle_timeout=idle)
        return applied is not False
    if isinstance(change, Rotate):
        old, new = change.old_sid, change.sid.key
        if old.legacy and _moved(store, old, new, change.record):
            return True
        return store.rotate(old.key, new, change.record) is not False
    store.create(change.sid.key, change.record)
    return True


async def write_async(store: Any, change: Write) -> bool:
    """:func:`write` with an async ``store``."""
    if isinstance(change, Apply):
        sid, changed, removed, expires_at, user_id, idle = change
        if sid.legacy:
            await _moved_async(store, sid, sid.key)
        applied = await store.apply(sid.key, changed, removed, expires_at, user_id=user_id, idle_timeout=idle)
        return applied is not False
    if isinstance(change, Rotate):
        old, new = change.old_sid, change.sid.key
        if old.legacy and await _moved_async(store, old, new, change.record):
            return True
        return await store.rotate(old.key, new, change.record) is not False
    await store.create(change.sid.key, change.record)
    return True


def _moved(store: Any, sid: SessionId, key: str, record: Optional[Record] = None) -> bool:
    """Rotate legacy ``sid`` from its raw ID to ``key``, holding ``record`` (None: the session
    as stored), then :func:`_forget` the raw ID; False if the raw ID was gone.

    When a concurrent request has moved the session meanwhile, its move stands: the raw ID is
    gone, or on a single Redis the rotate finds the key there and writes nothing (it takes that
    for a retry of its own call). A Redis Cluster's rotate is two steps in two slots, so there
    two moves at once can still end the session (see docs/security.md).
    """
    old = store.load(str(sid))
    if old is None or store.rotate(str(sid), key, old if record is None else record) is False:
        return False
    _forget(store, str(sid), old)
    return True


async def _moved_async(store: Any, sid: SessionId, key: str, record: Optional[Record] = None) -> bool:
    """:func:`_moved` with an async store."""
    old = await store.load(str(sid))
    if old is None or await store.rotate(str(sid), key, old if record is None else record) is False:
        return False
    await _forget_async(store, str(sid), old)
    return True


def _forget(store: Any, raw: str, old: Optional[Record]) -> None:
    """Leave no trace of the raw ID ``raw``, stored as ``old``: delete it (a Redis Cluster rotate
    leaves a tombstone under the old key), and read its user's index, which drops sessions that
    have ended (Redis keeps their entries until then)."""
    store.delete(raw)
    if old is not None and old.user_id is not None and provides(store, UserIndex):
        store.user_sessions(old.user_id)


async def _forget_async(store: Any, raw: str, old: Optional[Record]) -> None:
    """:func:`_forget` with an async store."""
    await store.delete(raw)
    if old is not None and old.user_id is not None and provides(store, UserIndex):
        await store.user_sessions(old.user_id)


def delete(store: Any, sid: SessionId) -> None:
    """End session ``sid`` in a blocking store: if legacy under its raw ID, then under its key.

    In that order: a concurrent write that moves the legacy session to its key either
    ran before (and the key's delete ends it) or finds the raw ID gone, so its own
    write to the key finds no session. The other order lets the move land in between.
    """
    if sid.legacy:
        _forget(store, str(sid), store.load(str(sid)))
    store.delete(sid.key)


async def delete_async(store: Any, sid: SessionId) -> None:
    """:func:`delete` with an async store."""
    if sid.legacy:
        await _forget_async(store, str(sid), await store.load(str(sid)))
    await store.delete(sid.key)
