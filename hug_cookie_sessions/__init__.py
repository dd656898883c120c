"""Signed-cookie, server-side sessions for hug and Falcon.

``RedisStore`` and ``AsyncRedisStore`` are imported on first use, so the
``redis`` package is needed only by those who use them (``pip install 'hug-cookie-sessions[redis]'``).
"""

from typing import TYPE_CHECKING, Any

from .errors import LockTimeout, SessionBusy, SessionStoreError, SessionUnavailable, SessionValueError
from .middleware import SessionMiddleware
from .origins import CrossOriginProtection
from .session import Session
from .stores.base import LockingStore, Record, Store, UserIndex
from .stores.hug_adapter import HugStoreAdapter
from .stores.memory import MemoryStore
from .stores.sqlite import SQLiteStore
from .stores.url import store_from_url
from .users import SessionInfo

if TYPE_CHECKING:
    from .stores.redis import RedisStore as RedisStore  # not in __all__: star imports need no redis
    from .stores.redis_async import AsyncRedisStore as AsyncRedisStore

__all__ = [
    "CrossOriginProtection",
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


def __getattr__(name: str) -> Any:
    """Import ``RedisStore`` or ``AsyncRedisStore`` when it is first asked for."""
    if name == "RedisStore":
        from .stores.redis import RedisStore

        return RedisStore
    if name == "AsyncRedisStore":
        from .stores.redis_async import AsyncRedisStore

        return AsyncRedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
