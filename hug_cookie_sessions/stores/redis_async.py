"""``AsyncRedisStore``: :class:`~.redis.RedisStore` for asyncio apps, on ``redis.asyncio``.

It keeps sessions exactly as ``RedisStore`` does (the same hash per session,
the same fields, expiry, per-user index and locks, written by the same Lua scripts),
so a WSGI app on ``RedisStore`` and an ASGI app on ``AsyncRedisStore`` that
share the secret key, the Redis and the ``prefix`` share their sessions.

It talks to one Redis (standalone, or the primary that a Sentinel's
``master_for()`` returns); for Redis Cluster use ``RedisStore`` (through a
worker thread on ASGI).
"""

from __future__ import annotations

import time
from typing import Any, Collection, Mapping, Optional, Union
from urllib.parse import urlsplit

from .base import Record, redacted_url
from .redis import (
    _ACQUIRE_LOCK,
    _APPLY,
    _CREATE,
    _END_USER_SESSION,
    _RELEASE_LOCK,
    _ROTATE,
    CONNECT_TIMEOUT,
    SOCKET_TIMEOUT,
    _apply_args,
    _failures,
    _fields,
    _ms,
    _record_from_hash,
    _scheme,
    _text,
    _user_record,
)

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "AsyncRedisStore needs the redis package: pip install 'hug-cookie-sessions[redis]'"
    ) from error

_SCHEMES = ("redis", "rediss", "unix")


def async_client_from_url(url: str) -> aioredis.Redis:
    """A ``redis.asyncio`` client for ``url`` with ``RedisStore``'s bounded timeouts and single retry."""
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.02), 1, supported_errors=(aioredis.ConnectionError,))
    return aioredis.Redis.from_url(
        url, retry=retry, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT
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
        if not prefix:
            raise ValueError("prefix must not be empty: it keeps session keys apart from other data")
        self.prefix = prefix
        if isinstance(client_or_url, str):
            if _scheme(client_or_url) not in _SCHEMES:
                schemes = ", ".join(f"{scheme}://" for scheme in _SCHEMES)
                raise ValueError(f"AsyncRedisStore needs a URL starting with one of: {schemes}")
            self.client = async_client_from_url(client_or_url)
            self._owns_client = True
            self._where, self._secret = redacted_url(client_or_url), urlsplit(client_or_url).password
        elif isinstance(client_or_url, aioredis.Redis):
            self.client = client_or_url
            self._owns_client = False
            options = client_or_url.connection_pool.connection_kwargs
            where = options.get("path") or f"{options.get('host')}:{options.get('port', 6379)}"
            self._where, self._secret = where, options.get("password")
        else:
            raise TypeError(
                "AsyncRedisStore needs a redis.asyncio.Redis or a URL (Redis Cluster: RedisStore)"
            )
        scripts = (_CREATE, _APPLY, _ROTATE, _END_USER_SESSION, _ACQUIRE_LOCK, _RELEASE_LOCK)
        (
            self._create,
            self._apply,
            self._rotate,
            self._end_user_session,
            self._acquire_lock,
            self._release_lock,
        ) = (self.client.register_script(script) for script in scripts)

    def _failures(self, action: str) -> Any:
        return _failures(self._where, self._secret, action)

    def _key(self, sid: str) -> str:
        return self.prefix + sid

    def _index_key(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}"

    def _index(self, user_id: Optional[str]) -> list[str]:
        return [] if user_id is None else [self._index_key(user_id)]

    # -- the store protocol, awaited ---------------------------------------------------------

    async def load(self, sid: str) -> Optional[Record]:
        with self._failures("load"):
            fields = await self.client.hgetall(self._key(sid))
        return _record_from_hash(fields, time.time())

    async def create(self, sid: str, record: Record) -> None:
        keys = [self._key(sid), *self._index(record.user_id)]
        with self._failures("create"):
            await self._create(keys=keys, args=[_ms(record.expires_at), *_fields(record)])

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
        keys = [self._key(sid), *self._index(user_id)]
        args = _apply_args(changed, removed, expires_at, user_id, idle_timeout, time.time())
        with self._failures("apply"):
            return bool(await self._apply(keys=keys, args=args))

    async def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        keys = [self._key(old_sid), self._key(new_sid), *self._index(record.user_id)]
        args = [repr(time.time()), _ms(record.expires_at), *_fields(record)]
        with self._failures("rotate"):
            return bool(await self._rotate(keys=keys, args=args))

    async def delete(self, sid: str) -> None:
        with self._failures("delete"):
            await self.client.delete(self._key(sid))

    # -- one user's sessions (UserIndex), awaited ------------------------------------------------

    async def user_sessions(self, user_id: str) -> dict[str, Record]:
        """``user_id``'s live sessions (without their data); members whose session ended leave the index."""
        index = self._index_key(user_id)
        with self._failures("list user sessions"):
            members = list(await self.client.smembers(index))
            if not members:
                return {}
            pipeline = self.client.pipeline(transaction=False)
            for member in members:
                pipeline.hmget(member, "created", "expires", "user", "idle")
            now, live, gone = time.time(), {}, []
            for member, fields in zip(members, await pipeline.execute(raise_on_error=False)):
                record = _user_record(fields, user_id, now)
                if record is None:
                    gone.append(member)
                else:
                    live[_text(member)[len(self.prefix) :]] = record
            if gone:
                await self.client.srem(index, *gone)
        return live

    async def delete_user_sessions(self, user_id: str) -> int:
        """Delete every session bound to ``user_id``; one round trip per indexed session."""
        index, now = self._index_key(user_id), repr(time.time())
        with self._failures("delete user sessions"):
            members = list(await self.client.smembers(index))
            ended = 0
            for member in members:
                ended += await self._end_user_session(keys=[member], args=[user_id, now])
            if members:
                await self.client.srem(index, *members)
        return ended

    # -- session locks (lock=True), awaited ----------------------------------------------------------

    def _lock_key(self, sid: str) -> str:
        return f"{self.prefix}lock:{sid}"

    async def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock as ``token`` for ``lease`` seconds, as ``RedisStore`` does; never waits."""
        with self._failures("lock"):
            return bool(await self._acquire_lock(keys=[self._lock_key(sid)], args=[token, _ms(lease)]))

    async def release_lock(self, sid: str, token: str) -> None:
        """Free ``sid``'s lock if ``token`` still holds it."""
        with self._failures("unlock"):
            await self._release_lock(keys=[self._lock_key(sid)], args=[token])

    async def aclose(self) -> None:
        """Close the client's connections if this store made the client from a URL."""
        if self._owns_client:
            # redis-py 5 renamed close() to aclose(); 4.6 has only close().
            await getattr(self.client, "aclose", self.client.close)()
