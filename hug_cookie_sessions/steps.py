"""What a lifecycle step asks its driver to do, so one piece of logic serves WSGI and ASGI.

A step is a generator: it yields store calls (made by :func:`call`) and
:class:`Pause` requests and is sent each one's result, or has the store's
:class:`~.stores.base.SessionStoreError` raised at the ``yield``; it returns
its own result. ``SessionMiddleware._run`` carries the requests out by
blocking calls, ``SessionMiddleware._run_async`` by awaiting; the step never
knows which.
"""

from __future__ import annotations

from typing import Any, Generator, NamedTuple, TypeVar, Union

#: Call the store method named first, with these positional and keyword arguments;
#: the result is sent back. A plain tuple: one is made for every store call of every request.
StoreCall = tuple[str, tuple, dict]


class Pause(NamedTuple):
    """Wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``); None is sent back."""

    seconds: float


def call(method: str, *args: Any, **kwargs: Any) -> StoreCall:
    """The request to call store method ``method`` with these arguments."""
    return method, args, kwargs


T = TypeVar("T")

#: A step that returns a T.
Steps = Generator[Union[StoreCall, Pause], Any, T]
