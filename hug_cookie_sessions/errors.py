"""Every exception the package raises, in one place.

:class:`SessionStoreError` is defined with the store protocol (stores raise it
and know nothing of HTTP); it is re-exported here. The two 503s and the 403 of
cross-origin protection are Falcon errors, so Falcon renders them (as JSON for
API clients) without any handler of the app's own.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import falcon

from .stores.base import SessionStoreError

__all__ = [
    "CrossOriginRefused",
    "LockTimeout",
    "SessionBusy",
    "SessionStoreError",
    "SessionTooLarge",
    "SessionUnavailable",
    "SessionValueError",
]

log = logging.getLogger("hug_cookie_sessions")


class SessionValueError(TypeError):
    """A session value cannot be stored: it is not JSON-serializable, or its key (or the
    session's user ID) holds text no store can keep. ``key`` names it; ``problem``, when
    given, is the whole message."""

    def __init__(self, key: str, value: Any, problem: Optional[str] = None) -> None:
        self.key = key
        super().__init__(
            problem
            if problem
            else f"session[{key!r}] holds a {type(value).__name__}, which is not JSON-serializable; "
            "store only dicts, lists, strings, numbers, booleans and None"
        )


class SessionTooLarge(SessionValueError):
    """A save would make the session hold more than ``max_session_bytes`` of keys and JSON values.

    Sessions live on the server, so nothing limits them but this: without it one request can
    fill a store (a 20 MB value, 10,000-character keys, thousands of keys). Nothing is saved.
    """

    def __init__(self, size: int, limit: float, largest: str, largest_size: int) -> None:
        super().__init__(
            largest,
            None,
            f"the session would hold {size} bytes, over max_session_bytes={limit}; "
            f"its largest key is {largest!r} ({largest_size} bytes)",
        )
        self.size = size
        self.limit = limit


class LockTimeout(SessionStoreError):
    """Another request of the session held its lock for the whole lock timeout."""


class SessionUnavailable(SessionStoreError, falcon.HTTPServiceUnavailable):
    """The store failed; Falcon renders it as ``503`` with a JSON body.

    It is still a :class:`SessionStoreError`, so a handler that can work
    without its session may catch it.
    """

    def __init__(
        self,
        title: str = "Session store unavailable",
        description: str = "Sessions cannot be read or saved right now. Please try again shortly.",
        retry_after: int = 5,
    ) -> None:
        falcon.HTTPServiceUnavailable.__init__(
            self, title=title, description=description, retry_after=retry_after
        )


class SessionBusy(SessionUnavailable):
    """With ``lock=True``: another request of the session held its lock for the whole
    ``lock_timeout``. A 503 saying so; the request's session was neither read nor saved."""

    def __init__(self) -> None:
        super().__init__(
            "Session busy",
            "Another request of this session is still running. Please try again shortly.",
            retry_after=1,
        )


def store_failed(error: SessionStoreError, doing: str) -> SessionUnavailable:
    """The 503 for a store failure while ``doing`` (a store method's name), logged here, once."""
    log.error("Session store failed in %s: %s", doing, error)
    return SessionUnavailable()


def not_saved(error: SessionValueError) -> falcon.HTTPInternalServerError:
    """The 500 for a session that cannot be saved (a value that is not JSON, a session over
    ``max_session_bytes``), logged here with what and where; the response names neither."""
    log.error("Session not saved: %s", error)
    return falcon.HTTPInternalServerError(
        title="Session not saved", description="A session value could not be stored."
    )


class CrossOriginRefused(falcon.HTTPForbidden):
    """``403``: :class:`~hug_cookie_sessions.CrossOriginProtection` refused an unsafe request
    that a browser sent on behalf of another origin. Its own class, so that an app can
    render it its own way (``app.add_error_handler(CrossOriginRefused, ...)``)."""

    def __init__(self, description: str) -> None:
        super().__init__(title="Cross-origin request refused", description=description)
