"""What both PostgreSQL stores are made with: the constructor of ``PostgresStore`` and ``AsyncPostgresStore``.

The two stores differ only in the flavour of their pool (blocking or asyncio)
and in how they wait for it, so the arguments, their checks and the settings
they give (tables, timeouts, purging, error messages) are written once, here.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, ClassVar, Generic, Optional, Protocol, TypeVar, Union

from . import postgres_schema as schema

try:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the PostgreSQL session stores need psycopg-pool: pip install 'hug-cookie-sessions[postgres]'"
    ) from error

__all__ = ["AsyncConnectionPool", "ConnectionPool", "PostgresOptions"]


class _Pool(Protocol):
    """What the constructor reads of a pool it is given (either flavour)."""

    @property
    def conninfo(self) -> Union[str, Callable[..., Any]]: ...


#: The pool type of a store: ``ConnectionPool`` or ``AsyncConnectionPool``.
Pool = TypeVar("Pool", bound=_Pool)


class PostgresOptions(Generic[Pool]):
    """A PostgreSQL store's settings and the pool it uses or makes.

    ``conninfo_or_pool`` is a libpq URL (``postgresql://user@host/db``) or
    ``key=value`` string, from which the store makes its own pool on first use
    (``connect_timeout`` and ``statement_timeout``, in seconds, apply unless the
    conninfo sets its own; a call waits at most ``pool_timeout`` for a
    connection); or a pool of :attr:`pool_class` you made and opened (give it
    ``kwargs={"autocommit": True}``: otherwise every call costs one more round
    trip, the commit, and set its timeouts yourself). Expired sessions are
    deleted in batches at most once per ``purge_interval`` seconds.
    """

    #: The pool type the store takes and makes.
    pool_class: ClassVar[type]

    def __init__(
        self,
        conninfo_or_pool: Union[str, Pool],
        *,
        table_prefix: str = "session",
        connect_timeout: float = schema.CONNECT_TIMEOUT,
        statement_timeout: float = schema.STATEMENT_TIMEOUT,
        pool_timeout: float = schema.POOL_TIMEOUT,
        purge_interval: float = 300.0,
    ) -> None:
        self.statements = schema.Statements(table_prefix)
        self.table_prefix = table_prefix
        self.purge_interval = purge_interval
        self._purges = schema.PurgeSchedule(purge_interval)
        self._ready = False  # the tables are checked (and made) on the first call
        self._pool_timeout = pool_timeout
        # A blocking store's threads make its pool once per process under this lock.
        self._lock = threading.Lock()
        #: The conninfo the store makes its own pool from; None: it uses the pool it was given.
        self._conninfo: Optional[str] = None
        self._given_pool: Optional[Pool] = None
        if isinstance(conninfo_or_pool, str):
            self._conninfo = schema.with_timeouts(conninfo_or_pool, connect_timeout, statement_timeout)
            self._failures = schema.Failures.for_conninfo(self._conninfo)
        elif isinstance(conninfo_or_pool, self.pool_class):
            self._failures = schema.Failures.for_conninfo(conninfo_or_pool.conninfo)
            self._given_pool = conninfo_or_pool
        else:
            raise TypeError(
                f"{type(self).__name__} needs a psycopg_pool.{self.pool_class.__name__} or a conninfo/URL"
            )

    def _make_pool(self) -> Pool:
        """A new, unopened pool of :attr:`pool_class` for the store's conninfo (given none)."""
        assert self._conninfo is not None, "the store was given its pool"
        options = schema.pool_options(self._pool_timeout, self.table_prefix)
        pool: Pool = self.pool_class(self._conninfo, **options)
        return pool
