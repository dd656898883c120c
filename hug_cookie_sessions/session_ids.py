"""Session IDs as the middleware handles them: each with the store key it is kept under.

:mod:`.store_keys` says why stores see only :func:`store_key` of an ID and how sessions
stored under their raw ID by earlier releases are found and moved.
"""

from __future__ import annotations

import hashlib

from .signing import new_session_id


def store_key(sid: str) -> str:
    """The key stores keep session ``sid`` under: the SHA-256 of the ID, in hex.

    Unkeyed on purpose: the ID is 256 random bits, so the hash cannot be
    searched back, and a key that depends on no secret survives key rotation.
    """
    return hashlib.sha256(sid.encode("ascii")).hexdigest()


class SessionId(str):
    """A session ID that carries its store key (:attr:`key`), worked out once.

    It is the ID, as a ``str`` (``session.id`` is one); the key rides along, so
    the verified-cookie cache remembers it with the ID and a returning visitor's
    request computes no hash. ``legacy`` is True for a session found under its
    raw ID, as a release before hashed keys stored it, and not moved yet.
    """

    key: str
    legacy: bool

    def __new__(cls, sid: str, legacy: bool = False) -> SessionId:
        self = super().__new__(cls, sid)
        self.key = store_key(sid)
        self.legacy = legacy
        return self

    @classmethod
    def new(cls) -> SessionId:
        """A fresh session ID (:func:`~.signing.new_session_id`), hashed once at creation."""
        return cls(new_session_id())

    @property
    def stored_under(self) -> str:
        """Where the store holds the session now: its key, or for a legacy one its raw ID."""
        return str(self) if self.legacy else self.key

    def settled(self) -> SessionId:
        """This ID once its session has been written, which moves a legacy one to its key."""
        return SessionId(self) if self.legacy else self
