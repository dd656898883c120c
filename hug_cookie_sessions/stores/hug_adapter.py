"""``HugStoreAdapter``: use a hug-style store (``get``/``exists``/``set``/``delete``).

Moving from ``hug.middleware.SessionMiddleware`` is then one line: pass the same
store object (for example ``hug.store.InMemoryStore()``) to
``SessionMiddleware``. Such stores hold one value per session and offer no
atomic update, so per-key merging and the no-resurrection check are only as
good as the wrapped store: two overlapping requests may overwrite each other.
Prefer a built-in store for anything shared.
"""

from __future__ import annotations

import threading
from typing import Any, Collection, Mapping, Optional, Protocol

from .base import Record, checked_record, unreadable

_FIELDS = ("created_at", "expires_at", "user_id", "idle_timeout", "label")


class HugStore(Protocol):
    """A hug-style store (``hug.store.InMemoryStore`` and its kin): one value per session ID."""

    def get(self, key: str) -> Any: ...

    def exists(self, key: str) -> bool: ...

    def set(self, key: str, data: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class HugStoreAdapter:
    """Presents a hug-style store through the session store protocol."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._lock = threading.Lock()

    def load(self, sid: str) -> Optional[Record]:
        if not self.store.exists(sid):
            return None
        stored = self.store.get(sid)
        if not isinstance(stored, dict) or "data" not in stored:
            return None  # not a record of ours (hug's own sessions are plain dicts): no session
        try:
            return checked_record(stored["data"], *(stored.get(name) for name in _FIELDS))
        except ValueError as error:  # ours, but changed behind our back: no session, logged
            return unreadable(sid, error)

    def create(self, sid: str, record: Record) -> None:
        self.store.set(sid, _as_dict(record))

    def apply(
        self,
        sid: str,
        changed: Mapping[str, str],
        removed: Collection[str],
        expires_at: float,
        *,
        user_id: Optional[str] = None,
        idle_timeout: Optional[int] = None,
    ) -> bool:
        with self._lock:
            record = self.load(sid)
            if record is None:
                return False
            self.store.set(sid, _as_dict(record.updated(changed, removed, expires_at, user_id, idle_timeout)))
            return True

    def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        with self._lock:
            if self.load(old_sid) is None:
                return False
            self.store.delete(old_sid)
            self.store.set(new_sid, _as_dict(record))
            return True

    def delete(self, sid: str) -> None:
        self.store.delete(sid)


def _as_dict(record: Record) -> dict[str, Any]:
    return {"data": dict(record.data), **{name: getattr(record, name) for name in _FIELDS}}
