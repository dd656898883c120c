"""In-process ASGI benchmark of the requests that do not use the session (issue 21).

Run in an environment with Falcon 3 or 4 (hug's Falcon 2.0 has no ASGI), from the
repository root: ``.nox/falcon4-3-11/bin/python -m bench.asgi_lazy [--quick]``.

``falcon.asgi.App`` apps are called directly (no server, no sockets) with a
request carrying the cookie of a session that exists: ``bare`` (no middleware;
the stand-in cookie), and this package's middleware on ``MemoryStore``,
``SQLiteStore`` and ``AsyncRedisStore`` (on ``--redis-url``). Each path is
timed on each app interleaved in the same rounds (:mod:`bench.sidebyside`), a batch of
requests per event-loop run, by CPU time
(``time.process_time``: the time other processes hold the CPU of a shared machine
is left out; a worker thread's is not); a figure is the median of the per-round
differences to ``bare`` on the same path, in µs per request, with its ~95%
interval. Store calls per request are counted in a separate pass, through a
counting proxy on the middleware's async store (the timed apps have none).

``--base COMMIT`` adds that commit's package (:mod:`bench.basecopy`) on
``MemoryStore`` and ``SQLiteStore``, timed in the same rounds on the paths whose
responders preload the session (what every ASGI app did before it could opt
out), and prints each path's cost over bare for both, their paired difference
and its ratio: what loading after routing costs the apps that do not opt out.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import tempfile
import time
from collections import Counter
from types import ModuleType
from typing import Any, Callable, Optional

import falcon
import falcon.asgi

import hug_cookie_sessions

from .asgi import scope_for
from .basecopy import extract_base, import_base
from .sidebyside import Comparison, measure

SECRET = os.urandom(32).hex()
KINDS = ("bare", "memory", "sqlite", "redis")
#: The stores built on the ``--base`` commit's package too.
BASE_KINDS = ("memory", "sqlite")
#: Sent to the bare app: as long as a session cookie (``bench.inprocess`` imports hug, so not from there).
STAND_IN_COOKIE = "session=" + "x" * 43 + "." + "y" * 43
#: (label, path): what the responder of each path does with the session.
PATHS = {
    "untouched, opted out": "/optout",
    "404": "/nowhere",
    "untouched, preloaded": "/untouched",
    "read, preloaded": "/read",
    "read, aget": "/aread",
    "write, preloaded": "/write",
}
#: The paths a base commit (no opting out, no async accessors) is timed on.
PRELOADED = ("untouched, preloaded", "read, preloaded", "write, preloaded")
#: Requests per event-loop run (the loop's own start is shared out among them).
BATCH = 20


class OptedOut:
    """Never touches the session, and says so."""

    session_preload = False

    async def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"ok": True}


class Untouched:
    """Never touches the session, but does not say so: preloaded as before issue 21."""

    async def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"ok": True}


class Read:
    def __init__(self, state: dict) -> None:
        self.state = state

    async def on_get(self, req: Any, resp: Any) -> None:
        session = req.context.get("session", self.state)
        resp.media = {"n": session.get("n")}


class AsyncRead:
    session_preload = False

    def __init__(self, state: dict) -> None:
        self.state = state

    async def on_get(self, req: Any, resp: Any) -> None:
        session = req.context.get("session")
        resp.media = {"n": await session.aget("n") if session is not None else self.state.get("n")}


class Write:
    def __init__(self, state: dict) -> None:
        self.state = state

    async def on_get(self, req: Any, resp: Any) -> None:
        session = req.context.get("session", self.state)
        session["n"] = session.get("n", 0) + 1
        resp.media = {"n": session["n"]}


def build(
    kind: str, folder: str, package: ModuleType = hug_cookie_sessions, redis_url: str = ""
) -> tuple[Callable, Any]:
    """The ``kind`` app on ``package`` and its middleware (None for ``bare``)."""
    middleware = None
    if kind == "memory":
        middleware = package.SessionMiddleware(SECRET, package.MemoryStore(), cookie_secure=False)
    elif kind == "sqlite":
        path = os.path.join(folder, f"sessions-{len(os.listdir(folder))}.sqlite3")
        middleware = package.SessionMiddleware(SECRET, package.SQLiteStore(path), cookie_secure=False)
    elif kind == "redis":
        redis_async = importlib.import_module(f"{package.__name__}.stores.redis_async")
        store = redis_async.AsyncRedisStore(redis_url, prefix=f"bench-lazy-{os.getpid()}:")
        middleware = package.SessionMiddleware(SECRET, store, cookie_secure=False)
    app = falcon.asgi.App(middleware=[middleware] if middleware else [])
    state: dict = {}
    app.add_route("/optout", OptedOut())
    app.add_route("/untouched", Untouched())
    app.add_route("/read", Read(state))
    app.add_route("/aread", AsyncRead(state))
    app.add_route("/write", Write(state))
    return app, middleware


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def request(app: Callable, request_scope: dict) -> list[dict]:
    """One request; the messages the app sent."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(dict(request_scope), _receive, send)
    return sent


def session_cookie(loop: asyncio.AbstractEventLoop, app: Callable, middleware: Any) -> str:
    """``name=value`` of a session the app has just created, or the stand-in for ``bare``."""
    if middleware is None:
        return STAND_IN_COOKIE
    start = loop.run_until_complete(request(app, scope_for("/write", "")))[0]
    for name, value in start["headers"]:
        if name.lower() == b"set-cookie":
            return value.decode().split(";", 1)[0]
    raise RuntimeError("preparing a session failed: no Set-Cookie")


class CountingCalls:
    """The middleware's async store, counting its calls."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await method(*args, **kwargs)

        return counted


def store_calls(loop: asyncio.AbstractEventLoop, kind: str, folder: str, redis_url: str) -> dict[str, int]:
    """Store calls of one request of each path on a fresh ``kind`` app (expected status: 200/404)."""
    app, middleware = build(kind, folder, redis_url=redis_url)
    cookie = session_cookie(loop, app, middleware)
    counting = middleware.async_store = CountingCalls(middleware.async_store)
    calls = {}
    for label, path in PATHS.items():
        counting.calls.clear()
        status = loop.run_until_complete(request(app, scope_for(path, cookie)))[0]["status"]
        assert status == (404 if path == "/nowhere" else 200), (kind, path, status)
        calls[label] = sum(counting.calls.values())
    return calls


def cells(
    loop: asyncio.AbstractEventLoop, folder: str, redis_url: str, base: Optional[ModuleType]
) -> dict[str, Callable[[], None]]:
    """``"kind path" -> one batch of BATCH requests``, for every app and path; with a ``base``
    package, ``"kind-base path"`` too for its stores on the preloaded paths."""
    batches = {}
    for kind in KINDS:
        app, middleware = build(kind, folder, redis_url=redis_url)
        cookie = session_cookie(loop, app, middleware)
        for label, path in PATHS.items():
            batches[f"{kind} {label}"] = _batch(loop, app, scope_for(path, cookie))
    for kind in BASE_KINDS if base is not None else ():
        app, middleware = build(kind, folder, package=base)
        cookie = session_cookie(loop, app, middleware)
        for label in PRELOADED:
            batches[f"{kind}-base {label}"] = _batch(loop, app, scope_for(PATHS[label], cookie))
    return batches


def _batch(loop: asyncio.AbstractEventLoop, app: Callable, request_scope: dict) -> Callable[[], None]:
    async def many() -> None:
        for _ in range(BATCH):
            await request(app, request_scope)

    return lambda: loop.run_until_complete(many())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--number", type=int, default=100, help="batches per cell per round")
    parser.add_argument("--quick", action="store_true", help="a few rounds, to check that it works")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--base", help="a commit whose package to time side by side on the preloaded paths")
    args = parser.parse_args()
    rounds, number = (3, 10) if args.quick else (args.rounds, args.number)
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory() as folder:
        base = import_base(os.path.dirname(extract_base(args.base, folder))) if args.base else None
        counts = {kind: store_calls(loop, kind, folder, args.redis_url) for kind in KINDS[1:]}
        batches = cells(loop, folder, args.redis_url, base)
        groups = [[name for name in batches if name.endswith(f" {label}")] for label in PATHS]
        result = measure(
            batches,
            rounds=rounds,
            number=number,
            chunks=min(10, number),
            groups=groups,
            clock=time.process_time,
        )
    loop.close()
    print(f"Falcon {falcon.__version__}, {rounds} rounds of {number} x {BATCH} requests per cell")
    print_over_bare(result, counts)
    if base is not None:
        print(f"\nSide by side with {args.base}: µs over bare (the preloaded paths)")
        print_side_by_side(result)


def print_over_bare(result: Comparison, counts: dict[str, dict[str, int]]) -> None:
    print(
        f"{'path':22} {'bare µs':>8}  "
        + "  ".join(f"{kind + ' µs over bare (calls)':>28}" for kind in KINDS[1:])
    )
    for label in PATHS:
        bare = result.median_us(f"bare {label}") / BATCH
        figures = []
        for kind in KINDS[1:]:
            over = result.diff_us(f"{kind} {label}", f"bare {label}") / BATCH
            low, high = (bound / BATCH for bound in result.diff_ci_us(f"{kind} {label}", f"bare {label}"))
            figures.append(f"{over:+7.2f} [{low:+.2f}, {high:+.2f}] ({counts[kind][label]})")
        print(f"{label:22} {bare:8.2f}  " + "  ".join(f"{figure:>28}" for figure in figures))


def print_side_by_side(result: Comparison) -> None:
    """Per store and preloaded path: base and new over bare, new - base (CI), new/base."""
    print(f"{'store':8} {'path':22} {'base':>7} {'new':>7} {'new - base (95% CI)':>24} {'new/base':>8}")
    for kind in BASE_KINDS:
        for label in PRELOADED:
            bare = f"bare {label}"
            base_over = result.diff_us(f"{kind}-base {label}", bare) / BATCH
            new_over = result.diff_us(f"{kind} {label}", bare) / BATCH
            diff = result.diff_us(f"{kind} {label}", f"{kind}-base {label}") / BATCH
            low, high = (b / BATCH for b in result.diff_ci_us(f"{kind} {label}", f"{kind}-base {label}"))
            interval = f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]"
            ratio = 1 + diff / base_over
            print(f"{kind:8} {label:22} {base_over:7.2f} {new_over:7.2f} {interval:>24} {ratio:8.3f}")


if __name__ == "__main__":
    main()
