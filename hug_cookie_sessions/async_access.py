"""The session's async accessors, in Django 5's style: ``await session.aget("cart")``.

A mapping access cannot await, so on ASGI a session that was not loaded before
the responder (its resource sets ``session_preload = False``, or no resource
answers the request) is loaded by the first of these, which awaits the store;
sync access to it before that is a ``RuntimeError`` naming ``await session.aload()``,
never a silently empty session. A responder that uses only these accessors pays
for the session only when it calls one. Once loaded, a session is the same
object either way: the sync mapping works, and saving (per-key, no resurrection
of a session ended meanwhile) is the same as for a preloaded one.

On WSGI, and for a session that is loaded already, each accessor is its sync
twin and awaits nothing.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import MutableMapping
from typing import Any, Awaitable, Callable, Optional

from .session_ids import SessionId
from .stores.base import Record

__all__ = ["AsyncAccess", "AsyncLoader", "Loader", "Opened", "preloaded"]

#: What loading finds: ``(session id, record, reissue)``: the stored session (both None
#: for none) and whether the client must be sent its reference again (for example, a
#: cookie signed with a retired key).
Opened = tuple[Optional[SessionId], Optional[Record], bool]

#: Called once, with the session's source (such as its Cookie header), on first use.
Loader = Callable[[Any], Opened]

#: The loader's asyncio twin, awaited by :meth:`Session.aload` when the session has one (ASGI).
AsyncLoader = Callable[[Any], Awaitable[Opened]]

_MISSING = object()


class AsyncAccess(MutableMapping[str, Any]):
    """A mapping with async accessors that load it first: the base of :class:`~.session.Session`,
    which provides the loading (the attributes and methods declared here)."""

    __slots__ = ()

    loaded: bool
    _loader: Any
    _async_loader: Optional[AsyncLoader]
    _loading: Optional[list[asyncio.Future[None]]]
    _source: Any

    @abstractmethod
    def _load(self) -> None:
        """Load the session with its blocking loader."""

    @abstractmethod
    def stored_as(self, sid: Optional[SessionId], record: Optional[Record], reissue: bool = False) -> None:
        """Make what loading found the session's clean state."""

    async def aload(self) -> None:
        """Load the session now if it is not loaded yet; afterwards every sync access works.

        With ``lock=True`` this first load takes the session's lock, which the
        middleware releases after saving, as for a preloaded session. Tasks of one
        request that call it at once share one load: a second load would reset
        what the first one's task has changed meanwhile, and take the lock again.
        A load that fails (a 503) is tried again by the next use, so each task
        that waited for it tries once more itself.
        """
        if self.loaded:
            return
        if self._async_loader is None:
            self._load()  # a session with a blocking loader, or loaded before it was made
            return
        if self._loading is not None:
            waiter = asyncio.get_running_loop().create_future()
            self._loading.append(waiter)
            await waiter
            await self.aload()  # loaded by now, or that load failed: this task tries
            return
        waiting: list[asyncio.Future[None]] = []
        self._loading = waiting
        try:
            self.stored_as(*await self._async_loader(self._source))
        finally:
            self._loading = None
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_result(None)

    def prefetched(self, opened: Opened) -> None:
        """Package-internal (the ASGI preload): what loading found, fetched before the first use,
        which then finds it without awaiting. Not a use: the session stays unloaded (no ``Vary:
        Cookie``, nothing saved) until something reads or writes it."""
        self._loader, self._source, self._async_loader = preloaded, opened, None

    async def aget(self, key: str, default: Any = None) -> Any:
        """``session.get(key, default)``, loading the session first if needed."""
        await self.aload()
        return self.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        """``session[key] = value``, loading the session first if needed."""
        await self.aload()
        self[key] = value

    async def apop(self, key: str, default: Any = _MISSING) -> Any:
        """``session.pop(key[, default])``: a KeyError without a default when ``key`` is absent."""
        await self.aload()
        if default is _MISSING:
            return self.pop(key)
        return self.pop(key, default)

    async def adelete(self, key: str) -> None:
        """``del session[key]``: a KeyError when ``key`` is absent."""
        await self.aload()
        del self[key]

    async def aclear(self) -> None:
        """``session.clear()``: an emptied session is deleted with its cookie when saved."""
        await self.aload()
        self.clear()

    async def akeys(self) -> list[str]:
        """The session's keys, as a list."""
        await self.aload()
        return list(self)

    async def avalues(self) -> list[Any]:
        """The session's values, as a list."""
        await self.aload()
        return list(self.values())

    async def aitems(self) -> list[tuple[str, Any]]:
        """The session's ``(key, value)`` pairs, as a list."""
        await self.aload()
        return list(self.items())


def preloaded(opened: Opened) -> Opened:
    """The loader of a session whose stored state was fetched before its first use."""
    return opened
