"""``MemoryStore``: sessions in a dict of this process. For one process only.

Sessions vanish on restart and are not shared between worker processes; use
``SQLiteStore`` for one host and ``RedisStore`` for several.

When full, a new session makes room in constant time (amortised), whatever the
store holds: a bot creating sessions as fast as it can must not slow every other
writer of the process, nor log signed-in users out. So besides the records the
store keeps three indexes, all updated under its lock by every write:

- two insertion-ordered dicts of session IDs, ``anonymous`` and ``bound`` (to a
  user), least recently *written* first: a write moves its session to the end;
- the expiry index: session IDs by the minute their record expires in
  (:data:`EXPIRY_BUCKET_SECONDS`), with a min-heap of those minutes.

Eviction then looks at the front of each, never at every record.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Callable, Collection, Mapping, Optional

from .base import Record

#: Width of one slot of the expiry index. Eviction recognises a session as expired without
#: looking at it once the whole slot its expiry falls in has passed; wider slots mean fewer
#: of them (at most one per slot up to the furthest expiry, kept until it passes), narrower
#: ones that a session expired under a minute ago is found sooner (the oldest bound session
#: is also checked, so with one timeout for everyone expired sessions go first to the second).
EXPIRY_BUCKET_SECONDS = 60.0


class MemoryStore:
    """Thread-safe, TTL-expiring, bounded to ``max_sessions``.

    When full, a new session takes the place of, in this order: an expired session;
    the least recently active session bound to no user; the least recently active
    signed-in one. A bot's flood of new sessions therefore evicts its own anonymous
    sessions, not the users who logged in. Each step is constant time (amortised).

    "Active" means written: created, changed by ``apply`` (which includes the expiry
    refresh the middleware makes as a visitor keeps coming) or rotated. A ``load`` takes
    no lock and changes nothing, so reading stays as cheap as a dict lookup; a reader
    who only reads still counts as active at every expiry refresh.
    """

    def __init__(self, max_sessions: int = 100_000, *, clock: Callable[[], float] = time.time) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self._clock = clock
        self._records: dict[str, Record] = {}
        # OrderedDict, not dict, for the orders: deleting at the front of a plain dict
        # leaves holes that every later ``next(iter(...))`` walks over until the next resize.
        # Least recently written first; each ID maps to its expiry slot's dict (below).
        self._anonymous: OrderedDict[str, dict[str, None]] = OrderedDict()
        self._bound: OrderedDict[str, dict[str, None]] = OrderedDict()
        # Slot number: the IDs whose expiry falls in it. A dict, not a set: a third of the
        # memory per ID, and popitem() is as quick as set.pop().
        self._expiring: dict[float, dict[str, None]] = {}
        self._slots: list[float] = []  # a heap of the keys of _expiring, each once
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
            if sid in self._records:  # IDs are never reused; this keeps the indexes whole if one is
                self._forget(sid)
            if len(self._records) >= self.max_sessions:
                now = self._clock()
                while len(self._records) >= self.max_sessions:
                    self._evict_one(now)
            self._records[sid] = record
            self._index(sid, record)

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
            new = record.updated(changed, removed, expires_at, user_id, idle_timeout)
            self._records[sid] = new
            self._reindex(sid, record, new)
            return True

    def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        with self._lock:
            old = self._records.get(old_sid)
            if old is None or old.expires_at <= self._clock():
                return False
            self._forget(old_sid)
            self._records[new_sid] = record
            self._index(new_sid, record)
            return True

    def delete(self, sid: str) -> None:
        with self._lock:
            self._forget(sid)

    def user_sessions(self, user_id: str) -> dict[str, Record]:
        now = self._clock()
        with self._lock:
            found = {}
            for sid in self._bound:
                record = self._records[sid]
                if record.user_id == user_id and record.expires_at > now:
                    found[sid] = replace(record, data={})
            return found

    def delete_user_sessions(self, user_id: str) -> int:
        with self._lock:
            sids = [sid for sid in self._bound if self._records[sid].user_id == user_id]
            for sid in sids:
                self._forget(sid)
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
        """Drop expired sessions now; returns how many.

        Costs the number of expired sessions plus one slot of the expiry index, not a
        walk over every record: every slot that has wholly passed is dropped whole, and
        only the current one is looked into.
        """
        now = self._clock()
        current = now // EXPIRY_BUCKET_SECONDS
        dropped = 0
        with self._lock:
            while self._slots and self._slots[0] <= current:
                slot = self._slots[0]
                members = self._expiring[slot]
                expired = [sid for sid in members if self._records[sid].expires_at <= now]
                for sid in expired:
                    self._forget(sid)
                dropped += len(expired)
                if slot == current:
                    break
                heapq.heappop(self._slots)
                del self._expiring[slot]
        return dropped

    def __len__(self) -> int:
        """Live (unexpired) sessions."""
        now = self._clock()
        with self._lock:
            return sum(1 for record in self._records.values() if record.expires_at > now)

    # -- the indexes (callers hold the lock) --------------------------------------------------

    def _index(self, sid: str, record: Record) -> None:
        """Enter ``sid`` at the end of its order and in the slot of its expiry."""
        slot = record.expires_at // EXPIRY_BUCKET_SECONDS
        members = self._expiring.get(slot)
        if members is None:
            members = self._expiring[slot] = {}
            heapq.heappush(self._slots, slot)
        members[sid] = None
        (self._anonymous if record.user_id is None else self._bound)[sid] = members

    def _unindex(self, sid: str, record: Record) -> None:
        members = (self._anonymous if record.user_id is None else self._bound).pop(sid, None)
        if members is not None:
            members.pop(sid, None)  # an empty slot stays until it reaches the heap's top

    def _reindex(self, sid: str, old: Record, new: Record) -> None:
        """``sid`` was just written: from ``old`` to ``new``."""
        same_slot = old.expires_at // EXPIRY_BUCKET_SECONDS == new.expires_at // EXPIRY_BUCKET_SECONDS
        if (old.user_id is None) is (new.user_id is None) and same_slot:
            # Most writes keep both the user and the expiry's slot: one O(1) move.
            (self._anonymous if new.user_id is None else self._bound).move_to_end(sid)
            return
        self._unindex(sid, old)
        self._index(sid, new)

    def _forget(self, sid: str) -> None:
        """Remove ``sid``'s record and its index entries, if it has any."""
        record = self._records.pop(sid, None)
        if record is not None:
            self._unindex(sid, record)

    def _evict_one(self, now: float) -> None:
        """Drop the session a new one replaces in a full store (see the class docstring).

        First a session of the oldest slot of the expiry index if that slot has wholly
        passed; empty slots met there are dropped on the way (each was pushed once, so
        this is constant time per write over many calls). Then the least recently written
        signed-in session if it has expired (with one timeout for everyone, the first
        signed-in one to expire); then the least recently written anonymous session.
        """
        slots = self._slots
        while slots and (slots[0] + 1) * EXPIRY_BUCKET_SECONDS <= now:
            members = self._expiring[slots[0]]
            if members:
                self._forget(members.popitem()[0])  # popitem, at the end; iter() starts at holes
                return
            del self._expiring[heapq.heappop(slots)]
        order = self._anonymous
        if not order or (self._bound and self._records[next(iter(self._bound))].expires_at <= now):
            order = self._bound
        # PERF(cold-victim): the order holds the slot's dict, so the victim's record (cold memory)
        # is not read: a create at capacity went from 2.15x to 1.84x one at half capacity.
        sid, members = order.popitem(last=False)
        del members[sid]
        del self._records[sid]
