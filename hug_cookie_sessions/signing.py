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
import hmac
import re
import secrets
from typing import Iterable, Optional, Sequence, Union, cast

from itsdangerous import Signer
from itsdangerous.encoding import base64_decode, base64_encode
from itsdangerous.exc import BadData

SecretKey = Union[str, bytes]

#: Separates this package's signatures from any other use of the same secret:
#: a token signed for another purpose (another salt) does not verify here.
SALT = "hug_cookie_sessions.session-id"

#: Handles name a session in listings without revealing its ID.
HANDLE_SALT = "hug_cookie_sessions.session-handle"

#: A handle's MAC: 16 bytes (128 bits), 22 characters of unpadded base64.
HANDLE_MAC_BYTES = 16
_HANDLE_MAC_CHARS = 22

#: Every handle of a session stored under its key: a 32-byte store key and a 16-byte MAC
#: in unpadded base64 (see :meth:`SessionSigner.handle`).
HANDLE_LENGTH = 64

#: A store key (:func:`~.store_keys.store_key`): SHA-256 in hex.
_STORE_KEY = re.compile(r"[0-9a-f]{64}")

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
            secret_keys = [""]  # refused just below, with the message for every unusable key
        if not all(isinstance(key, (str, bytes)) and key for key in secret_keys):
            raise ValueError("secret_key must be a non-empty str or bytes, or a non-empty list of them")
        signer = Signer(
            list(secret_keys), salt=salt, sep=".", key_derivation="hmac", digest_method=hashlib.sha256
        )
        self._algorithm = signer.algorithm
        #: The length in bytes of the shortest secret given (its keys are derived from them).
        self.shortest_key = min(len(key.encode() if isinstance(key, str) else key) for key in secret_keys)
        # Newest first, so the common case verifies on the first try.
        self._keys = [signer.derive_key(key) for key in reversed(signer.secret_keys)]
        handles = Signer(
            signer.secret_keys, salt=HANDLE_SALT, key_derivation="hmac", digest_method=hashlib.sha256
        )
        self._handle_keys = [handles.derive_key(key) for key in reversed(handles.secret_keys)]

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

        ``sid`` is what the store lists the session by: the middleware passes its
        store key (:mod:`.store_keys`, 64 hex digits). The handle is that key's 32
        bytes and a 16-byte MAC binding them to ``user_id`` (HMAC-SHA256 with a key
        derived from the newest secret), in unpadded URL-safe base64: always
        :data:`HANDLE_LENGTH` characters, whatever the user ID's length or script.
        The key is a one-way hash of the session ID, so a listing never hands out
        the ID or a working cookie; the MAC makes handles unforgeable, and lets
        :meth:`handle_belongs_to` check an owner without store I/O.

        A session that an earlier release stored under its raw ID, and that has
        not been written since, has no key to carry yet: its handle keeps the
        earlier form, ``<user ID in base64>.<MAC of the raw ID>`` (which grows with
        the user ID), until its next write moves it to its key.
        """
        if _STORE_KEY.fullmatch(sid):
            key = bytes.fromhex(sid)
            return base64_encode(key + self._owner_mac(self._handle_keys[0], key, user_id)).decode("ascii")
        user = base64_encode(user_id.encode("utf-8", "surrogatepass")).decode("ascii")
        return f"{user}.{base64_encode(self._handle_mac(self._handle_keys[0], sid)).decode('ascii')}"

    @staticmethod
    def handle_store_key(handle: object) -> Optional[str]:
        """The store key a well-formed handle of :data:`HANDLE_LENGTH` characters carries, not yet
        verified (see :meth:`handle_belongs_to`); None for anything else, never an error."""
        if not isinstance(handle, str) or len(handle) != HANDLE_LENGTH or not handle.isascii():
            return None
        raw = _canonical_base64(handle)
        return raw[:32].hex() if raw is not None and len(raw) == 48 else None

    def handle_belongs_to(self, handle: object, user_id: object) -> bool:
        """Whether ``handle`` was issued for a session of ``user_id``: no store I/O.

        Check this before revoking a handle on a user's behalf (or pass ``user_id`` to
        ``revoke``). The MAC is checked with every key, newest first, in constant
        time, so a handle shown before a key rotation passes while its key is listed.
        A handle of the earlier form only names its user (unsigned): True when that
        is ``user_id``, and ``revoke`` checks its MAC against that user's sessions.
        Any value gives an answer, never an error.
        """
        if not isinstance(user_id, str):
            return False
        if self.handle_store_key(handle) is None:
            return self.handle_user(handle) == user_id  # the earlier form names its user
        raw = _canonical_base64(cast(str, handle))
        assert raw is not None
        stored, mac = raw[:32], raw[32:]
        return any(
            hmac.compare_digest(self._owner_mac(secret, stored, user_id), mac) for secret in self._handle_keys
        )

    @staticmethod
    def handle_user(handle: object) -> Optional[str]:
        """The user ID a handle of the earlier form names (see :meth:`handle`), or None for
        anything else, a fixed-length handle included: those do not carry their user
        (:meth:`handle_belongs_to` checks one). Any value gives an answer, never an error."""
        parsed = _parse_handle(handle)
        return parsed[0] if parsed is not None else None

    def handle_session(self, handle: str, sids: Iterable[str]) -> Optional[str]:
        """The one of ``sids`` that ``handle``, of the earlier form, names, or None.

        The MAC is checked with every key, newest first, so a handle shown before
        a key rotation keeps working while its key is in the list; the MACs are
        compared in constant time. ``sids`` should be the sessions of
        :meth:`handle_user`'s user: that is what binds the handle to its user.
        """
        parsed = _parse_handle(handle)
        if parsed is None:
            return None
        mac = parsed[1]
        for key in self._handle_keys:
            for sid in sids:
                if hmac.compare_digest(self._handle_mac(key, sid), mac):
                    return sid
        return None

    def _handle_mac(self, key: bytes, sid: str) -> bytes:
        return self._algorithm.get_signature(key, sid.encode("ascii", "replace"))[:HANDLE_MAC_BYTES]

    def _owner_mac(self, key: bytes, store_key: bytes, user_id: str) -> bytes:
        """The MAC of a fixed-length handle: the store key (fixed length, so the message
        is unambiguous) followed by the user ID in UTF-8 (lone surrogates kept)."""
        message = store_key + user_id.encode("utf-8", "surrogatepass")
        return self._algorithm.get_signature(key, message)[:HANDLE_MAC_BYTES]


def _parse_handle(handle: object) -> Optional[tuple[str, bytes]]:
    """``(user ID, MAC)`` of a well-formed handle, in canonical spelling; None for anything else."""
    if not isinstance(handle, str) or not handle.isascii():
        return None
    user, sep, mac = handle.partition(".")
    if not sep or not user or len(mac) != _HANDLE_MAC_CHARS:
        return None
    raw_user, raw_mac = _canonical_base64(user), _canonical_base64(mac)
    if raw_user is None or raw_mac is None:
        return None
    try:
        return raw_user.decode("utf-8", "surrogatepass"), raw_mac
    except UnicodeDecodeError:
        return None


def _canonical_base64(text: str) -> Optional[bytes]:
    """The bytes ``text`` spells in unpadded URL-safe base64, if that is the only way to spell
    them (the decoder skips foreign characters, which would let many strings name one handle)."""
    try:
        raw = base64_decode(text)
    except BadData:
        return None
    return raw if base64_encode(raw).decode("ascii") == text else None
