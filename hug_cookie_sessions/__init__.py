"""Signed-cookie, server-side sessions for hug and Falcon.

``RedisStore``, ``AsyncRedisStore``, ``PostgresStore`` and ``AsyncPostgresStore`` are imported
on first use, so the ``redis`` package, and psycopg with psycopg-pool, are needed only by those who
use them (``pip install 'hug-cookie-sessions[redis]'``, ``[postgres]``).
"""

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    LockTimeout,
    SessionBusy,
    SessionStoreError,
    SessionTooLarge,
    SessionUnavailable,
    SessionValueError,
)
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
    from .stores.postgres import PostgresStore as PostgresStore
    from .stores.postgres_async import AsyncPostgresStore as AsyncPostgresStore
    from .stores.redis import RedisStore as RedisStore  # not in __all__: star imports need no redis
    from .stores.redis_async import AsyncRedisStore as AsyncRedisStore

#: The release, the one place it is written: setup.cfg reads it, ``hug-sessions --version`` prints it.
__version__ = "0.1.0"

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
    "SessionTooLarge",
    "SessionUnavailable",
    "SessionValueError",
    "Store",
    "UserIndex",
    "store_from_url",
]


#: The stores whose driver is an optional extra, by the module that holds each.
_LAZY = {
    "RedisStore": "redis",
    "AsyncRedisStore": "redis_async",
    "PostgresStore": "postgres",
    "AsyncPostgresStore": "postgres_async",
}


def __getattr__(name: str) -> Any:
    """Import a store of :data:`_LAZY` when it is first asked for."""
    if name in _LAZY:
        module = importlib.import_module(f".stores.{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
