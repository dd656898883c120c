"""``MemoryStore``: sessions in a dict of this process. For one process only.

Sessions vanish on restart and are not shared between worker processes; use
``SQLiteStore`` for one host and ``RedisStore`` for several.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Callable, Collection, Mapping, Optional

from .base import Record


class MemoryStore:
    """Thread-safe, TTL-expiring, bounded: past ``max_sessions`` the oldest session goes first."""

    def __init__(self, max_sessions: int = 100_000, *, clock: Callable[[], float] = time.time) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self._clock = clock
        self._records: dict[str, Record] = {}  # oldest first: dicts keep insertion order
        self._session_locks: dict[str, tuple[str, float]] = {}  # sid: (token, lease ends)
        self._lock = threading.Lock()

    def load(self, sid: str) -> Optional[Record]:
        # No lock: one dict lookup is atomic, and a record is never changed in place
        # (apply() replaces it), so a reader sees the old record or the new one.
        record = self._records.get(sid)
        if record is None or record.expires_at <= self._clock():
            return None
        return record

    def create(self, sid: str, record: Record) -> None:
        with self._lock:
            if len(self._records) >= self.max_sessions:
                self._purge_expired_locked()
                while len(self._records) >= self.max_sessions:
                    del self._records[next(iter(self._records))]
            self._records[sid] = record

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
            record = self._records.get(sid)
            if record is None or record.expires_at <= self._clock():
                return False
            self._records[sid] = record.updated(changed, removed, expires_at, user_id, idle_timeout)
            return True

    def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        with self._lock:
            old = self._records.pop(old_sid, None)
            if old is None or old.expires_at <= self._clock():
                return False
            self._records[new_sid] = record
            return True

    def delete(self, sid: str) -> None:
        with self._lock:
            self._records.pop(sid, None)

    def user_sessions(self, user_id: str) -> dict[str, Record]:
        now = self._clock()
        with self._lock:
            return {
                sid: replace(record, data={})
                for sid, record in self._records.items()
                if record.user_id == user_id and record.expires_at > now
            }

    def delete_user_sessions(self, user_id: str) -> int:
        with self._lock:
            sids = [sid for sid, record in self._records.items() if record.user_id == user_id]
            for sid in sids:
                del self._records[sid]
            return len(sids)

    def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock (``lock=True``) unless another live lease holds it. In-process only."""
        now = self._clock()
        with self._lock:
            held = self._session_locks.get(sid)
            if held is not None and held[1] > now:
                return False
            self._session_locks[sid] = (token, now + lease)
            return True

    def release_lock(self, sid: str, token: str) -> None:
        with self._lock:
            held = self._session_locks.get(sid)
            if held is not None and held[0] == token:
                del self._session_locks[sid]

    def purge_expired(self) -> int:
        """Drop expired sessions now; returns how many."""
        with self._lock:
            return self._purge_expired_locked()

    def _purge_expired_locked(self) -> int:
        now = self._clock()
        expired = [sid for sid, record in self._records.items() if record.expires_at <= now]
        for sid in expired:
            del self._records[sid]
        return len(expired)

    def __len__(self) -> int:
        """Live (unexpired) sessions."""
        now = self._clock()
        with self._lock:
            return sum(1 for record in self._records.values() if record.expires_at > now)
