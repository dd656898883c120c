"""``store_from_url``: pick and configure a store from one string (for config files and the CLI)."""

from __future__ import annotations

from .base import Store, redacted_url

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
        from .memory import MemoryStore

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
