"""Signed-cookie, server-side sessions for hug and Falcon."""

from .middleware import SessionInfo, SessionMiddleware, SessionUnavailable
from .session import Session, SessionValueError
from .stores.base import Record, SessionStoreError, Store, UserIndex
from .stores.hug_adapter import HugStoreAdapter
from .stores.memory import MemoryStore
from .stores.sqlite import SQLiteStore
from .stores.url import store_from_url

__all__ = [
    "HugStoreAdapter",
    "MemoryStore",
    "Record",
    "SQLiteStore",
    "Session",
    "SessionInfo",
    "SessionMiddleware",
    "SessionStoreError",
    "SessionUnavailable",
    "SessionValueError",
    "Store",
    "UserIndex",
    "store_from_url",
]
