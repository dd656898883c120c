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

Stores provide the primitive in :class:`LockingStore`; this module only waits
for it and remembers what a request holds.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Optional, Protocol, runtime_checkable

from .steps import Pause, Steps, call
from .stores.base import SessionStoreError

log = logging.getLogger("hug_cookie_sessions")

#: Waiting for a lock polls the store; the pause between tries doubles up to this (seconds).
MAX_POLL_INTERVAL = 0.05


class LockTimeout(SessionStoreError):
    """Another request of the session held its lock for the whole lock timeout."""


@runtime_checkable
class LockingStore(Protocol):
    """The lock primitive a store offers for ``lock=True``; neither method waits."""

    def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock as ``token`` for ``lease`` seconds if it is free or its lease has
        run out; False, changing nothing, while another token holds it."""

    def release_lock(self, sid: str, token: str) -> None:
        """Free ``sid``'s lock if ``token`` still holds it; otherwise do nothing."""


class SessionLocks:
    """Takes per-session locks from ``store``, waiting up to ``timeout`` seconds for each."""

    def __init__(self, store: Any, timeout: float, lease: float) -> None:
        # Not isinstance(store, LockingStore): from Python 3.12 that misses methods a wrapper
        # provides through __getattr__.
        if not all(callable(getattr(store, name, None)) for name in ("acquire_lock", "release_lock")):
            raise TypeError(f"{type(store).__name__} has no session locks (acquire_lock/release_lock)")
        if timeout < 0:
            raise ValueError("lock_timeout must be a number of seconds >= 0")
        if lease <= 0:
            raise ValueError("lock_lease must be a positive number of seconds")
        self.store = store
        self.timeout = timeout
        self.lease = lease

    def acquire(self, sid: str) -> Steps[str]:
        """Wait for ``sid``'s lock and take it (as steps); the token that releases it.

        Raises :class:`LockTimeout` after ``timeout`` seconds, and whatever
        :class:`SessionStoreError` the store raises. The waits are
        :class:`~.steps.Pause` steps, so on ASGI they sleep without a thread.
        """
        token = secrets.token_urlsafe(16)
        deadline = time.monotonic() + self.timeout
        pause = 0.002
        while not (yield call("acquire_lock", sid, token, self.lease)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(f"session still locked after {self.timeout:g} s")
            yield Pause(min(pause, left))
            pause = min(pause * 2, MAX_POLL_INTERVAL)
        return token

    def release(self, sid: str, token: str) -> Steps[None]:
        """Free the lock (as steps); if the store fails, the lock is left to expire with its lease."""
        try:
            yield call("release_lock", sid, token)
        except SessionStoreError as error:
            log.error("Could not release a session lock (it expires with its lease): %s", error)


class RequestLock:
    """The one session lock a request holds, from loading its session to saving it."""

    __slots__ = ("_locks", "_held", "_finished")

    def __init__(self, locks: SessionLocks) -> None:
        self._locks = locks
        self._held: Optional[tuple[str, str]] = None
        self._finished = False

    def acquire(self, sid: str) -> Steps[None]:
        """Lock ``sid`` for this request (as steps), releasing any lock it held before.

        Once :meth:`finish` has run, nothing is locked: a session loaded
        after its response hook is never saved, so there is nothing to protect, and
        a lock taken then would have nobody to release it.
        """
        yield from self.release()
        if not self._finished:
            self._held = (sid, (yield from self._locks.acquire(sid)))

    def finish(self) -> Steps[None]:
        """The request's response hook has run: release its lock (as steps) and take none after."""
        self._finished = True
        yield from self.release()

    def release(self) -> Steps[None]:
        """Release what this request holds, if anything (as steps); safe to run more than once."""
        held, self._held = self._held, None
        if held is not None:
            yield from self._locks.release(*held)
