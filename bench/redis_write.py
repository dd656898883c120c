"""One session write on ``redis.asyncio``: ``AsyncRedisStore`` beside starsessions and the bare commands.

Run from the repository root in an environment with redis-py >= 4.2 and
starsessions (``.venv-asgi``): ``python -m bench.redis_write [--rounds 30]
[--number 200] [--redis-url URL]``. Every variant is one write as a session
middleware makes it, two round trips on ONE ``redis.asyncio`` client and server,
each call one ``run_until_complete`` of one coroutine:

- ``raw-ours``: ``HGETALL`` then ``EVALSHA`` of the apply script with the ARGV
  ``AsyncRedisStore.apply`` sends (built once, outside the timing): the floor of
  our layout on this client;
- ``ours``: ``AsyncRedisStore.load`` then ``AsyncRedisStore.apply``;
- ``star``: starsessions ``RedisStore.read`` then ``RedisStore.write`` of the
  same session as JSON;
- ``raw-star``: ``GET`` then ``SET ... EX``: the floor of starsessions' layout;
- ``raw-json``: ``GET`` then ``EVALSHA`` of :data:`JSON_APPLY`: the floor of another layout
  that would keep one atomic, per-key-merging script (the session one JSON string, merged
  by the script), to tell what the hash costs from what the script costs.

All four run interleaved in the same rounds (:mod:`bench.sidebyside`), once by
wall time and once by this process's CPU time (``time.process_time``: Redis's
own work and the waits for it to be scheduled left out). Printed: µs per write
(medians over rounds) and the paired differences with their ~95% intervals.
``--base COMMIT`` adds ``base``: that commit's ``AsyncRedisStore`` (:mod:`bench.basecopy`)
writing the same way in the same rounds, to show what a change saved. ``--profile NAME``
instead profiles that variant with cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import os
import pstats
import tempfile
import time
from typing import Any, Awaitable, Callable, Optional

import redis.asyncio as aioredis
from starsessions.stores.redis import RedisStore as StarRedisStore

from hug_cookie_sessions.stores import redis_layout as layout
from hug_cookie_sessions.stores.base import Record
from hug_cookie_sessions.stores.redis_async import AsyncRedisStore

from .basecopy import BASE_PACKAGE, extract_base, import_base
from .sidebyside import Comparison, measure

HOUR = 3600
#: A store key as the middleware passes it (a SHA-256 in hex).
SID = "5" * 64
#: (variant, the difference printed as variant - baseline)
DIFFERENCES = (("ours", "raw-ours"), ("star", "raw-star"), ("ours", "star"), ("raw-ours", "raw-star"))
DIFFERENCES += (("raw-json", "raw-star"), ("raw-json", "raw-ours"))

#: KEYS[1] a session as one JSON string; ARGV: now, ms to live, then key/value pairs to merge.
#: Returns 0, writing nothing, if the session is gone (as APPLY does).
JSON_APPLY = """
local text = redis.call('GET', KEYS[1])
if not text then return 0 end
local session = cjson.decode(text)
if tonumber(session.expires) <= tonumber(ARGV[1]) then return 0 end
for i = 3, #ARGV, 2 do session.data[ARGV[i]] = ARGV[i + 1] end
redis.call('SET', KEYS[1], cjson.encode(session), 'PX', ARGV[2])
return 1
"""
BASE_DIFFERENCES = (("ours", "base"), ("base", "star"))


def variants(
    client: aioredis.Redis, prefix: str, base_store: Optional[type] = None
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The writes by name, as coroutine functions; the sessions they write exist."""
    ours = AsyncRedisStore(client, prefix=prefix)
    base = base_store(client, prefix=prefix) if base_store is not None else None
    star = StarRedisStore(connection=client, prefix=prefix + "star:")
    key = prefix + SID
    expires_at = time.time() + HOUR
    script = client.register_script(layout.APPLY)  # what the store registers: the same SHA
    args = layout.apply_args({"n": "2"}, (), expires_at, None, None, time.time())
    star_data = json.dumps({"n": 2}).encode()
    raw_key = prefix + "raw:" + SID
    json_key, json_script = prefix + "json:" + SID, client.register_script(JSON_APPLY)
    json_session = json.dumps({"created": time.time(), "expires": expires_at, "data": {"n": "1"}})

    async def raw_ours() -> None:
        await client.hgetall(key)
        await client.evalsha(script.sha, 1, key, *args)

    async def ours_write() -> None:
        await ours.load(SID)
        await ours.apply(SID, {"n": "2"}, (), expires_at)

    async def base_write() -> None:
        assert base is not None
        await base.load(SID)
        await base.apply(SID, {"n": "2"}, (), expires_at)

    async def star_write() -> None:
        await star.read(SID, HOUR)
        await star.write(SID, star_data, HOUR, HOUR)

    async def raw_star() -> None:
        await client.get(raw_key)
        await client.set(raw_key, star_data, ex=HOUR)

    async def raw_json() -> None:
        await client.get(json_key)
        await client.evalsha(json_script.sha, 1, json_key, repr(time.time()), HOUR * 1000, "n", "2")

    async def prepare() -> None:
        await ours.create(SID, Record({"n": "1"}, time.time(), expires_at))
        await client.script_load(script.script)
        await client.set(json_key, json_session)
        await client.script_load(JSON_APPLY)
        await star_write()
        await raw_star()

    asyncio.get_event_loop().run_until_complete(prepare())
    writes = {"raw-ours": raw_ours, "ours": ours_write, "star": star_write, "raw-star": raw_star}
    writes["raw-json"] = raw_json
    return {**writes, "base": base_write} if base is not None else writes


def report(title: str, comparison: Comparison) -> list[str]:
    lines = [f"{title}: {len(comparison.rounds['ours'])} rounds of {comparison.calls_per_round} writes each"]
    lines += [f"  {name:9} {comparison.median_us(name):8.1f} µs per write" for name in comparison.names]
    for name, baseline in DIFFERENCES + (BASE_DIFFERENCES if "base" in comparison.names else ()):
        low, high = comparison.diff_ci_us(name, baseline)
        diff = comparison.diff_us(name, baseline)
        lines.append(f"  {name} - {baseline}: {diff:+.1f} µs (95% CI {low:+.1f} to {high:+.1f})")
    return lines


def profile(run: Callable[[Any], Any], write: Callable[[], Awaitable[Any]], number: int) -> None:
    """cProfile ``number`` writes of one variant, printed by own time then cumulative time."""

    async def many() -> None:
        for _ in range(number):
            await write()

    profiler = cProfile.Profile()
    profiler.enable()
    run(many())
    profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--number", type=int, default=200, help="writes per variant per round")
    parser.add_argument("--profile", choices=("raw-ours", "ours", "star", "raw-star", "raw-json"))
    parser.add_argument("--base", metavar="COMMIT", help="also time this commit's AsyncRedisStore")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base_store = None
        if args.base:
            extract_base(args.base, tmp)
            import_base(tmp)
            base_store = importlib.import_module(f"{BASE_PACKAGE}.stores.redis_async").AsyncRedisStore
        run_all(args, base_store)


def run_all(args: argparse.Namespace, base_store: Optional[type]) -> None:
    """Time (or profile) every variant, printing what :func:`report` makes of it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    run = loop.run_until_complete
    client = aioredis.Redis.from_url(args.redis_url)
    prefix = f"bench-redis-write:{os.getpid()}:"
    writes = variants(client, prefix, base_store)
    try:
        if args.profile:
            profile(run, writes[args.profile], args.number * 20)
            return
        funcs = {name: (lambda write=write: run(write())) for name, write in writes.items()}
        chunks = min(10, args.number)
        for title, clock in (("CPU time", time.process_time), ("wall time", time.perf_counter)):
            comparison = measure(funcs, rounds=args.rounds, number=args.number, chunks=chunks, clock=clock)
            print("\n".join(report(title, comparison)), flush=True)
    finally:
        run(client.delete(*run(client.keys(prefix + "*"))))
        run(client.aclose())


if __name__ == "__main__":
    main()
