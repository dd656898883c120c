"""``SQLiteStore``: sessions in one SQLite file, the embedded default for a single host.

One row per session and one row per session key, so a request writes only
the keys it changed and two requests changing different keys both persist.
Several worker processes (and threads) can share the file: it runs in WAL mode,
where readers never wait for the writer, and writers wait up to
``busy_timeout`` seconds for each other before the store reports an error.

Durability: ``synchronous="NORMAL"`` (the default) never corrupts the file, but
a power cut may lose the last commits; ``"FULL"`` syncs every commit to disk,
which makes a write several times slower (an fsync each; the disk decides).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from typing import Callable, Collection, Iterator, Mapping, Optional, Union

from . import sqlite_schema
from .base import Record, SessionStoreError, checked_record, unreadable

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


# A connection must not cross a fork. os.getpid() is a system call, paid on every
# store call when asked each time; the child's new PID is recorded once instead.
if hasattr(os, "register_at_fork"):  # POSIX; elsewhere processes do not fork
    os.register_at_fork(after_in_child=_forked)

_LOAD = """
SELECT s.created_at, s.expires_at, s.user_id, s.idle_timeout, s.label, v.key, v.value
FROM sessions AS s LEFT JOIN session_values AS v ON v.session_id = s.id
WHERE s.id = ? AND s.expires_at > ?
"""


#: Writes of up to this many values may take the one-statement path (two bound
#: parameters each: far below SQLite's limit, and few distinct statements to cache).
MAX_ONE_STATEMENT_KEYS = 64


#: Writes a key's value in place when the key exists (an upsert), rather than deleting the
#: row and inserting another as INSERT OR REPLACE does: a value that did not change is not written.
_UPSERT = " ON CONFLICT (session_id, key) DO UPDATE SET value = excluded.value"


@functools.lru_cache(maxsize=MAX_ONE_STATEMENT_KEYS)
def _values_if_expiry(count: int) -> str:
    """``count`` key/value pairs written into the session ``?`` if it is live and expires at ``?``."""
    if count == 1:  # the commonest write; through a VALUES list of one row it costs a fifth more
        source = "SELECT s.id, ?, ? FROM sessions AS s"
    else:
        rows = ", ".join(["(?, ?)"] * count)
        source = f"SELECT s.id, v.column1, v.column2 FROM (VALUES {rows}) AS v, sessions AS s"
    return (
        f"INSERT INTO session_values (session_id, key, value) {source}"
        f" WHERE s.id = ? AND s.expires_at = ? AND s.expires_at > ?{_UPSERT}"
    )


class SQLiteStore:
    """Sessions in the SQLite database at ``path``, created on first use.

    Expired sessions are never returned; they are deleted in small batches at
    most once per ``purge_interval`` seconds, piggybacked on a new session's
    write, and by :meth:`purge_expired`. A missing directory, an unreadable or
    corrupt file, or a lock held past ``busy_timeout`` raises
    :class:`SessionStoreError` (a 503), and the store retries on the next call.
    Each thread's connection keeps up to ``cache_mib`` MiB of the file's pages in
    memory (SQLite's own default is 2), so that the pages of a large table's
    active sessions are not read from the file on every request.
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 5.0,
        synchronous: str = "NORMAL",
        purge_interval: float = 300.0,
        cache_mib: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if sqlite3.sqlite_version_info < (3, 24):  # upserts (ON CONFLICT ... DO UPDATE)
            raise RuntimeError(
                f"SQLiteStore needs SQLite 3.24 or newer; this Python has {sqlite3.sqlite_version}"
            )
        if path == ":memory:" or not path:
            raise ValueError("SQLiteStore needs a file path; use MemoryStore for in-memory sessions")
        if cache_mib < 0:
            raise ValueError("cache_mib must be >= 0")
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be OFF, NORMAL, FULL or EXTRA")
        self.path = path
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous.upper()
        self.purge_interval = purge_interval
        self.cache_mib = cache_mib
        self._clock = clock
        self._local = threading.local()
        self._next_purge = 0.0

    # -- connections -------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the schema made) on first use, anew after a fork."""
        local = self._local
        connection: Optional[sqlite3.Connection] = getattr(local, "connection", None)
        if connection is not None and local.pid == _pid:
            return connection
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._use_wal(connection)
            connection.execute(f"PRAGMA synchronous = {self.synchronous}")
            connection.execute(f"PRAGMA cache_size = -{int(self.cache_mib) * 1024}")
            connection.execute("PRAGMA foreign_keys = ON")
            connection.executescript(sqlite_schema.SCHEMA)
            sqlite_schema.migrate(connection)
            sqlite_schema.mark(connection)
        except BaseException:
            connection.close()
            raise
        local.connection, local.pid = connection, _pid
        return connection

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        """Put the file in WAL mode (a no-op once it is). Connections that open a new file
        together all ask for the switch, and SQLite answers the ones that find it under way
        "database is locked" at once, without waiting: they ask again until ``busy_timeout``."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.005)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any error, sqlite3 errors become
        SessionStoreError."""
        try:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise self._fail(error) from error
        try:
            yield db
        except BaseException as error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise self._fail(error) from error
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as error:
            raise self._fail(error) from error

    def _fail(self, error: sqlite3.Error) -> SessionStoreError:
        """Drop this thread's connection (the next call reconnects) and describe ``error``."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()
        return SessionStoreError(f"SQLite session store {self.path!r}: {error}")

    # -- the store protocol ----------------------------------------------------------------

    def load(self, sid: str) -> Optional[Record]:
        try:
            rows = self._connection().execute(_LOAD, (sid, self._clock())).fetchall()
        except sqlite3.Error as error:
            raise self._fail(error) from error
        if not rows:
            return None
        data = {key: value for *_, key, value in rows if key is not None}
        try:
            return checked_record(data, *rows[0][:5])
        except ValueError as error:  # a row changed behind the store's back: no session, logged
            return unreadable(sid, error)

    def create(self, sid: str, record: Record) -> None:
        with self._transaction() as db:
            _insert(db, sid, record)
        now = self._clock()
        if now >= self._next_purge:
            self._next_purge = now + self.purge_interval
            self.purge_expired(max_batches=1)

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
        if (
            0 < len(changed) <= MAX_ONE_STATEMENT_KEYS
            and not removed
            and user_id is None
            and idle_timeout is None
        ):
            # The usual write: new values, the expiry unchanged. One statement, which
            # writes only into a live session whose expiry is still ``expires_at``,
            # rather than a transaction that reads the row first. Any other case
            # (the expiry moved, or the session ended) writes nothing here and is
            # settled by the transaction below.
            params: list[Union[str, float]] = [value for item in changed.items() for value in item]
            params += (sid, expires_at, self._clock())
            try:
                written = self._connection().execute(_values_if_expiry(len(changed)), params).rowcount
            except sqlite3.Error as error:
                raise self._fail(error) from error
            if written:
                return True
        with self._transaction() as db:
            current = db.execute(
                "SELECT expires_at, user_id, idle_timeout FROM sessions WHERE id = ? AND expires_at > ?",
                (sid, self._clock()),
            ).fetchone()
            if current is None:
                return False
            wanted = (
                expires_at,
                current[1] if user_id is None else user_id,
                current[2] if idle_timeout is None else idle_timeout,
            )
            # Rewriting an unchanged row still dirties its page and the expiry index:
            # most writes change only values, and skipping it halves their cost.
            if wanted != current:
                db.execute(
                    "UPDATE sessions SET expires_at = ?, user_id = ?, idle_timeout = ? WHERE id = ?",
                    (*wanted, sid),
                )
            if changed:
                db.executemany(
                    f"INSERT INTO session_values (session_id, key, value) VALUES (?, ?, ?){_UPSERT}",
                    [(sid, key, value) for key, value in changed.items()],
                )
            if removed:
                db.executemany(
                    "DELETE FROM session_values WHERE session_id = ? AND key = ?",
                    [(sid, key) for key in removed],
                )
            return True

    def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        with self._transaction() as db:
            deleted = db.execute(
                "DELETE FROM sessions WHERE id = ? AND expires_at > ?", (old_sid, self._clock())
            ).rowcount
            if not deleted:
                return False
            _insert(db, new_sid, record)
            return True

    def delete(self, sid: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE id = ?", (sid,))

    def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock (``lock=True``) unless another live lease holds it.

        A row in ``session_locks`` of the same file, so every process on the host
        sees it; an expired row is replaced in the same write transaction.
        """
        now = self._clock()
        with self._transaction() as db:
            db.execute("DELETE FROM session_locks WHERE id = ? AND expires_at <= ?", (sid, now))
            return bool(
                db.execute(
                    "INSERT OR IGNORE INTO session_locks (id, token, expires_at) VALUES (?, ?, ?)",
                    (sid, token, now + lease),
                ).rowcount
            )

    def release_lock(self, sid: str, token: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM session_locks WHERE id = ? AND token = ?", (sid, token))

    def user_sessions(self, user_id: str) -> dict[str, Record]:
        try:
            rows = (
                self._connection()
                .execute(
                    "SELECT id, created_at, expires_at, idle_timeout, label FROM sessions"
                    " WHERE user_id = ? AND expires_at > ?",
                    (user_id, self._clock()),
                )
                .fetchall()
            )
        except sqlite3.Error as error:
            raise self._fail(error) from error
        return {
            sid: Record({}, created, expires, user_id, idle, label)
            for sid, created, expires, idle, label in rows
        }

    def delete_user_sessions(self, user_id: str) -> int:
        with self._transaction() as db:
            return db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount

    # -- maintenance ------------------------------------------------------------------------

    def purge_expired(
        self,
        *,
        batch_size: int = 1000,
        max_batches: Optional[int] = None,
        progress: Optional[Callable[[int], None]] = None,
    ) -> int:
        """Delete expired sessions in batches of ``batch_size``; returns how many.

        ``progress`` is called with the running total after each batch. Locks
        whose lease has run out (left by a crashed worker) go in the first batch.
        """
        total = batches = 0
        while max_batches is None or batches < max_batches:
            with self._transaction() as db:
                if not batches:
                    db.execute("DELETE FROM session_locks WHERE expires_at <= ?", (self._clock(),))
                deleted = db.execute(
                    "DELETE FROM sessions WHERE id IN"
                    " (SELECT id FROM sessions WHERE expires_at <= ? LIMIT ?)",
                    (self._clock(), batch_size),
                ).rowcount
            total += deleted
            batches += 1
            if progress is not None:
                progress(total)
            if deleted < batch_size:
                break
        return total

    def count_expired(self) -> int:
        """Expired sessions not purged yet."""
        return self._count("expires_at <= ?")

    def __len__(self) -> int:
        """Live (unexpired) sessions."""
        return self._count("expires_at > ?")

    def _count(self, condition: str) -> int:
        try:
            row = (
                self._connection()
                .execute(f"SELECT count(*) FROM sessions WHERE {condition}", (self._clock(),))
                .fetchone()
            )
        except sqlite3.Error as error:
            raise self._fail(error) from error
        count: int = row[0]
        return count

    def close(self) -> None:
        """Close this thread's connection."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()


def _insert(db: sqlite3.Connection, sid: str, record: Record) -> None:
    db.execute(
        "INSERT INTO sessions (id, created_at, expires_at, user_id, idle_timeout, label)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (sid, record.created_at, record.expires_at, record.user_id, record.idle_timeout, record.label),
    )
    db.executemany(
        "INSERT INTO session_values (session_id, key, value) VALUES (?, ?, ?)",
        [(sid, key, value) for key, value in record.data.items()],
    )
