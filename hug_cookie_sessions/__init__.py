"""Signed-cookie, server-side sessions for hug and Falcon."""

from .locking import LockingStore, LockTimeout
from .middleware import SessionBusy, SessionInfo, SessionMiddleware, SessionUnavailable
from .session import Session, SessionValueError
from .stores.base import Record, SessionStoreError, Store, UserIndex
from .stores.hug_adapter import HugStoreAdapter
from .stores.memory import MemoryStore
from .stores.sqlite import SQLiteStore
from .stores.url import store_from_url

__all__ = [
    "HugStoreAdapter",
    "LockTimeout",
    "LockingStore",
    "MemoryStore",
    "Record",
    "SQLiteStore",
    "Session",
    "SessionBusy",
    "SessionInfo",
    "SessionMiddleware",
    "SessionStoreError",
    "SessionUnavailable",
    "SessionValueError",
    "Store",
    "UserIndex",
    "store_from_url",
]
