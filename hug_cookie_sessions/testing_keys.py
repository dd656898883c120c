"""The conformance check that stores never receive a session ID (see :mod:`.testing`).

Run it as the other suites: subclass :class:`HashedKeyConformance` (from
``hug_cookie_sessions.testing``) and provide a ``store`` fixture.
"""

from __future__ import annotations

from typing import Any, Callable

from .store_keys import store_key
from .stores.base import LockingStore, UserIndex, provides


class HashedKeyConformance:
    """Stores never see a session ID, only its store key (:mod:`.store_keys`), so a dump opens nothing.

    Drives a ``SessionMiddleware`` over the store through a Falcon app (create, read, write,
    log in, list, revoke, log out; with locks when the store has them) and fails if any
    store call's arguments hold an ID. The one exception is the read of sessions stored by
    earlier releases: a ``load`` of an ID right after the ``load`` of its key found nothing.
    """

    def test_no_store_call_receives_a_session_id(self, store: Any) -> None:
        spy = _RecordingStore(store)
        visit = _app_over(spy)
        first = visit("POST", "set")[0]
        assert visit("GET", "get", first)[1] == {"n": 1}
        mine, other = visit("POST", "login", first)[0], visit("POST", "login", visit("POST", "set")[0])[0]
        if provides(store, UserIndex):
            listed = visit("GET", "list", mine)[1]
            assert len(listed) == 2
            visit("POST", "revoke", mine, handle=next(handle for handle, current in listed if not current))
            assert visit("GET", "get", other)[1] == {"n": None}
        visit("POST", "logout", mine)
        assert visit("GET", "get", mine)[1] == {"n": None}
        ids = {token.rpartition(".")[0] for token in (first, mine, other)}
        for index, (name, args) in enumerate(spy.calls):
            for sid in ids:
                legacy_read = (name, args) == ("load", (sid,)) and spy.calls[index - 1] == (
                    "load",
                    (store_key(sid),),
                )
                assert legacy_read or sid not in repr(args), f"store.{name} received a session ID: {args!r}"


class _RecordingStore:
    """Passes every call to ``store``, recording its name and arguments."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if not callable(method):
            return method

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, (*args, *kwargs.items())))
            return method(*args, **kwargs)

        return recorded


def _app_over(store: Any) -> Callable[..., Any]:
    """``visit(method, action, token=None, **params)``: one request, with session cookie ``token``,
    to a Falcon app whose ``SessionMiddleware`` uses ``store``; the cookie after it and the JSON body."""
    import falcon
    import falcon.testing

    from .middleware import SessionMiddleware

    middleware = SessionMiddleware("k" * 32, store, cookie_secure=False, lock=provides(store, LockingStore))

    class Resource:
        def on_get(self, req: Any, resp: Any) -> None:
            session, action = req.context["session"], req.get_param("do")
            if action == "list":
                current = middleware.session_handle(session)
                resp.media = [
                    (info.handle, info.handle == current) for info in middleware.user_sessions("ada")
                ]
            else:
                resp.media = {"n": session.get("n")}

        def on_post(self, req: Any, resp: Any) -> None:
            session, action = req.context["session"], req.get_param("do")
            if action == "set":
                session["n"] = session.get("n", 0) + 1
            elif action == "login":
                session.regenerate()
                session.bind_user("ada")
            elif action == "revoke":
                middleware.revoke(req.get_param("handle"))
            else:
                session.invalidate()

    app = (falcon.App if hasattr(falcon, "App") else falcon.API)(middleware=[middleware])
    app.add_route("/", Resource())

    def visit(method: str, action: str, token: Any = None, **params: str) -> Any:
        headers = {"Cookie": f"session={token}"} if token else {}
        result = falcon.testing.simulate_request(
            app, method, "/", params={"do": action, **params}, headers=headers
        )
        assert result.status_code == 200, result.text
        cookie = result.cookies.get("session")
        return (cookie.value if cookie is not None and cookie.value else token), result.json

    return visit
