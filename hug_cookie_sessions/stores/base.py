"""The store protocol every session backend implements, and its error type.

A store keeps each session as a :class:`Record`: the session's values, one JSON
text per key, plus the metadata the server needs to enforce timeouts. Stores
see only session IDs and JSON text; they know nothing about HTTP, cookies or
signing.

Writes are per key (:meth:`Store.apply`), so two requests of one session that
change different keys both persist, and a write to a session that no longer
exists does nothing, so a request that started before a logout cannot bring the
session back.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Optional, Protocol, runtime_checkable
from urllib.parse import urlsplit


class SessionStoreError(Exception):
    """A store could not be reached, read or written.

    The middleware turns it into a ``503 Service Unavailable`` response with a
    JSON body; the session is left as it was before the request.
    """


# Slots where dataclasses offer them (3.10+): a record is built on every write and
# MemoryStore keeps one per session, so it is smaller and quicker to make without a __dict__.
@dataclass(**({"slots": True} if sys.version_info >= (3, 10) else {}))
class Record:
    """One stored session.

    ``data`` maps each key to its value's JSON text; decoding is left to the
    session so that a request pays only for the keys it reads. Times are Unix
    seconds. ``expires_at`` already folds in both the idle and the absolute
    timeout: a store must not return a record once it has passed.

    A record is a value: once handed to a store or returned by one, nobody
    changes it (the middleware never does), so a store may keep the object it
    was given and return it again, and a loaded record is a snapshot.
    """

    data: dict[str, str]
    created_at: float
    expires_at: float
    user_id: Optional[str] = None
    idle_timeout: Optional[int] = None

    def updated(
        self,
        changed: Mapping[str, str],
        removed: Collection[str],
        expires_at: float,
        user_id: Optional[str] = None,
        idle_timeout: Optional[int] = None,
    ) -> Record:
        """A new record: this one after the :meth:`Store.apply` call with these arguments."""
        data = {**self.data, **changed}
        for key in removed:
            data.pop(key, None)
        return Record(
            data,
            self.created_at,
            expires_at,
            self.user_id if user_id is None else user_id,
            self.idle_timeout if idle_timeout is None else idle_timeout,
        )


@runtime_checkable
class Store(Protocol):
    """What the middleware needs from a session backend.

    Every method may raise :class:`SessionStoreError` when the backend fails.
    ``hug_cookie_sessions.testing.StoreConformance`` checks an implementation.
    """

    def load(self, sid: str) -> Optional[Record]:
        """The live record for ``sid``, or None if it is unknown or expired."""

    def create(self, sid: str, record: Record) -> None:
        """Store a new session. ``sid`` is fresh and random, never reused."""

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
        """Atomically write ``changed`` keys, delete ``removed`` ones and set the expiry.

        ``user_id`` and ``idle_timeout`` are changed only when not None.
        Returns False, writing nothing, when the session no longer exists.
        """

    def rotate(self, old_sid: str, new_sid: str, record: Record) -> bool:
        """Replace ``old_sid`` by ``new_sid`` holding ``record``.

        Returns False, writing nothing, when ``old_sid`` no longer exists. At no
        point may both IDs open the session.
        """

    def delete(self, sid: str) -> None:
        """Remove the session; deleting an unknown ID is not an error."""


@runtime_checkable
class UserIndex(Protocol):
    """What a store adds so the middleware can list and end one user's sessions."""

    def user_sessions(self, user_id: str) -> dict[str, Record]:
        """The live sessions bound to ``user_id``, by ID; their ``data`` may be left empty."""

    def delete_user_sessions(self, user_id: str) -> int:
        """Delete every session bound to ``user_id``; returns how many there were."""


@runtime_checkable
class LockingStore(Protocol):
    """The lock primitive a store offers for ``SessionMiddleware(lock=True)``; neither method waits."""

    def acquire_lock(self, sid: str, token: str, lease: float) -> bool:
        """Take ``sid``'s lock as ``token`` for ``lease`` seconds if it is free or its lease has
        run out; False, changing nothing, while another token holds it."""

    def release_lock(self, sid: str, token: str) -> None:
        """Free ``sid``'s lock if ``token`` still holds it; otherwise do nothing."""


def provides(store: Any, protocol: type) -> bool:
    """Whether ``store`` has every public method that ``protocol`` declares.

    The one check of optional capabilities (a user index, locks, ...). Not
    ``isinstance(store, protocol)``: from Python 3.12 that misses the methods a
    wrapper such as ``AsyncStoreAdapter`` provides through ``__getattr__``.
    """
    names = [name for name, member in vars(protocol).items() if callable(member) and name[0] != "_"]
    return all(callable(getattr(store, name, None)) for name in names)


#: A password given as a query parameter (libpq's ``?password=``, or redis-py's).
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redacted_url(url: str) -> str:
    """``url`` without its password (in the userinfo or a ``password=`` query parameter): store
    URLs end up in error messages and logs, secrets must not."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable>"
    if parts.password is not None:
        url = url.replace(f":{parts.password}@", ":***@", 1)
    return _QUERY_PASSWORD.sub(r"\1***", url)
