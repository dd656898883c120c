"""The seed article's session example, rebuilt on hug-cookie-sessions.

Run it with ``make run`` (gunicorn, ``examples.app:__hug_wsgi__``) or
``hug -f examples/app.py``. Configuration comes from the environment:

- ``SESSION_SECRET``: the signing key. Unset: a random one is made at start-up
  and sessions do not survive a restart (a warning says so).
- ``SESSION_STORE``: a store URL (``sqlite:///…``, ``redis://…``) or a bare path
  meaning an SQLite file; default ``sessions.sqlite3``.
- ``SESSION_COOKIE_SECURE``: ``1`` marks the cookie Secure (HTTPS only);
  default ``0`` so that the demo works on http://127.0.0.1.

Three kinds of endpoints:

- the article's own (``/create_session``, ``/store_data``, ``/get_data``): the
  client carries a signed ``session_id`` in query parameters, as in the article;
- their cookie counterparts under ``/api/`` plus ``/login`` and ``/logout``,
  where the browser carries the session by itself;
- ``/``: an HTML page that uses the cookie session.

Every endpoint that changes state is a POST (except the article's own
``/create_session`` and ``/get_data``, which keep the article's methods), and
``CrossOriginProtection`` refuses POSTs that a browser sends from another
origin: without it, a form on any site could log a visitor in as the attacker
(login CSRF), which ``SameSite=Lax`` does not stop.
"""

import html
import json
import logging
import os
import secrets
import string
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional

import falcon
import hug

from hug_cookie_sessions import (
    CrossOriginProtection,
    Session,
    SessionMiddleware,
    SQLiteStore,
    Store,
    store_from_url,
)

if sys.version_info >= (3, 10):  # ua-parser 1.x needs 3.10; on 3.9 sessions go without a label
    from ua_parser import parse as parse_user_agent
else:
    parse_user_agent = None

log = logging.getLogger("examples.app")

DEFAULT_STORE = "sessions.sqlite3"

#: Limits for what the demo accepts, so that a scripted client cannot grow one session without bound.
MAX_KEY = 64
MAX_VALUE = 1000
MAX_KEYS = 50

#: "Remember me": how long a remembered session may stay idle.
REMEMBER_ME = 30 * 24 * 3600

PAGE = string.Template(Path(__file__).with_name("index.html").read_text(encoding="utf-8"))

#: The page's own headers: nothing is cached, nothing but this origin is loaded or posted to.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# -- configuration ---------------------------------------------------------------------------


def store_from_setting(value: str) -> Store:
    """The store for ``SESSION_STORE``: a store URL, or a bare path meaning an SQLite file."""
    if "://" in value:
        return store_from_url(value)
    return SQLiteStore(value)


def cookie_secure_from_setting(value: Optional[str]) -> bool:
    """``SESSION_COOKIE_SECURE``: ``1`` or ``0`` (unset means ``0``); anything else is a ValueError."""
    if value is None or value.strip() == "":
        return False
    if value.strip() in ("0", "1"):
        return value.strip() == "1"
    raise ValueError(f"SESSION_COOKIE_SECURE must be 0 or 1, not {value!r}")


def middleware_from_env(environ: Mapping[str, str]) -> SessionMiddleware:
    """The session middleware configured from ``SESSION_SECRET``, ``SESSION_STORE`` and
    ``SESSION_COOKIE_SECURE`` in ``environ``."""
    secret = environ.get("SESSION_SECRET", "")
    if not secret:
        secret = secrets.token_urlsafe(32)
        log.warning(
            "\n%s\nSESSION_SECRET is not set: using a random key made at start-up.\n"
            "Sessions will NOT survive a restart, and worker processes that each import this\n"
            "module get different keys. Set SESSION_SECRET (`python -m hug_cookie_sessions secret`).\n%s",
            "!" * 88,
            "!" * 88,
        )
    store = store_from_setting(environ.get("SESSION_STORE") or DEFAULT_STORE)
    secure = cookie_secure_from_setting(environ.get("SESSION_COOKIE_SECURE"))
    return SessionMiddleware(secret, store, cookie_secure=secure)


api = hug.API(__name__)
middleware = middleware_from_env(os.environ)
# First, so that a refused request costs no session work.
api.http.add_middleware(CrossOriginProtection())
api.http.add_middleware(middleware)


# -- the article's endpoints: the client carries a signed session_id --------------------------


@hug.get("/create_session")
def create_session() -> dict:
    """Start an empty session; its ID comes back signed, to be passed as ``session_id``."""
    return {"session_id": middleware.save(middleware.open(None))}


@hug.post("/store_data")
def store_data(session_id: hug.types.text, key: hug.types.text, value: hug.types.text) -> dict:
    """Store ``value`` under ``key`` in the session named by ``session_id``."""
    session = middleware.open(session_id)
    if session.is_new:
        return {"error": "Invalid session ID"}
    session[key] = value
    if middleware.save(session) is None:
        return {"error": "Invalid session ID"}
    return {"success": True}


@hug.get("/get_data")
def get_data(session_id: hug.types.text, key: hug.types.text) -> dict:
    """The value stored under ``key`` in the session named by ``session_id``."""
    session = middleware.open(session_id)
    if session.is_new:
        return {"error": "Invalid session ID"}
    if key not in session:
        return {"error": "Invalid key"}
    value = session[key]
    middleware.save(session)  # slides the idle timeout forward when a refresh is due
    return {"value": value}


# -- cookie endpoints: the browser carries the session --------------------------------------


@hug.get("/api/data")
def read_data(key: hug.types.text, session: hug.directives.session) -> dict:
    """The value stored under ``key`` in this browser's session."""
    if key not in session:
        return {"error": "Invalid key"}
    return {"value": session[key]}


@hug.post("/api/data")
def write_data(
    key: hug.types.text,
    session: hug.directives.session,
    response,
    value: hug.types.text = "",
    return_to: hug.types.text = "",
) -> dict:
    """Store ``value`` under ``key`` in this browser's session (which starts one)."""
    key = key.strip()
    if not 0 < len(key) <= MAX_KEY or len(value) > MAX_VALUE:
        return _bad_request(response, f"key must be 1-{MAX_KEY} characters, value at most {MAX_VALUE}")
    if key not in session and len(session) >= MAX_KEYS:
        return _bad_request(response, f"a session holds at most {MAX_KEYS} keys")
    session[key] = value
    return _done(response, return_to, {"success": True})


@hug.post("/api/visits")
def visits(session: hug.directives.session) -> dict:
    """Count this browser's calls; the first one starts a session."""
    session["visits"] = _visits(session) + 1
    return {"visits": session["visits"]}


@hug.get("/api/session")
def describe_session(session: hug.directives.session) -> dict:
    """This browser's session as the server holds it, or ``{"session": null}``."""
    if session.is_new:
        return {"session": None}
    return {
        "session": {"user": session.user_id, "expires_at": session.record.expires_at, "data": dict(session)}
    }


@hug.post("/login")
def login(
    username: hug.types.text,
    session: hug.directives.session,
    request,
    response,
    remember: hug.types.smart_boolean = False,
    return_to: hug.types.text = "",
) -> dict:
    """Log in as ``username`` (a demo: no password). The session gets a new ID and a label
    from the User-Agent for the sessions list; ``remember`` keeps it for 30 idle days with a
    persistent cookie."""
    username = username.strip()
    if not 0 < len(username) <= MAX_KEY:
        return _bad_request(response, f"username must be 1-{MAX_KEY} characters")
    session.regenerate()
    session.bind_user(username, label=device_label(request.user_agent or ""))
    if remember:
        session.set_expiry(REMEMBER_ME)
    session["user"] = username
    return _done(response, return_to, {"user": username})


@hug.get("/api/sessions")
def active_sessions(session: hug.directives.session, response) -> dict:
    """The logged-in user's active sessions (handles, never IDs), "this device" marked."""
    if session.user_id is None:
        return _bad_request(response, "log in first")
    return {"sessions": _devices(session)}


@hug.post("/sessions/revoke")
def revoke_session(
    handle: hug.types.text, session: hug.directives.session, response, return_to: hug.types.text = ""
) -> dict:
    """End one of the logged-in user's other sessions."""
    if session.user_id is None or middleware.signer.handle_user(handle) != session.user_id:
        return _bad_request(response, "not one of your sessions")
    return _done(response, return_to, {"revoked": middleware.revoke(handle)})


@hug.post("/logout_everywhere")
def logout_everywhere(session: hug.directives.session, response, return_to: hug.types.text = "") -> dict:
    """End every session of the logged-in user, this one included."""
    if session.user_id is None:
        return _bad_request(response, "log in first")
    ended = middleware.revoke_user(session.user_id)
    session.invalidate()
    return _done(response, return_to, {"ended": ended})


@hug.post("/logout")
def logout(session: hug.directives.session, response, return_to: hug.types.text = "") -> dict:
    """End this browser's session: deleted on the server, cookie expired."""
    session.invalidate()
    return _done(response, return_to, {"success": True})


# -- the page ------------------------------------------------------------------------------------


@hug.get("/", output=hug.output_format.html)
def page(session: hug.directives.session, response) -> str:
    """The HTML page. Visits are counted once a session exists, so visitors who store
    nothing cost the store nothing."""
    if not session.is_new:
        session["visits"] = _visits(session) + 1
    response.set_headers(PAGE_HEADERS)
    logout = ""
    if not session.is_new:
        logout = (
            '<form method="post" action="/logout"><input type="hidden" name="return_to" value="/">'
            '<button type="submit" class="secondary">Log out and end the session</button></form>'
        )
    return PAGE.substitute(
        session=_describe(session),
        logout=logout,
        devices=_devices_panel(session),
        max_key=MAX_KEY,
        max_value=MAX_VALUE,
    )


def _describe(session: Session) -> str:
    """The session panel: visits, user, expiry and every stored key, all escaped."""
    if session.is_new:
        return (
            '<p id="no-session">No session yet. Nothing is stored for a visitor until there is '
            "something to keep: save a value or log in to start one.</p>"
        )
    expires_at = session.record.expires_at
    when = datetime.fromtimestamp(expires_at, timezone.utc)
    user = html.escape(session.user_id) if session.user_id else '<span class="muted">not logged in</span>'
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{html.escape(_shown(value))}</td></tr>"
        for key, value in sorted(session.items())
    )
    return (
        "<dl>"
        f'<dt>Visits</dt><dd id="visits">{_visits(session)}</dd>'
        f'<dt>Logged in as</dt><dd id="user">{user}</dd>'
        f'<dt>Expires</dt><dd id="expires"><time datetime="{when.isoformat()}">'
        f"{when:%Y-%m-%d %H:%M:%S} UTC</time> ({_from_now(expires_at)})</dd>"
        "</dl>"
        f'<table id="data"><tr><th>key</th><th>value</th></tr>{rows}</table>'
    )


def _devices(session: Session) -> list[dict]:
    current = middleware.session_handle(session)
    return [
        {
            "handle": info.handle,
            "current": info.handle == current,
            "label": info.label,
            "created_at": info.created_at,
            "last_active": info.last_active,
            "expires_at": info.expires_at,
        }
        for info in middleware.user_sessions(session.user_id)
    ]


def _devices_panel(session: Session) -> str:
    """The logged-in user's sessions with a button to end each other one, and "log out everywhere"."""
    if session.user_id is None or session.is_new:
        return '<p class="muted">Log in to see your active sessions.</p>'
    rows = []
    for device in _devices(session):
        if device["current"]:
            action = '<span class="nowrap muted">this browser</span>'
        else:
            action = (
                '<form method="post" action="/sessions/revoke">'
                '<input type="hidden" name="return_to" value="/">'
                f'<input type="hidden" name="handle" value="{html.escape(device["handle"])}">'
                '<button type="submit" class="secondary">End</button></form>'
            )
        rows.append(
            f"<tr><td>{html.escape(device['label'] or 'unknown device')}</td>"
            f"<td>{_when(device['created_at'])}</td><td>{_when(device['last_active'])}</td>"
            f"<td>{_when(device['expires_at'])}</td><td>{action}</td></tr>"
        )
    return (
        '<table id="devices"><tr><th>device</th><th>started</th><th>last active</th><th>expires</th>'
        "<th></th></tr>"
        f"{''.join(rows)}</table>"
        '<form method="post" action="/logout_everywhere"><input type="hidden" name="return_to" value="/">'
        '<button type="submit" class="secondary">Log out everywhere</button></form>'
    )


def device_label(user_agent: str) -> Optional[str]:
    """What the sessions list calls a browser, such as "Firefox on Linux", read from its
    User-Agent by ua-parser; None when it tells nothing. Only printable characters are kept
    (what ``bind_user`` takes), the header cut to 512 characters before parsing."""
    if parse_user_agent is None or not user_agent:
        return None
    found = parse_user_agent(user_agent[:512])
    names = [part.family for part in (found.user_agent, found.os) if part and part.family != "Other"]
    label = "".join(char for char in " on ".join(names) if char.isprintable())
    return label[:100] or None


def _when(timestamp: float) -> str:
    return f"{datetime.fromtimestamp(timestamp, timezone.utc):%Y-%m-%d %H:%M} UTC"


# -- helpers ---------------------------------------------------------------------------------------


def _visits(session: Session) -> int:
    """The stored visit count; anything else stored under "visits" counts as zero."""
    count = session.get("visits")
    return count if type(count) is int else 0


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _from_now(timestamp: float) -> str:
    seconds = max(timestamp - time.time(), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"in {count} {unit}{'s' if count != 1 else ''}"
    return "in under a minute"


def _done(response: falcon.Response, return_to: str, body: dict) -> dict:
    """``body`` as JSON, or a 303 back to the page for the page's own forms.

    Only ``return_to=/`` redirects, so the parameter cannot be used to send
    people elsewhere. A redirect raised as an exception would mark the request
    failed and the session unsaved, hence the status set by hand.
    """
    if return_to == "/":
        response.status = falcon.HTTP_303
        response.set_header("Location", "/")
    return body


def _bad_request(response: falcon.Response, message: str) -> dict:
    response.status = falcon.HTTP_400
    return {"error": message}
