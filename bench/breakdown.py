"""Where a request's time goes: each part of this middleware's work timed on its own.

The hooks are called directly with real Falcon request and response objects (no
hug, no WSGI server), the way Falcon calls them. Each request is cut into steps,
the prefixes of the request are timed (``timeit``-style: the fastest of several
repeats, interleaved), and a step's cost is the difference between the prefix
that ends with it and the one before. The store's own call is timed alone too, so
the table shows what the store costs and what the session layer adds around it.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable

import falcon

from .apps import SECRET, FloorMiddleware
from .inprocess import environ_for

STEPS = ("process_request", "load on first use", "handler's session calls", "process_response")


def _request_parts(middleware: Any, path: str) -> list[Callable[[Any, Any], Any]]:
    """The request's steps in order, each a function of (request, response)."""
    name = middleware.context_name

    def handler_calls(req: Any, resp: Any) -> None:
        session = req.context[name]
        if path == "write":
            session["n"] = session.get("n", 0) + 1
        else:
            session.get("n")

    return [
        middleware.process_request,
        lambda req, resp: req.context[name].id,  # the first use loads the session
        handler_calls,
        lambda req, resp: middleware.process_response(req, resp, None, True),
    ]


def _time_prefixes(parts: list[Callable], environ: dict, repeats: int, number: int) -> list[float]:
    """Seconds per request for every prefix of ``parts`` (the empty prefix: new request objects)."""
    app = (getattr(falcon, "App", None) or falcon.API)()  # falcon.App from Falcon 3 on
    request_options, response_options = app.req_options, app.resp_options
    best = [float("inf")] * (len(parts) + 1)
    for _ in range(repeats):
        for length in range(len(parts) + 1):
            prefix = parts[:length]
            started = time.perf_counter()
            for _ in range(number):
                req = falcon.Request(environ.copy(), options=request_options)
                resp = falcon.Response(options=response_options)
                for part in prefix:
                    part(req, resp)
            best[length] = min(best[length], (time.perf_counter() - started) / number)
    return best


def breakdown(store_factories: dict[str, Callable[[], Any]], *, repeats: int, number: int) -> dict:
    """Per store and path: µs per step, the floor middleware's work, and the store call alone."""
    from hug_cookie_sessions import SessionMiddleware
    from hug_cookie_sessions.store_keys import store_key

    floor = FloorMiddleware()
    results: dict = {}
    for kind, make_store in store_factories.items():
        store = make_store()
        middleware = SessionMiddleware(SECRET, store)
        seed = middleware.open(None)
        seed["n"] = 0
        token = middleware.save(seed)
        sid = store_key(middleware.signer.unsign(token)[0])  # what the middleware hands the store
        for path in ("read", "write"):
            environ = environ_for(path, f"session={token}")
            prefixes = _time_prefixes(_request_parts(middleware, path), environ, repeats, number)
            steps = {step: (prefixes[i + 1] - prefixes[i]) * 1e6 for i, step in enumerate(STEPS)}
            floor_parts = [floor.process_request, lambda req, resp: req.context["session"].get("n")]
            floor_prefixes = _time_prefixes(floor_parts, environ, repeats, number)
            results[kind, path] = {
                "steps": steps,
                "total": sum(steps.values()),
                "floor": (floor_prefixes[-1] - floor_prefixes[0]) * 1e6,
                "store": _best(_store_call(store, sid, path), repeats, number) * 1e6,
                "store_call": "store.load" if path == "read" else "store.apply",
            }
        close = getattr(store, "close", None)
        if close is not None:
            close()
    return results


def _store_call(store: Any, sid: str, path: str) -> Callable[[], Any]:
    """The store call a ``path`` request makes: a load, or a one-value write (expiry unchanged).

    Each write stores a new value, as the write requests do: SQLite skips writing a row
    whose value did not change, which would make the write look several times cheaper.
    """
    if path == "read":
        return lambda: store.load(sid)
    expires_at = store.load(sid).expires_at
    values = itertools.count()
    return lambda: store.apply(sid, {"n": str(next(values))}, (), expires_at)


def _best(call: Callable[[], Any], repeats: int, number: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - started) / number)
    return best


def main() -> None:
    import tempfile

    from hug_cookie_sessions import MemoryStore, SQLiteStore

    with tempfile.TemporaryDirectory() as tmp:
        factories = {"memory": MemoryStore, "sqlite": lambda: SQLiteStore(os.path.join(tmp, "s.db"))}
        for (kind, path), result in breakdown(factories, repeats=7, number=2000).items():
            steps = ", ".join(f"{step} {us:.2f}" for step, us in result["steps"].items())
            print(
                f"{kind} {path}: {result['total']:.2f} µs ({steps}); floor {result['floor']:.2f}; "
                f"{result['store_call']} alone {result['store']:.2f}"
            )


if __name__ == "__main__":
    main()
