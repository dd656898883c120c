"""What a lifecycle step asks its driver to do, so one piece of logic serves WSGI and ASGI.

A step is a generator: it yields :class:`StoreCall` and :class:`Pause`
requests and is sent each one's result, or has the store's
:class:`~.stores.base.SessionStoreError` raised at the ``yield``; it returns
its own result. ``SessionMiddleware._run`` carries the requests out by
blocking calls, ``SessionMiddleware._run_async`` by awaiting; the step never
knows which.
"""

from __future__ import annotations

from typing import Any, Generator, NamedTuple, TypeVar, Union


class StoreCall(NamedTuple):
    """Call the store method ``method``; the result is sent back."""

    method: str
    args: tuple
    kwargs: dict


class Pause(NamedTuple):
    """Wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``); None is sent back."""

    seconds: float


def call(method: str, *args: Any, **kwargs: Any) -> StoreCall:
    """The request to call store method ``method`` with these arguments."""
    return StoreCall(method, args, kwargs)


T = TypeVar("T")

#: A step that returns a T.
Steps = Generator[Union[StoreCall, Pause], Any, T]
