"""``AsyncPostgresStore``: :class:`~.postgres.PostgresStore` for asyncio apps, on psycopg's async API.

It runs exactly the statements of :mod:`.postgres_schema`, as ``PostgresStore``
does, on a ``psycopg_pool.AsyncConnectionPool``: a WSGI app on
``PostgresStore`` and an ASGI app on ``AsyncPostgresStore`` that share the
secret key, the database and the ``table_prefix`` share their sessions. The
costs, the timeouts and the schema's creation on first use are ``PostgresStore``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Collection, Mapping, Optional

from . import postgres_schema as schema
from .base import Record, SessionStoreError
from .postgres_options import AsyncConnectionPool, PostgresOptions

if TYPE_CHECKING:
    import psycopg


class AsyncPostgresStore(PostgresOptions[AsyncConnectionPool]):
    """Sessions in PostgreSQL for ``falcon.asgi.App``: every method a coroutine.

    Takes ``PostgresStore``'s arguments; a pool you pass is an
    ``AsyncConnectionPool`` (autocommit connections, opened by you). A pool the
    store makes from a conninfo opens on first use and belongs to the event
    loop that first uses it: create the store where the app's loop runs it,
    and ``await store.aclose()`` on shutdown.
    """

    pool_class = AsyncConnectionPool
    _pool: Optional[AsyncConnectionPool] = None  # the store's own, once made

    @property
    def pool(self) -> AsyncConnectionPool:
        """The pool the store was given, or its own (made on first use, opened by the first call)."""
        if self._given_pool is not None:
            return self._given_pool
        if self._pool is None:
            self._pool = self._make_pool()
        return self._pool

    # -- connections, awaited ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection (the pool opened, the schema made or checked on first use);
        psycopg errors become SessionStoreError naming ``action``."""
        with self._failures(action):
            if self._given_pool is None:
                await self.pool.open()  # returns at once once open
            async with self.pool.connection() as db:
                if not self._ready:
                    await self._prepare(db, create=True)
                yield db

    async def _prepare(self, db: psycopg.AsyncConnection, *, create: bool) -> None:
        """``PostgresStore._prepare``, awaited: check the tables; with ``create``, make them if
        absent or bring an older version's up to date."""
        statements = self.statements
        found = schema.one_row(
            await (await db.execute(statements.find_tables, statements.table_names)).fetchone()
        )
        meta: dict[str, str] = (
            dict(await (await db.execute(statements.read_meta)).fetchall()) if found[0] else {}
        )
        state = schema.verdict(found, meta, self.table_prefix)
        if state == schema.ABSENT and not create:
            raise SessionStoreError(schema.absent_message(self.table_prefix))
        if state != schema.READY and create:
            await db.execute(statements.create_schema)  # makes the tables, or brings them up to date
        self._ready = create or state == schema.READY

    async def _one(self, action: str, statement: str, params: tuple[Any, ...]) -> Optional[tuple[Any, ...]]:
        """The first row ``statement`` returns (None for none)."""
        async with self._connection(action) as db:
            return await (await db.execute(statement, params)).fetchone()

    async def _run(self, action: str, statement: str, params: tuple[Any, ...]) -> int:
        """Run ``statement``; the number of rows it changed."""
        async with self._connection(action) as db:
            return (await db.execute(statement, params)).rowcount

    # -- the store protocol, awaited --------------------------------------------------------------

    async def load(self, sid: str) -> Optional[Record]:
        return schema.record_from_row(await self._one("load", self.statements.load, (sid, time.time())))

    async def create(self, sid: str, record: Record) -> None:
        await self._run("create", self.statements.create, schema.record_params(sid, record))
        if self._purges.due():
            with contextlib.suppress(SessionStoreError):  # the session is stored: purging can wait
                await self.purge_expired(max_batches=1)

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
        params = schema.apply_params(sid, changed, removed, expires_at, user_id, idle_timeout, time.time())
        return await self._run("apply", self.statements.apply, params) == 1

    async def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        params = schema.rotate_params(old_sid, new_sid, record, time.time())
        return await self._run("rotate", self.statements.rotate, params) == 1

    async def delete(self, sid: str) -> None:
        await self._run("delete", self.statements.delete, (sid,))

    # -- session locks (lock=True), awaited ----------------------------------------------------------

    async def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock as ``PostgresStore`` does (a row with a lease); never waits."""
        now = time.time()
        return await self._run("lock", self.statements.acquire_lock, (sid, token, now + lease, now)) == 1

    async def release_lock(self, sid: str, token: str) -> None:
        """Free ``sid``'s lock if ``token`` still holds it."""
        await self._run("unlock", self.statements.release_lock, (sid, token))

    # -- one user's sessions (UserIndex), awaited ------------------------------------------------------

    async def user_sessions(self, user_id: str) -> dict[str, Record]:
        async with self._connection("list user sessions") as db:
            cursor = await db.execute(self.statements.user_sessions, (user_id, time.time()))
            return schema.user_records(await cursor.fetchall(), user_id)

    async def delete_user_sessions(self, user_id: str) -> int:
        row = await self._one(
            "delete user sessions", self.statements.delete_user_sessions, (user_id, time.time())
        )
        return schema.count(row)

    # -- maintenance, awaited ----------------------------------------------------------------------------

    async def purge_expired(
        self,
        *,
        batch_size: int = 1000,
        max_batches: Optional[int] = None,
        progress: Optional[Callable[[int], None]] = None,
    ) -> int:
        """``PostgresStore.purge_expired``, awaited."""
        purge = schema.Purge(batch_size, max_batches, progress)
        while purge.more():
            if purge.first:
                await self._run("purge", self.statements.purge_locks, (time.time(),))
            purge.done(await self._run("purge", self.statements.purge_batch, (time.time(), batch_size)))
        return purge.total

    async def count_live(self) -> int:
        """Live sessions (``len(store)`` of the blocking store)."""
        return schema.count(await self._one("count", self.statements.count_live, (time.time(),)))

    async def count_expired(self) -> int:
        """Expired sessions not purged yet."""
        return schema.count(await self._one("count", self.statements.count_expired, (time.time(),)))

    async def aclose(self) -> None:
        """Close the pool if the store made it."""
        if self._pool is not None:  # only a pool the store made; a later call makes another
            pool, self._pool = self._pool, None
            await asyncio.wait_for(pool.close(), 10)
