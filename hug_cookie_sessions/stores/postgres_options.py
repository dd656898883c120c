"""What both PostgreSQL stores are made with: the constructor of ``PostgresStore`` and ``AsyncPostgresStore``.

The two stores differ only in the flavour of their pool (blocking or asyncio)
and in how they wait for it, so the arguments, their checks and the settings
they give (tables, timeouts, purging, error messages) are written once, here.
"""

from __future__ import annotations

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
        #: Makes the store's own pool (None: the store uses the pool it was given).
        self._new_pool: Optional[Callable[[], Pool]] = None
        self._given_pool: Optional[Pool] = None
        if isinstance(conninfo_or_pool, str):
            conninfo = schema.with_timeouts(conninfo_or_pool, connect_timeout, statement_timeout)
            self._failures = schema.Failures.for_conninfo(conninfo)
            options = schema.pool_options(pool_timeout, table_prefix)
            self._new_pool = lambda: self._pool_of(conninfo, options)
        elif isinstance(conninfo_or_pool, self.pool_class):
            self._failures = schema.Failures.for_conninfo(conninfo_or_pool.conninfo)
            self._given_pool = conninfo_or_pool
        else:
            raise TypeError(
                f"{type(self).__name__} needs a psycopg_pool.{self.pool_class.__name__} or a conninfo/URL"
            )

    def _pool_of(self, conninfo: str, options: dict[str, Any]) -> Pool:
        """A new, unopened pool of :attr:`pool_class` for ``conninfo``."""
        pool: Pool = self.pool_class(conninfo, **options)
        return pool
