"""The app the behaviour tests drive, for every framework: one endpoint per thing a handler does.

Each endpoint is written once, as an action on a :class:`Call`; :func:`build_app`
mounts the actions in a hug API (the session from ``hug.directives.session``),
a ``falcon.App`` or a ``falcon.asgi.App`` (the session from ``req.context``).

hug reads handler annotations at runtime, so this module must not use
``from __future__ import annotations``.
"""

import asyncio
import inspect
import itertools
import json
import threading
from typing import Any, Callable, Dict, NamedTuple, Tuple

import falcon

from hug_cookie_sessions import Session, SessionMiddleware


class Gates:
    """Lets a test hold a request between loading its session and saving it."""

    def __init__(self) -> None:
        self.loaded = threading.Event()
        self.proceed = threading.Event()


class Call:
    """What an action sees of one request: the session, the query parameters, the response."""

    def __init__(self, session: Session, params: Dict[str, str], response: Any, context: Any) -> None:
        self.session = session
        self.params = params
        self.response = response
        self.context = context


#: An action returns the JSON body. An action may ``yield``: ``_HOLD`` holds it
#: until the test opens ``Gates.proceed`` (its session is loaded by then), and a
#: ``Use`` calls a middleware method (its ``*_async`` form on ASGI) and sends
#: back the result.
Action = Callable[[Call], Any]

_HOLD = object()


class Use(NamedTuple):
    """A middleware method call an action asks for: ``yield Use("revoke", handle)``."""

    method: str
    args: tuple


def actions(middleware: SessionMiddleware) -> Dict[Tuple[str, str], Action]:
    """Every test endpoint, by (HTTP method, path)."""
    routes: Dict[Tuple[str, str], Action] = {}

    def route(method: str, path: str) -> Callable[[Action], Action]:
        def register(action: Action) -> Action:
            routes[method, path] = action
            return action

        return register

    @route("GET", "/untouched")
    def untouched(call):
        return {"ok": True}

    @route("GET", "/get")
    def get(call):
        key = call.params["key"]
        return {"value": call.session.get(key), "present": key in call.session}

    @route("GET", "/all")
    def everything(call):
        return {"data": dict(call.session), "id": call.session.id, "is_new": call.session.is_new}

    @route("GET", "/context")
    def context(call):
        """The session is an item and an attribute of the request context, on every Falcon."""
        call.context["session"]["n"] = 1
        return {"same": call.context["session"] is call.context.session is call.session}

    @route("POST", "/set")
    def set_(call):
        call.session[call.params["key"]] = json.loads(call.params["value"])
        return {"ok": True}

    @route("POST", "/delete")
    def delete(call):
        del call.session[call.params["key"]]
        return {"ok": True}

    @route("POST", "/append")
    def append(call):
        key = call.params["key"]
        call.session.setdefault(key, []).append(json.loads(call.params["value"]))
        return {"value": call.session[key]}

    @route("POST", "/nested")
    def nested(call):
        key = call.params["key"]
        call.session[key][call.params["field"]] = json.loads(call.params["value"])
        return {"value": call.session[key]}

    @route("POST", "/clear")
    def clear(call):
        call.session.clear()
        return {"ok": True}

    @route("POST", "/login")
    def login(call):
        call.session.regenerate()
        call.session.bind_user(call.params["user"], label=call.params.get("label"))
        call.session["user"] = call.params["user"]
        return {"ok": True}

    @route("POST", "/remember_me")
    def remember_me(call):
        seconds = int(call.params["seconds"])
        call.session.set_expiry(seconds)
        call.session["remembered"] = seconds
        return {"ok": True}

    @route("GET", "/my_sessions")
    def my_sessions(call):
        current = middleware.session_handle(call.session)
        listed = yield Use("user_sessions", (call.session.user_id,))
        return {
            "sessions": [
                {
                    "handle": info.handle,
                    "current": info.handle == current,
                    "label": info.label,
                    **_times(info),
                }
                for info in listed
            ]
        }

    @route("POST", "/revoke")
    def revoke(call):
        handle = call.params["handle"]
        if not middleware.signer.handle_belongs_to(handle, call.session.user_id):
            return {"revoked": False}
        return {"revoked": (yield Use("revoke", (handle, call.session.user_id)))}

    @route("POST", "/logout_everywhere")
    def logout_everywhere(call):
        return {"ended": (yield Use("revoke_user", (call.session.user_id,)))}

    @route("POST", "/logout")
    def logout(call):
        call.session.invalidate()
        return {"ok": True}

    @route("POST", "/logout_then_set")
    def logout_then_set(call):
        call.session.invalidate()
        call.session[call.params["key"]] = json.loads(call.params["value"])
        return {"ok": True}

    @route("POST", "/set_then_raise")
    def set_then_raise(call):
        call.session["half"] = "written"
        raise RuntimeError("handler failed after writing to the session")

    @route("POST", "/set_then_503")
    def set_then_503(call):
        call.session["half"] = "written"
        call.response.status = falcon.HTTP_503
        return {"error": "upstream down"}

    @route("POST", "/set_then_redirect")
    def set_then_redirect(call):
        """Log in, then redirect: Falcon renders the raise as a 302."""
        call.session["user"] = call.params["user"]
        raise falcon.HTTPFound("/all")

    @route("POST", "/set_then_hug_redirect")
    def set_then_hug_redirect(call):
        """hug's own helper, which can only raise."""
        import hug

        call.session["user"] = call.params["user"]
        hug.redirect.to("/all")

    @route("POST", "/set_then_4xx")
    def set_then_4xx(call):
        call.session["tries"] = int(call.params["tries"])
        raise falcon.HTTPForbidden(title="Wrong password")

    @route("POST", "/set_then_5xx_error")
    def set_then_5xx_error(call):
        call.session["half"] = "written"
        raise falcon.HTTPServiceUnavailable(title="Upstream down")

    @route("POST", "/default_expiry")
    def default_expiry(call):
        call.session.set_expiry(None)
        call.session["remembered"] = None
        return {"ok": True}

    @route("POST", "/set_unserializable")
    def set_unserializable(call):
        call.session["fine"] = 1
        call.session["tags"] = {"a", "b"}
        return {"ok": True}

    @route("GET", "/cached")
    def cached(call):
        call.response.set_header("Cache-Control", "private, max-age=60")
        call.session["seen"] = True
        return {"ok": True}

    @route("GET", "/own_cookie")
    def own_cookie(call):
        """The app sets a cookie of its own next to the session's."""
        call.response.append_header("Set-Cookie", "theme=dark; Path=/")
        call.session["seen"] = True
        return {"ok": True}

    @route("POST", "/set_when_released")
    def set_when_released(call):
        key = call.params["key"]
        call.session.get(key)  # the session is loaded here
        yield _HOLD
        call.session[key] = json.loads(call.params["value"])
        return {"ok": True}

    return routes


def _times(info) -> dict:
    return {"created_at": info.created_at, "last_active": info.last_active, "expires_at": info.expires_at}


def _run(action: Action, call: Call, gates: Gates, middleware: SessionMiddleware) -> Any:
    """Run ``action`` on a WSGI server thread: holds block, middleware methods are called."""
    steps = action(call)
    if not inspect.isgenerator(steps):
        return steps
    result = None
    while True:
        try:
            request = steps.send(result)
        except StopIteration as done:
            return done.value
        if request is _HOLD:
            gates.loaded.set()
            assert gates.proceed.wait(10), "test never released the request"
            result = None
        else:
            result = getattr(middleware, request.method)(*request.args)


async def _run_async(action: Action, call: Call, gates: Gates, middleware: SessionMiddleware) -> Any:
    """:func:`_run` on the event loop: holds wait on a thread, middleware methods are awaited."""
    steps = action(call)
    if not inspect.isgenerator(steps):
        return steps
    result = None
    while True:
        try:
            request = steps.send(result)
        except StopIteration as done:
            return done.value
        if request is _HOLD:
            gates.loaded.set()
            assert await asyncio.to_thread(gates.proceed.wait, 10), "test never released the request"
            result = None
        else:
            result = await getattr(middleware, request.method + "_async")(*request.args)


_app_numbers = itertools.count()

#: hug where it can run (Falcon 2.0), else Falcon's own WSGI app.
DEFAULT_FRAMEWORK = "hug" if falcon.__version__.startswith("2.") else "falcon-wsgi"


def build_app(
    middleware: SessionMiddleware, gates: "Gates | None" = None, framework: str = DEFAULT_FRAMEWORK
):
    """A WSGI or ASGI app of ``framework`` with ``middleware`` and the test endpoints."""
    gates = gates or Gates()
    routes = actions(middleware)
    if framework == "hug":
        return _hug_app(middleware, routes, gates)
    if framework == "falcon-asgi":
        from falcon.asgi import App as AsgiApp

        app = AsgiApp(middleware=[middleware])
        for (_, path), action in routes.items():
            app.add_route(path, _AsgiEndpoint(action, gates, middleware))
        return app
    app = falcon.App(middleware=[middleware])
    for (_, path), action in routes.items():
        app.add_route(path, _WsgiEndpoint(action, gates, middleware))
    return app


def _hug_app(middleware: SessionMiddleware, routes: Dict[Tuple[str, str], Action], gates: Gates):
    import hug

    api = hug.API(f"session-test-{next(_app_numbers)}")  # hug keeps one API per name
    api.http.add_middleware(middleware)

    def endpoint(action: Action):
        def handler(request, response, session: hug.directives.session):
            call = Call(session, dict(request.params), response, request.context)
            return _run(action, call, gates, middleware)

        return handler

    for (method, path), action in routes.items():
        hug.http(path, accept=(method,), api=api)(endpoint(action))
    return api.http.server()


class _WsgiEndpoint:
    def __init__(self, action: Action, gates: Gates, middleware: SessionMiddleware) -> None:
        self.action, self.gates, self.middleware = action, gates, middleware

    def on_get(self, req, resp) -> None:
        call = Call(req.context[self.middleware.context_name], dict(req.params), resp, req.context)
        resp.media = _run(self.action, call, self.gates, self.middleware)

    on_post = on_get


class _AsgiEndpoint(_WsgiEndpoint):
    async def on_get(self, req, resp) -> None:
        call = Call(req.context[self.middleware.context_name], dict(req.params), resp, req.context)
        resp.media = await _run_async(self.action, call, self.gates, self.middleware)

    on_post = on_get
