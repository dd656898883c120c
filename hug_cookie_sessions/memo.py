"""``BoundedMemo``: what a process remembers between requests, bounded whatever clients send."""

from __future__ import annotations

import threading
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(dict[K, V]):
    """A dict of at most ``limit`` entries: :meth:`remember` drops the oldest first.

    Lookups are plain dict lookups, without a lock: one is atomic, and an entry
    is never changed once added.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._lock = threading.Lock()

    def remember(self, key: K, value: V) -> None:
        """Add ``key: value``, first dropping the oldest entry if the memo is full."""
        with self._lock:
            if key not in self and len(self) >= self.limit:
                del self[next(iter(self))]
            self[key] = value
