"""How sessions live in PostgreSQL: the one schema ``PostgresStore`` and ``AsyncPostgresStore`` share.

Both stores run exactly the statements this module holds, so a WSGI app on
``PostgresStore`` and an ASGI app on ``AsyncPostgresStore`` that share the
secret key, the database and the ``table_prefix`` share their sessions.
Nothing here does I/O: it names the tables, holds the SQL, builds parameters
and turns rows back into :class:`~.base.Record` values.

Layout (``p`` is the table prefix, ``session`` by default):

- ``p_sessions``: one row per session: ``id``, ``data`` (``jsonb``: each
  session key maps to its value's JSON text, kept as a JSON string so it comes
  back byte for byte), ``created_at``, ``expires_at`` (Unix seconds, ``float8``),
  ``user_id``, ``idle_timeout`` and ``label``; indexed by expiry (purging) and by user.
- ``p_locks``: one row per held session lock (``lock=True``): id, token, lease end.
- ``p_meta``: ``schema`` = ``hug-cookie-sessions`` and ``version`` = the schema
  version, so a later release can migrate, and the CLI can tell our tables from
  someone else's. Version 2 added ``label``: a store finding version 1 tables
  adds the column on first use (:attr:`Statements.create_schema` does both).

Why one row with a ``jsonb`` column rather than a row per key (as SQLite has):
every write of the protocol is then one ``UPDATE`` whose ``WHERE`` says "only
if still live" and whose ``SET`` merges (``||``) and removes (``-``) keys on the
row's latest version. PostgreSQL re-reads a row that a concurrent transaction
changed before applying the expression to it, so two requests changing
different keys both persist, and a concurrent delete leaves nothing to update.
A load is one primary-key lookup, with no join.

PostgreSQL text cannot hold a NUL character, so a session key with one (or one
that cannot be encoded, or that starts with :data:`ESCAPED`) is stored as
:data:`ESCAPED` followed by the hex of its UTF-8 bytes.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any, Callable, Collection, Iterator, Mapping, Optional, Union, cast
from urllib.parse import urlsplit

from .base import Record, SessionStoreError, redacted_url

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg.types.json import Jsonb
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the PostgreSQL session stores need psycopg: pip install 'hug-cookie-sessions[postgres]'"
    ) from error

#: The schema this release creates and reads; ``p_meta`` records it.
SCHEMA_VERSION = 2

#: Older schema versions a store brings up to date on first use (``create_schema``).
UPGRADABLE_VERSIONS = ("1",)

#: What ``p_meta``'s ``schema`` row holds in a database this package set up.
SCHEMA_OWNER = "hug-cookie-sessions"

#: Seconds to open a connection (libpq's ``connect_timeout``; libpq waits at least 2).
CONNECT_TIMEOUT = 2.0
#: Seconds a statement may run on the server (``statement_timeout``), waiting for a row lock included.
STATEMENT_TIMEOUT = 2.0
#: Seconds a call waits for a pooled connection (all busy, or the server being reconnected to).
POOL_TIMEOUT = 2.0
#: Connections a store's own pool keeps open at least, and opens at most, per process.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10

#: URL query parameter naming the tables; removed before the URL reaches libpq.
PREFIX_PARAMETER = "table_prefix"
SCHEMES = ("postgresql", "postgres")

#: The mark of an escaped session key (see the module docstring).
ESCAPED = "\x01"

_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,39}")

ABSENT, OUTDATED, READY = "absent", "outdated", "ready"


class Statements:
    """Every statement of one ``table_prefix``: plain lower-case identifiers only, so they are
    safe to write into the SQL (the prefix is checked, never user input at request time)."""

    def __init__(self, table_prefix: str) -> None:
        if not _PREFIX.fullmatch(table_prefix):
            raise ValueError("table_prefix must be 1-40 of a-z, 0-9 and _, not starting with a digit")
        p = self.table_prefix = table_prefix
        s, locks, meta = (f'"{p}_{name}"' for name in ("sessions", "locks", "meta"))
        self.table_names = (f"{p}_meta", f"{p}_sessions", f"{p}_locks")
        columns = "id, data, created_at, expires_at, user_id, idle_timeout, label"
        live = "id = %s AND expires_at > %s"
        self.load = f"SELECT data, created_at, expires_at, user_id, idle_timeout, label FROM {s} WHERE {live}"
        self.create = (
            f"INSERT INTO {s} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE"
            " SET data = excluded.data, created_at = excluded.created_at, expires_at = excluded.expires_at,"
            " user_id = excluded.user_id, idle_timeout = excluded.idle_timeout, label = excluded.label"
        )
        self.apply = (
            f"UPDATE {s} SET data = (data || %s) - %s::text[], expires_at = %s,"
            f" user_id = coalesce(%s, user_id), idle_timeout = coalesce(%s::integer, idle_timeout)"
            f" WHERE {live}"
        )
        # One statement, so no moment exists where both IDs (or neither, with the data lost) are stored.
        self.rotate = (
            f"WITH old AS (DELETE FROM {s} WHERE {live} RETURNING id)"
            f" INSERT INTO {s} ({columns}) SELECT %s, %s, %s, %s, %s, %s, %s FROM old"
        )
        self.delete = f"DELETE FROM {s} WHERE id = %s"
        self.user_sessions = (
            f"SELECT id, created_at, expires_at, idle_timeout, label FROM {s}"
            " WHERE user_id = %s AND expires_at > %s"
        )
        self.delete_user_sessions = (
            f"WITH ended AS (DELETE FROM {s} WHERE user_id = %s RETURNING expires_at)"
            " SELECT count(*) FILTER (WHERE expires_at > %s) FROM ended"
        )
        # Inserted, or taken over from an ended lease, or renewed by its holder (a retried call).
        self.acquire_lock = (
            f"INSERT INTO {locks} AS l (id, token, expires_at) VALUES (%s, %s, %s) ON CONFLICT (id)"
            " DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at"
            " WHERE l.expires_at <= %s OR l.token = excluded.token RETURNING 1"
        )
        self.release_lock = f"DELETE FROM {locks} WHERE id = %s AND token = %s"
        self.purge_locks = f"DELETE FROM {locks} WHERE expires_at <= %s"
        # SKIP LOCKED: a batch never waits for rows a request is writing (those are live anyway).
        self.purge_batch = (
            f"DELETE FROM {s} WHERE id IN (SELECT id FROM {s} WHERE expires_at <= %s"
            " LIMIT %s FOR UPDATE SKIP LOCKED)"
        )
        self.count_live = f"SELECT count(*) FROM {s} WHERE expires_at > %s"
        self.count_expired = f"SELECT count(*) FROM {s} WHERE expires_at <= %s"
        self.sizes = f"SELECT pg_total_relation_size('{s}'), pg_total_relation_size('{locks}')"
        self.find_tables = "SELECT " + ", ".join(["to_regclass(%s) IS NOT NULL"] * 3)
        self.read_meta = f"SELECT name, value FROM {meta}"
        # One simple-protocol round trip, one transaction: the advisory lock serialises workers
        # that create the schema at the same moment (CREATE ... IF NOT EXISTS alone can collide).
        # Run on tables of an older version, it brings them up to date (ADD COLUMN IF NOT EXISTS).
        self.create_schema = f"""
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('{SCHEMA_OWNER}:{p}'));
CREATE TABLE IF NOT EXISTS {meta} (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS {s} (
    id text PRIMARY KEY,
    data jsonb NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    user_id text,
    idle_timeout integer,
    label text
);
ALTER TABLE {s} ADD COLUMN IF NOT EXISTS label text;
CREATE INDEX IF NOT EXISTS "{p}_sessions_by_expiry" ON {s} (expires_at);
CREATE INDEX IF NOT EXISTS "{p}_sessions_by_user" ON {s} (user_id) WHERE user_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS {locks} (
    id text PRIMARY KEY,
    token text NOT NULL,
    expires_at double precision NOT NULL
);
INSERT INTO {meta} VALUES ('schema', '{SCHEMA_OWNER}'), ('version', '{SCHEMA_VERSION}')
    ON CONFLICT (name) DO UPDATE SET value = excluded.value;
COMMIT;
"""


def verdict(found: Collection[bool], meta: Mapping[str, str], table_prefix: str) -> str:
    """:data:`READY`, :data:`ABSENT` or :data:`OUTDATED` (a version of
    :data:`UPGRADABLE_VERSIONS`) for what :attr:`Statements.find_tables` found (meta, sessions,
    locks) and ``p_meta``'s rows; SessionStoreError for tables that are not this package's, or a
    schema version this release does not know (nothing is changed either way)."""
    if not any(found):
        return ABSENT
    if meta.get("schema") != SCHEMA_OWNER:
        raise SessionStoreError(
            f"PostgreSQL tables with prefix {table_prefix!r} exist but were not made by {SCHEMA_OWNER};"
            " choose another table_prefix"
        )
    if meta.get("version") in UPGRADABLE_VERSIONS:
        return OUTDATED
    if meta.get("version") != str(SCHEMA_VERSION):
        raise SessionStoreError(
            f"PostgreSQL session tables {table_prefix!r} have schema version {meta.get('version')!r};"
            f" this release reads version {SCHEMA_VERSION}"
        )
    return READY


def absent_message(table_prefix: str) -> str:
    """Why a command that never creates tables refuses a database without them."""
    return f"this PostgreSQL database holds no {SCHEMA_OWNER} tables with table_prefix {table_prefix!r}"


def pool_options(pool_timeout: float, table_prefix: str) -> dict[str, Any]:
    """How a store makes its own pool (blocking or async alike): autocommit connections, so a
    statement is one round trip; opened on first use; waits for a connection bounded."""
    return {
        "open": False,
        "kwargs": {"autocommit": True},
        "min_size": POOL_MIN_SIZE,
        "max_size": POOL_MAX_SIZE,
        "timeout": pool_timeout,
        "name": f"{SCHEMA_OWNER}:{table_prefix}",
    }


class PurgeSchedule:
    """When a new session's write also purges: at most once per ``interval`` seconds (per store)."""

    def __init__(self, interval: float) -> None:
        self.interval, self.next = interval, 0.0

    def due(self) -> bool:
        """Whether to purge now; if so, the next purge is ``interval`` seconds away."""
        now = time.time()
        if now < self.next:
            return False
        self.next = now + self.interval
        return True


class Purge:
    """The bookkeeping of one ``purge_expired`` call: batches run, sessions deleted, when to stop."""

    def __init__(
        self, batch_size: int, max_batches: Optional[int], progress: Optional[Callable[[int], None]]
    ) -> None:
        self.batch_size, self.max_batches, self.progress = batch_size, max_batches, progress
        self.total = self.batches = 0
        self.finished = False

    @property
    def first(self) -> bool:
        """Whether no batch has run yet."""
        return self.batches == 0

    def more(self) -> bool:
        """Whether to run another batch."""
        return not self.finished and (self.max_batches is None or self.batches < self.max_batches)

    def done(self, deleted: int) -> None:
        """Count a batch that deleted ``deleted`` sessions; a short batch was the last."""
        self.total += deleted
        self.batches += 1
        self.finished = deleted < self.batch_size
        if self.progress is not None:
            self.progress(self.total)


# -- parameters and rows ---------------------------------------------------------------------------


def stored_key(key: str) -> str:
    """``key`` as the ``jsonb`` column holds it (see :data:`ESCAPED`)."""
    if key.isascii():
        if "\x00" not in key and not key.startswith(ESCAPED):
            return key
    else:
        with contextlib.suppress(UnicodeEncodeError):
            key.encode()
            return key
    return ESCAPED + key.encode("utf-8", "surrogatepass").hex()


def session_key(stored: str) -> str:
    """The session key that :func:`stored_key` stored as ``stored``."""
    if stored.startswith(ESCAPED):
        return bytes.fromhex(stored[1:]).decode("utf-8", "surrogatepass")
    return stored


def stored_data(data: Mapping[str, str]) -> Jsonb:
    """A ``jsonb`` parameter of ``data``: each key to its value's JSON text, as a JSON string."""
    return Jsonb({stored_key(key): value for key, value in data.items()})


def record_params(
    sid: str, record: Record
) -> tuple[str, Jsonb, float, float, Optional[str], Optional[int], Optional[str]]:
    """The seven column values of ``record`` stored under ``sid``, in :attr:`Statements.create`'s order."""
    return (
        sid,
        stored_data(record.data),
        record.created_at,
        record.expires_at,
        record.user_id,
        record.idle_timeout,
        record.label,
    )


def apply_params(
    sid: str,
    changed: Mapping[str, str],
    removed: Collection[str],
    expires_at: float,
    user_id: Optional[str],
    idle_timeout: Optional[int],
    now: float,
) -> tuple[Jsonb, list[str], float, Optional[str], Optional[int], str, float]:
    """:attr:`Statements.apply`'s parameters for one ``Store.apply`` call."""
    removed_keys = [stored_key(key) for key in removed]
    return (stored_data(changed), removed_keys, expires_at, user_id, idle_timeout, sid, now)


def rotate_params(
    old_sid: str, new_sid: str, record: Record, now: float
) -> tuple[str, float, str, Jsonb, float, float, Optional[str], Optional[int], Optional[str]]:
    """:attr:`Statements.rotate`'s parameters; ``now`` decides whether the old session still lives."""
    return (old_sid, now, *record_params(new_sid, record))


def record_from_row(row: Optional[tuple[Any, ...]]) -> Optional[Record]:
    """The record of a :attr:`Statements.load` row (None for no row)."""
    if row is None:
        return None
    data, created_at, expires_at, user_id, idle_timeout, label = row
    if any(key.startswith(ESCAPED) for key in data):
        data = {session_key(key): value for key, value in data.items()}
    return Record(data, created_at, expires_at, user_id, idle_timeout, label)


def user_records(rows: list[tuple[Any, ...]], user_id: str) -> dict[str, Record]:
    """``user_sessions``' answer from :attr:`Statements.user_sessions` rows (records without data)."""
    return {
        sid: Record({}, created, expires, user_id, idle, label) for sid, created, expires, idle, label in rows
    }


def one_row(row: Optional[tuple[Any, ...]]) -> tuple[Any, ...]:
    """``row``, of a statement that always answers one (``count(*)``, the table checks): psycopg
    types every ``fetchone()`` as maybe None."""
    assert row is not None, "PostgreSQL answered no row to a statement that always answers one"
    return row


def count(row: Optional[tuple[Any, ...]]) -> int:
    """The ``count(*)`` of a one-row answer."""
    number: int = one_row(row)[0]
    return number


# -- connecting -------------------------------------------------------------------------------------


def split_url(url: str) -> tuple[str, Optional[str]]:
    """``(url without its table_prefix parameter, that prefix or None)``; the rest of the query
    is kept byte for byte, since libpq decodes it itself."""
    base, question, query = url.partition("?")
    if not question:
        return url, None
    kept, prefix = [], None
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == PREFIX_PARAMETER:
            prefix = value
        elif part:
            kept.append(part)
    return base + ("?" + "&".join(kept) if kept else ""), prefix


def with_timeouts(conninfo: str, connect_timeout: float, statement_timeout: float) -> str:
    """``conninfo`` (URL or ``key=value`` string) with the given timeouts, unless it sets its own
    ``connect_timeout`` or ``-c statement_timeout=`` in ``options``. The statement timeout goes in
    the startup packet, so it costs no round trip."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        raise ValueError(f"not a PostgreSQL conninfo or URL: {redacted_url(conninfo)!r}") from None
    extra: dict[str, Any] = {}
    if "connect_timeout" not in params:
        extra["connect_timeout"] = max(1, round(connect_timeout))
    options = str(params.get("options") or "")
    if "statement_timeout" not in options:
        extra["options"] = f"{options} -c statement_timeout={round(statement_timeout * 1000)}".strip()
    return make_conninfo(conninfo, **extra)


class Failures:
    """Turns every psycopg failure into a SessionStoreError (a 503) whose message names no secret.

    ``where`` (host, port, database) says which server in messages; ``secret``
    (the password) is masked wherever psycopg's own error text might repeat it.
    """

    __slots__ = ("secret", "where")

    def __init__(self, where: str, secret: Optional[str]) -> None:
        self.where, self.secret = where, secret

    @classmethod
    def for_conninfo(cls, conninfo: Union[str, Callable[..., Any]]) -> Failures:
        """Messages name the host, port and database of ``conninfo``, never its password. A pool
        may take its conninfo from a function (psycopg_pool 3.3), asked at each connection: then
        messages name no server."""
        if not isinstance(conninfo, str):
            return cls("(conninfo from a function)", None)
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.Error:
            return cls(redacted_url(conninfo), urlsplit(conninfo).password)
        where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
        return cls(where, cast(Optional[str], params.get("password")))  # parsed from text: text

    @contextlib.contextmanager
    def __call__(self, action: str) -> Iterator[None]:
        """Any psycopg failure inside the block raises, naming ``action`` and where it failed."""
        try:
            yield
        except psycopg.Error as error:
            kind = type(error).__name__
            message = f"PostgreSQL session store {self.where}: {action} failed: {kind}: {error}"
            if self.secret:
                message = message.replace(self.secret, "***")
            raise SessionStoreError(message.strip()) from error
