"""Stores from what an app passes: ``store_from_url`` for one string (config files, the CLI,
the environment), ``adapt_store`` for the middleware's ``store`` option."""

from __future__ import annotations

from typing import Any, Optional, cast

from .base import Store, provides, redacted_url
from .hug_adapter import HugStore, HugStoreAdapter
from .memory import MemoryStore

SCHEMES = (
    "memory://",
    "sqlite:///path",
    "redis://",
    "rediss://",
    "unix://",
    "redis+cluster://",
    "postgresql://",
    "postgres://",
)


def store_from_url(url: str) -> Store:
    """A store for ``url``; ValueError, naming the accepted schemes, for anything else.

    ``memory://``; ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``;
    ``redis://``, ``rediss://`` and ``unix://`` for one Redis server;
    ``redis+cluster://host:port`` for a Redis Cluster (any node as the seed);
    ``postgresql://`` or ``postgres://`` (a libpq URL) for PostgreSQL, where an
    extra query parameter ``table_prefix=...`` names the tables and is not passed to libpq.
    """
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "memory" and rest in ("", "/"):
        return MemoryStore()
    if scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        from .sqlite import SQLiteStore

        return SQLiteStore(rest[1:])
    if scheme in ("redis", "rediss", "unix", "redis+cluster"):
        from .redis import RedisStore

        return RedisStore(url)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore
        from .postgres_schema import split_url

        conninfo, table_prefix = split_url(url)
        return PostgresStore(conninfo, table_prefix=table_prefix or "session")
    raise ValueError(f"unsupported session store URL {redacted_url(url)!r}; use one of: {', '.join(SCHEMES)}")


def adapt_store(store: Optional[Any]) -> Store:
    """``store`` itself if it speaks the store protocol; a hug-style store wrapped; a URL
    (from the environment, say) built with :func:`store_from_url`; None: memory."""
    if store is None:
        return MemoryStore()
    if isinstance(store, str):
        try:
            return store_from_url(store)
        except ValueError as error:
            raise ValueError(f"store: {error} (a string is read by store_from_url)") from error
    if provides(store, Store):
        return cast(Store, store)
    if provides(store, HugStore):
        return HugStoreAdapter(store)
    raise TypeError(
        "store must implement load/create/apply/rotate/delete, or hug's get/exists/set/delete, "
        "or be a store URL for store_from_url"
    )
