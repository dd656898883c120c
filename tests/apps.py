"""The hug app the behaviour tests drive: one endpoint per thing a handler does with a session.

hug reads handler annotations at runtime, so this module must not use
``from __future__ import annotations``.
"""

import itertools
import json
import threading

import hug

from hug_cookie_sessions import SessionMiddleware


class Gates:
    """Lets a test hold a request between loading its session and saving it."""

    def __init__(self) -> None:
        self.loaded = threading.Event()
        self.proceed = threading.Event()


_app_numbers = itertools.count()


def _times(info) -> dict:
    return {"created_at": info.created_at, "last_active": info.last_active, "expires_at": info.expires_at}


def build_app(middleware: SessionMiddleware, gates: "Gates | None" = None):
    """A WSGI app with ``middleware`` and the test endpoints."""
    api = hug.API(f"session-test-{next(_app_numbers)}")  # hug keeps one API per name
    api.http.add_middleware(middleware)
    gates = gates or Gates()

    @hug.get("/untouched", api=api)
    def untouched():
        return {"ok": True}

    @hug.get("/get", api=api)
    def get(key: hug.types.text, session: hug.directives.session):
        return {"value": session.get(key), "present": key in session}

    @hug.get("/all", api=api)
    def everything(session: hug.directives.session):
        return {"data": dict(session), "id": session.id, "is_new": session.is_new}

    @hug.post("/set", api=api)
    def set_(key: hug.types.text, value: hug.types.text, session: hug.directives.session):
        session[key] = json.loads(value)
        return {"ok": True}

    @hug.post("/delete", api=api)
    def delete(key: hug.types.text, session: hug.directives.session):
        del session[key]
        return {"ok": True}

    @hug.post("/append", api=api)
    def append(key: hug.types.text, value: hug.types.text, session: hug.directives.session):
        session.setdefault(key, []).append(json.loads(value))
        return {"value": session[key]}

    @hug.post("/nested", api=api)
    def nested(
        key: hug.types.text, field: hug.types.text, value: hug.types.text, session: hug.directives.session
    ):
        session[key][field] = json.loads(value)
        return {"value": session[key]}

    @hug.post("/clear", api=api)
    def clear(session: hug.directives.session):
        session.clear()
        return {"ok": True}

    @hug.post("/login", api=api)
    def login(user: hug.types.text, session: hug.directives.session):
        session.regenerate()
        session.bind_user(user)
        session["user"] = user
        return {"ok": True}

    @hug.post("/remember_me", api=api)
    def remember_me(seconds: hug.types.number, session: hug.directives.session):
        session.set_expiry(seconds)
        session["remembered"] = seconds
        return {"ok": True}

    @hug.get("/my_sessions", api=api)
    def my_sessions(session: hug.directives.session):
        current = middleware.session_handle(session)
        return {
            "sessions": [
                {"handle": info.handle, "current": info.handle == current, **_times(info)}
                for info in middleware.user_sessions(session.user_id)
            ]
        }

    @hug.post("/revoke", api=api)
    def revoke(handle: hug.types.text, session: hug.directives.session):
        if middleware.signer.handle_user(handle) != session.user_id:
            return {"revoked": False}
        return {"revoked": middleware.revoke(handle)}

    @hug.post("/logout_everywhere", api=api)
    def logout_everywhere(session: hug.directives.session):
        return {"ended": middleware.revoke_user(session.user_id)}

    @hug.post("/logout", api=api)
    def logout(session: hug.directives.session):
        session.invalidate()
        return {"ok": True}

    @hug.post("/logout_then_set", api=api)
    def logout_then_set(key: hug.types.text, value: hug.types.text, session: hug.directives.session):
        session.invalidate()
        session[key] = json.loads(value)
        return {"ok": True}

    @hug.post("/set_then_raise", api=api)
    def set_then_raise(session: hug.directives.session):
        session["half"] = "written"
        raise RuntimeError("handler failed after writing to the session")

    @hug.post("/set_then_503", api=api)
    def set_then_503(session: hug.directives.session, response):
        session["half"] = "written"
        response.status = hug.HTTP_503
        return {"error": "upstream down"}

    @hug.post("/set_unserializable", api=api)
    def set_unserializable(session: hug.directives.session):
        session["fine"] = 1
        session["tags"] = {"a", "b"}
        return {"ok": True}

    @hug.get("/cached", api=api)
    def cached(session: hug.directives.session, response):
        response.set_header("Cache-Control", "private, max-age=60")
        session["seen"] = True
        return {"ok": True}

    @hug.post("/set_when_released", api=api)
    def set_when_released(key: hug.types.text, value: hug.types.text, session: hug.directives.session):
        session.get(key)  # the session is loaded here
        gates.loaded.set()
        assert gates.proceed.wait(10), "test never released the request"
        session[key] = json.loads(value)
        return {"ok": True}

    return api.http.server()
