"""``AsyncRedisStore``: :class:`~.redis.RedisStore` for asyncio apps, on ``redis.asyncio``.

It keeps sessions exactly as ``RedisStore`` does: both follow
:mod:`.redis_layout` (the same hash per session, the same fields, expiry,
per-user index and locks, written by the same Lua scripts), so a WSGI app on
``RedisStore`` and an ASGI app on ``AsyncRedisStore`` that share the secret
key, the Redis and the ``prefix`` share their sessions.

It talks to one Redis (standalone, or the primary that a Sentinel's
``master_for()`` returns) or to a Redis Cluster
(``redis.asyncio.cluster.RedisCluster``, or a ``redis+cluster://`` URL). On a
cluster it follows ``RedisStore``'s protocol to the letter: a user's index is
updated before the write that binds a session to it, and a rotate creates the
new hash, then retires the old one to a tombstone (see ``RedisStore``), so no
request ever sees both IDs usable.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Collection, Mapping, Optional, Sequence, Union

try:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.exceptions import NoScriptError
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "AsyncRedisStore needs the redis package: pip install 'hug-cookie-sessions[redis]'"
    ) from error

from . import redis_layout as layout
from .base import Record, SessionStoreError
from .redis_failures import REDIS_ERRORS, Failures, client_options

AsyncClient = Union[aioredis.Redis, RedisCluster]


def async_client_from_url(url: str) -> AsyncClient:
    """A ``redis.asyncio`` client for ``url`` with ``RedisStore``'s bounded timeouts and retries:
    a ``redis.asyncio.Redis``, or for ``redis+cluster://`` a ``RedisCluster`` (it connects on first use)."""
    cluster, url, options = client_options(url, Retry)
    return RedisCluster.from_url(url, **options) if cluster else aioredis.Redis.from_url(url, **options)


class AsyncRedisStore:
    """Sessions in Redis for ``falcon.asgi.App``: every method a coroutine, every key under ``prefix``.

    ``client_or_url`` is a :class:`redis.asyncio.Redis`, a
    :class:`redis.asyncio.cluster.RedisCluster`, or a ``redis://``, ``rediss://``,
    ``unix://`` or ``redis+cluster://`` URL. Every Redis failure raises
    :class:`~.base.SessionStoreError` (a 503) whose message holds no password.
    A client belongs to the event loop that first uses it: create the store
    where the app's loop runs it, and ``await store.aclose()`` on shutdown.
    """

    def __init__(self, client_or_url: Union[AsyncClient, str], *, prefix: str = "session:") -> None:
        self._keys = layout.Keys(prefix)
        self.prefix = prefix
        if isinstance(client_or_url, str):
            layout.require_scheme(client_or_url, layout.SCHEMES, "AsyncRedisStore")
            self._failures = Failures.for_url(client_or_url)
            with self._failures.configuring():
                self.client = async_client_from_url(client_or_url)
            self._owns_client = True
        elif isinstance(client_or_url, aioredis.Redis):
            self.client = client_or_url
            self._owns_client = False
            options = client_or_url.connection_pool.connection_kwargs
            where = options.get("path") or f"{options.get('host')}:{options.get('port', 6379)}"
            self._failures = Failures(where, options.get("password"))
        elif isinstance(client_or_url, RedisCluster):
            self.client, self._owns_client = client_or_url, False
            password = client_or_url.connection_kwargs.get("password")
            self._failures = Failures("(Redis Cluster)", password)
        else:
            raise TypeError(
                "AsyncRedisStore needs a redis.asyncio.Redis, a redis.asyncio.cluster.RedisCluster or a URL"
            )
        self.cluster = isinstance(self.client, RedisCluster)
        self._scripts = layout.Scripts.register(self.client)

    def _script_keys(self, key: str, user_id: Optional[str]) -> list[str]:
        """A write script's KEYS: the session, then on a single Redis the index of the user it
        binds; on a cluster the index is in another slot, so :meth:`_index_first` updates it."""
        return [key] if self.cluster else [key, *self._keys.indexes(user_id)]

    async def _index_first(self, user_id: Optional[str], key: str, expires_at: float) -> None:
        """Redis Cluster: add ``key`` to ``user_id``'s index before the write that binds it
        (``RedisStore._index``, awaited); nothing to do on a single Redis or with no user."""
        if user_id is not None and self.cluster:
            keep_ms = layout.index_keep_ms(expires_at, time.time())
            await self._run(self._scripts.index_add, [self._keys.user_index(user_id)], [key, keep_ms])

    async def _run(
        self, script: Any, keys: Sequence[Union[str, bytes]], args: Sequence[Union[str, int]]
    ) -> Any:
        """``script`` by ``EVALSHA``; if the server lacks it (restarted, failed over, flushed),
        ``SCRIPT LOAD`` and once more.

        PERF(evalsha): what redis-py's ``AsyncScript.__call__`` does, without its per-call
        imports and pipeline checks: 15.8 µs of client CPU less per script call (95% CI 10.5
        to 19.9; side by side with ``AsyncScript`` on one client, 30 rounds, medians, on a
        loaded two-core machine where a whole write request took 520 µs of CPU).
        """
        try:
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._load_and_run(script, keys, args)

    async def _load_and_run(
        self, script: Any, keys: Sequence[Union[str, bytes]], args: Sequence[Union[str, int]]
    ) -> Any:
        """``SCRIPT LOAD`` ``script`` (the server answered ``NOSCRIPT``), then ``EVALSHA`` it."""
        await self.client.script_load(script.script)
        return await self.client.evalsha(script.sha, len(keys), *keys, *args)

    # -- the store protocol, awaited ---------------------------------------------------------

    async def load(self, sid: str) -> Optional[Record]:
        """The session's record (one ``HGETALL``), or None; a Redis failure raises SessionStoreError.

        PERF(async-write-path): here and in :meth:`apply`, the calls of every write, a Redis
        failure is caught by a plain ``except`` rather than a ``with self._failures(...)``
        block, and ``apply`` sends its script without awaiting :meth:`_run`: a load and an
        apply took 3.4 µs less client CPU (95% CI 1.0 to 5.8) and 4.7 µs less wall time (CI
        1.7 to 7.7), side by side with the ``with`` version on one client, 40 rounds, medians
        (``python -m bench.redis_write --base``), on a loaded two-core machine where they took
        about 200 µs of CPU.
        """
        try:
            fields = await self.client.hgetall(self._keys.session(sid))
        except REDIS_ERRORS as error:
            raise self._failures.error("load", error) from error
        return layout.loaded_record(fields, time.time(), sid)

    async def create(self, sid: str, record: Record) -> None:
        key = self._keys.session(sid)
        with self._failures("create"):
            await self._index_first(record.user_id, key, record.expires_at)
            keys = self._script_keys(key, record.user_id)
            await self._run(self._scripts.create, keys, layout.create_args(record))

    async def apply(
        self,
        sid: str,
        changed: Mapping[str, str],
        removed: Collection[str],
        expires_at: float,
        *,
        user_id: Optional[str] = None,
        idle_timeout: Optional[int] = None,
    ) -> bool:
        key = self._keys.session(sid)
        args = layout.apply_args(changed, removed, expires_at, user_id, idle_timeout, time.time())
        keys, script = self._script_keys(key, user_id), self._scripts.apply
        try:
            if user_id is not None and self.cluster:  # not awaiting a coroutine that does nothing
                await self._index_first(user_id, key, expires_at)
            try:
                return bool(await self.client.evalsha(script.sha, len(keys), *keys, *args))
            except NoScriptError:
                return bool(await self._load_and_run(script, keys, args))
        except REDIS_ERRORS as error:
            raise self._failures.error("apply", error) from error

    async def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        if self.cluster:
            return await self._rotate_across_slots(old_sid, new_sid, record)
        sessions = [self._keys.session(old_sid), self._keys.session(new_sid)]
        keys, args = [*sessions, *self._keys.indexes(record.user_id)], layout.rotate_args(record, time.time())
        with self._failures("rotate"):
            return bool(await self._run(self._scripts.rotate, keys, args))

    async def _rotate_across_slots(self, old_sid: str, new_sid: str, record: Record) -> bool:
        """Redis Cluster: create the new hash, then retire the old one (``RedisStore.rotate``)."""
        await self.create(new_sid, record)
        args: list[Union[str, int]] = [repr(time.time()), new_sid, layout.TOMBSTONE_MS]
        try:
            with self._failures("rotate"):
                retired = await self._run(self._scripts.retire, [self._keys.session(old_sid)], args)
        except SessionStoreError:
            # The client never learns the new ID after a failure, so nobody could use it.
            with contextlib.suppress(SessionStoreError):
                await self.delete(new_sid)
            raise
        if not retired:
            await self.delete(new_sid)
        return bool(retired)

    async def delete(self, sid: str) -> None:
        with self._failures("delete"):
            await self.client.delete(self._keys.session(sid))

    # -- one user's sessions (UserIndex), awaited ------------------------------------------------

    async def user_sessions(self, user_id: str) -> dict[str, Record]:
        """``user_id``'s live sessions (without their data); members whose session ended leave the index."""
        index = self._keys.user_index(user_id)
        with self._failures("list user sessions"):
            members = list(await self.client.smembers(index))
            if not members:
                return {}
            pipeline = self.client.pipeline(transaction=False)
            for member in members:
                pipeline.hmget(member, *layout.USER_FIELDS)
            replies = await pipeline.execute(raise_on_error=False)
            live, gone = layout.sort_members(self._keys, members, replies, user_id, time.time())
            if gone:
                await self.client.srem(index, *gone)
        return live

    async def delete_user_sessions(self, user_id: str) -> int:
        """Delete every session bound to ``user_id``; one round trip per indexed session."""
        index, now = self._keys.user_index(user_id), repr(time.time())
        with self._failures("delete user sessions"):
            members = list(await self.client.smembers(index))
            ended = 0
            for member in members:
                ended += await self._run(self._scripts.end_user_session, [member], [user_id, now])
            if members:
                await self.client.srem(index, *members)
        return ended

    # -- session locks (lock=True), awaited ----------------------------------------------------------

    async def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock as ``token`` for ``lease`` seconds, as ``RedisStore`` does; never waits."""
        with self._failures("lock"):
            return bool(
                await self._run(self._scripts.acquire_lock, [self._keys.lock(sid)], [token, layout.ms(lease)])
            )

    async def release_lock(self, sid: str, token: str) -> None:
        """Free ``sid``'s lock if ``token`` still holds it."""
        with self._failures("unlock"):
            await self._run(self._scripts.release_lock, [self._keys.lock(sid)], [token])

    async def aclose(self) -> None:
        """Close the client's connections if this store made the client from a URL."""
        if self._owns_client:
            # redis-py 5 renamed close() to aclose(); 4.6 has only close().
            await getattr(self.client, "aclose", self.client.close)()
