"""The session cookie's ``Set-Cookie`` header, byte for byte the same on every Falcon.

Falcon 2.0 (hug's pin) has no SameSite in ``set_cookie`` and Falcon 4 changed
``unset_cookie``'s arguments, so the header is written here and added with
``resp.append_header("Set-Cookie", ...)``, which every Falcon emits as a
header line of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate
from http.cookies import _unquote
from typing import Optional

_SAME_SITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


@dataclass(frozen=True)
class CookieSettings:
    """Name and attributes of the session cookie, checked once at start-up.

    Raises ValueError for settings a browser would reject or that would
    weaken the cookie: SameSite=None without Secure, and a ``__Host-`` name
    with a Domain, without Secure, or with a Path other than ``/``.
    """

    name: str = "session"
    path: str = "/"
    domain: Optional[str] = None
    secure: bool = True
    http_only: bool = True
    same_site: Optional[str] = "Lax"

    def __post_init__(self) -> None:
        if not self.name or not self.name.isascii() or any(c in self.name for c in '=;, \t"'):
            raise ValueError(f"invalid cookie name {self.name!r}")
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
