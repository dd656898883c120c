"""The store protocol every session backend implements, and its error type.

A store keeps each session as a :class:`Record`: the session's values, one JSON
text per key, plus the metadata the server needs to enforce timeouts. Stores
see only JSON text and the keys that name sessions (the ``sid`` arguments): from
the middleware, a one-way hash of the session ID, never the ID itself (see
:mod:`hug_cookie_sessions.store_keys`). They know nothing about HTTP, cookies or
signing.

Writes are per key (:meth:`Store.apply`), so two requests of one session that
change different keys both persist, and a write to a session that no longer
exists does nothing, so a request that started before a logout cannot bring the
session back.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable
from urllib.parse import unquote_plus

log = logging.getLogger("hug_cookie_sessions")


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

    ``label`` is what listings show of a user's session ("Firefox on Linux"), set by
    ``bind_user(user_id, label)``; it reaches a store only through :meth:`Store.create`
    and :meth:`Store.rotate` (a bind always rotates), so ``apply`` never changes it.
    """

    data: dict[str, str]
    created_at: float
    expires_at: float
    user_id: Optional[str] = None
    idle_timeout: Optional[int] = None
    label: Optional[str] = None

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
            self.label,
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


#: Query parameters whose value is a credential, by any part of their name (lower case):
#: redis-py and libpq both take ``?password=``; libpq also ``sslpassword``; others name tokens
#: and secrets. Redacting a harmless parameter costs a log line some detail; missing one leaks.
SECRET_PARAMETERS = re.compile(r"pass|pwd|secret|token|credential|key", re.IGNORECASE)


def redacted_url(url: str) -> str:
    """``url`` with every credential replaced by ``***``, for error messages and log lines.

    Works on the text, whatever the scheme (``redis://``, ``unix://``, ``postgresql://``, ...),
    so it needs no parser that could refuse the URL: the password of the userinfo
    (``user:pass@`` keeps ``user``; ``:pass@`` too) and the value of every query parameter
    named like a credential (:data:`SECRET_PARAMETERS`: ``password``, ``sslpassword``,
    ``token``, ``secret``, ...). The userinfo ends at the last ``@`` before the query, so a
    password with an unencoded ``/`` or ``@`` is still hidden whole. A fragment is dropped.
    """
    url, _, _ = url.partition("#")
    head, query_mark, query = url.partition("?")
    scheme, separator, rest = head.partition("://") if "://" in head else ("", "", head)
    userinfo, at, hostpath = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:***@{hostpath}" if colon else rest
    if query_mark:
        query = "&".join(_redacted_parameter(part) for part in query.split("&"))
    return f"{scheme}{separator}{rest}{query_mark}{query}"


def _redacted_parameter(part: str) -> str:
    name, equals, value = part.partition("=")
    if equals and value and SECRET_PARAMETERS.search(unquote_plus(name)):
        return f"{name}=***"
    return part


def url_secrets(url: str) -> list[str]:
    """The credentials :func:`redacted_url` hides, as written and percent-decoded: what a
    store masks in error text it did not write itself (a client library may echo them)."""
    url = url.partition("#")[0]
    head, _, query = url.partition("?")
    found = []
    userinfo, at, _ = head.partition("://")[2].rpartition("@") if "://" in head else head.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        if equals and value and SECRET_PARAMETERS.search(unquote_plus(name)):
            found.append(value)
    # A password with an unencoded "/" is cut there by urllib, whose errors then quote the piece.
    found += [piece for secret in found for piece in re.split(r"[/?#]", secret)[:1]]
    found += [unquote_plus(secret) for secret in found]
    # Longest first, so that masking one secret never leaves a longer one half-visible.
    return sorted({secret for secret in found if secret}, key=lambda secret: (-len(secret), secret))


#: A store key (:func:`~hug_cookie_sessions.store_keys.store_key`): the SHA-256 of an ID, in hex.
_STORE_KEY = re.compile(r"[0-9a-f]{64}")


def session_ref(sid: str) -> str:
    """What logs call a session: never its ID, which opens it, but the first 12 hex digits of
    its SHA-256. One-way, so a log reader cannot use it; stable, so the lines of one session
    can be found together (and ``session_ref(id)`` of a known ID finds them). Stores hold that
    SHA-256 as the session's key, so ``sid`` may be the key too: it names the same session."""
    if len(sid) == 64 and _STORE_KEY.fullmatch(sid):
        return sid[:12]
    return hashlib.sha256(sid.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def checked_record(
    data: Any,
    created_at: Any,
    expires_at: Any,
    user_id: Any = None,
    idle_timeout: Any = None,
    label: Any = None,
) -> Record:
    """A :class:`Record` of values read back from storage, or ValueError saying which is unusable.

    Stores call it on what they load, so that a record changed behind their back (a bad
    migration, a hand-edited row, another program's key) is refused here, with a reason,
    rather than failing later inside a request: times must be finite numbers, ``user_id``
    and ``label`` text, ``idle_timeout`` a whole number, ``data`` a mapping of text to text.
    """
    for name, value in (("created_at", created_at), ("expires_at", expires_at)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} is not a time: {type(value).__name__}")
    for name, value in (("user_id", user_id), ("label", label)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} is not text: {type(value).__name__}")
    if idle_timeout is not None and (isinstance(idle_timeout, bool) or not isinstance(idle_timeout, int)):
        raise ValueError(f"idle_timeout is not a whole number: {type(idle_timeout).__name__}")
    if not isinstance(data, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in data.items()
    ):
        raise ValueError("data is not a mapping of text keys to JSON text")
    data = data if type(data) is dict else dict(data)
    return Record(data, created_at, expires_at, user_id, idle_timeout, label)


def unreadable(sid: str, problem: object) -> Optional[Record]:
    """Log that ``sid``'s stored record cannot be parsed (by :func:`session_ref`, never by ID)
    and return None: a store's ``load`` returns this, so the visitor is anonymous, not a 500."""
    log.error(
        "Session store: the record of session %s cannot be read, ignored: %s", session_ref(sid), problem
    )
    return None
