"""The seed article's session example, rebuilt on hug-cookie-sessions.

Run it with ``make run`` (gunicorn, ``examples.app:__hug_wsgi__``) or
``hug -f examples/app.py``. Configuration comes from the environment:

- ``SESSION_SECRET``: the signing key. Unset: a random one is made at start-up
  and sessions do not survive a restart (a warning says so).
- ``SESSION_STORE``: a store URL (``sqlite:///…``, ``redis://…``) or a bare path
  meaning an SQLite file; default ``sessions.sqlite3``.
- ``SESSION_COOKIE_SECURE``: ``1`` marks the cookie Secure (HTTPS only) and names it
  ``__Host-session``, a name browsers accept only from this exact host over HTTPS, so
  no sibling subdomain or plain-http page can toss a session cookie in beside it;
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

Every parameter of every endpoint is checked before anything is stored: one
text value (not a list, number or object), within its length, keys and names
without control characters, and a session that stays within its size. A
refusal is a 400 with ``{"error": "..."}`` naming the parameter. The
article's own ``{"error": "Invalid session ID"}`` and ``{"error": "Invalid
key"}`` keep its status 200.
"""

import html
import json
import logging
import os
import secrets
import string
import sys
import time
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional

import falcon
import falcon.uri
import hug

from hug_cookie_sessions import (
    CrossOriginProtection,
    Session,
    SessionInfo,
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

#: The command that makes a secret, as it runs from the checkout once ``make`` has made .venv.
SECRET_COMMAND = ".venv/bin/hug-sessions secret"

#: What the demo accepts; beyond it a request is refused, so that no client can grow a session
#: (or make the server parse a request) without bound.
MAX_KEY = 64  # characters of a key, and of a username
MAX_VALUE = 1000  # characters of a value
MAX_KEYS = 50  # keys in one session
MAX_TOKEN = 200  # characters of a session_id (a signed one has 87)
MAX_HANDLE = 500  # characters of a session handle: 64, or up to 362 in the earlier form (see the docs)
MAX_BODY = 32 * 1024  # bytes of a request body; the largest form, percent-encoded, is about 13 KiB

#: The middleware's ``max_session_bytes``, and the part of it kept for the app's own keys ("user",
#: "visits"), so that a login or a page view never meets the limit that a write stopped short of.
MAX_SESSION_BYTES = 65536
RESERVED_BYTES = 1024

#: "Remember me": how long a remembered session may stay idle.
REMEMBER_ME = 30 * 24 * 3600

#: What the page confirms after one of its own forms, by the ``done`` code the form's redirect carries.
#: Only these fixed texts are shown: nothing from the URL reaches the page.
NOTICES = {
    "stored": "Saved.",
    "ended": "Ended: that session is logged out.",
    "gone": "That session had already ended.",
    "everywhere": "Logged out everywhere: every one of your sessions has ended.",
    "logged-out": "Logged out: this browser's session has ended.",
}

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
            "module get different keys. Set one: export SESSION_SECRET=$(%s)\n%s",
            "!" * 88,
            SECRET_COMMAND,
            "!" * 88,
        )
    store = store_from_setting(environ.get("SESSION_STORE") or DEFAULT_STORE)
    secure = cookie_secure_from_setting(environ.get("SESSION_COOKIE_SECURE"))
    return SessionMiddleware(
        secret,
        store,
        cookie_name="__Host-session" if secure else "session",
        cookie_secure=secure,
        max_session_bytes=MAX_SESSION_BYTES,
    )


class BodyLimit:
    """Refuses a request body of more than ``limit`` bytes (413) before anything reads it.

    The parameters have limits of their own, but hug reads and parses the whole body before
    they are checked.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if (req.content_length or 0) > self.limit:
            resp.status = falcon.HTTP_413
            resp.media = {"error": f"a request body holds at most {self.limit} bytes"}
            resp.complete = True


# future=True: query strings are parsed as Falcon parses them, so a value holding a comma stays
# one value (hug's legacy mode splits it into a list, which no text parameter takes).
api = hug.API(__name__, future=True)
middleware = middleware_from_env(os.environ)
# Before the session middleware, so that a refused request costs no session work.
api.http.add_middleware(CrossOriginProtection())
api.http.add_middleware(BodyLimit(MAX_BODY))
api.http.add_middleware(middleware)


# -- what every endpoint accepts ---------------------------------------------------------------


class Text:
    """A hug type: one text value of at most ``max_length`` characters, else a 400 naming ``name``.

    A list (a repeated parameter), or a number or an object from a JSON body, is refused; so are
    control characters and lone surrogates, which no store keeps and no page shows. A ``line``
    (a key, a name) is stripped and may not be empty; other text keeps tabs and line breaks.
    """

    def __init__(self, name: str, max_length: int, *, line: bool = False) -> None:
        self.name = name
        self.max_length = max_length
        self.line = line

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{self.name} must be one text value, not {_kind(value)}")
        text = value.strip() if self.line else value
        if self.line and not text:
            raise ValueError(f"{self.name} must not be blank")
        if len(text) > self.max_length:
            raise ValueError(f"{self.name} must be at most {self.max_length} characters, not {len(text)}")
        allowed = "" if self.line else "\t\n\r"
        for char in text:
            kind = unicodedata.category(char)
            if kind in ("Cc", "Cs") and char not in allowed:
                what = "a control character" if kind == "Cc" else "a lone surrogate"
                raise ValueError(f"{self.name} must not hold U+{ord(char):04X}, {what}")
        return text


class Choice:
    """A hug type: one of ``choices`` (mapped to its value), else a 400 saying ``expected``."""

    def __init__(self, name: str, choices: Mapping[Any, Any], expected: str) -> None:
        self.name = name
        self.choices = choices
        self.expected = expected

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, (str, bool)) or value not in self.choices:
            raise ValueError(f"{self.name} must be {self.expected}")
        return self.choices[value]


def _kind(value: Any) -> str:
    """What a parameter that is not text is, in the words of the query string and of JSON."""
    kinds = {list: "a list", dict: "an object", bool: "true or false", int: "a number", float: "a number"}
    return kinds.get(type(value), "null")


def _one_error(body: dict) -> dict:
    """hug's ``{"errors": {parameter: message}}`` as this app's ``{"error": "..."}``; every
    message names its parameter (hug's own "Required parameter 'key' not supplied" too)."""
    return {"error": "; ".join(str(message) for message in body["errors"].values())}


class UnreadableBody(Exception):
    """A request body that is not text in its charset, or not JSON: a 400."""


@hug.exception(UnreadableBody)
def unreadable_body(exception: UnreadableBody, response) -> dict:
    return _bad_request(response, str(exception))


def _read(body: Any, charset: Optional[str]) -> str:
    try:
        return body.read().decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError) as error:
        raise UnreadableBody(f"the request body is not {charset or 'utf-8'} text") from error


@hug.default_input_format("application/x-www-form-urlencoded")
def form_body(body: Any, charset: Optional[str] = None, **_: Any) -> dict:
    """A form as hug reads it, except that a value holding a comma stays one value."""
    return falcon.uri.parse_query_string(_read(body, charset), csv=False)


@hug.default_input_format("application/json")
def json_body(body: Any, charset: Optional[str] = None, **_: Any) -> Any:
    """A JSON body; one that does not parse is a 400 (hug's own parser makes it a 500)."""
    text = _read(body, charset)
    try:
        return json.loads(text)
    except ValueError as error:
        raise UnreadableBody("the request body is not JSON") from error


@hug.default_input_format("multipart/form-data")
def multipart_body(body: Any, **_: Any) -> dict:
    """Refused: the page's forms are URL-encoded; hug's multipart parser fails with a 500 on a
    body without a boundary."""
    raise UnreadableBody("send the parameters URL-encoded, as JSON or in the query string, not as multipart")


Key = Text("key", MAX_KEY, line=True)
Value = Text("value", MAX_VALUE)
Username = Text("username", MAX_KEY, line=True)
Token = Text("session_id", MAX_TOKEN, line=True)
Handle = Text("handle", MAX_HANDLE, line=True)
ReturnTo = Choice("return_to", {"/": "/"}, "/ (back to the page) or left out")
Remember = Choice(
    "remember",
    {True: True, False: False, "true": True, "false": False, "1": True, "0": False},
    "true or false",
)

#: Every endpoint's router: a refused parameter is a 400 ``{"error": "..."}``.
route = hug.http(on_invalid=_one_error)


# -- the article's endpoints: the client carries a signed session_id --------------------------


@route.get("/create_session")
def create_session() -> dict:
    """Start an empty session; its ID comes back signed, to be passed as ``session_id``."""
    return {"session_id": middleware.save(middleware.open(None))}


@route.post("/store_data")
def store_data(session_id: Token, key: Key, value: Value, response) -> dict:
    """Store ``value`` under ``key`` in the session named by ``session_id``."""
    session = middleware.open(session_id)
    if session.is_new:
        return {"error": "Invalid session ID"}
    refusal = _refusal(session, key, value)
    if refusal:
        return _bad_request(response, refusal)
    session[key] = value
    if middleware.save(session) is None:
        return {"error": "Invalid session ID"}
    return {"success": True}


@route.get("/get_data")
def get_data(session_id: Token, key: Key) -> dict:
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


@route.get("/api/data")
def read_data(key: Key, session: hug.directives.session) -> dict:
    """The value stored under ``key`` in this browser's session."""
    if key not in session:
        return {"error": "Invalid key"}
    return {"value": session[key]}


@route.post("/api/data")
def write_data(
    key: Key, session: hug.directives.session, response, value: Value = "", return_to: ReturnTo = ""
) -> dict:
    """Store ``value`` under ``key`` in this browser's session (which starts one)."""
    refusal = _refusal(session, key, value)
    if refusal:
        return _bad_request(response, refusal)
    session[key] = value
    return _done(response, return_to, {"success": True}, "stored")


@route.post("/api/visits")
def visits(session: hug.directives.session) -> dict:
    """Count this browser's calls; the first one starts a session."""
    session["visits"] = _visits(session) + 1
    return {"visits": session["visits"]}


@route.get("/api/session")
def describe_session(session: hug.directives.session) -> dict:
    """This browser's session as the server holds it, or ``{"session": null}``; times are
    ISO 8601 in UTC."""
    if session.is_new:
        return {"session": None}
    return {
        "session": {
            "user": session.user_id,
            "expires_at": _iso(session.record.expires_at),
            "data": dict(session),
        }
    }


@route.post("/login")
def login(
    username: Username,
    session: hug.directives.session,
    request,
    response,
    remember: Remember = False,
    return_to: ReturnTo = "",
) -> dict:
    """Log in as ``username`` (a demo: no password). The session gets a new ID and a label
    from the User-Agent for the sessions list; ``remember`` keeps it for 30 idle days with a
    persistent cookie."""
    session.regenerate()
    session.bind_user(username, label=device_label(request.user_agent or ""))
    if remember:
        session.set_expiry(REMEMBER_ME)
    session["user"] = username
    return _done(response, return_to, {"user": username})


@route.get("/api/sessions")
def active_sessions(session: hug.directives.session, response) -> dict:
    """The logged-in user's active sessions (handles, never IDs), "this browser" marked
    ``current``; times are ISO 8601 in UTC."""
    if session.user_id is None:
        return _bad_request(response, "log in first")
    return {"sessions": [_listed(info, current) for info, current in _user_sessions(session)]}


@route.post("/sessions/revoke")
def revoke_session(
    handle: Handle, session: hug.directives.session, response, return_to: ReturnTo = ""
) -> dict:
    """End one of the logged-in user's other sessions."""
    if session.user_id is None or not middleware.signer.handle_belongs_to(handle, session.user_id):
        return _bad_request(response, "not one of your sessions")
    revoked = middleware.revoke(handle, session.user_id)
    return _done(response, return_to, {"revoked": revoked}, "ended" if revoked else "gone")


@route.post("/logout_everywhere")
def logout_everywhere(session: hug.directives.session, response, return_to: ReturnTo = "") -> dict:
    """End every session of the logged-in user, this one included."""
    if session.user_id is None:
        return _bad_request(response, "log in first")
    ended = middleware.revoke_user(session.user_id)
    session.invalidate()
    return _done(response, return_to, {"ended": ended}, "everywhere")


@route.post("/logout")
def logout(session: hug.directives.session, response, return_to: ReturnTo = "") -> dict:
    """End this browser's session: deleted on the server, cookie expired."""
    session.invalidate()
    return _done(response, return_to, {"success": True}, "logged-out")


# -- the page ------------------------------------------------------------------------------------


@route.get("/", output=hug.output_format.html)
def page(session: hug.directives.session, response, done="") -> str:
    """The HTML page. Visits are counted once a session exists, so visitors who store
    nothing cost the store nothing. ``done`` names a confirmation to show (see ``NOTICES``);
    any other value shows none."""
    if not session.is_new:
        session["visits"] = _visits(session) + 1
    response.set_headers(PAGE_HEADERS)
    logout = ""
    if not session.is_new:
        logout = (
            '<form method="post" action="/logout"><input type="hidden" name="return_to" value="/">'
            '<button type="submit" class="secondary">Log out and end the session</button></form>'
        )
    notice = NOTICES.get(done, "") if isinstance(done, str) else ""
    return PAGE.substitute(
        notice=f'<p id="notice" role="status">{html.escape(notice)}</p>' if notice else "",
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
    user = html.escape(session.user_id) if session.user_id else '<span class="muted">not logged in</span>'
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{html.escape(_shown(value))}</td></tr>"
        for key, value in sorted(session.items())
    )
    return (
        "<dl>"
        f'<dt>Visits</dt><dd id="visits">{_visits(session)}</dd>'
        f'<dt>Logged in as</dt><dd id="user">{user}</dd>'
        f'<dt>Expires</dt><dd id="expires"><time datetime="{_iso(expires_at)}">'
        f"{_when(expires_at, seconds=True)}</time> ({_from_now(expires_at)})</dd>"
        "</dl>"
        '<table id="data" class="cards"><thead><tr><th>key</th><th>value</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _user_sessions(session: Session) -> list[tuple[SessionInfo, bool]]:
    """The logged-in user's sessions, each with whether it is this browser's."""
    current = middleware.session_handle(session)
    return [(info, info.handle == current) for info in middleware.user_sessions(session.user_id)]


def _listed(info: SessionInfo, current: bool) -> dict:
    """One session as ``/api/sessions`` lists it."""
    return {
        "handle": info.handle,
        "current": current,
        "label": info.label,
        "created_at": _iso(info.created_at),
        "last_active": _iso(info.last_active),
        "expires_at": _iso(info.expires_at),
    }


def _session_cells(info: SessionInfo, current: bool) -> dict[str, str]:
    """One row of the sessions table: column header -> cell HTML (escaped).

    The header row, and the labels of the phone layout (which stacks each row's cells), are
    made from these keys, so a column is one entry here.
    """
    if current:
        action = ""
    else:
        action = (
            '<form method="post" action="/sessions/revoke">'
            '<input type="hidden" name="return_to" value="/">'
            f'<input type="hidden" name="handle" value="{html.escape(info.handle)}">'
            '<button type="submit" class="secondary">End</button></form>'
        )
    return {
        "device": html.escape(info.label or "unknown device")
        + ("<br><strong>this browser</strong>" if current else '<br><span class="muted">elsewhere</span>'),
        "started": _when_cell(info.created_at),
        "last active": _when_cell(info.last_active),
        "expires": _when_cell(info.expires_at),
        "": action,
    }


def _devices_panel(session: Session) -> str:
    """The logged-in user's sessions, "this browser" marked, with a button to end each other
    one, and "log out everywhere"."""
    if session.user_id is None or session.is_new:
        return '<p class="muted">Log in to see your active sessions.</p>'
    header, rows = "", []
    for info, current in _user_sessions(session):
        cells = _session_cells(info, current)
        header = "".join(f"<th>{html.escape(name)}</th>" for name in cells)
        tds = "".join(f'<td data-label="{html.escape(name)}">{cell}</td>' for name, cell in cells.items())
        rows.append(f'<tr class="current" aria-current="true">{tds}</tr>' if current else f"<tr>{tds}</tr>")
    return (
        f'<table id="devices" class="cards"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
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


# -- helpers ---------------------------------------------------------------------------------------


def _refusal(session: Session, key: str, value: str) -> Optional[str]:
    """Why ``session[key] = value`` may not be stored (None: it may).

    The size is counted as ``max_session_bytes`` counts it: UTF-8 keys and JSON values
    (ASCII-escaped as the package stores them; were it to store UTF-8, this would over-count).
    """
    if key not in session and len(session) >= MAX_KEYS:
        return f"a session holds at most {MAX_KEYS} keys"
    data = {**session, key: value}
    size = sum(
        len(name.encode()) + len(json.dumps(item, separators=(",", ":"))) for name, item in data.items()
    )
    if size > MAX_SESSION_BYTES - RESERVED_BYTES:
        return (
            f"the session would hold {size} bytes of keys and values, "
            f"over this app's limit of {MAX_SESSION_BYTES - RESERVED_BYTES}"
        )
    return None


def _visits(session: Session) -> int:
    """The stored visit count; anything else stored under "visits" counts as zero."""
    count = session.get("visits")
    return count if type(count) is int else 0


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _iso(timestamp: float) -> str:
    """Unix seconds as ISO 8601 in UTC, to the second: ``2026-12-07T03:25:28Z``."""
    return f"{datetime.fromtimestamp(timestamp, timezone.utc):%Y-%m-%dT%H:%M:%SZ}"


def _when(timestamp: float, seconds: bool = False) -> str:
    """Unix seconds as people read them on the page: ``2026-12-07 03:25 UTC``."""
    shown = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return f"{datetime.fromtimestamp(timestamp, timezone.utc):{shown}} UTC"


def _when_cell(timestamp: float) -> str:
    """:func:`_when` for a table cell: date, time and zone each kept whole."""
    date, time_of_day, zone = _when(timestamp).split(" ")
    return " ".join(f'<span class="when">{part}</span>' for part in (date, time_of_day, zone))


def _from_now(timestamp: float) -> str:
    seconds = max(timestamp - time.time(), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"in {count} {unit}{'s' if count != 1 else ''}"
    return "in under a minute"


def _done(response: falcon.Response, return_to: str, body: dict, notice: str = "") -> dict:
    """``body`` as JSON, or a 303 back to the page for the page's own forms, which then
    shows ``notice`` (a key of ``NOTICES``).

    Only ``return_to=/`` redirects, so the parameter cannot be used to send
    people elsewhere. A redirect raised as an exception would mark the request
    failed and the session unsaved, hence the status set by hand.
    """
    if return_to == "/":
        response.status = falcon.HTTP_303
        response.set_header("Location", f"/?done={notice}" if notice else "/")
    return body


def _bad_request(response: falcon.Response, message: str) -> dict:
    response.status = falcon.HTTP_400
    return {"error": message}
