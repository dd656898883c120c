"""Stores for asyncio apps (``falcon.asgi.App``): the async protocol, and blocking stores made async.

An async store has the methods of :class:`~.base.Store` as coroutines
(``AsyncRedisStore``, or your own). Any blocking store works too:
:func:`as_async_store` runs each of its calls in a worker thread with
:func:`asyncio.to_thread`, so SQLite's file I/O (or a hug store's) never stalls
the event loop. ``MemoryStore`` is the exception: it does no I/O and holds its
lock for microseconds, so it is called directly, which is cheaper than a thread.

Why ``asyncio.to_thread`` and not a small executor of each store's own
(``loop.run_in_executor``): side by side in one process (30 rounds, medians,
client CPU), a ``SQLiteStore.load`` through a dedicated 4-thread executor
differed from ``to_thread`` by +0.95 µs (95% CI -8.3 to +74), and a no-op call
by -1.9 µs (CI -5.6 to +8.6): no saving shown, so no executor to size and shut down.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Collection, Mapping, Optional, Protocol, runtime_checkable

from .base import Record, Store
from .memory import MemoryStore


@runtime_checkable
class AsyncStore(Protocol):
    """:class:`~.base.Store` for asyncio: the same methods and promises, awaited."""

    async def load(self, sid: str) -> Optional[Record]: ...

    async def create(self, sid: str, record: Record) -> None: ...

    async def apply(
        self,
        sid: str,
        changed: Mapping[str, str],
        removed: Collection[str],
        expires_at: float,
        *,
        user_id: Optional[str] = None,
        idle_timeout: Optional[int] = None,
    ) -> bool: ...

    async def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool: ...

    async def delete(self, sid: str) -> None: ...


def is_async_store(store: Any) -> bool:
    """Whether ``store``'s methods are coroutines (to be awaited) rather than blocking calls."""
    return inspect.iscoroutinefunction(getattr(store, "load", None))


def as_async_store(store: Any) -> AsyncStore:
    """``store`` itself if it is async, else an :class:`AsyncStoreAdapter` around it."""
    return store if is_async_store(store) else AsyncStoreAdapter(store)


class AsyncStoreAdapter:
    """Presents a blocking store through the async protocol.

    Every method of the wrapped store (the protocol's and any other, such as
    ``user_sessions``) becomes a coroutine function. ``in_thread`` says whether
    calls go to a worker thread; by default all do except a ``MemoryStore``'s.
    """

    def __init__(self, store: Any, *, in_thread: Optional[bool] = None) -> None:
        self.store = store
        self.in_thread = not isinstance(store, MemoryStore) if in_thread is None else in_thread

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name) if not name.startswith("_") else None
        if not callable(method):
            raise AttributeError(name)
        if self.in_thread:

            async def call(*args: Any, **kwargs: Any) -> Any:
                return await asyncio.to_thread(method, *args, **kwargs)

        else:

            async def call(*args: Any, **kwargs: Any) -> Any:
                return method(*args, **kwargs)

        call.__name__ = call.__qualname__ = name
        setattr(self, name, call)  # later lookups skip __getattr__
        return call


def as_blocking_store(store: Any) -> Store:
    """``store`` itself if it is blocking; for an async store, a stand-in whose every method
    raises a TypeError that says to use it with ``falcon.asgi.App``."""
    return _AsyncOnly(store) if is_async_store(store) else store


class _AsyncOnly:
    """What a WSGI app's middleware calls when given an async store: a clear error, on use."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or not callable(getattr(self.store, name, None)):
            raise AttributeError(name)
        return self._refuse

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"{type(self.store).__name__} is an async store: use it with falcon.asgi.App "
            "(a WSGI app needs a blocking store, such as RedisStore instead of AsyncRedisStore)"
        )
