"""The apps under test: the same three endpoints behind each session layer.

Every app answers ``GET /untouched`` (the handler ignores the session, though
the cookie is sent), ``GET /read`` (``session.get("n")``) and ``GET /write``
(``session["n"] = session.get("n", 0) + 1``), and returns the same small JSON.

- ``bare``: hug, no middleware; the handlers read and write a module-level dict.
- ``floor``: a middleware that only puts a plain dict into the request context,
  read through ``hug.directives.session`` — the cheapest any session layer on
  hug can be.
- ``hug``: hug's own ``SessionMiddleware`` with ``hug.store.InMemoryStore``.
- ``memory``, ``sqlite``, ``redis``, ``postgres``: this package's middleware with each store.

Apps are built by :func:`build` (in this process, for in-process calls) or by
``bench.apps:wsgi("kind")`` (for gunicorn, configured from the environment).
:func:`make_store` and :func:`middleware` take the package to build on (this
checkout's ``hug_cookie_sessions`` unless told), so that ``bench.compare`` can
build the same apps on an older commit's copy imported under another name.
"""

# No "from __future__ import annotations" here: hug reads the directive annotations at run time.
import importlib
import itertools
import os
import secrets
import tempfile
from types import ModuleType
from typing import Any, Callable, Optional

import hug
import hug.middleware
import hug.store

import hug_cookie_sessions

KINDS = ("bare", "floor", "hug", "memory", "sqlite", "redis", "postgres")
#: The stores behind a network round trip: their bars dwarf the rest of the chart.
REMOTE_KINDS = ("redis", "postgres")
PATHS = ("untouched", "read", "write")
LABELS = {
    "bare": "bare hug",
    "floor": "floor",
    "hug": "hug built-in",
    "memory": "MemoryStore",
    "sqlite": "SQLiteStore",
    "redis": "RedisStore",
    "postgres": "PostgresStore",
}

#: The secret is per run; nothing signed here outlives the benchmark.
SECRET = os.environ.get("BENCH_SECRET") or secrets.token_hex(32)

_names = itertools.count()


class FloorMiddleware:
    """Puts a fresh plain dict into the request context; nothing else."""

    def process_request(self, req: Any, resp: Any) -> None:
        req.context["session"] = {}


def _store_class(package: ModuleType, module_name: str, class_name: str) -> Optional[type]:
    """``package.stores.<module_name>.<class_name>`` if ``package`` has it (and its client
    library is installed), else None: an older commit's copy may lack it."""
    try:
        module = importlib.import_module(f"{package.__name__}.stores.{module_name}")
    except ImportError:
        return None
    return getattr(module, class_name, None)


def redis_store_class(package: ModuleType = hug_cookie_sessions) -> Optional[type]:
    """``RedisStore`` if ``package`` has it, else None."""
    return _store_class(package, "redis", "RedisStore")


def postgres_store_class(package: ModuleType = hug_cookie_sessions) -> Optional[type]:
    """``PostgresStore`` if ``package`` has it (and psycopg is installed), else None."""
    return _store_class(package, "postgres", "PostgresStore")


def redis_unavailable_reason(url: str) -> Optional[str]:
    """Why the Redis rows cannot run (None when they can)."""
    if redis_store_class() is None:
        return "hug_cookie_sessions.stores.redis is not in this checkout"
    try:
        import redis

        redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping()
    except Exception as error:  # any failure to answer means "not available" here
        return f"Redis at {url} does not answer ({type(error).__name__})"
    return None


def postgres_unavailable_reason(url: str) -> Optional[str]:
    """Why the PostgreSQL rows cannot run (None when they can)."""
    if postgres_store_class() is None:
        return "hug_cookie_sessions.stores.postgres is not importable here (psycopg installed?)"
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as db:
            db.execute("SELECT 1")
    except Exception as error:  # any failure to answer means "not available" here
        return f"PostgreSQL at {url} does not answer ({type(error).__name__})"
    return None


def make_store(
    kind: str,
    *,
    package: ModuleType = hug_cookie_sessions,
    sqlite_path: str = "",
    redis_client: Any = None,
    pg_url: str = "",
    prefix: str = "",
) -> Any:
    """``package``'s store for a ``memory``, ``sqlite``, ``redis`` or ``postgres`` app.

    ``prefix`` is Redis's key prefix, or PostgreSQL's table prefix (``session`` if empty).
    """
    if kind == "memory":
        return package.MemoryStore()
    if kind == "sqlite":
        return package.SQLiteStore(sqlite_path)
    if kind == "redis":
        return redis_store_class(package)(redis_client, prefix=prefix)
    if kind == "postgres":
        return postgres_store_class(package)(pg_url, table_prefix=prefix or "session")
    raise ValueError(f"{kind!r} apps have no store of this package")


def middleware(
    kind: str,
    *,
    package: ModuleType = hug_cookie_sessions,
    store: Any = None,
    sqlite_path: str = "",
    redis_client: Any = None,
    pg_url: str = "",
    prefix: str = "",
) -> Any:
    """The session middleware for ``kind`` (None for ``bare``), on ``store`` if given.

    Pass ``store`` to keep a handle on it (``bench.compare`` times its calls alone).
    """
    if kind == "bare":
        return None
    if kind == "floor":
        return FloorMiddleware()
    if kind == "hug":
        return hug.middleware.SessionMiddleware(hug.store.InMemoryStore())
    if store is None:
        store = make_store(
            kind,
            package=package,
            sqlite_path=sqlite_path,
            redis_client=redis_client,
            pg_url=pg_url,
            prefix=prefix,
        )
    return package.SessionMiddleware(SECRET, store)


def build(kind: str, mw: Any) -> Callable:
    """A fresh hug API with the three endpoints behind ``mw``; returns its WSGI callable."""
    api = hug.API(f"bench_{kind}_{next(_names)}")
    if mw is not None:
        api.http.add_middleware(mw)
    if kind == "bare":
        state: dict = {}

        def untouched() -> dict:
            return {"ok": True}

        def read() -> dict:
            return {"n": state.get("n")}

        def write() -> dict:
            state["n"] = state.get("n", 0) + 1
            return {"n": state["n"]}

    else:

        def untouched() -> dict:
            return {"ok": True}

        def read(session: hug.directives.session) -> dict:
            return {"n": session.get("n")}

        def write(session: hug.directives.session) -> dict:
            session["n"] = session.get("n", 0) + 1
            return {"n": session["n"]}

    for handler in (untouched, read, write):
        hug.get(f"/{handler.__name__}", api=api)(handler)
    return api.http.server()


def wsgi(kind: str) -> Callable:
    """The app for gunicorn (``bench.apps:wsgi("sqlite")``), configured by ``BENCH_*`` variables
    (``BENCH_SQLITE_PATH``; ``BENCH_REDIS_URL``, ``BENCH_REDIS_PREFIX``; ``BENCH_PG_URL``,
    ``BENCH_PG_PREFIX``)."""
    client = None
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    mw = middleware(
        kind,
        sqlite_path=os.environ.get("BENCH_SQLITE_PATH") or os.path.join(tempfile.mkdtemp(), "s.db"),
        redis_client=client,
        pg_url=os.environ.get("BENCH_PG_URL", ""),
        prefix=(
            os.environ.get("BENCH_PG_PREFIX", "session")
            if kind == "postgres"
            else os.environ.get("BENCH_REDIS_PREFIX", "bench:")
        ),
    )
    return build(kind, mw)
