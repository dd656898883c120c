"""How a session lives in Redis: the one layout ``RedisStore`` and ``AsyncRedisStore`` share.

Both stores read and write exactly what this module describes, so a WSGI app on
``RedisStore`` and an ASGI app on ``AsyncRedisStore`` that share the secret key,
the Redis and the ``prefix`` share their sessions. Nothing here does I/O: it
names the keys, encodes a :class:`~.base.Record` as hash fields and back, holds
the Lua scripts and builds their arguments.

Layout: one hash per session at ``prefix + session id``. Metadata fields are
``created``, ``expires``, ``user``, ``idle`` and ``label`` (the last three only when set);
every session key ``k`` is the field ``d:k``, so no key can ever overwrite the
metadata. The hash carries ``PEXPIREAT`` = the session's expiry, so Redis drops
it on time by itself. Times are Unix seconds written as text. Sessions bound to
a user are also members (by key) of the set ``prefix + "user:" + user id``,
whose expiry every write that binds or refreshes a session moves to at least a
day past that session's: it expires with its sessions. It may name ended
sessions, which reading it and ``RedisStore.purge_expired`` drop, but never
misses a live one. With ``SessionMiddleware(lock=True)`` a session's lock is the
string ``prefix + "lock:" + session id``, holding its holder's token, with a
``PX`` lease.

Costs: a load is one ``HGETALL``; ``create``, ``apply``, ``rotate`` and
``delete`` are one round trip each. The writes are Lua scripts, so checking
that the session still exists and writing to it happen atomically (a write can
never bring back a session deleted meanwhile).
"""

from __future__ import annotations

import math
from typing import Any, Collection, Mapping, NamedTuple, Optional, Union

from .base import Record, unreadable

#: Data field names start with this; metadata field names never do.
DATA = "d:"

#: The metadata a user's session listing reads (``HMGET``), in the order :func:`user_record` takes.
USER_FIELDS = ("created", "expires", "user", "idle", "label")

#: Socket timeouts (seconds) of clients built from a URL: a session lookup is a
#: tiny command, so anything slower is an outage and becomes a 503 quickly.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 1.0

#: How long (ms) a Redis Cluster rotate leaves its tombstone behind; far longer
#: than any client-side retry of the same call.
TOMBSTONE_MS = 60_000

#: A user's index outlives its longest-lived session by this much (ms), so that
#: clock differences between app servers and Redis never let it expire first.
INDEX_MARGIN_MS = 24 * 3600 * 1000

#: URL schemes of one Redis server (all ``AsyncRedisStore`` takes), and of a Redis Cluster.
SERVER_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEME = "redis+cluster"
#: Every scheme ``RedisStore`` takes.
SCHEMES = (*SERVER_SCHEMES, CLUSTER_SCHEME)

# What every script starts with.
# each_chunk: HSET/HDEL ARGV[first..last] on KEYS[k] in chunks, as unpack() has a stack limit.
# live: whether KEYS[k] is a session that has not expired at ``now``.
# index: add ``member`` to the user index KEYS[k] and make the index live at least
#   ``keep`` ms, so that it expires with its sessions.
# write: HSET the pairs ARGV[first..last_pair] on session KEYS[s], HDEL the fields named
#   after them, expire it at ``expire_at`` ms and, if KEYS[i] is given, add it to that index.
LUA_HELPERS = f"""
local function each_chunk(command, k, first, last, step)
  for i = first, last, step do
    redis.call(command, KEYS[k], unpack(ARGV, i, math.min(i + step - 1, last)))
  end
end
local function live(k, now)
  local expires = redis.call('HGET', KEYS[k], 'expires')
  return expires and tonumber(expires) > tonumber(now)
end
local function index(k, member, keep)
  redis.call('SADD', KEYS[k], member)
  if redis.call('PTTL', KEYS[k]) < keep then redis.call('PEXPIRE', KEYS[k], keep) end
end
local function write(s, first, last_pair, expire_at, i)
  each_chunk('HSET', s, first, last_pair, 200)
  each_chunk('HDEL', s, last_pair + 1, #ARGV, 200)
  redis.call('PEXPIREAT', KEYS[s], expire_at)
  if KEYS[i] then index(i, KEYS[s], redis.call('PTTL', KEYS[s]) + {INDEX_MARGIN_MS}) end
  return 1
end
"""

#: KEYS[1] session, KEYS[2] its user's index (optional); ARGV: expire-at ms, field/value pairs.
CREATE = LUA_HELPERS + "redis.call('DEL', KEYS[1])\nreturn write(1, 2, #ARGV, ARGV[1], 2)\n"

#: KEYS[1] session, KEYS[2] the index of a user it is bound to now (optional);
#: ARGV: now, expire-at ms, pair count n, n field/value pairs, fields to delete.
#: Returns 0, writing nothing, if the session is gone.
APPLY = (
    LUA_HELPERS
    + """
if not live(1, ARGV[1]) then return 0 end
return write(1, 4, 3 + 2 * tonumber(ARGV[3]), ARGV[2], 2)
"""
)

#: KEYS[1] old, KEYS[2] new, KEYS[3] the user's index (optional);
#: ARGV: now, expire-at ms, field/value pairs. Touches two sessions: a single Redis only.
ROTATE = (
    LUA_HELPERS
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end  -- a retry of a call that already ran
if not live(1, ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return write(2, 3, #ARGV, ARGV[2], 3)
"""
)

#: KEYS[1] a user's index; ARGV: session key, ms it must live. Redis Cluster: the index
#: sits in another slot than the session, so it is updated by itself.
INDEX_ADD = LUA_HELPERS + "index(1, ARGV[1], tonumber(ARGV[2]))\nreturn 1\n"

#: KEYS[1] old; ARGV: now, new session id, tombstone ms. Step 2 of a Redis Cluster rotate:
#: the old hash, if still live, becomes a tombstone that opens nothing. The tombstone names
#: the new ID so that a call redis-py retries after a lost reply still recognises its own work.
RETIRE = (
    LUA_HELPERS
    + """
if redis.call('HGET', KEYS[1], 'moved') == ARGV[2] then return 1 end
if not live(1, ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'moved', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

#: KEYS[1] session; ARGV: user id, now. Deletes the session if it is bound to that user;
#: returns 1 if it was live.
END_USER_SESSION = """
local fields = redis.call('HMGET', KEYS[1], 'user', 'expires')
if fields[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if fields[2] and tonumber(fields[2]) > tonumber(ARGV[2]) then return 1 end
return 0
"""

#: KEYS[1] a session's lock; ARGV: token, lease ms. SET NX PX, and 1 again for the
#: holder itself, so a call redis-py retries after a lost reply still sees its own lock.
ACQUIRE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

#: KEYS[1] a session's lock; ARGV: token. Deletes the lock only if that token holds it.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Scripts(NamedTuple):
    """The scripts above, registered on one client (blocking or asyncio alike)."""

    create: Any
    apply: Any
    rotate: Any
    retire: Any
    end_user_session: Any
    acquire_lock: Any
    release_lock: Any
    index_add: Any

    @classmethod
    def register(cls, client: Any) -> Scripts:
        """Register every script on ``client``; no round trip (redis-py loads a script on first use)."""
        texts = (CREATE, APPLY, ROTATE, RETIRE, END_USER_SESSION, ACQUIRE_LOCK, RELEASE_LOCK, INDEX_ADD)
        return cls(*(client.register_script(text) for text in texts))


class Keys:
    """The key names of one store: everything it writes lies under ``prefix``.

    ``:`` never occurs in a session ID, so a user's index or a lock can never
    be taken for a session.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty: it keeps session keys apart from other data")
        self.prefix = prefix

    def session(self, sid: str) -> str:
        """The session's hash."""
        return self.prefix + sid

    def sid(self, key: Union[bytes, str]) -> str:
        """The session ID of a session key (as a user's index holds it)."""
        return text(key)[len(self.prefix) :]

    def user_index(self, user_id: str) -> str:
        """The set of the session keys bound to ``user_id``; ``user_index("")`` prefixes them all."""
        return f"{self.prefix}user:{user_id}"

    def indexes(self, user_id: Optional[str]) -> list[str]:
        """The index key a write binding ``user_id`` hands its script (none for None)."""
        return [] if user_id is None else [self.user_index(user_id)]

    def lock(self, sid: str) -> str:
        """The string holding ``sid``'s lock token (``lock=True``)."""
        return f"{self.prefix}lock:{sid}"


def scheme(url: str) -> str:
    """The URL's scheme, lower case, whatever follows it: it alone picks the kind of client."""
    return url.partition("://")[0].lower()


def require_scheme(url: str, schemes: Collection[str], store: str) -> None:
    """ValueError naming the accepted schemes unless ``url`` has one of them: a typo fails at startup."""
    if scheme(url) not in schemes:
        accepted = ", ".join(f"{name}://" for name in schemes)
        raise ValueError(f"{store} needs a URL starting with one of: {accepted}")


def ms(seconds: float) -> int:
    """Unix milliseconds for ``PEXPIREAT``, rounded up so Redis never drops a live session early."""
    return math.ceil(seconds * 1000)


def index_keep_ms(expires_at: float, now: float) -> int:
    """How long (ms) a user's index must live to outlast a session expiring at ``expires_at``."""
    return max(ms(expires_at) - ms(now), 0) + INDEX_MARGIN_MS


def text(value: Union[bytes, str]) -> str:
    """A reply as text, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value


def field_pairs(
    expires_at: float, user_id: Optional[str], idle_timeout: Optional[int], data: Mapping[str, str]
) -> list[str]:
    """The flat field/value list ``HSET`` takes; ``user`` and ``idle`` only when not None, so a
    write leaves the stored ones alone."""
    pairs = ["expires", repr(expires_at)]
    if user_id is not None:
        pairs += ("user", user_id)
    if idle_timeout is not None:
        pairs += ("idle", str(idle_timeout))
    for key, value in data.items():
        pairs += (DATA + key, value)
    return pairs


def hash_fields(record: Record) -> list[str]:
    """``record`` as the whole of a session hash, flat as ``HSET`` takes it. ``label`` is written
    only here: a bind always rotates, so ``apply`` never changes it."""
    label = [] if record.label is None else ["label", record.label]
    return [
        "created",
        repr(record.created_at),
        *label,
        *field_pairs(record.expires_at, record.user_id, record.idle_timeout, record.data),
    ]


def create_args(record: Record) -> list[Union[str, int]]:
    """The :data:`CREATE` script's ARGV."""
    return [ms(record.expires_at), *hash_fields(record)]


def rotate_args(record: Record, now: float) -> list[Union[str, int]]:
    """The :data:`ROTATE` script's ARGV; ``now`` decides whether the old session still lives."""
    return [repr(now), ms(record.expires_at), *hash_fields(record)]


def apply_args(
    changed: Mapping[str, str],
    removed: Collection[str],
    expires_at: float,
    user_id: Optional[str],
    idle_timeout: Optional[int],
    now: float,
) -> list[Union[str, int]]:
    """The :data:`APPLY` script's ARGV for one ``Store.apply`` call."""
    pairs = field_pairs(expires_at, user_id, idle_timeout, changed)
    args: list[Union[str, int]] = [repr(now), ms(expires_at), len(pairs) // 2, *pairs]
    # PERF(apply-args): no generator for the removed keys when there are none (most writes),
    # and field_pairs extends by tuples: 1.60 against 1.92 µs for one changed key (side by
    # side, 30 rounds, medians; -0.32 µs, 95% CI -0.34 to -0.30).
    if removed:
        args += [DATA + key for key in removed]
    return args


def record_from_hash(fields: Mapping[Union[bytes, str], Union[bytes, str]], now: float) -> Optional[Record]:
    """The record a session hash (``HGETALL``) holds, or None if it is missing or expired at ``now``
    (Redis may not have dropped it yet). ValueError when the hash cannot be parsed (a field that
    is not a number, ``created`` missing, text that is not UTF-8): see :func:`loaded_record`."""
    meta, data = {}, {}
    for name, value in fields.items():
        # PERF(record-from-hash): decoding inline rather than through text(), and no second
        # check by checked_record: 3.27 against 5.36 µs for a three-field hash (side by side,
        # 30 rounds, medians; -2.08 µs, 95% CI -2.15 to -2.04).
        name = name.decode() if isinstance(name, bytes) else name
        value = value.decode() if isinstance(value, bytes) else value
        if name.startswith(DATA):
            data[name[len(DATA) :]] = value
        else:
            meta[name] = value
    expires = meta.get("expires")
    if expires is None:
        return None
    expires_at = _number(expires, "expires")
    if expires_at <= now:
        return None
    if "created" not in meta:
        raise ValueError("the hash has no 'created' field")
    idle = meta.get("idle")
    # Every value is text or a number parsed above, which is what checked_record would check.
    return Record(
        data,
        _number(meta["created"], "created"),
        expires_at,
        meta.get("user"),
        None if idle is None else _whole(idle, "idle"),
        meta.get("label"),
    )


def loaded_record(
    fields: Mapping[Union[bytes, str], Union[bytes, str]], now: float, sid: str
) -> Optional[Record]:
    """:func:`record_from_hash`, with a hash that cannot be parsed logged by its session's
    :func:`~.base.session_ref` and treated as no session (the visitor is anonymous, not a 500)."""
    try:
        return record_from_hash(fields, now)
    except ValueError as error:
        return unreadable(sid, error)


def _number(value: str, field: str) -> float:
    """``value`` as a finite float, or ValueError naming the field (never the value, which is
    the session's own data)."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"field {field!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"field {field!r} is not a finite number")
    return number


def _whole(value: str, field: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"field {field!r} is not a whole number") from None


def user_record(fields: Any, user_id: str, now: float) -> Optional[Record]:
    """The data-less record of one ``HMGET`` :data:`USER_FIELDS` reply, if it is a live
    session of ``user_id`` (a reply that is an error was no hash, so no session; one that
    cannot be parsed is no live session either)."""
    if isinstance(fields, Exception):
        return None
    try:
        created, expires, user, idle, label = (None if value is None else text(value) for value in fields)
        if expires is None or created is None or _number(expires, "expires") <= now or user != user_id:
            return None
        return Record(
            {},
            _number(created, "created"),
            float(expires),
            user,
            None if idle is None else _whole(idle, "idle"),
            label,
        )
    except ValueError:
        return None


def sort_members(
    keys: Keys, members: list[Union[bytes, str]], replies: list[Any], user_id: str, now: float
) -> tuple[dict[str, Record], list[Union[bytes, str]]]:
    """``(live sessions by ID, members to drop)`` of a user's index, from one :func:`user_record`
    reply per member: the index may name ended sessions, and whoever reads it tidies it."""
    live, gone = {}, []
    for member, fields in zip(members, replies):
        record = user_record(fields, user_id, now)
        if record is None:
            gone.append(member)
        else:
            live[keys.sid(member)] = record
    return live, gone
