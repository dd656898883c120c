"""``make bench``: every measurement in one run, the table printed, docs/benchmarks.{md,png} written.

``python -m bench.run`` takes about four minutes on two cores; ``--quick`` takes
under a minute and checks that the benchmark works (its figures mean little and
go to a temporary directory unless ``--output`` says otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Iterator, Optional
from urllib.parse import urlsplit, urlunsplit

from hug_cookie_sessions import MemoryStore, SQLiteStore

from . import breakdown, http, inprocess, stores
from .apps import (
    KINDS,
    build,
    make_store,
    middleware,
    postgres_store_class,
    postgres_unavailable_reason,
    redis_store_class,
    redis_unavailable_reason,
)
from .report import render_chart, render_markdown, targets
from .sections import KEPT, keep_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Plan:
    rounds: int
    chunks_per_round: int
    chunk: int
    http_rounds: int
    http_seconds: float
    scale_sizes: tuple[int, int]
    scale_rounds: int
    scale_chunk: int
    memory_sessions: int
    redis_requests: int
    durability_rounds: int
    durability_commits: int
    breakdown_repeats: int
    breakdown_requests: int
    eviction_capacity: int
    eviction_rounds: int
    eviction_calls: int


FULL = Plan(
    150, 4, 100, 3, 3.0, (1_000, 1_000_000), 30, 1000, 20_000, 500, 8, 300, 9, 2000, 100_000, 30, 1000
)
QUICK = Plan(8, 3, 50, 1, 1.0, (1_000, 100_000), 3, 300, 2_000, 50, 2, 50, 2, 200, 10_000, 5, 400)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- Redis: a private server when possible, so that its command counts are ours alone -------


class PrivateRedis:
    """``redis-server`` on a free loopback port, no persistence, stopped by PID."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start within 10s")

    def stop(self) -> None:
        http.stop_group(self.process)


def choose_redis() -> tuple[Optional[str], Optional[PrivateRedis], Optional[str]]:
    """(url, private server or None, reason the Redis rows are absent or None)."""
    private = None
    url = os.environ.get("REDIS_URL")
    if url is None and shutil.which("redis-server"):
        try:
            private = PrivateRedis()
            url = private.url
        except (OSError, RuntimeError):
            private = None
    url = url or "redis://127.0.0.1:6379/0"
    reason = redis_unavailable_reason(url)
    if reason is not None and private is not None:
        private.stop()
        private = None
    return (None if reason else url), private, reason


# -- PostgreSQL: a database of the run's own on the chosen server, dropped at the end ------------

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def choose_postgres() -> tuple[Optional[str], Optional[str]]:
    """(server url, reason the PostgresStore rows are absent or None): ``BENCH_PG_URL``, else
    ``PG_URL`` (as the tests use), else the local server."""
    url = os.environ.get("BENCH_PG_URL") or os.environ.get("PG_URL") or DEFAULT_PG_URL
    reason = postgres_unavailable_reason(url)
    return (None if reason else url), reason


def postgres_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as db:
        return db.execute("SHOW server_version").fetchone()[0].split()[0]


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """``bench_<pid>`` created on ``server_url``'s server; yields its URL; dropped afterwards
    (connections and all), on failure too."""
    import psycopg

    name = f"bench_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}"')  # a PID reused after a killed run
        db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as db:
            try:
                db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.errors.SyntaxError:  # before PostgreSQL 13: no FORCE
                db.execute(f'DROP DATABASE IF EXISTS "{name}"')


# -- the run ------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for package in ("hug", "falcon", "itsdangerous", "redis", "psycopg", "gunicorn"):
        with contextlib.suppress(PackageNotFoundError):
            versions.append(f"{package} {version(package)}")
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "checkout": checkout(),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "system": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": ", ".join(versions) + f", SQLite {sqlite3.sqlite_version}",
        "load": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def checkout() -> str:
    """The commit measured, and whether the work tree differed from it (docs/, our output, aside)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    changed = [line[3:] for line in dirty if line.strip() and not line[3:].startswith("docs/")]
    return head + (f" plus uncommitted {', '.join(changed)}" if changed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run to check the benchmark works")
    parser.add_argument("--no-http", action="store_true", help="skip gunicorn + wrk")
    parser.add_argument("--output", help="where benchmarks.md/png go (docs/; with --quick, a temp dir)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.output is None:
        args.output = (
            os.path.join(tempfile.gettempdir(), "hcs-bench-quick")
            if args.quick
            else os.path.join(ROOT, "docs")
        )
    started = time.monotonic()
    context = machine()
    redis_url, private_redis, redis_reason = choose_redis()
    if redis_reason:
        log(f"RedisStore rows absent: {redis_reason}")
    pg_server, pg_reason = choose_postgres()
    if pg_reason:
        log(f"PostgresStore rows absent: {pg_reason}")
    else:
        context["packages"] += f", PostgreSQL {postgres_version(pg_server)}"
    absent = {"redis": redis_url is None, "postgres": pg_server is None}
    kinds = [kind for kind in KINDS if not absent.get(kind)]
    report: dict = {
        "context": context,
        "plan": plan,
        "kinds": kinds,
        "redis_reason": redis_reason,
        "pg_reason": pg_reason,
    }
    try:
        with contextlib.ExitStack() as cleanup:
            tmp = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="hcs-bench-"))
            pg_url = cleanup.enter_context(postgres_database(pg_server)) if pg_server else ""
            if pg_url:
                log(f"PostgreSQL: database {urlsplit(pg_url).path[1:]} for this run")
            redis_client = None
            if redis_url:
                import redis

                redis_client = redis.Redis.from_url(redis_url)
            # First, before any other app is built or called: the floor and MemoryStore apps,
            # the only two whose code has run in this process, as in an app that serves one.
            pair_rounds = max(plan.rounds // 3, 2)
            log(f"in-process, the floor and MemoryStore apps before any other: {pair_rounds} rounds")
            report["pair"] = inprocess.measure(
                {kind: build(kind, middleware(kind)) for kind in ("floor", "memory")},
                rounds=pair_rounds,
                chunks_per_round=plan.chunks_per_round,
                chunk=plan.chunk,
            )
            prefix = f"bench:{os.getpid()}:"
            # PostgresStore makes a pool (threads, connections): closed before the database goes.
            pg_store = (
                make_store("postgres", pg_url=pg_url, prefix="inprocess") if "postgres" in kinds else None
            )
            if pg_store is not None:
                cleanup.callback(pg_store.close)
            apps = {
                kind: build(
                    kind,
                    middleware(
                        kind,
                        store=pg_store if kind == "postgres" else None,
                        sqlite_path=os.path.join(tmp, "inprocess.db"),
                        redis_client=redis_client,
                        prefix=prefix,
                    ),
                )
                for kind in kinds
            }
            log(f"in-process: {plan.rounds} rounds of {plan.chunks_per_round}x{plan.chunk} requests per cell")
            report["inprocess"] = inprocess.measure(
                apps,
                rounds=plan.rounds,
                chunks_per_round=plan.chunks_per_round,
                chunk=plan.chunk,
                progress=_every(10, log),
            )
            del apps
            log("where the time goes: each step of a request timed alone")
            factories = {
                "memory": MemoryStore,
                "sqlite": lambda: SQLiteStore(os.path.join(tmp, "breakdown.db")),
            }
            if redis_client is not None:
                factories["redis"] = lambda: redis_store_class()(redis_client, prefix=f"{prefix}breakdown:")
            if pg_url:
                factories["postgres"] = lambda: postgres_store_class()(pg_url, table_prefix="breakdown")
            report["breakdown"] = breakdown.breakdown(
                factories,
                repeats=plan.breakdown_repeats,
                number=plan.breakdown_requests,
            )
            if redis_url:
                log("Redis: round trips and commands per request")
                report["redis"] = stores.redis_costs(redis_url, plan.redis_requests)
            log(f"MemoryStore: bytes per session over {plan.memory_sessions:,} sessions")
            report["memory_bytes"] = stores.memory_bytes_per_session(plan.memory_sessions)
            log(f"MemoryStore: creates and applies at 50 % and 100 % of {plan.eviction_capacity:,} sessions")
            report["eviction"] = stores.memory_at_capacity(
                plan.eviction_capacity, rounds=plan.eviction_rounds, number=plan.eviction_calls
            )
            log(f"SQLite: read cost at {plan.scale_sizes[0]:,} and {plan.scale_sizes[1]:,} sessions")
            report["scale"] = stores.sqlite_scale(
                tmp, plan.scale_sizes, rounds=plan.scale_rounds, chunk=plan.scale_chunk, progress=log
            )
            log("SQLite: commit cost with synchronous=OFF, NORMAL and FULL")
            report["durability"] = stores.sqlite_durability(
                tmp, rounds=plan.durability_rounds, count=plan.durability_commits
            )
            http_reason = "skipped (--no-http)" if args.no_http else http.available()
            report["http_reason"] = http_reason
            if http_reason is None:
                log(f"HTTP: {plan.http_rounds} rounds of {plan.http_seconds:g}s wrk runs per cell")
                env = {
                    "BENCH_SQLITE_PATH": os.path.join(tmp, "http.db"),
                    "BENCH_REDIS_URL": redis_url or "",
                    "BENCH_REDIS_PREFIX": f"bench:{os.getpid()}:http:",
                    "BENCH_PG_URL": pg_url,
                    "BENCH_PG_PREFIX": "http",
                }
                report["http"] = http.measure(
                    kinds, env, rounds=plan.http_rounds, seconds=plan.http_seconds, progress=log
                )
            if redis_client is not None:
                for key in redis_client.scan_iter(match=f"bench:{os.getpid()}:*", count=1000):
                    redis_client.delete(key)
    finally:
        if private_redis is not None:
            private_redis.stop()
    context["load"] += " at the start, {:.2f} {:.2f} {:.2f} at the end".format(*os.getloadavg())
    context["duration"] = f"{time.monotonic() - started:.0f} s" + (" (--quick)" if args.quick else "")
    report["targets"] = targets(report)
    text = render_markdown(report)
    os.makedirs(args.output, exist_ok=True)
    target = os.path.join(args.output, "benchmarks.md")
    if os.path.exists(target):
        with open(target) as previous:
            old = previous.read()
        for prefix in KEPT:  # bench.compare's and bench.asgi's sections are not ours to drop
            text = keep_section(old, text, prefix)
    with open(target, "w") as out:
        out.write(text)
    render_chart(report, os.path.join(args.output, "benchmarks.png"))
    print(text)
    log(f"wrote {args.output}/benchmarks.md and benchmarks.png in {context['duration']}")


def _every(step: int, log_line):
    def progress(message: str) -> None:
        done = int(message.split()[-1].split("/")[0])
        if done % step == 0:
            log_line(message)

    return progress


if __name__ == "__main__":
    main()
