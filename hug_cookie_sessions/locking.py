"""Opt-in per-session locks, so that a read-modify-write (``session["n"] += 1``) loses nothing.

With ``SessionMiddleware(..., lock=True)`` a request that loads its session
first takes that session's lock, and holds it until its response is saved.
Another request of the same session that loads it waits meanwhile; requests of
other sessions, and requests that never touch their session, never wait.

A lock is a lease: it lives ``lease`` seconds unless released, so a worker
that dies holding one blocks its session for at most that long. A request that
cannot take the lock within ``timeout`` seconds gets :class:`LockTimeout` (the
middleware answers 503); it never goes on unlocked. Releasing is checked
against a random token, so a request whose lease ran out cannot release the
lock someone else took since.

Stores provide the primitive in :class:`~.stores.base.LockingStore`; this
module only waits for it and remembers what a request holds. Each wait has a
blocking twin (``time.sleep``) and an asyncio twin (``asyncio.sleep``, no thread).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Optional

from .errors import LockTimeout, SessionBusy, SessionUnavailable, store_failed
from .options import number_option
from .stores.base import LockingStore, SessionStoreError, provides

__all__ = ["LockTimeout", "LockingStore", "RequestLock", "SessionLocks"]

log = logging.getLogger("hug_cookie_sessions")

#: Waiting for a lock polls the store; the pause between tries doubles from the first up to the last.
FIRST_POLL_INTERVAL = 0.002
MAX_POLL_INTERVAL = 0.05


class SessionLocks:
    """Takes per-session locks from ``store``, waiting up to ``timeout`` seconds for each.

    ``async_store`` is the same store as the asyncio app sees it (see
    :func:`~.stores.aio.as_async_store`).
    """

    def __init__(self, store: Any, async_store: Any, timeout: float, lease: float) -> None:
        if not provides(store, LockingStore):
            raise TypeError(f"{type(store).__name__} has no session locks (acquire_lock/release_lock)")
        timeout, lease = number_option("lock_timeout", timeout), number_option("lock_lease", lease)
        if timeout < 0:
            raise ValueError(f"lock_timeout must be a number of seconds >= 0, not {timeout!r}")
        if lease <= 0:
            raise ValueError(f"lock_lease must be a positive number of seconds, not {lease!r}")
        self.store = store
        self.async_store = async_store
        self.timeout = timeout
        self.lease = lease

    def acquire(self, sid: str) -> str:
        """Wait for ``sid``'s lock and take it; the token that releases it.

        Raises :class:`LockTimeout` after ``timeout`` seconds, and whatever
        :class:`SessionStoreError` the store raises.
        """
        token, deadline, pause = (
            secrets.token_urlsafe(16),
            time.monotonic() + self.timeout,
            FIRST_POLL_INTERVAL,
        )
        while not self.store.acquire_lock(sid, token, self.lease):
            time.sleep(self._pause(deadline, pause))
            pause = min(pause * 2, MAX_POLL_INTERVAL)
        return token

    async def acquire_async(self, sid: str) -> str:
        """:meth:`acquire` for asyncio: the waits sleep without a thread."""
        token, deadline, pause = (
            secrets.token_urlsafe(16),
            time.monotonic() + self.timeout,
            FIRST_POLL_INTERVAL,
        )
        while not await self.async_store.acquire_lock(sid, token, self.lease):
            await asyncio.sleep(self._pause(deadline, pause))
            pause = min(pause * 2, MAX_POLL_INTERVAL)
        return token

    def _pause(self, deadline: float, pause: float) -> float:
        """How long to wait before the next try; LockTimeout once the deadline has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockTimeout(f"session still locked after {self.timeout:g} s")
        return min(pause, left)

    def release(self, sid: str, token: str) -> None:
        """Free the lock; if the store fails, the lock is left to expire with its lease."""
        try:
            self.store.release_lock(sid, token)
        except SessionStoreError as error:
            _log_not_released(error)

    async def release_async(self, sid: str, token: str) -> None:
        """:meth:`release` for asyncio."""
        try:
            await self.async_store.release_lock(sid, token)
        except SessionStoreError as error:
            _log_not_released(error)


def _refused(error: SessionStoreError) -> SessionUnavailable:
    """The 503 for a lock not taken: busy when another request held it, else a store failure."""
    if isinstance(error, LockTimeout):
        log.warning("Session request refused: %s", error)
        return SessionBusy()
    return store_failed(error, "acquire_lock")


def _log_not_released(error: SessionStoreError) -> None:
    log.error("Could not release a session lock (it expires with its lease): %s", error)


class RequestLock:
    """The one session lock a request holds, from loading its session to saving it.

    Once :meth:`finish` has run, nothing is locked: a session loaded after its
    response hook is never saved, so there is nothing to protect, and a lock
    taken then would have nobody to release it.
    """

    __slots__ = ("locks", "held", "finished")

    def __init__(self, locks: SessionLocks) -> None:
        self.locks = locks
        self.held: Optional[tuple[str, str]] = None
        self.finished = False

    def acquire(self, sid: str) -> None:
        """Lock ``sid`` for this request, releasing any lock it held before.

        Raises :class:`~.errors.SessionBusy` when the lock stays taken for the
        whole timeout, and :class:`~.errors.SessionUnavailable` when the store fails.
        """
        self.release()
        if not self.finished:
            try:
                self.held = (sid, self.locks.acquire(sid))
            except SessionStoreError as error:
                raise _refused(error) from error
        if self.finished:  # the response hook ran while this waited: nobody else would release it
            self.release()

    async def acquire_async(self, sid: str) -> None:
        """:meth:`acquire` for asyncio."""
        await self.release_async()
        if not self.finished:
            try:
                self.held = (sid, await self.locks.acquire_async(sid))
            except SessionStoreError as error:
                raise _refused(error) from error
        if self.finished:  # a task outlived its request: the response hook ran while this waited
            await self.release_async()

    def release(self) -> None:
        """Release what this request holds, if anything; safe to call more than once."""
        held, self.held = self.held, None
        if held is not None:
            self.locks.release(*held)

    async def release_async(self) -> None:
        """:meth:`release` for asyncio."""
        held, self.held = self.held, None
        if held is not None:
            await self.locks.release_async(*held)

    def finish(self) -> None:
        """The request's response hook has run: release its lock and take none after."""
        self.finished = True
        self.release()

    async def finish_async(self) -> None:
        """:meth:`finish` for asyncio."""
        self.finished = True
        await self.release_async()
