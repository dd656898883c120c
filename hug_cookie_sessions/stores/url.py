"""``store_from_url``: pick and configure a store from one string (for config files and the CLI)."""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import Store

SCHEMES = ("memory://", "sqlite:///path", "redis://", "rediss://", "unix://", "redis+cluster://")


def store_from_url(url: str) -> Store:
    """A store for ``url``; ValueError, naming the accepted schemes, for anything else.

    ``memory://``; ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``;
    ``redis://``, ``rediss://`` and ``unix://`` for one Redis server;
    ``redis+cluster://host:port`` for a Redis Cluster (any node as the seed).
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
    raise ValueError(f"unsupported session store URL {_redacted(url)!r}; use one of: {', '.join(SCHEMES)}")


def _redacted(url: str) -> str:
    """``url`` without a password, fit for an error message."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable>"
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
