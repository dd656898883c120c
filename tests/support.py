"""Test helpers: a visitor with a real cookie jar, and a store wrapper that counts calls."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

import requests

from hug_cookie_sessions import SessionMiddleware
from hug_cookie_sessions.store_keys import store_key

from .apps import Gates, build_app

SECRET = "test-secret-key-0123456789"


def store_key_of(token: str) -> str:
    """The key that stores keep the session of cookie value ``token`` under (never its ID)."""
    return store_key(token.rpartition(".")[0])


class CountingStore:
    """Passes every call to a real store and counts them by method name; an async store's
    methods stay coroutine functions, so the middleware still sees an async store."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if inspect.iscoroutinefunction(method):

            async def counted_async(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return await method(*args, **kwargs)

            return counted_async

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted

    def __len__(self) -> int:
        return len(self.store)

    def io(self) -> int:
        return sum(self.calls.values())


class Site:
    """The test app behind a real HTTP server, with its framework, middleware and store at hand."""

    def __init__(self, url: str, framework: str, middleware: SessionMiddleware, gates: Gates) -> None:
        self.url = url
        self.framework = framework
        self.middleware = middleware
        self.store = middleware.store
        self.gates = gates

    def visitor(self) -> Visitor:
        return Visitor(self)


class Visitor:
    """A browser-like client: a requests.Session keeps and sends the cookies."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.http = requests.Session()

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.site.url + path, params=params, timeout=10)

    def post(self, path: str, **params: Any) -> requests.Response:
        return self.http.post(self.site.url + path, params=params, timeout=10)

    @property
    def cookie(self) -> str | None:
        return self.http.cookies.get(self.site.middleware.cookie.name)

    def set_cookie(self, value: str) -> None:
        self.http.cookies.set(self.site.middleware.cookie.name, value, domain="127.0.0.1", path="/")

    def value(self, key: str) -> Any:
        return self.get("/get", key=key).json()["value"]


def make_site(serve, store, clock, **options: Any) -> Site:
    """The test app of ``serve``'s framework with a middleware on ``store``, served on loopback."""
    options.setdefault("cookie_secure", False)  # plain http on loopback
    middleware = SessionMiddleware(options.pop("secret_key", SECRET), store, clock=clock, **options)
    gates = Gates()
    url = serve(build_app(middleware, gates, serve.framework))
    return Site(url, serve.framework, middleware, gates)
