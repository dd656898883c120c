"""Signed-cookie, server-side sessions for hug and Falcon."""

from .middleware import SessionMiddleware, SessionUnavailable
from .session import Session, SessionValueError
from .stores.base import Record, SessionStoreError, Store
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
    "SessionMiddleware",
    "SessionStoreError",
    "SessionUnavailable",
    "SessionValueError",
    "Store",
    "store_from_url",
]
