"""``AsyncRedisStore``: :class:`~.redis.RedisStore` for asyncio apps, on ``redis.asyncio``.

It keeps sessions exactly as ``RedisStore`` does: both follow
:mod:`.redis_layout` (the same hash per session, the same fields, expiry,
per-user index and locks, written by the same Lua scripts), so a WSGI app on
``RedisStore`` and an ASGI app on ``AsyncRedisStore`` that share the secret
key, the Redis and the ``prefix`` share their sessions.

It talks to one Redis (standalone, or the primary that a Sentinel's
``master_for()`` returns); for Redis Cluster use ``RedisStore`` (through a
worker thread on ASGI).
"""

from __future__ import annotations

import time
from typing import Collection, Mapping, Optional, Union

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "AsyncRedisStore needs the redis package: pip install 'hug-cookie-sessions[redis]'"
    ) from error

from . import redis_layout as layout
from .base import Record


def async_client_from_url(url: str) -> aioredis.Redis:
    """A ``redis.asyncio`` client for ``url`` with ``RedisStore``'s bounded timeouts and single retry."""
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.02), 1, supported_errors=(aioredis.ConnectionError,))
    return aioredis.Redis.from_url(
        url, retry=retry, socket_connect_timeout=layout.CONNECT_TIMEOUT, socket_timeout=layout.SOCKET_TIMEOUT
    )


class AsyncRedisStore:
    """Sessions in Redis for ``falcon.asgi.App``: every method a coroutine, every key under ``prefix``.

    ``client_or_url`` is a :class:`redis.asyncio.Redis` or a ``redis://``,
    ``rediss://`` or ``unix://`` URL. Every Redis failure raises
    :class:`~.base.SessionStoreError` (a 503) whose message holds no password.
    A client belongs to the event loop that first uses it: create the store
    where the app's loop runs it, and ``await store.aclose()`` on shutdown.
    """

    def __init__(self, client_or_url: Union[aioredis.Redis, str], *, prefix: str = "session:") -> None:
        self._keys = layout.Keys(prefix)
        self.prefix = prefix
        if isinstance(client_or_url, str):
            layout.require_scheme(client_or_url, layout.SERVER_SCHEMES, "AsyncRedisStore")
            self._failures = layout.Failures.for_url(client_or_url)
            with self._failures.configuring():
                self.client = async_client_from_url(client_or_url)
            self._owns_client = True
        elif isinstance(client_or_url, aioredis.Redis):
            self.client = client_or_url
            self._owns_client = False
            options = client_or_url.connection_pool.connection_kwargs
            where = options.get("path") or f"{options.get('host')}:{options.get('port', 6379)}"
            self._failures = layout.Failures(where, options.get("password"))
        else:
            raise TypeError(
                "AsyncRedisStore needs a redis.asyncio.Redis or a URL (Redis Cluster: RedisStore)"
            )
        self._scripts = layout.Scripts.register(self.client)

    # -- the store protocol, awaited ---------------------------------------------------------

    async def load(self, sid: str) -> Optional[Record]:
        with self._failures("load"):
            fields = await self.client.hgetall(self._keys.session(sid))
        return layout.loaded_record(fields, time.time(), sid)

    async def create(self, sid: str, record: Record) -> None:
        keys = [self._keys.session(sid), *self._keys.indexes(record.user_id)]
        with self._failures("create"):
            await self._scripts.create(keys=keys, args=layout.create_args(record))

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
        keys = [self._keys.session(sid), *self._keys.indexes(user_id)]
        args = layout.apply_args(changed, removed, expires_at, user_id, idle_timeout, time.time())
        with self._failures("apply"):
            return bool(await self._scripts.apply(keys=keys, args=args))

    async def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        sessions = [self._keys.session(old_sid), self._keys.session(new_sid)]
        keys, args = [*sessions, *self._keys.indexes(record.user_id)], layout.rotate_args(record, time.time())
        with self._failures("rotate"):
            return bool(await self._scripts.rotate(keys=keys, args=args))

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
                ended += await self._scripts.end_user_session(keys=[member], args=[user_id, now])
            if members:
                await self.client.srem(index, *members)
        return ended

    # -- session locks (lock=True), awaited ----------------------------------------------------------

    async def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock as ``token`` for ``lease`` seconds, as ``RedisStore`` does; never waits."""
        keys, args = [self._keys.lock(sid)], [token, layout.ms(lease)]
        with self._failures("lock"):
            return bool(await self._scripts.acquire_lock(keys=keys, args=args))

    async def release_lock(self, sid: str, token: str) -> None:
        """Free ``sid``'s lock if ``token`` still holds it."""
        with self._failures("unlock"):
            await self._scripts.release_lock(keys=[self._keys.lock(sid)], args=[token])

    async def aclose(self) -> None:
        """Close the client's connections if this store made the client from a URL."""
        if self._owns_client:
            # redis-py 5 renamed close() to aclose(); 4.6 has only close().
            await getattr(self.client, "aclose", self.client.close)()
