"""Which ASGI requests get their session loaded before the responder, and the loaders of the others.

On ASGI a mapping access cannot await the store, so ``SessionMiddleware`` loads
the session after routing, in ``process_resource_async``, for a responder that
reads it synchronously. Requests that reach no responder of their resource (a
404 or a sink: Falcon calls no resource hook; a 405 or Falcon's default
``OPTIONS``: the resource has no responder for the method) and resources that
declare ``session_preload = False`` (as falcon-cors's ``cors_enabled``) are
not loaded: they cost no store I/O unless they await the session's async
accessors (:mod:`.async_access`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NoReturn

__all__ = ["NOT_PRELOADED", "failed", "not_preloaded", "wants_preload"]

NOT_PRELOADED = (
    "The session was not loaded before the responder (an ASGI request whose resource sets "
    "session_preload = False, or that reached no responder of a resource): call "
    "`await session.aload()` before using it synchronously, or use the async accessors "
    "(`await session.aget(key)`, `aset`, `apop`, `aitems`, ...)"
)


def wants_preload(resource: Any, method: str) -> bool:
    """Whether a request routed to ``resource`` has its session loaded before the responder:
    unless ``resource`` sets ``session_preload = False`` or has no responder for ``method``."""
    if not getattr(resource, "session_preload", True):
        return False
    resource_class: type = type(resource)
    return method in _responder_methods(resource_class) or hasattr(resource, "on_" + method.lower())


@lru_cache(maxsize=1024)
def _responder_methods(resource_class: type) -> frozenset[str]:
    """The HTTP methods ``resource_class`` has a responder for, under any route suffix
    (``on_get``, ``on_get_item``), as Falcon names them. Per class, as Falcon maps them once
    per route: reading them per request would cost a ``dir()``."""
    return frozenset(
        name[3:].partition("_")[0].upper() for name in dir(resource_class) if name.startswith("on_")
    )


def not_preloaded(source: Any) -> NoReturn:
    """The blocking loader of an ASGI session not loaded before the responder: a clear error,
    never a silently empty session."""
    raise RuntimeError(NOT_PRELOADED)


def failed(error: Exception) -> NoReturn:
    """The loader of a session whose loading failed before the responder: the failure, on first use."""
    raise error
