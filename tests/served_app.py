"""The app the load, fault and locking tests run under gunicorn, configured by environment.

``SESSION_STORE``: ``sqlite:////path``, ``redis://…`` or ``memory://``; ``SESSION_REDIS_PREFIX``
keeps parallel tests apart; ``SESSION_BUSY_TIMEOUT`` is SQLite's busy timeout;
``SESSION_LOCK=1`` turns per-session locking on (``SESSION_LOCK_TIMEOUT``,
``SESSION_LOCK_LEASE``); ``STALL_DIR`` is where a stalled worker writes its PID.
Serve ``tests.served_app:__hug_wsgi__``; importing this module builds the app from the environment.

hug reads handler annotations at runtime, so this module must not use
``from __future__ import annotations``.
"""

import json
import os
import time
from pathlib import Path

import hug

from hug_cookie_sessions import SessionMiddleware, SQLiteStore, store_from_url

SECRET = "served-app-test-secret-0123456789"

#: A save whose changes include this key stalls inside its SQLite write transaction.
STALL_KEY = "stall_in_commit"

#: How long a stalled request waits to be killed before it gives up on its own.
STALL_SECONDS = 60


def _announce_stall() -> None:
    """Tell the test which worker process to kill: write our PID where it is watching."""
    directory = Path(os.environ["STALL_DIR"])
    (directory / f"{os.getpid()}.tmp").write_text(str(os.getpid()))
    (directory / f"{os.getpid()}.tmp").rename(directory / "stalled.pid")


class StallingSQLiteStore(SQLiteStore):
    """A real SQLiteStore that stops just before COMMIT when a save writes :data:`STALL_KEY`.

    Every row of that save has been written inside the open transaction when it
    stops, so killing the process then leaves the most half-written state possible.
    """

    def apply(self, sid, changed, removed, expires_at, **kwargs):
        if STALL_KEY not in changed:
            return super().apply(sid, changed, removed, expires_at, **kwargs)
        connection = self._connection()

        def stall_before_commit(statement):
            if statement == "COMMIT":
                _announce_stall()
                time.sleep(STALL_SECONDS)

        connection.set_trace_callback(stall_before_commit)
        try:
            return super().apply(sid, changed, removed, expires_at, **kwargs)
        finally:
            connection.set_trace_callback(None)


def _store():
    url = os.environ["SESSION_STORE"]
    if url.startswith("sqlite:///"):
        return StallingSQLiteStore(
            url[len("sqlite:///") :], busy_timeout=float(os.environ.get("SESSION_BUSY_TIMEOUT", "5"))
        )
    if url.startswith("redis") and os.environ.get("SESSION_REDIS_PREFIX"):
        from hug_cookie_sessions.stores.redis import RedisStore

        return RedisStore(url, prefix=os.environ["SESSION_REDIS_PREFIX"])
    return store_from_url(url)


def _middleware() -> SessionMiddleware:
    options = {}
    if os.environ.get("SESSION_LOCK") == "1":
        options["lock"] = True
        options["lock_timeout"] = float(os.environ.get("SESSION_LOCK_TIMEOUT", "10"))
        options["lock_lease"] = float(os.environ.get("SESSION_LOCK_LEASE", "30"))
    return SessionMiddleware(SECRET, _store(), cookie_secure=False, **options)


api = hug.API(__name__)
api.http.add_middleware(_middleware())


@hug.get("/untouched")
def untouched():
    return {"ok": True}


@hug.get("/get")
def get(key: hug.types.text, session: hug.directives.session):
    return {"value": session.get(key)}


@hug.get("/all")
def everything(session: hug.directives.session):
    return {"data": dict(session)}


@hug.post("/set")
def set_(key: hug.types.text, value: hug.types.text, session: hug.directives.session):
    session[key] = json.loads(value)
    return {"ok": True}


@hug.post("/incr")
def incr(key: hug.types.text, session: hug.directives.session, pause: hug.types.float_number = 0.0):
    """``session[key] += 1``, with an optional pause between the read and the write."""
    value = session.get(key, 0)
    if pause:
        time.sleep(pause)
    session[key] = value + 1
    return {"value": value + 1}


@hug.post("/stall_in_handler")
def stall_in_handler(session: hug.directives.session):
    """Change several keys, then hang before the response (and so before the save)."""
    for key in ("a", "b", "c"):
        session[key] = "changed"
    _announce_stall()
    time.sleep(STALL_SECONDS)
    return {"ok": True}


@hug.post("/stall_in_commit")
def stall_in_commit(session: hug.directives.session):
    """Change several keys and remove one; the save then hangs inside its write transaction
    (SQLite only). The removal makes it a transaction: new values alone are one statement."""
    for key in ("a", "c", STALL_KEY):
        session[key] = "changed"
    del session["b"]
    return {"ok": True}
