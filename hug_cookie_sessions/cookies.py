"""The session cookie's ``Set-Cookie`` header, byte for byte the same on every Falcon.

Falcon 2.0 (hug's pin) has no SameSite in ``set_cookie`` and Falcon 4 changed
``unset_cookie``'s arguments, so the header is written here and added with
``resp.append_header("Set-Cookie", ...)``, which every Falcon emits as a
header line of its own. The other response headers a session sets (``Vary``,
``Cache-Control``) go through Falcon's public header methods too; which responses keep a
session's changes is decided here from the response (:func:`response_keeps_changes`).
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.cookies import _unquote
from typing import Any, Optional, Sequence

from .signing import SessionSigner
from .store_keys import SessionId
from .stores.base import Record

log = logging.getLogger("hug_cookie_sessions")

#: Every session cookie of a header is checked, up to this many; a header with more is treated
#: as carrying none (a flood of cookies costs a bounded check and opens nothing).
MAX_COOKIES_CHECKED = 32

#: How many ``Cookie`` headers, of up to ``MAX_REMEMBERED_HEADER`` characters, have their
#: session cookies' IDs remembered (the header and its IDs: at most about 35 MB).
REMEMBERED_HEADERS = 4096
MAX_REMEMBERED_HEADER = 4096

#: Session cookies that verified: ``(session id, signed with the newest key)`` each, in order.
#: Each ID carries its store key, so a remembered header costs no hash either.
Verified = tuple[tuple[SessionId, bool], ...]

_SAME_SITE = {"strict": "Strict", "lax": "Lax", "none": "None"}

#: RFC 6265 ``cookie-name`` is an RFC 2616 ``token``: visible ASCII except the separators.
TOKEN_CHARACTERS = frozenset(map(chr, range(0x21, 0x7F))) - frozenset('()<>@,;:\\"/[]?={} \t')


def check_cookie_name(name: object) -> None:
    """Raise ValueError naming ``cookie_name`` unless ``name`` is an RFC 6265 token.

    The name is written raw into every ``Set-Cookie``: a ``;``, ``=``, space, CR/LF
    or non-ASCII character would end the cookie early, forge an attribute or split
    the header, and browsers drop cookies whose name is not a token.
    """
    if not isinstance(name, str) or not name or not TOKEN_CHARACTERS.issuperset(name):
        raise ValueError(
            f'cookie_name must be an RFC 6265 token (visible ASCII without ()<>@,;:\\"/[]?={{}}): {name!r}'
        )


def check_attribute(option: str, value: object) -> None:
    """Raise ValueError naming ``option`` unless ``value`` is printable ASCII without ``;`` or
    whitespace: a ``;`` would add an attribute of the sender's choosing (``/x; Domain=evil``),
    and controls (CR/LF) could split the header."""
    if not (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and ";" not in value
        and " " not in value
    ):
        raise ValueError(
            f"{option} must be printable ASCII without ';', whitespace or control characters: {value!r}"
        )


def check_scope(path: object, domain: object) -> None:
    """Raise ValueError naming ``cookie_path`` or ``cookie_domain`` for a value that
    :func:`check_attribute` refuses, or a Path not starting with ``/`` (which browsers
    ignore, silently scoping the cookie elsewhere). ``domain`` None means host-only."""
    check_attribute("cookie_path", path)
    if not str(path).startswith("/"):
        raise ValueError(f"cookie_path must start with '/' (browsers ignore any other): {path!r}")
    if domain is not None:
        check_attribute("cookie_domain", domain)


@dataclass(frozen=True)
class CookieSettings:
    """Name and attributes of the session cookie, checked once at start-up.

    Raises ValueError for settings a browser would reject or that would
    weaken the cookie: a name that is not an RFC 6265 token; a Path or Domain
    with ``;``, whitespace, control or non-ASCII characters (each message names
    the option: ``cookie_name``, ``cookie_path``, ``cookie_domain``); a Path
    not starting with ``/`` (browsers ignore it); SameSite=None without Secure;
    and a ``__Host-`` name with a Domain, without Secure, or with a Path other
    than ``/``.
    """

    name: str = "session"
    path: str = "/"
    domain: Optional[str] = None
    secure: bool = True
    http_only: bool = True
    same_site: Optional[str] = "Lax"
    #: The attributes after the value, the same in every header: worked out once, here.
    _attributes: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_cookie_name(self.name)
        check_scope(self.path, self.domain)
        if self.same_site is not None and self.same_site.lower() not in _SAME_SITE:
            raise ValueError("cookie_same_site must be 'Lax', 'Strict', 'None' or None")
        if self.same_site is not None and self.same_site.lower() == "none" and not self.secure:
            raise ValueError(
                "cookie_same_site='None' requires cookie_secure=True (browsers drop it otherwise)"
            )
        if self.name.startswith("__Host-") and (self.domain or not self.secure or self.path != "/"):
            raise ValueError(
                "a __Host- cookie needs cookie_secure=True, cookie_path='/' and no cookie_domain"
            )
        if self.name.startswith("__Secure-") and not self.secure:
            raise ValueError("a __Secure- cookie needs cookie_secure=True")
        attributes = ""
        if self.domain:
            attributes += f"; Domain={self.domain}"
        attributes += f"; Path={self.path}"
        if self.secure:
            attributes += "; Secure"
        if self.http_only:
            attributes += "; HttpOnly"
        if self.same_site is not None:
            attributes += f"; SameSite={_SAME_SITE[self.same_site.lower()]}"
        object.__setattr__(self, "_attributes", attributes)

    def header(self, value: str, max_age: Optional[int], now: float) -> str:
        """``Set-Cookie`` value storing ``value``; ``max_age`` None makes a browser-session cookie."""
        if max_age is None:
            return f"{self.name}={value}{self._attributes}"
        expires = formatdate(now + max_age, usegmt=True)
        return f"{self.name}={value}; Expires={expires}; Max-Age={max_age}{self._attributes}"

    def expired_header(self) -> str:
        """``Set-Cookie`` value that removes the cookie: same name, Path, Domain, Secure, SameSite."""
        return f"{self.name}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0{self._attributes}"


def cookie_values(header: str, name: str) -> list[str]:
    """Every value of the cookie ``name`` in a ``Cookie`` request header, in order.

    Parsed as Falcon's ``req.get_cookie_values`` does (lenient whitespace,
    quoted values unquoted), so the middleware can keep the header instead of
    the request object.
    """
    values = []
    for pair in header.split(";"):
        key, _, value = pair.partition("=")
        if key.strip() == name:
            value = value.strip()
            if len(value) > 2 and value[0] == '"' and value[-1] == '"':
                value = _unquote(value)
            values.append(value)
    return values


def cookie_header(req: Any) -> Optional[str]:
    """Every ``cookie`` field of an ASGI request, joined into one ``Cookie`` header; None without.

    HTTP/2 and HTTP/3 clients may send their cookies as several ``cookie``
    fields (RFC 9113 section 8.2.3), and an ASGI server may pass them on as they
    came, or an HTTP/1.1 client may send two ``Cookie`` lines. Falcon's ASGI
    ``req.get_header("Cookie")`` then gives only the last field (Falcon 3 and 4
    treat ``Cookie`` as a header that cannot repeat), so a session cookie in
    another field would be missed. Several fields are joined with ``"; "``, as
    RFC 9113 says a server must before handing them to a generic application,
    and decoded as Falcon decodes headers (Latin-1).

    One field or none is read through Falcon's ``get_header``, as before. So is
    a request without a scope, or whose header pairs cannot be read again: ASGI only promises
    iterables, and Falcon's own test client passes one-shot iterators, which
    Falcon has consumed by now.
    """
    try:
        fields = [value for name, value in req.scope["headers"] if name == b"cookie"]
    except (AttributeError, KeyError, TypeError, ValueError):  # no scope, or no longer readable
        fields = []
    if len(fields) < 2:
        header: Optional[str] = req.get_header("Cookie")
        return header
    return _joined(fields)


def cookie_source(req: Any) -> Any:
    """What an ASGI request's session keeps to read the ``Cookie`` header only when it loads
    (:func:`cookie_header_of`): the request's scope when its header pairs can be read again (a
    list or tuple, as ASGI servers pass them), else :func:`cookie_header` read now (Falcon's test
    client passes one-shot iterators, which Falcon has consumed by now).

    PERF(deferred-cookie-header): a request that never loads its session skips reading the
    header: 1.8 µs less per request in ``falcon.asgi.App`` (95% CI 1.4 to 2.7; 40 rounds, side
    by side with reading it up front, CPU time).
    """
    scope = getattr(req, "scope", None)
    if isinstance(scope, dict) and isinstance(scope.get("headers"), (list, tuple)):
        return scope
    return cookie_header(req)


def cookie_header_of(source: Any) -> Optional[str]:
    """:func:`cookie_header` of the request that :func:`cookie_source` gave ``source`` for."""
    if not isinstance(source, dict):
        header: Optional[str] = source
        return header
    return _joined([value for name, value in source["headers"] if name == b"cookie"])


def _joined(fields: list[bytes]) -> Optional[str]:
    """``cookie`` fields as one header, decoded as Falcon decodes headers; None for none."""
    if len(fields) < 2:
        return fields[0].decode("latin-1") if fields else None
    return "; ".join([field.decode("latin-1") for field in fields])


def vary_on_cookie(resp: Any) -> None:
    """Add ``Cookie`` to the response's ``Vary`` header unless it is there: a response that
    used the session differs from one visitor to the next, and caches must know."""
    vary = resp.get_header("Vary")
    if vary is None:
        resp.set_header("Vary", "Cookie")
    elif "cookie" not in vary.lower():
        resp.set_header("Vary", f"{vary}, Cookie")


def set_cookie(resp: Any, header: str) -> None:
    """Add a ``Set-Cookie`` header, and ``Cache-Control: no-store`` unless the response has its
    own: a shared cache must never hand one visitor's cookie to another."""
    resp.append_header("Set-Cookie", header)
    if resp.get_header("Cache-Control") is None:
        resp.set_header("Cache-Control", "no-store")


class CookieVerifier:
    """The session IDs that the session cookies of a ``Cookie`` header are validly signed for.

    Every session cookie is checked, up to :data:`MAX_COOKIES_CHECKED` (a header
    with more carries none); one that fails is logged with its first characters
    only, every time it is sent.

    PERF(verified-headers): a returning visitor sends the same header on every
    request, so the answer is remembered per header when every session cookie in
    it verified: an exact copy of a remembered header is one dict lookup, 0.5 µs
    (one cookie) to 0.8 µs (three) quicker than parsing it again, and the
    signatures are not computed again. Only an exact copy of a header whose
    cookies all verified matches, so an altered or forged cookie is verified,
    and rejected, every time. At most :data:`REMEMBERED_HEADERS` headers of at
    most :data:`MAX_REMEMBERED_HEADER` characters are kept, oldest dropped first,
    whatever clients send.
    """

    def __init__(self, signer: SessionSigner, cookie_name: str) -> None:
        self.signer = signer
        self.cookie_name = cookie_name
        self._remembered: dict[str, Verified] = {}
        self._lock = threading.Lock()

    def __call__(self, header: Optional[str]) -> Verified:
        """The verified session cookies of ``header`` (None: no Cookie header), in order."""
        if not header:
            return ()
        verified = self._remembered.get(header)
        if verified is not None:
            return verified
        tokens = cookie_values(header, self.cookie_name)
        if len(tokens) > MAX_COOKIES_CHECKED:
            log.warning(
                "Ignored a Cookie header with %d session cookies (at most %d)",
                len(tokens),
                MAX_COOKIES_CHECKED,
            )
            return ()
        verified = self.tokens(tokens)
        if len(verified) == len(tokens) and len(header) <= MAX_REMEMBERED_HEADER:
            self._remember(header, verified)
        return verified

    def tokens(self, tokens: Sequence[str]) -> Verified:
        """``(session id, signed with the newest key)`` for each of ``tokens`` that verifies, in
        order, each session once (the same cookie sent twice names one session)."""
        verified: dict[str, bool] = {}
        for token in tokens:
            found = self.signer.unsign(token)
            if found is None:
                log.warning("Ignored a session cookie with a bad signature (starts %r)", token[:6])
            else:
                verified[found[0]] = verified.get(found[0], False) or found[1]
        return tuple((SessionId(sid), current) for sid, current in verified.items())

    def remembers(self, header: str) -> bool:
        """Whether ``header``'s answer is remembered."""
        return header in self._remembered

    def __len__(self) -> int:
        """How many headers are remembered."""
        return len(self._remembered)

    def _remember(self, header: str, verified: Verified) -> None:
        # Lookups take no lock: a dict lookup is atomic, and an entry never changes once added.
        with self._lock:
            if header not in self._remembered and len(self._remembered) >= REMEMBERED_HEADERS:
                del self._remembered[next(iter(self._remembered))]
            self._remembered[header] = verified


#: The status codes below 500, as a status line starts: "000" to "499".
_BELOW_500 = frozenset(f"{code:03d}" for code in range(500))


def response_keeps_changes(req_succeeded: bool, status: Any) -> bool:
    """Whether a request's session changes are saved: Django's rule. Not when the response is a
    5xx; otherwise when the handler succeeded, or raised an HTTP status or error that Falcon
    turned into this response (a redirect, a 4xx: "log in, then redirect" keeps the login).

    Falcon reports ``req_succeeded=False`` for any raise, rendered or not. What it did not
    render is still in flight while the response hooks run (Falcon 2 re-raises it after them;
    Falcon 3 and 4 render every exception, anything unexpected as a 500), so it shows in
    :func:`sys.exc_info`.
    """
    # A status is "503 Service Unavailable", 503 or an HTTPStatus; an unreadable one counts as a 5xx.
    if status >= 500 if isinstance(status, int) else str(status)[:3] not in _BELOW_500:
        return False
    return req_succeeded or sys.exc_info()[1] is None


def the_live_one(verified: Verified, records: Sequence[Optional[Record]], now: float) -> Verified:
    """Of several validly signed session cookies (``records``: each one's stored record, or
    None), the one that names a live session at ``now``; none when two or more do.

    Two live sessions in one request mean a cookie was tossed in beside the visitor's own (by a
    sibling subdomain or a plain-http page of the domain), or the cookie's path or domain
    changed: opening either could let one person's writes land in another's session.
    """
    live = tuple(
        ids for ids, record in zip(verified, records) if record is not None and record.expires_at > now
    )
    if len(live) > 1:
        log.warning(
            "Opened no session: the request carried %d validly signed cookies of different live "
            "sessions (a cookie tossed in by another site of the domain, or a changed "
            "cookie_path or cookie_domain); use a __Host- cookie name to rule tossing out",
            len(live),
        )
        return ()
    return live


#: Hosts the plain-http warning named already (bounded: the Host header is the client's to choose).
_WARNED_HOSTS: set[str] = set()
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def warn_secure_over_http(host: str) -> None:
    """Warn, once per host per process, that a Secure cookie went out in answer to plain http:
    the browser drops it, so every request of that visitor starts a new session. Browsers make
    an exception for localhost, so only other hosts (a VM, a container, a LAN address) warn."""
    if host in _LOCAL_HOSTS or host in _WARNED_HOSTS or len(_WARNED_HOSTS) >= 100:
        return
    _WARNED_HOSTS.add(host)
    log.warning(
        "A Secure session cookie was sent over plain http to %r: browsers drop it, so sessions "
        "will not stick. Serve the app over HTTPS, or pass cookie_secure=False for local development",
        host,
    )
