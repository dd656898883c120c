"""``RedisStore``: sessions in Redis, shared by any number of app servers.

It keeps sessions as :mod:`.redis_layout` describes (the keys, hash fields and
Lua scripts it shares with ``AsyncRedisStore``), on a blocking redis-py client:
a single Redis, the primary a Sentinel names, or a Redis Cluster.

On Redis Cluster every script touches a single key; binding a session to a user
there costs one more round trip (an ``SADD`` to the user's set, before the
write), and so does a rotate.

``rotate`` (``Session.regenerate()``) is one script on a single Redis. On Redis
Cluster the old and the new key usually live in different slots, and no script
may touch both. It then takes two steps, in this order:

1. create the new hash (its ID is still known only to the regenerating
   request, so no other request can use it yet);
2. retire the old hash atomically, if it is still live, replacing it with a
   short-lived tombstone that opens nothing.

Until step 2 the old ID works exactly as if nothing had started; from step 2 on
only the new one does, so no request ever sees both IDs usable. If step 1 fails
nothing changed; if step 2 finds the old session already gone (a concurrent
logout or regenerate won), the new hash is deleted and rotate returns False.
Creating first means a failing node never costs the session its data; the
tombstone names the new ID so a step 2 retried by redis-py after a lost reply
still recognises its own work.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Collection, Mapping, NamedTuple, Optional, Union

try:
    import redis
    from redis.cluster import RedisCluster
    from redis.retry import Retry
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "RedisStore needs the redis package: pip install 'hug-cookie-sessions[redis]'"
    ) from error

from . import redis_layout as layout
from .base import Record, SessionStoreError
from .redis_failures import Failures, client_options
from .redis_layout import CONNECT_TIMEOUT, DATA, INDEX_MARGIN_MS, SOCKET_TIMEOUT, TOMBSTONE_MS

# The layout's constants stay importable from here, where they were first defined.
__all__ = [
    "CONNECT_TIMEOUT",
    "DATA",
    "INDEX_MARGIN_MS",
    "SOCKET_TIMEOUT",
    "TOMBSTONE_MS",
    "Client",
    "RedisStore",
    "client_from_url",
]

Client = Union["redis.Redis", "RedisCluster"]


class _Redis(NamedTuple):
    """A client and the store's scripts registered on it."""

    client: Client
    cluster: bool
    scripts: layout.Scripts


def client_from_url(url: str) -> Client:
    """A client for ``url`` with bounded timeouts and one quick retry on a broken connection.

    ``redis://``, ``rediss://`` and ``unix://`` give a :class:`redis.Redis`;
    ``redis+cluster://host:port`` a :class:`~redis.cluster.RedisCluster` seeded
    by that node (it connects at once). Query parameters of the URL
    (``?socket_timeout=2``) override the defaults. A standalone client does not
    retry timeouts, so a slow command never runs twice and a call fails within
    about one timeout.
    """
    cluster, url, options = client_options(url, Retry)
    return RedisCluster.from_url(url, **options) if cluster else redis.Redis.from_url(url, **options)


class RedisStore:
    """Sessions in Redis (standalone, Sentinel or Cluster), every key under ``prefix``.

    ``client_or_url`` is a :class:`redis.Redis` (for Sentinel, the one
    ``Sentinel.master_for()`` returns), a :class:`~redis.cluster.RedisCluster`,
    or a URL for :func:`client_from_url`. A ``redis+cluster://`` client is made
    on first use, so an app can start while the cluster is down. Every Redis
    failure raises :class:`SessionStoreError` (a 503) whose message never holds
    a password; the client reconnects on the next call.
    """

    def __init__(self, client_or_url: Union[Client, str], *, prefix: str = "session:") -> None:
        self._keys = layout.Keys(prefix)
        self.prefix = prefix
        self._lock = threading.Lock()
        self._redis: Optional[_Redis] = None
        self._url: Optional[str] = None
        if isinstance(client_or_url, str):
            layout.require_scheme(client_or_url, layout.SCHEMES, "RedisStore")
            self._url = client_or_url
            self._failures = Failures.for_url(client_or_url)
            if layout.scheme(client_or_url) != layout.CLUSTER_SCHEME:
                with self._failures.configuring():
                    self._bind(client_from_url(client_or_url))
        elif isinstance(client_or_url, (redis.Redis, RedisCluster)):
            self._failures = Failures(*_describe(client_or_url))
            self._bind(client_or_url)
        else:
            raise TypeError("RedisStore needs a redis.Redis, a redis.cluster.RedisCluster or a URL")

    def _bind(self, client: Client) -> None:
        self._redis = _Redis(client, isinstance(client, RedisCluster), layout.Scripts.register(client))

    def _connected(self) -> _Redis:
        """The client and its scripts, made now if the store was given a cluster URL."""
        if self._redis is None:
            with self._lock, self._failures("connect"), self._failures.configuring():
                if self._redis is None:
                    assert self._url is not None  # only a store given a cluster URL binds late
                    self._bind(client_from_url(self._url))
        assert self._redis is not None  # bound by __init__ or just above
        return self._redis

    @property
    def client(self) -> Client:
        """The Redis client."""
        return self._connected().client

    def _index(self, backend: _Redis, user_id: Optional[str], key: str, expires_at: float) -> list[str]:
        """Have session ``key`` added to ``user_id``'s index (if not None), and the
        index kept alive at least until the session expires.

        On a single Redis this returns the index key, for the write's own script
        to update atomically. On Redis Cluster the index sits in another slot, so
        it is updated now, before the write: the index may name a session that
        is gone (reading it drops those), but never misses a live one.
        """
        if user_id is None or not backend.cluster:
            return self._keys.indexes(user_id)
        keep_ms = layout.index_keep_ms(expires_at, time.time())
        backend.scripts.index_add(keys=[self._keys.user_index(user_id)], args=[key, keep_ms])
        return []

    # -- the store protocol ----------------------------------------------------------------

    def load(self, sid: str) -> Optional[Record]:
        backend = self._connected()
        with self._failures("load"):
            fields = backend.client.hgetall(self._keys.session(sid))
        return layout.loaded_record(fields, time.time(), sid)

    def create(self, sid: str, record: Record) -> None:
        backend, key = self._connected(), self._keys.session(sid)
        with self._failures("create"):
            index = self._index(backend, record.user_id, key, record.expires_at)
            backend.scripts.create(keys=[key, *index], args=layout.create_args(record))

    def apply(
        self,
        sid: str,
        changed: Mapping[str, str],
        removed: Collection[str],
        expires_at: float,
        *,
        user_id: Optional[str] = None,
        idle_timeout: Optional[int] = None,
    ) -> bool:
        args = layout.apply_args(changed, removed, expires_at, user_id, idle_timeout, time.time())
        backend, key = self._connected(), self._keys.session(sid)
        with self._failures("apply"):
            index = self._index(backend, user_id, key, expires_at)
            return bool(backend.scripts.apply(keys=[key, *index], args=args))

    def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        backend = self._connected()
        if not backend.cluster:
            keys = [self._keys.session(old_sid), self._keys.session(new_sid)]
            with self._failures("rotate"):
                keys += self._index(backend, record.user_id, keys[1], record.expires_at)
                return bool(backend.scripts.rotate(keys=keys, args=layout.rotate_args(record, time.time())))
        # Redis Cluster: create the new hash, then retire the old one (see the module docstring).
        self.create(new_sid, record)
        try:
            with self._failures("rotate"):
                retired = backend.scripts.retire(
                    keys=[self._keys.session(old_sid)], args=[repr(time.time()), new_sid, TOMBSTONE_MS]
                )
        except SessionStoreError:
            # The client never learns the new ID after a failure, so nobody could use it.
            with contextlib.suppress(SessionStoreError):
                self.delete(new_sid)
            raise
        if not retired:
            self.delete(new_sid)
        return bool(retired)

    def delete(self, sid: str) -> None:
        backend = self._connected()
        with self._failures("delete"):
            backend.client.delete(self._keys.session(sid))

    # -- session locks (lock=True) ------------------------------------------------------------

    def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock: a string key set with ``SET NX PX``, so Redis itself ends the lease.

        Shared by every app server on this Redis; on a Cluster it is one key in one slot.
        """
        backend, args = self._connected(), [token, layout.ms(lease)]
        with self._failures("lock"):
            return bool(backend.scripts.acquire_lock(keys=[self._keys.lock(sid)], args=args))

    def release_lock(self, sid: str, token: str) -> None:
        backend = self._connected()
        with self._failures("unlock"):
            backend.scripts.release_lock(keys=[self._keys.lock(sid)], args=[token])

    # -- one user's sessions (UserIndex) -----------------------------------------------------

    def user_sessions(self, user_id: str) -> dict[str, Record]:
        """``user_id``'s live sessions (without their data): ``SMEMBERS`` of the user's index,
        then one pipelined ``HMGET`` per member. Members whose session ended are dropped."""
        backend, index = self._connected(), self._keys.user_index(user_id)
        with self._failures("list user sessions"):
            return self._live_members(backend, index, user_id)

    def delete_user_sessions(self, user_id: str) -> int:
        """Delete every session bound to ``user_id``; one round trip per indexed session."""
        backend, index = self._connected(), self._keys.user_index(user_id)
        now = repr(time.time())
        with self._failures("delete user sessions"):
            members, end = list(backend.client.smembers(index)), backend.scripts.end_user_session
            ended: int = sum(end(keys=[member], args=[user_id, now]) for member in members)
            if members:
                # Only these: a session bound meanwhile stays listed.
                backend.client.srem(index, *members)
        return ended

    def _live_members(self, backend: _Redis, index: str, user_id: str) -> dict[str, Record]:
        """The live sessions ``index`` names for ``user_id``; the others leave the index."""
        members = list(backend.client.smembers(index))
        if not members:
            return {}
        pipeline = backend.client.pipeline(transaction=False)
        for member in members:
            pipeline.hmget(member, *layout.USER_FIELDS)
        replies = pipeline.execute(raise_on_error=False)
        live, gone = layout.sort_members(self._keys, members, replies, user_id, time.time())
        if gone:
            backend.client.srem(index, *gone)
        return live

    # -- maintenance ------------------------------------------------------------------------

    def __len__(self) -> int:
        """Live sessions under ``prefix``, counted with ``SCAN`` on every primary.

        ``SCAN`` walks the database's whole key space (not only this prefix),
        1,000 keys per round trip, and each batch of matches costs one more
        round trip to tell sessions from other keys (such as a Redis Cluster
        rotate's tombstones). Cheap on a small Redis; on one holding millions
        of keys, count rarely.
        """
        backend = self._connected()
        pattern = _glob_escape(self.prefix) + "*"
        with self._failures("count"):
            return sum(_count_sessions(server, pattern) for server in _primaries(backend))

    def purge_expired(self) -> int:
        """Always 0: Redis deletes each session itself when its expiry passes.

        What it does do: drop ended sessions from the per-user indexes, which
        are otherwise tidied when that user's sessions are listed or revoked,
        and expire a day after the last of their sessions.
        """
        backend, indexes = self._connected(), self._keys.user_index("")
        with self._failures("purge"):
            for server in _primaries(backend):
                for index in server.scan_iter(match=_glob_escape(indexes) + "*", count=1000, _type="set"):
                    self._live_members(backend, index, layout.text(index)[len(indexes) :])
        return 0

    def count_expired(self) -> int:
        """Always 0: Redis never keeps an expired session."""
        return 0

    def close(self) -> None:
        """Close the client's connections if this store made the client from a URL."""
        if self._url is not None and self._redis is not None:
            self._redis.client.close()


def _primaries(backend: _Redis) -> list[redis.Redis]:
    """A client for each server holding data: every primary of a cluster, or the one Redis."""
    if not isinstance(backend.client, RedisCluster):  # backend.cluster, as mypy can follow it
        return [backend.client]
    return [backend.client.get_redis_connection(node) for node in backend.client.get_primaries()]


def _count_sessions(client: redis.Redis, pattern: str) -> int:
    """Keys matching ``pattern`` on this one server that hold a session."""
    total = cursor = 0
    while True:
        cursor, keys = client.scan(cursor, match=pattern, count=1000)
        if keys:
            pipeline = client.pipeline(transaction=False)
            for key in keys:
                pipeline.hexists(key, "expires")
            total += sum(1 for found in pipeline.execute(raise_on_error=False) if found is True)
        if not cursor:
            return total


def _describe(client: Client) -> tuple[str, Optional[str]]:
    """Where ``client`` connects (for messages) and its password (to keep out of them)."""
    if isinstance(client, RedisCluster):
        return "(Redis Cluster)", client.nodes_manager.connection_kwargs.get("password")
    options = client.connection_pool.connection_kwargs
    if "path" in options:
        where = f"unix:{options['path']}"
    elif "host" in options:
        where = f"{options['host']}:{options.get('port', 6379)}/{options.get('db', 0)}"
    else:
        where = f"({type(client.connection_pool).__name__})"
    return where, options.get("password")


def _glob_escape(pattern: str) -> str:
    """``pattern`` matched literally by ``SCAN MATCH`` (a prefix may hold glob characters)."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in pattern)
