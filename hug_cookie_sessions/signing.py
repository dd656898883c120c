"""Signing session IDs for the cookie, with key rotation. Nothing about HTTP.

The cookie carries ``<session id>.<signature>``, exactly what
``itsdangerous.Signer(keys, salt=SALT, key_derivation="hmac",
digest_method=hashlib.sha256).sign(sid)`` produces. A signature is checked
before the store is asked about an ID, so forged or guessed IDs cost no store
I/O and never reach it.

itsdangerous derives the HMAC key from the secret on every ``sign`` and
``unsign`` call; that costs more than the rest of a session lookup. The keys are
derived once here instead and the same itsdangerous algorithm object computes
and compares the signatures (in constant time). Verified cookies are remembered
per ``Cookie`` header by :class:`~.cookies.CookieVerifier`, not here.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Optional, Sequence, Union

from itsdangerous import Signer
from itsdangerous.encoding import base64_decode, base64_encode
from itsdangerous.exc import BadData

SecretKey = Union[str, bytes]

#: Separates this package's signatures from any other use of the same secret:
#: a token signed for another purpose (another salt) does not verify here.
SALT = "hug_cookie_sessions.session-id"

#: Handles name a session in listings without revealing its ID.
HANDLE_SALT = "hug_cookie_sessions.session-handle"

#: Anything longer cannot be a cookie this package issued; reject it unread.
MAX_TOKEN_LENGTH = 256


#: What :func:`new_session_id` returns: 32 bytes in unpadded URL-safe base64.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def new_session_id() -> str:
    """A fresh session ID: 256 random bits from :mod:`secrets`, URL-safe."""
    return secrets.token_urlsafe(32)


class SessionSigner:
    """Signs session IDs with the newest key and verifies them with any key.

    ``secret_keys`` is one key or a list ordered oldest first (itsdangerous'
    order): the last one signs, all of them verify, so a key can be rotated in
    without logging anybody out, and rotated out later.
    """

    def __init__(self, secret_keys: Union[SecretKey, Sequence[SecretKey]], salt: str = SALT) -> None:
        if isinstance(secret_keys, (str, bytes)):
            secret_keys = [secret_keys]
        if not isinstance(secret_keys, (list, tuple)) or not secret_keys:
            secret_keys = [None]
        if not all(isinstance(key, (str, bytes)) and key for key in secret_keys):
            raise ValueError("secret_key must be a non-empty str or bytes, or a non-empty list of them")
        signer = Signer(
            list(secret_keys), salt=salt, sep=".", key_derivation="hmac", digest_method=hashlib.sha256
        )
        self._algorithm = signer.algorithm
        # Newest first, so the common case verifies on the first try.
        self._keys = [signer.derive_key(key) for key in reversed(signer.secret_keys)]
        handles = Signer(
            signer.secret_keys, salt=HANDLE_SALT, key_derivation="hmac", digest_method=hashlib.sha256
        )
        self._handle_key = handles.derive_key()

    def sign(self, sid: str) -> str:
        """The cookie value for ``sid``, signed with the newest key."""
        value = sid.encode("ascii")
        signature = base64_encode(self._algorithm.get_signature(self._keys[0], value))
        return f"{sid}.{signature.decode('ascii')}"

    def unsign(self, token: str) -> Optional[tuple[str, bool]]:
        """``(session id, signed with the newest key)``, or None if ``token`` does not verify."""
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            return None
        sid, sep, signature = token.rpartition(".")
        if not sep or not _SESSION_ID.fullmatch(sid):
            return None  # not an ID this package makes, whoever signed it
        try:
            raw_signature = base64_decode(signature)
        except BadData:
            return None
        if base64_encode(raw_signature).decode("ascii") != signature:
            return None  # a non-canonical spelling of a valid signature is still a changed cookie
        value = sid.encode("ascii")
        for index, key in enumerate(self._keys):
            if self._algorithm.verify_signature(key, value, raw_signature):
                return sid, index == 0
        return None

    def handle(self, user_id: str, sid: str) -> str:
        """An opaque name for one of ``user_id``'s sessions, safe to show in a page.

        It is ``<user id, base64>.<MAC of the session ID>``: it tells whose session
        it is, but the session ID cannot be recovered from it, so a listing of a
        user's sessions never hands out a working cookie.
        """
        mac = self._algorithm.get_signature(self._handle_key, sid.encode("ascii"))[:16]
        user = base64_encode(user_id.encode("utf-8")).decode("ascii")
        return f"{user}.{base64_encode(mac).decode('ascii')}"

    @staticmethod
    def handle_user(handle: str) -> Optional[str]:
        """The user ID a handle names, or None if it is malformed."""
        user, sep, _ = handle.partition(".")
        if not sep or len(handle) > MAX_TOKEN_LENGTH:
            return None
        try:
            return base64_decode(user).decode("utf-8")
        except (BadData, UnicodeDecodeError):
            return None
