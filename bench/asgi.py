"""``make bench-asgi``: this package on ``falcon.asgi.App`` beside starsessions on Starlette.

Each session layer is measured as µs over its own framework's bare app (the same
three endpoints, no middleware), in-process: every request is one ASGI call
(``scope``, ``receive``, ``send``) on one event loop, no sockets. Rows:

- ours: ``SessionMiddleware`` with ``MemoryStore``, ``SQLiteStore`` (in a
  thread, :func:`~hug_cookie_sessions.stores.aio.as_async_store`) and
  ``AsyncRedisStore``, over a bare ``falcon.asgi.App``;
- starsessions 2.2: ``InMemoryStore`` and ``RedisStore`` (on the same kind of
  ``redis.asyncio`` client), over a bare Starlette app; its handlers call
  ``await load_session(request)`` on read and write (it loads on request).

``untouched`` sends the cookie to a handler that ignores the session; ``read``
reads ``n``; ``write`` increments it. Store calls per request are counted in a
separate, untimed pass through a counting wrapper around each store. All apps
run interleaved in every round, in a new random order (:mod:`bench.sidebyside`),
and every figure is a median of per-round paired differences to the bare app,
once by wall time and once by this process's CPU time (which leaves out Redis's
own work and the waits for it to be scheduled: on a shared machine those make
most of a round trip's wall time, and they are not the session layer's).

Needs Falcon >= 3 (ASGI), Starlette and starsessions, so it runs in its own
environment: ``make bench-asgi`` builds ``.venv-asgi``. ``--output FILE``
replaces the "ASGI side by side" section of that Markdown file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any, Callable

import falcon
import falcon.asgi
import redis.asyncio as aioredis
import starsessions
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starsessions.stores.redis import RedisStore as StarRedisStore

import hug_cookie_sessions as ours
from hug_cookie_sessions.stores.redis_async import AsyncRedisStore

from .sections import ASGI, replace_section
from .sidebyside import measure

PATHS = ("untouched", "read", "write")
SECRET = os.urandom(32).hex()
#: (row, label, bare row it is measured against)
ROWS = (
    ("ours-memory", "MemoryStore (Falcon ASGI)", "bare-falcon"),
    ("ours-sqlite", "SQLiteStore (Falcon ASGI)", "bare-falcon"),
    ("ours-redis", "AsyncRedisStore (Falcon ASGI)", "bare-falcon"),
    ("star-memory", "starsessions InMemoryStore (Starlette)", "bare-starlette"),
    ("star-redis", "starsessions RedisStore (Starlette)", "bare-starlette"),
)


class Counting:
    """Forwards every method to ``store`` and counts the calls by name (the untimed pass)."""

    def __init__(self, store: Any, counts: Counter) -> None:
        self.store, self.counts = store, counts

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if not callable(method):
            return method
        counts = self.counts
        if asyncio.iscoroutinefunction(method):

            async def counted(*args: Any, **kwargs: Any) -> Any:
                counts[name] += 1
                return await method(*args, **kwargs)

        else:

            def counted(*args: Any, **kwargs: Any) -> Any:
                counts[name] += 1
                return method(*args, **kwargs)

        return counted


# -- the apps ------------------------------------------------------------------------------


def falcon_app(middleware: Any = None) -> Any:
    """The three endpoints on ``falcon.asgi.App``; bare (module-state) when no middleware."""
    state: dict = {}

    def session(req: Any) -> Any:
        return req.context.session if middleware is not None else state

    class Untouched:
        async def on_get(self, req: Any, resp: Any) -> None:
            resp.media = {"ok": True}

    class Read:
        async def on_get(self, req: Any, resp: Any) -> None:
            resp.media = {"n": session(req).get("n")}

    class Write:
        async def on_get(self, req: Any, resp: Any) -> None:
            data = session(req)
            data["n"] = data.get("n", 0) + 1
            resp.media = {"n": data["n"]}

    app = falcon.asgi.App(middleware=[middleware] if middleware is not None else [])
    for path, resource in zip(PATHS, (Untouched(), Read(), Write())):
        app.add_route(f"/{path}", resource)
    return app


def starlette_app(store: Any = None) -> Any:
    """The three endpoints on Starlette; with starsessions on ``store`` unless bare."""
    state: dict = {}

    async def session(request: Any) -> Any:
        if store is None:
            return state
        await starsessions.load_session(request)
        return request.session

    async def untouched(request: Any) -> Any:
        return JSONResponse({"ok": True})

    async def read(request: Any) -> Any:
        return JSONResponse({"n": (await session(request)).get("n")})

    async def write(request: Any) -> Any:
        data = await session(request)
        data["n"] = data.get("n", 0) + 1
        return JSONResponse({"n": data["n"]})

    routes = [Route(f"/{handler.__name__}", handler) for handler in (untouched, read, write)]
    app = Starlette(routes=routes)
    if store is not None:
        app.add_middleware(
            starsessions.SessionMiddleware, store=store, cookie_https_only=False, lifetime=3600
        )
    return app


def build(redis_url: str, sqlite_path: str, prefix: str, counts: dict[str, Counter]) -> dict[str, Any]:
    """Every app by row name; with ``counts`` given, stores are wrapped to count their calls."""

    def wrap(row: str, store: Any) -> Any:
        return Counting(store, counts.setdefault(row, Counter())) if counts is not None else store

    client = aioredis.Redis.from_url(redis_url)
    mine = {
        "ours-memory": ours.MemoryStore(),
        "ours-sqlite": ours.SQLiteStore(sqlite_path),
        "ours-redis": AsyncRedisStore(client, prefix=prefix),
    }
    theirs = {
        "star-memory": starsessions.InMemoryStore(),
        "star-redis": StarRedisStore(connection=client, prefix=prefix + "star:"),
    }
    apps = {"bare-falcon": falcon_app(), "bare-starlette": starlette_app()}
    for row, store in mine.items():
        apps[row] = falcon_app(ours.SessionMiddleware(SECRET, wrap(row, store), cookie_secure=False))
    for row, store in theirs.items():
        apps[row] = starlette_app(wrap(row, store))
    return apps


# -- one ASGI request, in process ------------------------------------------------------------


def scope_for(path: str, cookie: str) -> dict:
    """A GET of ``path`` as an ASGI server passes it; ``cookie`` its Cookie header (none if empty)."""
    path = "/" + path.lstrip("/")
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def call(app: Any, scope: dict) -> tuple[int, list]:
    """One request: the status and the response headers."""
    sent: list = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(dict(scope), _receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    return start["status"], start["headers"]


async def session_cookie(app: Any) -> str:
    """``name=value`` of a session the app has just created (by a write), or none for a bare app."""
    status, headers = await call(app, scope_for("write", ""))
    if status != 200:
        raise RuntimeError(f"preparing a session failed: {status}")
    for name, value in headers:
        if name.lower() == b"set-cookie":
            return value.decode().split(";", 1)[0]
    return "session=" + "x" * 43 + "." + "y" * 43


async def scopes(apps: dict[str, Any]) -> dict[tuple[str, str], dict]:
    """Each (row, path)'s scope with its app's own session cookie, checked to answer 200."""
    found = {}
    for row, app in apps.items():
        cookie = await session_cookie(app)
        for path in PATHS:
            found[row, path] = scope = scope_for(path, cookie)
            status, _ = await call(app, scope)
            if status != 200:
                raise RuntimeError(f"{row} /{path}: {status}")
    return found


def store_calls(loop: asyncio.AbstractEventLoop, redis_url: str, sqlite_path: str, prefix: str) -> dict:
    """Store calls per request of each row and path: an untimed pass through counting stores."""
    counts: dict[str, Counter] = {}
    apps = build(redis_url, sqlite_path, prefix + "count:", counts)
    requests = 20
    per_request = {}
    prepared = loop.run_until_complete(scopes(apps))
    for (row, path), scope in prepared.items():
        if row.startswith("bare"):
            continue
        counts[row].clear()
        for _ in range(requests):
            loop.run_until_complete(call(apps[row], scope))
        calls = counts[row]
        per_request[row, path] = {name: number / requests for name, number in sorted(calls.items())}
    return per_request


def timed(
    loop: asyncio.AbstractEventLoop, apps: dict, prepared: dict, rounds: int, number: int, clock: Callable
) -> dict:
    """µs per request of each (row, path) by ``clock``, one figure per round, all interleaved."""
    run = loop.run_until_complete

    def request(app: Any, scope: dict) -> Callable[[], object]:
        return lambda: run(call(app, scope))

    funcs = {f"{row} {path}": request(apps[row], scope) for (row, path), scope in prepared.items()}
    comparison = measure(funcs, rounds=rounds, number=number, chunks=min(10, number), clock=clock)
    return {tuple(name.split(" ")): comparison.rounds[name] for name in funcs}


def table(per_round: dict, calls: dict) -> list[str]:
    """The Markdown table: per row and path, µs over its bare app and store calls per request."""
    lines = [
        "| session layer | " + " | ".join(f"{path} µs over bare (store calls)" for path in PATHS) + " |",
        "|---|" + "---:|" * len(PATHS),
    ]
    for row, label, bare in ROWS:
        cells = []
        for path in PATHS:
            over = statistics.median(a - b for a, b in zip(per_round[row, path], per_round[bare, path]))
            made = calls.get((row, path), {})
            named = ", ".join(f"{number:g} {name}" for name, number in made.items()) or "0"
            cells.append(f"{over:.1f} ({named})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for bare, label in (("bare-falcon", "bare falcon.asgi.App"), ("bare-starlette", "bare Starlette")):
        cells = [f"{statistics.median(per_round[bare, path]):.1f} µs per request" for path in PATHS]
        lines.append(f"| {label} (absolute) | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--number", type=int, default=100, help="requests per app and path per round")
    parser.add_argument("--output", help="Markdown file whose ASGI section to replace")
    args = parser.parse_args()
    prefix = f"bench-asgi:{os.getpid()}:"
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory() as tmp:
        calls = store_calls(loop, args.redis_url, os.path.join(tmp, "count.db"), prefix)
        apps = build(args.redis_url, os.path.join(tmp, "s.db"), prefix, None)
        prepared = loop.run_until_complete(scopes(apps))
        started = time.monotonic()
        wall = timed(loop, apps, prepared, args.rounds, args.number, time.perf_counter)
        cpu = timed(loop, apps, prepared, args.rounds, args.number, time.process_time)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    packages = ("falcon", "starlette", "starsessions", "redis")
    versions = ", ".join(f"{name} {version(name)}" for name in packages)
    lines = [
        ASGI,
        "",
        f"{when}, {platform.machine()} ({os.cpu_count()} cores, shared), Python {platform.python_version()}, "
        f"{versions}; `make bench-asgi` ({args.rounds} rounds of {args.number} requests per app and path, "
        f"{time.monotonic() - started:.0f} s). Medians of per-round paired differences to each "
        "framework's own bare app; in-process ASGI calls, Redis on loopback.",
        "",
        "Wall time (what a client waits; on a busy machine a loopback round trip is mostly the wait",
        "for redis-server to be scheduled):",
        "",
        *table(wall, calls),
        "",
        "This process's CPU time (`time.process_time`: the layer's own work, SQLite's worker thread",
        "included, Redis's server time and the scheduling waits left out):",
        "",
        *table(cpu, calls),
        "",
    ]
    print("\n".join(lines))
    if args.output:
        with open(args.output) as previous:
            text = replace_section(previous.read(), ASGI, "\n".join(lines) + "\n")
        with open(args.output, "w") as out:
            out.write(text)


if __name__ == "__main__":
    main()
