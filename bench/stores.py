"""Store-specific costs: SQLite at a million sessions, MemoryStore size and eviction, Redis round trips."""

from __future__ import annotations

import gc
import itertools
import os
import random
import secrets
import sqlite3
import statistics
import time
import tracemalloc
from typing import Any, Callable, Optional

from hug_cookie_sessions import MemoryStore, Record, SessionMiddleware, SQLiteStore

from .apps import SECRET, build, redis_store_class
from .inprocess import environ_for
from .sidebyside import measure

# -- SQLite: does a read slow down as the table grows? -----------------------------------


def populate_sqlite(path: str, count: int, *, batch: int = 50_000) -> list[str]:
    """Fill a fresh SQLiteStore file with ``count`` live one-key sessions; returns their IDs.

    Rows go in sorted by ID with ``executemany`` in one transaction, journal off,
    which takes seconds for a million; the store then reopens the file in WAL mode.
    """
    store = SQLiteStore(path)
    store.load("schema")  # creates the file and its tables
    store.close()
    sids = sorted(secrets.token_urlsafe(32) for _ in range(count))
    now = time.time()
    expires_at = now + 14 * 24 * 3600
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("BEGIN")
        for start in range(0, count, batch):
            chunk = sids[start : start + batch]
            db.executemany(
                "INSERT INTO sessions (id, created_at, expires_at) VALUES (?, ?, ?)",
                [(sid, now, expires_at) for sid in chunk],
            )
            db.executemany(
                "INSERT INTO session_values (session_id, key, value) VALUES (?, 'n', '1')",
                [(sid,) for sid in chunk],
            )
        db.execute("COMMIT")
    finally:
        db.close()
    return sids


def sqlite_scale(
    tmp: str, sizes: tuple[int, ...], *, rounds: int, chunk: int, progress: Optional[Callable] = None
) -> dict[int, dict[str, float]]:
    """Per table size: µs per ``store.load`` and per in-process read request, for random sessions.

    Each size has its own file; the sizes are interleaved in every round and
    each call picks another random session, so the B-tree is walked from the
    root every time instead of hitting one hot row.
    """
    setups = {}
    for size in sizes:
        path = os.path.join(tmp, f"scale-{size}.db")
        started = time.perf_counter()
        sids = populate_sqlite(path, size)
        if progress is not None:
            progress(f"SQLite: {size:,} sessions written in {time.perf_counter() - started:.1f}s")
        store = SQLiteStore(path)
        middleware = SessionMiddleware(SECRET, store)
        app = build("sqlite", middleware)
        picks = random.Random(size).sample(sids, min(1000, size))
        environs = [environ_for("read", f"session={middleware.signer.sign(sid)}") for sid in picks]
        setups[size] = (store, app, picks, environs)
    samples: dict[int, dict[str, list[float]]] = {size: {"load": [], "read": []} for size in sizes}
    order = list(sizes)
    for round_no in range(rounds + 1):
        random.shuffle(order)
        for size in order:
            store, app, picks, environs = setups[size]
            load_s = _time_loads(store, picks, chunk)
            read_s = _time_reads(app, environs, chunk)
            if round_no:
                samples[size]["load"].append(load_s)
                samples[size]["read"].append(read_s)
    for store, *_ in setups.values():
        store.close()
    return {
        size: {name: statistics.median(values) * 1e6 for name, values in kinds.items()}
        for size, kinds in samples.items()
    }


def _time_loads(store: SQLiteStore, picks: list[str], count: int) -> float:
    chosen = random.choices(picks, k=count)
    started = time.perf_counter()
    for sid in chosen:
        store.load(sid)
    return (time.perf_counter() - started) / count


def _time_reads(app: Callable, environs: list[dict], count: int) -> float:
    chosen = random.choices(environs, k=count)

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        pass

    started = time.perf_counter()
    for environ in chosen:
        for _ in app(environ.copy(), start_response):
            pass
    return (time.perf_counter() - started) / count


def sqlite_durability(tmp: str, *, rounds: int, count: int) -> dict[str, float]:
    """µs per one-value ``apply`` (one commit) with ``synchronous`` OFF, NORMAL and FULL, interleaved.

    In WAL mode OFF never syncs, NORMAL syncs the log only at checkpoints, FULL on every commit.
    """
    stores = {}
    for mode in ("OFF", "NORMAL", "FULL"):
        store = SQLiteStore(os.path.join(tmp, f"durability-{mode}.db"), synchronous=mode)
        store.create("sid", Record({"n": "0"}, time.time(), time.time() + 3600))
        stores[mode] = store
    samples: dict[str, list[float]] = {mode: [] for mode in stores}
    for round_no in range(rounds + 1):
        for mode, store in stores.items():
            expires_at = store.load("sid").expires_at
            started = time.perf_counter()
            for n in range(count):
                store.apply("sid", {"n": str(n)}, (), expires_at)
            if round_no:
                samples[mode].append((time.perf_counter() - started) / count)
    for store in stores.values():
        store.close()
    return {mode: statistics.median(values) * 1e6 for mode, values in samples.items()}


# -- MemoryStore: bytes per session -------------------------------------------------------

SHAPES = {
    "one counter": lambda: {"n": 0},
    "signed-in user": lambda: {
        "user": "alice@example.com",
        "csrf": secrets.token_urlsafe(32),
        "cart": [101, 202, 303],
    },
}


def memory_bytes_per_session(count: int) -> dict[str, float]:
    """Bytes the MemoryStore holds per session, measured with tracemalloc, for each shape."""
    results = {}
    for shape, make in SHAPES.items():
        store = MemoryStore(max_sessions=count + 1)
        middleware = SessionMiddleware(SECRET, store)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            session = middleware.open(None)
            session.update(make())
            if shape == "signed-in user":
                session.bind_user("alice@example.com")
            middleware.save(session)
        del session
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        if len(store) != count:
            raise RuntimeError("the memory store did not keep every session")
        results[shape] = (after - before) / count
    return results


# -- MemoryStore: does a full store slow its writers down? ----------------------------------


def memory_at_capacity(
    capacity: int, *, rounds: int, number: int, store_class: Callable[..., Any] = MemoryStore
) -> dict[str, dict[str, float]]:
    """µs per ``create`` and per ``apply`` in a MemoryStore filled to 50 % and to 100 %, side by side.

    Both stores hold ``capacity`` at most; one in ten sessions is signed in, none expires
    during the run. At 100 % every create evicts (an anonymous session); at 50 % none does,
    and the half-full store stays below 100 % for the whole run (it is given at most half
    its capacity in new sessions). Each apply writes one value of a signed-in session at its
    stored expiry, the commonest write. The four callables run interleaved (``bench.sidebyside``),
    timed in CPU time.
    """
    creates = (rounds + 1) * number
    if creates >= capacity // 2:
        raise ValueError("the half-full store would fill up: fewer rounds or calls, or a larger capacity")
    now = time.time()
    record = Record({"n": "1"}, now, now + 3600)
    funcs: dict[str, Callable[[], object]] = {}
    for share in (50, 100):
        store = store_class(max_sessions=capacity)
        signed_in = []
        for index in range(capacity * share // 100):
            sid = secrets.token_urlsafe(32)
            user = f"user{index}" if index % 10 == 0 else None
            store.create(sid, Record({"n": "1"}, now, now + 3600, user))
            if user is not None:
                signed_in.append(sid)
        fresh = iter([secrets.token_urlsafe(32) for _ in range(creates)])
        cycle = itertools.cycle(signed_in)
        funcs[f"create {share} %"] = lambda store=store, fresh=fresh: store.create(next(fresh), record)
        funcs[f"apply {share} %"] = lambda store=store, cycle=cycle: store.apply(
            next(cycle), {"n": "2"}, (), now + 3600
        )
    # CPU time of this process: on a shared machine the wall clock also counts other processes.
    timed = measure(funcs, rounds=rounds, number=number, groups=[list(funcs)], clock=time.process_time)
    return {
        kind: {
            "half_us": timed.median_us(f"{kind} 50 %"),
            "full_us": timed.median_us(f"{kind} 100 %"),
            "ratio": timed.median_us(f"{kind} 100 %") / timed.median_us(f"{kind} 50 %"),
        }
        for kind in ("create", "apply")
    }


# -- Redis: round trips and writes --------------------------------------------------------


def redis_costs(url: str, requests: int = 200) -> dict[str, dict[str, float]]:
    """Per request kind: Redis round trips, commands and write commands per request.

    Round trips are counted on the client (each send of a packed command or
    pipeline); commands from the server's ``INFO commandstats`` deltas, with
    ``COMMAND INFO`` telling which ones write, and ``rdb_changes_since_last_save``
    as a second witness that a read changed nothing.
    """
    import redis

    class CountingConnection(redis.Connection):
        sends = 0

        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            CountingConnection.sends += 1
            super().send_packed_command(command, check_health)

    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    admin = redis.Redis.from_url(url)
    prefix = f"bench:{secrets.token_hex(6)}:"
    middleware = SessionMiddleware(SECRET, redis_store_class()(client, prefix=prefix))
    app = build("redis", middleware)

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        start_response.status = status

    results = {}
    try:
        session = middleware.open(None)
        session["n"] = 0
        cookie = f"session={middleware.save(session)}"
        write_flags: dict[str, bool] = {}
        for path in ("untouched", "read", "write"):
            environ = environ_for(path, cookie)
            for _ in app(environ.copy(), start_response):  # warm: scripts loaded, connection open
                pass
            stats_before = _commandstats(admin)
            changes_before = admin.info("persistence")["rdb_changes_since_last_save"]
            sends_before = CountingConnection.sends
            for _ in range(requests):
                for _ in app(environ.copy(), start_response):
                    pass
                if not start_response.status.startswith("200"):
                    raise RuntimeError(f"redis /{path}: {start_response.status}")
            sends = CountingConnection.sends - sends_before
            changes = admin.info("persistence")["rdb_changes_since_last_save"] - changes_before
            delta = {
                name: calls - stats_before.get(name, 0)
                for name, calls in _commandstats(admin).items()
                if calls != stats_before.get(name, 0)
            }
            delta.pop("info", None)  # our own INFO calls
            writes = sum(calls for name, calls in delta.items() if _writes(admin, name, write_flags))
            results[path] = {
                "round_trips": sends / requests,
                "commands": sum(delta.values()) / requests,
                "write_commands": writes / requests,
                "rdb_changes": changes / requests,
                "command_names": ", ".join(sorted(delta)),
            }
    finally:
        for key in admin.scan_iter(match=prefix + "*", count=1000):
            admin.delete(key)
        pool.disconnect()
    return results


def _commandstats(admin: Any) -> dict[str, int]:
    return {
        name.removeprefix("cmdstat_"): stats["calls"]
        for name, stats in admin.info("commandstats").items()
        if isinstance(stats, dict)
    }


def _writes(admin: Any, name: str, cache: dict[str, bool]) -> bool:
    """Whether the Redis command ``name`` (``hset``, ``client|setname``) is flagged ``write``."""
    if name not in cache:
        base = name.split("|")[0]
        info = admin.execute_command("COMMAND", "INFO", base).get(base) or {}
        flags = [flag.decode() if isinstance(flag, bytes) else flag for flag in info.get("flags", [])]
        cache[name] = "write" in flags
    return cache[name]
