"""``RedisStore``: sessions in Redis, shared by any number of app servers.

Layout: one hash per session at ``prefix + session id``. Metadata fields are
``created``, ``expires``, ``user`` and ``idle`` (the last two only when set);
every session key ``k`` is the field ``d:k``, so no key can ever overwrite the
metadata. The hash carries ``PEXPIREAT`` = the session's expiry, so Redis drops
it on time by itself. Times are Unix seconds written as text. Sessions bound to
a user are also members (by key) of the set ``prefix + "user:" + user id``,
whose expiry every write that binds or refreshes a session moves to at least a
day past that session's: it expires with its sessions. It may name ended
sessions, which reading it and :meth:`RedisStore.purge_expired` drop, but never
misses a live one. With
``SessionMiddleware(lock=True)`` a session's lock is the string
``prefix + "lock:" + session id``, holding its holder's token, with a ``PX`` lease.

Costs: a load is one ``HGETALL``; ``create``, ``apply``, ``rotate`` and
``delete`` are one round trip each. The writes are Lua scripts, so checking
that the session still exists and writing to it happen atomically (a write can
never bring back a session deleted meanwhile). On Redis Cluster every script
touches a single key; binding a session to a user there costs one more round
trip (an ``SADD`` to the user's set, before the write), and so does a rotate.

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
import math
import threading
import time
from typing import Any, Collection, Iterator, Mapping, NamedTuple, Optional, Union
from urllib.parse import urlsplit

from .base import Record, SessionStoreError, redacted_url

try:
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.cluster import RedisCluster
    from redis.commands.core import Script
    from redis.exceptions import RedisClusterException, RedisError
    from redis.retry import Retry
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "RedisStore needs the redis package: pip install 'hug-cookie-sessions[redis]'"
    ) from error

#: Data field names start with this; metadata field names never do.
DATA = "d:"

#: Socket timeouts (seconds) of clients built from a URL: a session lookup is a
#: tiny command, so anything slower is an outage and becomes a 503 quickly.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 1.0

#: How long (ms) a Redis Cluster rotate leaves its tombstone behind; far longer
#: than any client-side retry of the same call.
TOMBSTONE_MS = 60_000

_SCHEMES = ("redis", "rediss", "unix", "redis+cluster")

# Lua helpers: HSET/HDEL ARGV[first..last] on KEYS[k] in chunks, as unpack() has a
# stack limit; whether KEYS[k] is a session that has not expired at ``now``.
_LUA = """
local function each_chunk(command, k, first, last, step)
  for i = first, last, step do
    redis.call(command, KEYS[k], unpack(ARGV, i, math.min(i + step - 1, last)))
  end
end
local function live(k, now)
  local expires = redis.call('HGET', KEYS[k], 'expires')
  return expires and tonumber(expires) > tonumber(now)
end
"""

#: A user's index outlives its longest-lived session by this much (ms), so that
#: clock differences between app servers and Redis never let it expire first.
INDEX_MARGIN_MS = 24 * 3600 * 1000

# Add session KEYS[s] to the user index KEYS[k], and make the index live at least
# as long as that session (plus the margin): the index expires with its sessions.
_LUA_INDEX = f"""
local function index(k, s)
  redis.call('SADD', KEYS[k], KEYS[s])
  local keep = redis.call('PTTL', KEYS[s]) + {INDEX_MARGIN_MS}
  if redis.call('PTTL', KEYS[k]) < keep then redis.call('PEXPIRE', KEYS[k], keep) end
end
"""

# KEYS[1] session, KEYS[2] its user's index (optional); ARGV: expire-at ms, then field/value pairs.
_CREATE = (
    _LUA
    + _LUA_INDEX
    + """
redis.call('DEL', KEYS[1])
each_chunk('HSET', 1, 2, #ARGV, 200)
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
if KEYS[2] then index(2, 1) end
return 1
"""
)

# KEYS[1] session, KEYS[2] the index of a user it is bound to now (optional);
# ARGV: now, expire-at ms, pair count n, n field/value pairs, fields to delete.
_APPLY = (
    _LUA
    + _LUA_INDEX
    + """
if not live(1, ARGV[1]) then return 0 end
local last_pair = 3 + 2 * tonumber(ARGV[3])
each_chunk('HSET', 1, 4, last_pair, 200)
each_chunk('HDEL', 1, last_pair + 1, #ARGV, 200)
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
if KEYS[2] then index(2, 1) end
return 1
"""
)

# KEYS[1] old, KEYS[2] new, KEYS[3] the user's index (optional);
# ARGV: now, expire-at ms, field/value pairs. A single Redis only.
_ROTATE = (
    _LUA
    + _LUA_INDEX
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end  -- a retry of a call that already ran
if not live(1, ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
each_chunk('HSET', 2, 3, #ARGV, 200)
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
if KEYS[3] then index(3, 2) end
return 1
"""
)

# KEYS[1] a user's index; ARGV: session key, ms it must live. Redis Cluster: the index
# sits in another slot than the session, so it is updated by itself.
_INDEX_ADD = """
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS[1] old; ARGV: now, new session id, tombstone ms. Step 2 of a Redis Cluster rotate.
_RETIRE = (
    _LUA
    + """
if redis.call('HGET', KEYS[1], 'moved') == ARGV[2] then return 1 end
if not live(1, ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'moved', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

# KEYS[1] session; ARGV: user id, now. Deletes the session if it is bound to that user;
# returns 1 if it was live.
_END_USER_SESSION = """
local fields = redis.call('HMGET', KEYS[1], 'user', 'expires')
if fields[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if fields[2] and tonumber(fields[2]) > tonumber(ARGV[2]) then return 1 end
return 0
"""

# KEYS[1] a session's lock; ARGV: token, lease ms. SET NX PX, and 1 again for the
# holder itself, so a call redis-py retries after a lost reply still sees its own lock.
_ACQUIRE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS[1] a session's lock; ARGV: token. Deletes the lock only if that token holds it.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Client = Union["redis.Redis", "RedisCluster"]


class _Redis(NamedTuple):
    """A client and the store's scripts registered on it."""

    client: Client
    cluster: bool
    create: Script
    apply: Script
    rotate: Script
    retire: Script
    end_user_session: Script
    acquire_lock: Script
    release_lock: Script
    index_add: Script


def client_from_url(url: str) -> Client:
    """A client for ``url`` with bounded timeouts and one quick retry on a broken connection.

    ``redis://``, ``rediss://`` and ``unix://`` give a :class:`redis.Redis`;
    ``redis+cluster://host:port`` a :class:`~redis.cluster.RedisCluster` seeded
    by that node (it connects at once). Query parameters of the URL
    (``?socket_timeout=2``) override the defaults. A standalone client does not
    retry timeouts, so a slow command never runs twice and a call fails within
    about one timeout.
    """
    options: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": SOCKET_TIMEOUT}
    scheme = _scheme(url)
    if scheme == "redis+cluster":
        # Between attempts the cluster client re-reads the slot map, which rides out a failover.
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
        return RedisCluster.from_url("redis" + url[len(scheme) :], retry=retry, **options)
    # One retry replaces a pooled connection that died with a restarted server.
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.02), 1, supported_errors=(redis.ConnectionError,))
    return redis.Redis.from_url(url, retry=retry, **options)


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
        if not prefix:
            raise ValueError("prefix must not be empty: it keeps session keys apart from other data")
        self.prefix = prefix
        self._lock = threading.Lock()
        self._redis: Optional[_Redis] = None
        self._url: Optional[str] = None
        if isinstance(client_or_url, str):
            if _scheme(client_or_url) not in _SCHEMES:
                schemes = ", ".join(f"{scheme}://" for scheme in _SCHEMES)
                raise ValueError(f"RedisStore needs a URL starting with one of: {schemes}")
            self._url = client_or_url
            self._where = redacted_url(client_or_url)
            self._secret = urlsplit(client_or_url).password
            if _scheme(client_or_url) != "redis+cluster":
                self._bind(client_from_url(client_or_url))
        elif isinstance(client_or_url, (redis.Redis, RedisCluster)):
            self._where, self._secret = _describe(client_or_url)
            self._bind(client_or_url)
        else:
            raise TypeError("RedisStore needs a redis.Redis, a redis.cluster.RedisCluster or a URL")

    def _bind(self, client: Client) -> None:
        self._redis = _Redis(
            client,
            isinstance(client, RedisCluster),
            *(
                client.register_script(script)
                for script in (
                    *(_CREATE, _APPLY, _ROTATE, _RETIRE, _END_USER_SESSION),
                    *(_ACQUIRE_LOCK, _RELEASE_LOCK, _INDEX_ADD),
                )
            ),
        )

    def _connected(self) -> _Redis:
        """The client and its scripts, made now if the store was given a cluster URL."""
        if self._redis is None:
            with self._lock, self._failures("connect"):
                if self._redis is None:
                    self._bind(client_from_url(self._url))
        return self._redis

    @property
    def client(self) -> Client:
        """The Redis client."""
        return self._connected().client

    def _failures(self, action: str) -> contextlib.AbstractContextManager:
        return _failures(self._where, self._secret, action)

    def _key(self, sid: str) -> str:
        return self.prefix + sid

    def _index_key(self, user_id: str) -> str:
        """The set of the session keys bound to ``user_id`` (":" never occurs in a session ID)."""
        return f"{self.prefix}user:{user_id}"

    def _index(self, backend: _Redis, user_id: Optional[str], key: str, expires_at: float) -> list[str]:
        """Have session ``key`` added to ``user_id``'s index (if not None), and the
        index kept alive at least until the session expires.

        On a single Redis this returns the index key, for the write's own script
        to update atomically. On Redis Cluster the index sits in another slot, so
        it is updated now, before the write: the index may name a session that
        is gone (reading it drops those), but never misses a live one.
        """
        if user_id is None:
            return []
        if not backend.cluster:
            return [self._index_key(user_id)]
        keep_ms = max(_ms(expires_at) - _ms(time.time()), 0) + INDEX_MARGIN_MS
        backend.index_add(keys=[self._index_key(user_id)], args=[key, keep_ms])
        return []

    # -- the store protocol ----------------------------------------------------------------

    def load(self, sid: str) -> Optional[Record]:
        backend = self._connected()
        with self._failures("load"):
            fields = backend.client.hgetall(self._key(sid))
        return _record_from_hash(fields, time.time())

    def create(self, sid: str, record: Record) -> None:
        backend, key = self._connected(), self._key(sid)
        with self._failures("create"):
            index = self._index(backend, record.user_id, key, record.expires_at)
            backend.create(keys=[key, *index], args=[_ms(record.expires_at), *_fields(record)])

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
        args = _apply_args(changed, removed, expires_at, user_id, idle_timeout, time.time())
        backend, key = self._connected(), self._key(sid)
        with self._failures("apply"):
            index = self._index(backend, user_id, key, expires_at)
            return bool(backend.apply(keys=[key, *index], args=args))

    def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        backend = self._connected()
        if not backend.cluster:
            keys = [self._key(old_sid), self._key(new_sid)]
            with self._failures("rotate"):
                keys += self._index(backend, record.user_id, keys[1], record.expires_at)
                args = [repr(time.time()), _ms(record.expires_at), *_fields(record)]
                return bool(backend.rotate(keys=keys, args=args))
        # Redis Cluster: create the new hash, then retire the old one (see the module docstring).
        self.create(new_sid, record)
        try:
            with self._failures("rotate"):
                retired = backend.retire(
                    keys=[self._key(old_sid)], args=[repr(time.time()), new_sid, TOMBSTONE_MS]
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
            backend.client.delete(self._key(sid))

    # -- session locks (lock=True) ------------------------------------------------------------

    def _lock_key(self, sid: str) -> str:
        return f"{self.prefix}lock:{sid}"

    def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock: a string key set with ``SET NX PX``, so Redis itself ends the lease.

        Shared by every app server on this Redis; on a Cluster it is one key in one slot.
        """
        backend = self._connected()
        with self._failures("lock"):
            return bool(backend.acquire_lock(keys=[self._lock_key(sid)], args=[token, _ms(lease)]))

    def release_lock(self, sid: str, token: str) -> None:
        backend = self._connected()
        with self._failures("unlock"):
            backend.release_lock(keys=[self._lock_key(sid)], args=[token])

    # -- one user's sessions (UserIndex) -----------------------------------------------------

    def user_sessions(self, user_id: str) -> dict[str, Record]:
        """``user_id``'s live sessions (without their data): ``SMEMBERS`` of the user's index,
        then one pipelined ``HMGET`` per member. Members whose session ended are dropped."""
        backend, index = self._connected(), self._index_key(user_id)
        with self._failures("list user sessions"):
            return self._live_members(backend, index, user_id)

    def delete_user_sessions(self, user_id: str) -> int:
        """Delete every session bound to ``user_id``; one round trip per indexed session."""
        backend, index = self._connected(), self._index_key(user_id)
        now = repr(time.time())
        with self._failures("delete user sessions"):
            members = list(backend.client.smembers(index))
            ended = sum(backend.end_user_session(keys=[member], args=[user_id, now]) for member in members)
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
            pipeline.hmget(member, "created", "expires", "user", "idle")
        now, live, gone = time.time(), {}, []
        for member, fields in zip(members, pipeline.execute(raise_on_error=False)):
            record = _user_record(fields, user_id, now)
            if record is None:
                gone.append(member)
            else:
                live[_text(member)[len(self.prefix) :]] = record
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
        backend, indexes = self._connected(), self._index_key("")
        with self._failures("purge"):
            for server in _primaries(backend):
                for index in server.scan_iter(match=_glob_escape(indexes) + "*", count=1000, _type="set"):
                    self._live_members(backend, index, _text(index)[len(indexes) :])
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
    if not backend.cluster:
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


# -- what RedisStore and AsyncRedisStore share: the layout, read and written ----------------


@contextlib.contextmanager
def _failures(where: str, secret: Optional[str], action: str) -> Iterator[None]:
    """Turn any Redis failure into a SessionStoreError that names no secret."""
    try:
        yield
    except (RedisError, RedisClusterException) as error:
        message = f"Redis session store {where}: {action} failed: {type(error).__name__}: {error}"
        if secret:
            message = message.replace(secret, "***")
        raise SessionStoreError(message) from error


def _record_from_hash(fields: Mapping, now: float) -> Optional[Record]:
    """The record a session hash (``HGETALL``) holds, or None if it is missing or expired at ``now``."""
    meta, data = {}, {}
    for name, value in fields.items():
        name, value = _text(name), _text(value)
        if name.startswith(DATA):
            data[name[len(DATA) :]] = value
        else:
            meta[name] = value
    expires = meta.get("expires")
    if expires is None or float(expires) <= now:
        return None
    idle = meta.get("idle")
    return Record(
        data, float(meta["created"]), float(expires), meta.get("user"), None if idle is None else int(idle)
    )


def _apply_args(
    changed: Mapping[str, str],
    removed: Collection[str],
    expires_at: float,
    user_id: Optional[str],
    idle_timeout: Optional[int],
    now: float,
) -> list:
    """The ``_APPLY`` script's ARGV for one :meth:`RedisStore.apply` call."""
    pairs = ["expires", repr(expires_at)]
    if user_id is not None:
        pairs += ["user", user_id]
    if idle_timeout is not None:
        pairs += ["idle", str(idle_timeout)]
    for key, value in changed.items():
        pairs += [DATA + key, value]
    return [repr(now), _ms(expires_at), len(pairs) // 2, *pairs, *(DATA + key for key in removed)]


def _user_record(fields: Any, user_id: str, now: float) -> Optional[Record]:
    """The data-less record of one ``HMGET created expires user idle`` reply, if it is a live
    session of ``user_id`` (a reply that is an error was no hash, so no session)."""
    if isinstance(fields, Exception):
        return None
    created, expires, user, idle = (None if value is None else _text(value) for value in fields)
    if expires is None or float(expires) <= now or user != user_id:
        return None
    return Record({}, float(created), float(expires), user, None if idle is None else int(idle))


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def _ms(seconds: float) -> int:
    """Unix milliseconds for ``PEXPIREAT``, rounded up so Redis never drops a live session early."""
    return math.ceil(seconds * 1000)


def _fields(record: Record) -> list[str]:
    """``record`` as the flat field/value list ``HSET`` takes."""
    fields = ["created", repr(record.created_at), "expires", repr(record.expires_at)]
    if record.user_id is not None:
        fields += ["user", record.user_id]
    if record.idle_timeout is not None:
        fields += ["idle", str(record.idle_timeout)]
    for key, value in record.data.items():
        fields += [DATA + key, value]
    return fields


def _text(value: Union[bytes, str]) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


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
