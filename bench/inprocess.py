"""In-process WSGI benchmark: the apps called directly, no sockets.

Each request kind's environ is built once (a copy is passed per call, as a
server would pass a fresh one) with the cookie of a session that already
exists. The machine is shared and noisy, so the apps are interleaved in small
chunks within each round, in a new random order every time, and every figure
is a median over rounds; ratios are paired per round (app / floor and app /
bare timed in the same round) before the median is taken.
"""

from __future__ import annotations

import io
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .apps import PATHS

#: Sent to the apps that issue no cookie (bare, floor): as long as ours.
STAND_IN_COOKIE = "session=" + "x" * 43 + "." + "y" * 43


def environ_for(path: str, cookie: Optional[str]) -> dict:
    """A GET request for ``path`` as a WSGI server would pass it."""
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": f"/{path}",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    return environ


def call(app: Callable, environ: dict) -> tuple[str, list, bytes]:
    """One request: status, headers and body."""
    captured: list = []

    def start_response(status: str, headers: list, exc_info=None) -> None:
        captured[:] = [status, headers]

    body = b"".join(app(dict(environ), start_response))
    return captured[0], captured[1], body


def session_cookie(app: Callable) -> str:
    """``name=value`` of a session the app has just created (by a write), or the stand-in."""
    status, headers, _ = call(app, environ_for("write", None))
    if not status.startswith("200"):
        raise RuntimeError(f"preparing a session failed: {status}")
    for name, value in headers:
        if name.lower() == "set-cookie":
            return value.split(";", 1)[0]
    return STAND_IN_COOKIE


def _noop_start_response(status: str, headers: list, exc_info=None) -> None:
    pass


def time_chunk(app: Callable, environ: dict, count: int) -> float:
    """Seconds for ``count`` requests of one kind to one app."""
    start_response = _noop_start_response
    copy = environ.copy
    started = time.perf_counter()
    for _ in range(count):
        for _chunk in app(copy(), start_response):
            pass
    return time.perf_counter() - started


@dataclass
class Results:
    """Per (app, path): seconds per request in each round, and in the fastest chunk of all."""

    rounds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    best: dict[tuple[str, str], float] = field(default_factory=dict)

    def median_us(self, kind: str, path: str) -> float:
        return statistics.median(self.rounds[kind, path]) * 1e6

    def ratios(self, kind: str, path: str, baseline: str) -> list[float]:
        """Per-round paired ratios ``kind / baseline`` on ``path``."""
        return [a / b for a, b in zip(self.rounds[kind, path], self.rounds[baseline, path])]

    def over_us(self, kind: str, path: str, baseline: str) -> float:
        """Median of per-round paired differences ``kind - baseline``, in µs: unlike a ratio,
        comparable between runs on a busier or quieter machine."""
        pairs = zip(self.rounds[kind, path], self.rounds[baseline, path])
        return statistics.median(a - b for a, b in pairs) * 1e6

    def ratio(self, kind: str, path: str, baseline: str) -> float:
        return statistics.median(self.ratios(kind, path, baseline))

    def best_ratio(self, kind: str, path: str, baseline: str) -> float:
        """Ratio of the fastest chunks: what the ratio is when nothing else competes for the CPU."""
        return self.best[kind, path] / self.best[baseline, path]

    def spread(self, kind: str, path: str, baseline: str) -> tuple[float, float]:
        """Interquartile range of the per-round ratios."""
        quartiles = statistics.quantiles(self.ratios(kind, path, baseline), n=4)
        return quartiles[0], quartiles[2]


def measure(
    apps: dict[str, Callable],
    *,
    rounds: int,
    chunks_per_round: int,
    chunk: int,
    progress: Optional[Callable[[str], None]] = None,
) -> Results:
    """Time every app on every path; one warm-up round is run and discarded."""
    environs = {}
    for kind, app in apps.items():
        cookie = session_cookie(app)
        for path in PATHS:
            environ = environs[kind, path] = environ_for(path, cookie)
            status, _, body = call(app, environ)
            if not status.startswith("200"):
                raise RuntimeError(f"{kind} /{path}: {status} {body[:200]!r}")
    results = Results({key: [] for key in environs}, dict.fromkeys(environs, float("inf")))
    cells = list(environs)
    shuffle = random.Random(1).shuffle
    for round_no in range(rounds + 1):
        spent = dict.fromkeys(cells, 0.0)
        for _ in range(chunks_per_round):
            shuffle(cells)
            for key in cells:
                seconds = time_chunk(apps[key[0]], environs[key], chunk)
                spent[key] += seconds
                if round_no:
                    results.best[key] = min(results.best[key], seconds / chunk)
        if round_no == 0:
            continue
        for key in cells:
            results.rounds[key].append(spent[key] / (chunks_per_round * chunk))
        if progress is not None:
            progress(f"in-process round {round_no}/{rounds}")
    return results
