"""``PostgresStore``: sessions in the PostgreSQL an app already runs, shared by every app server.

It keeps sessions as :mod:`.postgres_schema` describes (the tables and
statements it shares with ``AsyncPostgresStore``), through psycopg 3 and a
``psycopg_pool.ConnectionPool``. Every call is one statement on a pooled
connection in autocommit mode, so one round trip: a load is one primary-key
``SELECT``; ``create``, ``apply``, ``rotate`` and ``delete`` are one statement
each, atomic on the server (``apply`` lands only in a live session; ``rotate``
deletes the old row and inserts the new one in one statement).

The tables are created on first use (one transaction under an advisory lock,
so workers starting together do not collide) and carry a schema version.
A server that is down, restarting or slow is a :class:`~.base.SessionStoreError`
(a 503) within bounded timeouts; the pool replaces broken connections by itself.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Callable, Collection, Iterator, Mapping, Optional

from . import postgres_schema as schema
from .base import Record, SessionStoreError
from .postgres_options import ConnectionPool, PostgresOptions

if TYPE_CHECKING:
    import psycopg


class PostgresStore(PostgresOptions[ConnectionPool]):
    """Sessions in PostgreSQL tables named ``<table_prefix>_sessions`` (and ``_locks``, ``_meta``).

    ``conninfo_or_pool`` is a libpq URL or ``key=value`` string, from which the
    store makes its own pool in each process on first use, or a
    ``ConnectionPool`` you made and opened (see :class:`~.postgres_options.PostgresOptions`
    for it and the timeouts).

    Expired sessions are never returned; they are deleted in batches at most
    once per ``purge_interval`` seconds, piggybacked on a new session's write,
    and by :meth:`purge_expired` (``hug-sessions purge``).
    """

    pool_class = ConnectionPool
    # The store's own pool and the process it was made in (a pool must not cross a fork).
    _pool: Optional[ConnectionPool] = None
    _pid = -1

    # -- connections -------------------------------------------------------------------------

    @property
    def pool(self) -> ConnectionPool:
        """This process's pool: made and opened on first use, anew after a fork (a pool's
        connections and worker threads must not cross one)."""
        if self._given_pool is not None:
            return self._given_pool
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    pool = self._make_pool()
                    pool.open()  # returns at once; the pool connects in the background
                    self._pool, self._pid = pool, os.getpid()
        return self._pool

    @contextlib.contextmanager
    def _connection(self, action: str) -> Iterator[psycopg.Connection]:
        """A pooled connection, the schema made or checked on the first call; psycopg errors
        become SessionStoreError naming ``action``."""
        with self._failures(action), self.pool.connection() as db:
            if not self._ready:
                self._prepare(db, create=True)
            yield db

    def _prepare(self, db: psycopg.Connection, *, create: bool) -> None:
        """Check the tables are this package's and of a schema version this release reads. With
        ``create``, make them if absent or bring an older version's up to date, once per store;
        without, absent tables are a SessionStoreError, and older ones pass unchanged."""
        statements = self.statements
        found = schema.one_row(db.execute(statements.find_tables, statements.table_names).fetchone())
        meta: dict[str, str] = dict(db.execute(statements.read_meta).fetchall()) if found[0] else {}
        state = schema.verdict(found, meta, self.table_prefix)
        if state == schema.ABSENT and not create:
            raise SessionStoreError(schema.absent_message(self.table_prefix))
        if state != schema.READY and create:
            db.execute(statements.create_schema)  # makes the tables, or brings them up to date
        self._ready = create or state == schema.READY

    def check_schema(self) -> None:
        """SessionStoreError unless the database holds this package's session tables; changes
        nothing (what ``hug-sessions`` runs before any command). Tables of an older schema
        version pass; the store's next call brings them up to date."""
        with self._failures("check the tables"), self.pool.connection() as db:
            self._prepare(db, create=False)

    # -- the store protocol ------------------------------------------------------------------------

    def load(self, sid: str) -> Optional[Record]:
        with self._connection("load") as db:
            row = db.execute(self.statements.load, (sid, time.time())).fetchone()
        return schema.record_from_row(row)

    def create(self, sid: str, record: Record) -> None:
        with self._connection("create") as db:
            db.execute(self.statements.create, schema.record_params(sid, record))
        if self._purges.due():
            with contextlib.suppress(SessionStoreError):  # the session is stored: purging can wait
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
        params = schema.apply_params(sid, changed, removed, expires_at, user_id, idle_timeout, time.time())
        with self._connection("apply") as db:
            return db.execute(self.statements.apply, params).rowcount == 1

    def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        params = schema.rotate_params(old_sid, new_sid, record, time.time())
        with self._connection("rotate") as db:
            return db.execute(self.statements.rotate, params).rowcount == 1

    def delete(self, sid: str) -> None:
        with self._connection("delete") as db:
            db.execute(self.statements.delete, (sid,))

    # -- session locks (lock=True) --------------------------------------------------------------

    def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock: a row of ``<prefix>_locks`` inserted, or taken over once its lease
        ended, in one statement. Not an advisory lock: those belong to a connection, and a pooled
        connection serves other requests between this one's acquire and release."""
        now = time.time()
        with self._connection("lock") as db:
            return db.execute(self.statements.acquire_lock, (sid, token, now + lease, now)).rowcount == 1

    def release_lock(self, sid: str, token: str) -> None:
        with self._connection("unlock") as db:
            db.execute(self.statements.release_lock, (sid, token))

    # -- one user's sessions (UserIndex) ----------------------------------------------------------

    def user_sessions(self, user_id: str) -> dict[str, Record]:
        with self._connection("list user sessions") as db:
            rows = db.execute(self.statements.user_sessions, (user_id, time.time())).fetchall()
        return schema.user_records(rows, user_id)

    def delete_user_sessions(self, user_id: str) -> int:
        with self._connection("delete user sessions") as db:
            return schema.count(
                db.execute(self.statements.delete_user_sessions, (user_id, time.time())).fetchone()
            )

    # -- maintenance ------------------------------------------------------------------------------

    def purge_expired(
        self,
        *,
        batch_size: int = 1000,
        max_batches: Optional[int] = None,
        progress: Optional[Callable[[int], None]] = None,
    ) -> int:
        """Delete expired sessions in batches of ``batch_size``, one short transaction each;
        returns how many. Locks whose lease ended go with the first batch."""
        purge = schema.Purge(batch_size, max_batches, progress)
        while purge.more():
            with self._connection("purge") as db:
                if purge.first:
                    db.execute(self.statements.purge_locks, (time.time(),))
                purge.done(db.execute(self.statements.purge_batch, (time.time(), batch_size)).rowcount)
        return purge.total

    def __len__(self) -> int:
        """Live sessions (one ``count(*)``: a dashboard's figure, not a per-request one)."""
        return self._count(self.statements.count_live)

    def count_expired(self) -> int:
        """Expired sessions not purged yet."""
        return self._count(self.statements.count_expired)

    def _count(self, statement: str) -> int:
        with self._connection("count") as db:
            return schema.count(db.execute(statement, (time.time(),)).fetchone())

    def sizes(self) -> dict[str, int]:
        """Bytes on disk of the sessions and the locks table, indexes included."""
        with self._connection("size") as db:
            row = schema.one_row(db.execute(self.statements.sizes).fetchone())
            return dict(zip(("sessions table", "locks table"), row))

    def close(self) -> None:
        """Close this process's pool, if the store made it. A pool inherited through a fork is
        left to its parent: closing its connections here would end them for the parent too."""
        if self._pool is not None and self._pid == os.getpid():  # only a pool this process made
            self._pool.close()
        self._pool = None
