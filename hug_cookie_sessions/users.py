"""One user's sessions: listing them ("where am I signed in?"), ending them, capping how many.

A store that keeps a per-user index (:class:`~.stores.base.UserIndex`) makes
this possible. Sessions are named by handles (see
:meth:`~.signing.SessionSigner.handle`), never by their IDs: a listing shown
in a page must not hand out working cookies. A store lists sessions by their
store keys (:mod:`.store_keys`), and a handle is made from that key.
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, cast

from .errors import store_failed
from .policy import Save, SavePolicy
from .session import Session
from .signing import SessionSigner
from .store_keys import store_key
from .stores.base import Record, SessionStoreError, UserIndex, provides

log = logging.getLogger("hug_cookie_sessions")


@dataclass(frozen=True)
class SessionInfo:
    """One of a user's sessions as listed by :meth:`SessionMiddleware.user_sessions`.

    ``last_active`` is exact to within the idle-refresh step (see ``refresh_fraction``).
    ``label`` is what ``bind_user(user_id, label)`` gave the session, such as
    "Firefox on Linux" (None: none).
    """

    handle: str
    created_at: float
    last_active: float
    expires_at: float
    label: Optional[str] = None


class UserSessions:
    """Lists, revokes and caps the sessions of one user, blocking or awaiting.

    A store failure is a :class:`~.errors.SessionUnavailable` (503); a store
    without a user index is a TypeError, raised on use. ``max_per_user`` (None:
    no cap) is checked here: a ValueError naming ``max_sessions_per_user`` unless
    it is a whole number >= 1, or when the store has no user index to enforce it with.
    """

    def __init__(
        self,
        store: Any,
        async_store: Any,
        signer: SessionSigner,
        policy: SavePolicy,
        clock: Callable[[], float],
        max_per_user: Optional[int] = None,
    ) -> None:
        self.store = store
        self.async_store = async_store
        self.signer = signer
        self.policy = policy
        self.clock = clock
        self._indexed = provides(store, UserIndex)
        if max_per_user is not None:
            if isinstance(max_per_user, bool) or not isinstance(max_per_user, int) or max_per_user < 1:
                raise ValueError(f"max_sessions_per_user must be an int >= 1 or None, not {max_per_user!r}")
            if not self._indexed:
                raise ValueError(
                    f"max_sessions_per_user needs a store with a user index; {type(store).__name__} has none"
                )
        self.max_per_user = max_per_user

    def list(self, user_id: str) -> builtins.list[SessionInfo]:
        """``user_id``'s live sessions, newest first."""
        self._check_index()
        try:
            records = self.store.user_sessions(user_id)
        except SessionStoreError as error:
            raise store_failed(error, "user_sessions") from error
        return self._infos(user_id, records)

    async def list_async(self, user_id: str) -> builtins.list[SessionInfo]:
        """:meth:`list` for asyncio apps."""
        self._check_index()
        try:
            records = await self.async_store.user_sessions(user_id)
        except SessionStoreError as error:
            raise store_failed(error, "user_sessions") from error
        return self._infos(user_id, records)

    def revoke_user(self, user_id: str) -> int:
        """End every session of ``user_id``; how many there were."""
        self._check_index()
        try:
            return cast(int, self.store.delete_user_sessions(user_id))
        except SessionStoreError as error:
            raise store_failed(error, "delete_user_sessions") from error

    async def revoke_user_async(self, user_id: str) -> int:
        """:meth:`revoke_user` for asyncio apps."""
        self._check_index()
        try:
            return cast(int, await self.async_store.delete_user_sessions(user_id))
        except SessionStoreError as error:
            raise store_failed(error, "delete_user_sessions") from error

    def revoke(self, handle: str, user_id: Optional[str] = None) -> bool:
        """End the one session named by ``handle``; False if there is none, or when
        ``user_id`` is given and the session is not one of that user's.

        Any string (or other value) that is not a live session's handle gives
        False, never an error: handles come back from forms. A handle shown
        before a key rotation works while its key is in the list. A store
        failure is a 503.
        """
        self._check_index()
        try:
            key = self.signer.handle_store_key(handle)
            if key is not None:  # one read to learn whose session it is, then the delete
                found = self._may_own(handle, user_id) and self._owned(handle, self.store.load(key), user_id)
            else:  # a handle of the earlier form names its user: look among that user's sessions
                owner = self._claimed_owner(handle, user_id)
                sids = _listed(self.store.user_sessions, owner) if owner else []
                key = self.signer.handle_session(handle, sids)
                found = key is not None
            if found:
                self.store.delete(key)
        except SessionStoreError as error:
            raise store_failed(error, "revoke") from error
        return found

    async def revoke_async(self, handle: str, user_id: Optional[str] = None) -> bool:
        """:meth:`revoke` for asyncio apps."""
        self._check_index()
        try:
            key = self.signer.handle_store_key(handle)
            if key is not None:
                found = self._may_own(handle, user_id) and self._owned(
                    handle, await self.async_store.load(key), user_id
                )
            else:
                owner = self._claimed_owner(handle, user_id)
                sids = await _listed_async(self.async_store.user_sessions, owner) if owner else []
                key = self.signer.handle_session(handle, sids)
                found = key is not None
            if found:
                await self.async_store.delete(key)
        except SessionStoreError as error:
            raise store_failed(error, "revoke") from error
        return found

    def _may_own(self, handle: str, user_id: Optional[str]) -> bool:
        """False when ``handle`` was not issued for ``user_id`` (when given): a forged or
        another user's handle costs no store read."""
        return user_id is None or self.signer.handle_belongs_to(handle, user_id)

    def _owned(self, handle: str, record: Optional[Record], user_id: Optional[str]) -> bool:
        """Whether ``record``, loaded by the key in ``handle`` once :meth:`_may_own` passed, is a
        live session bound to the user the handle was issued for: ``user_id`` when given (whose
        MAC :meth:`_may_own` checked), else the record's own user (checked here)."""
        owner = record.user_id if record is not None and record.expires_at > self.clock() else None
        if owner is None:
            return False
        return owner == user_id if user_id is not None else self.signer.handle_belongs_to(handle, owner)

    def _claimed_owner(self, handle: str, user_id: Optional[str]) -> Optional[str]:
        """The user a handle of the earlier form names, if it is ``user_id`` (when given)."""
        owner = self.signer.handle_user(handle)
        return owner if user_id is None or owner == user_id else None

    def cap(self, save: Save, written: bool) -> None:
        """Once ``save`` is made (``written``: its write landed), end the least recently active
        sessions of the user it binds (``bind_user``) beyond ``max_per_user``, never the one
        it saved. Any other save, or no cap, costs nothing.

        Ended as :meth:`revoke` ends one (deleted, so a request still in flight for it
        cannot write it back). Concurrent logins of one user may each end a session the
        other would have kept, never leave more than the cap once both are done.

        Best effort: the login is saved by then, so a store failure here is logged, not a
        503 that would leave the browser without the cookie of its new session; the
        user's next login ends what this one could not.
        """
        if self.max_per_user is None or save.binds is None or not written:
            return
        try:
            for key in self._over_cap(self.store.user_sessions(save.binds), save.sid):
                self.store.delete(key)
        except SessionStoreError as error:
            _cap_failed(error)

    async def cap_async(self, save: Save, written: bool) -> None:
        """:meth:`cap` for asyncio apps."""
        if self.max_per_user is None or save.binds is None or not written:
            return
        try:
            for key in self._over_cap(await self.async_store.user_sessions(save.binds), save.sid):
                await self.async_store.delete(key)
        except SessionStoreError as error:
            _cap_failed(error)

    def _over_cap(self, records: dict[str, Record], kept: Optional[str]) -> builtins.list[str]:
        """The store keys among ``records`` (a listing, by store key) to end so that, with session
        ``kept``, at most ``max_per_user`` stay live: the least recently active first (ties: the
        oldest)."""
        kept_key = None if kept is None else store_key(kept)
        assert self.max_per_user is not None
        now = self.clock()
        others = sorted(
            (self._last_active(record, now), record.created_at, key)
            for key, record in records.items()
            if key != kept_key and record.expires_at > now
        )
        excess = len(others) + 1 - self.max_per_user
        return [key for _, _, key in others[: max(excess, 0)]]

    def _last_active(self, record: Record, now: float) -> float:
        """When ``record``'s session was last used, as its expiry tells (to the refresh step)."""
        return max(record.created_at, min(now, record.expires_at - self.policy.idle(record.idle_timeout)))

    def handle(self, session: Session) -> Optional[str]:
        """The handle of a stored, user-bound ``session``; None for any other."""
        if session.id is None or session.user_id is None:
            return None
        return self.signer.handle(session.user_id, session.id.stored_under)

    def _check_index(self) -> None:
        if not self._indexed:
            raise TypeError(f"{type(self.store).__name__} cannot list or revoke a user's sessions")

    def _infos(self, user_id: str, records: dict[str, Record]) -> builtins.list[SessionInfo]:
        now = self.clock()
        sessions = [
            SessionInfo(
                self.signer.handle(user_id, sid),
                record.created_at,
                self._last_active(record, now),
                record.expires_at,
                record.label,
            )
            for sid, record in records.items()
            if record.expires_at > now
        ]
        return sorted(sessions, key=lambda info: info.created_at, reverse=True)


def _listed(user_sessions: Callable[[str], dict[str, Record]], user_id: str) -> list[str]:
    """The IDs of ``user_id``'s sessions; none when the store cannot even encode the user ID
    (a lone surrogate, for a store that cannot keep one): no session can be bound to it."""
    try:
        return list(user_sessions(user_id))
    except UnicodeError:
        return []


async def _listed_async(user_sessions: Callable[[str], Any], user_id: str) -> list[str]:
    """:func:`_listed` with an async store."""
    try:
        return list(await user_sessions(user_id))
    except UnicodeError:
        return []


def _cap_failed(error: SessionStoreError) -> None:
    log.error(
        "max_sessions_per_user: the login is saved, but its user's oldest sessions were not ended: %s", error
    )
