"""How the Redis session stores fail: quickly (bounded timeouts, few retries), and as a
SessionStoreError (a 503) naming no secret.

Shared by ``RedisStore`` and ``AsyncRedisStore`` (through :mod:`.redis_layout`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

from .base import SessionStoreError, redacted_url, url_secrets
from .redis_layout import CLUSTER_SCHEME, CONNECT_TIMEOUT, SOCKET_TIMEOUT, scheme

try:
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisClusterException, RedisError
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Redis session stores need the redis package: pip install 'hug-cookie-sessions[redis]'"
    ) from error


#: What redis-py raises when Redis fails (a cluster adds its own): what a store call translates.
REDIS_ERRORS = (RedisError, RedisClusterException)


def client_options(url: str, retry: Callable[..., Any]) -> tuple[bool, str, dict[str, Any]]:
    """How a store's client made from ``url`` connects: whether ``url`` names a Redis Cluster,
    the URL for redis-py's ``from_url`` (``redis+cluster://`` as ``redis://``), and its options.

    ``retry`` is redis-py's ``Retry`` class of the client's flavour (blocking or asyncio).
    Timeouts are short, as a session lookup is a tiny command. A standalone client retries
    once, on a broken connection only (a pooled connection that died with a restarted
    server), so a slow command never runs twice and a call fails within about one timeout;
    a cluster client retries twice, re-reading the slot map between attempts, which rides
    out a failover.
    """
    options: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": SOCKET_TIMEOUT}
    if scheme(url) == CLUSTER_SCHEME:
        options["retry"] = retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
        return True, "redis" + url[len(CLUSTER_SCHEME) :], options
    broken_connection = (RedisConnectionError,)
    options["retry"] = retry(ExponentialBackoff(cap=0.2, base=0.02), 1, supported_errors=broken_connection)
    return False, url, options


class Failures:
    """Turns every Redis failure into a SessionStoreError (a 503) whose message names no secret.

    ``where`` says which Redis in messages; every one of ``secrets`` (the URL's password and
    credential parameters, as written and decoded) is masked wherever redis-py's own error
    text repeats it.
    """

    __slots__ = ("secrets", "where")

    def __init__(self, where: str, *secrets: Optional[str]) -> None:
        self.where = where
        self.secrets = sorted((secret for secret in secrets if secret), key=len, reverse=True)

    @classmethod
    def for_url(cls, url: str) -> Failures:
        """Messages name ``url`` without its credentials (:func:`~.base.redacted_url`)."""
        return cls(redacted_url(url), *url_secrets(url))

    def __call__(self, action: str) -> Translating:
        """A ``with`` block in which any Redis failure raises, naming ``action`` and where it failed."""
        return Translating(self, action)

    def error(self, action: str, error: BaseException) -> SessionStoreError:
        """The SessionStoreError that a Redis failure of ``action`` becomes."""
        message = f"Redis session store {self.where}: {action} failed: {type(error).__name__}: {error}"
        return SessionStoreError(self.masked(message))

    @contextlib.contextmanager
    def configuring(self) -> Iterator[None]:
        """A ValueError raised inside the block (redis-py or urllib refusing the URL, whose text
        may quote part of a mistyped password) is raised again masked, without the original."""
        try:
            yield
        except ValueError as error:
            raise ValueError(self.masked(str(error))) from None

    def masked(self, message: str) -> str:
        """``message`` with every secret replaced by ``***``."""
        for secret in self.secrets:
            message = message.replace(secret, "***")
        return message


class Translating:
    """The ``with`` block of :meth:`Failures.__call__`.

    PERF(translating): a class rather than a ``contextlib.contextmanager`` generator, as
    every store call enters one: 0.62 against 1.39 µs per block (side by side, 30 rounds,
    medians; -0.77 µs, 95% CI -0.78 to -0.75).
    """

    __slots__ = ("action", "failures")

    def __init__(self, failures: Failures, action: str) -> None:
        self.failures, self.action = failures, action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Optional[BaseException], traceback: Any) -> None:
        if isinstance(error, REDIS_ERRORS):
            raise self.failures.error(self.action, error) from error
