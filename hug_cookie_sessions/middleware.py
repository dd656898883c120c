"""``SessionMiddleware``: the whole life of a session, top to bottom.

1. ``process_request`` puts an unloaded :class:`~.session.Session` into the request context.
2. The handler's first use of it verifies the cookie and loads the record (:meth:`_load`).
3. ``process_response`` asks the save policy (:mod:`.policy`) what to store, makes those
   store calls (:meth:`_save`), and sends ``Set-Cookie`` only when the cookie changes.
   Nothing is saved when the response is a 5xx or the handler raised.

A request that never touches the session costs one small object and nothing
else: no cookie parsing, no signature check, no store I/O, no header.

The same middleware serves ``falcon.asgi.App`` through the ``*_async`` hooks,
with an async twin of each method that does I/O. A mapping access cannot
await, so there the session is loaded after routing for the responders that may
read it synchronously (:mod:`.preload`); the others use its async accessors.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any, Callable, Optional, Sequence, Union

import falcon

from .async_access import preloaded
from .cookies import (
    MAX_COOKIES_CHECKED,
    MAX_REMEMBERED_HEADER,
    REMEMBERED_HEADERS,
    CookieSettings,
    CookieVerifier,
    Verified,
    cookie_header,
    cookie_header_of,
    cookie_source,
    cookie_values,
    response_keeps_changes,
    set_cookie,
    the_live_one,
    vary_on_cookie,
    warn_secure_over_http,
)
from .errors import (
    SessionBusy,
    SessionStoreError,
    SessionUnavailable,
    SessionValueError,
    not_saved,
    store_failed,
)
from .locking import RequestLock, SessionLocks
from .policy import MAX_LIFETIME, NOTHING, CookieChange, Save, SavePolicy
from .preload import failed, not_preloaded, wants_preload
from .session import Opened, Session
from .signing import SecretKey, SessionSigner
from .store_keys import SessionId, delete, delete_async, load, load_async, write, write_async
from .stores.aio import as_async_store, as_blocking_store
from .stores.base import Record, Store
from .stores.url import adapt_store
from .users import SessionInfo, UserSessions

__all__ = ["MAX_COOKIES_CHECKED", "MAX_LIFETIME", "MAX_REMEMBERED_HEADER", "REMEMBERED_HEADERS"]
__all__ += ["SessionBusy", "SessionInfo", "SessionMiddleware", "SessionUnavailable", "adapt_store"]

log = logging.getLogger("hug_cookie_sessions")

#: What loading gives when no cookie names a live session.
NOT_FOUND: Opened = (None, None, False)

#: What saving gives when the session ended meanwhile: nothing stored, the cookie expired.
ENDED = Save(cookie=CookieChange.EXPIRE)


class SessionMiddleware:
    """Server-side sessions behind a signed session-ID cookie, for hug and Falcon.

    Add one instance to the API; handlers get the session from ``hug.directives.session`` or
    ``req.context["session"]``. Timeouts are in seconds, ``None`` disables one. ``persistent=False`` makes
    the cookie last until the browser closes. ``lock=True`` serialises the requests of one session that
    load it (see :mod:`hug_cookie_sessions.locking`): a request waits up to ``lock_timeout`` seconds for
    the lock, then gets a 503; a lock not released lives ``lock_lease`` seconds. A login beyond
    ``max_sessions_per_user`` ends the user's least recently active sessions. ``clock``: for tests.
    """

    def __init__(
        self,
        secret_key: Union[SecretKey, Sequence[SecretKey]],
        store: Optional[Any] = None,
        *,
        cookie_name: str = "session",
        context_name: str = "session",
        idle_timeout: Optional[int] = 1209600,
        absolute_timeout: Optional[int] = None,
        persistent: bool = True,
        cookie_path: str = "/",
        cookie_domain: Optional[str] = None,
        cookie_secure: bool = True,
        cookie_http_only: bool = True,
        cookie_same_site: Optional[str] = "Lax",
        refresh_fraction: float = 0.1,
        clock: Callable[[], float] = time.time,
        lock: bool = False,
        lock_timeout: float = 10.0,
        lock_lease: float = 30.0,
        max_session_bytes: Optional[int] = 65536,
        max_sessions_per_user: Optional[int] = None,
    ) -> None:
        if store is None:
            log.warning(
                "SessionMiddleware has no store: sessions live in this process's memory "
                "(lost on restart, not shared between workers); pass SQLiteStore(...) or another store"
            )
        self.policy = SavePolicy(
            idle_timeout,
            absolute_timeout,
            refresh_fraction,
            persistent,
            new_sid=SessionId.new,
            max_session_bytes=max_session_bytes,
        )
        self.signer = SessionSigner(secret_key)
        if self.signer.shortest_key < 32:
            log.warning(
                "A session secret of %d bytes is short: use at least 32 random bytes "
                "(`hug-sessions secret` prints one)",
                self.signer.shortest_key,
            )
        self.store: Store = adapt_store(store)
        self.async_store = as_async_store(self.store)
        self.blocking_store = as_blocking_store(self.store)
        self.cookie = CookieSettings(
            cookie_name, cookie_path, cookie_domain, cookie_secure, cookie_http_only, cookie_same_site
        )
        self.verified_cookies = CookieVerifier(self.signer, cookie_name)
        self.context_name = context_name
        self.clock = clock
        self.locks = (
            SessionLocks(self.blocking_store, self.async_store, lock_timeout, lock_lease) if lock else None
        )
        self.users = UserSessions(
            self.blocking_store, self.async_store, self.signer, self.policy, clock, max_sessions_per_user
        )
        self._lock_key = f"{context_name}.lock"

    @property
    def idle_timeout(self) -> Optional[float]:
        """The default idle timeout, in seconds (None: none); fixed once the middleware is made."""
        return self.policy.idle_timeout

    @property
    def absolute_timeout(self) -> Optional[float]:
        """How long a session lives at most from its creation, in seconds (None: no limit)."""
        return self.policy.absolute_timeout

    @property
    def refresh_fraction(self) -> float:
        """The fraction of its idle timeout by which a session's expiry must move before a read
        writes it (fixed once the middleware is made)."""
        return self.policy.refresh_fraction

    @property
    def persistent(self) -> bool:
        """Whether the cookie outlives the browser (Max-Age); False: a browser-session cookie."""
        return self.policy.persistent

    # -- Falcon hooks (WSGI: hug, falcon.App) ---------------------------------------------

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Put an unloaded session into the request context; the handler's first use loads it."""
        loader = (
            self._load_cookie if self.locks is None else partial(self._load_cookie, lock=self._new_lock(req))
        )
        req.context[self.context_name] = Session(loader, req.env.get("HTTP_COOKIE"))

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        """Save what the handler changed, unless it raised or the response is a 5xx."""
        try:
            session = req.context.get(self.context_name)
            if isinstance(session, Session) and session.loaded and self._saves(session, resp, req_succeeded):
                save = self._save(session)
                if save.cookie is not CookieChange.KEEP:
                    self._send_cookie(req, resp, save)
        finally:
            lock = req.context.get(self._lock_key) if self.locks is not None else None
            if lock is not None:
                lock.finish()  # released, and none taken after this

    def _saves(self, session: Session, resp: Any, req_succeeded: bool) -> bool:
        """Whether the response hook saves ``session``, which the request used (so the response
        varies on Cookie, which this adds): not when it is clean and its expiry stays, nor when
        the response keeps no changes (:func:`response_keeps_changes`). The hooks ask only of a
        session the request loaded: one that nothing used costs nothing more."""
        vary_on_cookie(resp)
        # A clean session whose expiry stays saves nothing: most requests stop here.
        may_write = session.dirty or self.policy.expiry_due(session.record, self.clock())
        return may_write and response_keeps_changes(req_succeeded, resp.status)

    # -- Falcon hooks (ASGI: falcon.asgi.App) ------------------------------------------------

    async def process_request_async(self, req: Any, resp: Any) -> None:
        """Put an unloaded session into the request context: no store I/O before routing. Only
        :meth:`process_resource_async` or the session's async accessors load it."""
        load = self._load_cookie_async
        if self.locks is not None:
            load = partial(load, lock=self._new_lock(req))
        req.context[self.context_name] = Session(not_preloaded, cookie_source(req), load)

    async def process_resource_async(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        """Load the session of a routed request before its responder, which may then read it
        synchronously, unless the resource opted out (see :mod:`.preload`). A store failure is
        raised only if the responder uses the session: routes that never do keep working."""
        session = req.context.get(self.context_name) if wants_preload(resource, req.method) else None
        if isinstance(session, Session) and not session.loaded:
            lock = req.context.get(self._lock_key) if self.locks is not None else None
            try:
                session.prefetched(await self._load_async(self.verified_cookies(cookie_header(req)), lock))
            except SessionUnavailable as error:  # raised when the responder uses the session
                req.context[self.context_name] = Session(failed, error)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        """:meth:`process_response` for ASGI."""
        try:
            session = req.context.get(self.context_name)
            if isinstance(session, Session) and session.loaded and self._saves(session, resp, req_succeeded):
                save = await self._save_async(session)
                if save.cookie is not CookieChange.KEEP:
                    self._send_cookie(req, resp, save)
        finally:
            lock = req.context.get(self._lock_key) if self.locks is not None else None
            if lock is not None:
                await lock.finish_async()

    # -- sessions outside cookies --------------------------------------------------------

    def open(self, token: Optional[str]) -> Session:
        """A session for a signed ``token`` from somewhere other than the cookie.

        An invalid, unknown or expired token gives an empty new session.
        """
        return Session(self._load_token, token)

    def save(self, session: Session) -> Optional[str]:
        """Store ``session`` now, even if empty; its signed token, or None if it ended."""
        return self._token(session, self._save(session, keep_empty=True))

    async def open_async(self, token: Optional[str]) -> Session:
        """:meth:`open` for asyncio apps: the session is loaded before it is returned."""
        return Session(
            preloaded, await self._load_async(self.verified_cookies.tokens([token] if token else []))
        )

    async def save_async(self, session: Session) -> Optional[str]:
        """:meth:`save` for asyncio apps, for a session from :meth:`open_async` or the ASGI hooks."""
        return self._token(session, await self._save_async(session, keep_empty=True))

    def _token(self, session: Session, save: Save) -> Optional[str]:
        """The signed token that names ``session`` after ``save``; None once it has ended."""
        if save.cookie is CookieChange.EXPIRE or session.id is None:
            return None
        return self.signer.sign(session.id)

    # -- one user's sessions ------------------------------------------------------------------

    def user_sessions(self, user_id: str) -> list[SessionInfo]:
        """``user_id``'s live sessions, newest first, with handles for :meth:`revoke` (never IDs)."""
        return self.users.list(user_id)

    def revoke_user(self, user_id: str) -> int:
        """End every session of ``user_id`` ("log out everywhere"); returns how many."""
        return self.users.revoke_user(user_id)

    def revoke(self, handle: str, user_id: Optional[str] = None) -> bool:
        """End the one session named by ``handle`` (from :meth:`user_sessions`); False if none.

        On a user's behalf, pass their ``user_id``: a handle of anybody else's session
        then ends nothing (False).
        """
        return self.users.revoke(handle, user_id)

    async def user_sessions_async(self, user_id: str) -> list[SessionInfo]:
        """:meth:`user_sessions` for asyncio apps."""
        return await self.users.list_async(user_id)

    async def revoke_user_async(self, user_id: str) -> int:
        """:meth:`revoke_user` for asyncio apps."""
        return await self.users.revoke_user_async(user_id)

    async def revoke_async(self, handle: str, user_id: Optional[str] = None) -> bool:
        """:meth:`revoke` for asyncio apps."""
        return await self.users.revoke_async(handle, user_id)

    def session_handle(self, session: Session) -> Optional[str]:
        """The handle of a stored, user-bound ``session`` (to mark "this device" in a listing)."""
        return self.users.handle(session)

    # -- loading --------------------------------------------------------------------------

    def _load_cookie(self, header: Optional[str], lock: Optional[RequestLock] = None) -> Opened:
        """The loader of a WSGI request's session: ``header`` is its ``Cookie`` header."""
        return self._load(self.verified_cookies(header), lock)

    async def _load_cookie_async(self, source: Any, lock: Optional[RequestLock] = None) -> Opened:
        """The loader of an ASGI request's session: ``source`` is from :func:`~.cookies.cookie_source`."""
        return await self._load_async(self.verified_cookies(cookie_header_of(source)), lock)

    def _load_token(self, token: Optional[str]) -> Opened:
        """The loader of a session from :meth:`open`."""
        return self._load(self.verified_cookies.tokens([token] if token else []))

    def _load(self, verified: Verified, lock: Optional[RequestLock] = None) -> Opened:
        """The session that ``verified`` names, locked first with a ``lock``: the one live
        session among them (see :func:`~.cookies.the_live_one`). Stores see only store keys
        (:mod:`.store_keys`), the lock's included."""
        if len(verified) > 1:
            records = [self._load_record(sid)[1] for sid, _ in verified]
            verified = the_live_one(verified, records, self.clock())
        now = self.clock()
        for sid, current_key in verified:
            if lock is not None:
                lock.acquire(sid.key)
            found, record = self._load_record(sid)
            if record is not None and record.expires_at > now:
                return found, record, not current_key
            if lock is not None:
                lock.release()
        return NOT_FOUND

    async def _load_async(self, verified: Verified, lock: Optional[RequestLock] = None) -> Opened:
        """:meth:`_load`, awaiting the store."""
        if len(verified) > 1:
            records = [(await self._load_record_async(sid))[1] for sid, _ in verified]
            verified = the_live_one(verified, records, self.clock())
        now = self.clock()
        for sid, current_key in verified:
            if lock is not None:
                await lock.acquire_async(sid.key)
            found, record = await self._load_record_async(sid)
            if record is not None and record.expires_at > now:
                return found, record, not current_key
            if lock is not None:
                await lock.release_async()
        return NOT_FOUND

    def _load_record(self, sid: SessionId) -> tuple[SessionId, Optional[Record]]:
        try:
            return load(self.blocking_store, sid)
        except SessionStoreError as error:
            raise store_failed(error, "load") from error

    async def _load_record_async(self, sid: SessionId) -> tuple[SessionId, Optional[Record]]:
        try:
            return await load_async(self.async_store, sid)
        except SessionStoreError as error:
            raise store_failed(error, "load") from error

    def _new_lock(self, req: Any) -> RequestLock:
        """With ``lock=True``: the request's lock holder (nothing is locked yet)."""
        assert self.locks is not None
        lock = req.context[self._lock_key] = RequestLock(self.locks)
        return lock

    # -- saving ---------------------------------------------------------------------------

    def _save(self, session: Session, *, keep_empty: bool = False) -> Save:
        """Persist ``session`` as the save policy says; the save made (:data:`ENDED` if the
        session ended meanwhile)."""
        save = self._plan(session, keep_empty)
        if save is NOTHING:
            return save  # most requests: nothing to write
        try:
            for sid in save.deletes:
                delete(self.blocking_store, sid)
            written = save.write is None or write(self.blocking_store, save.write)
        except SessionStoreError as error:
            raise store_failed(error, _doing(save)) from error
        self.users.cap(save, written)
        return self._saved(session, save, written)

    async def _save_async(self, session: Session, *, keep_empty: bool = False) -> Save:
        """:meth:`_save`, awaiting the store."""
        save = self._plan(session, keep_empty)
        if save is NOTHING:
            return save
        try:
            for sid in save.deletes:
                await delete_async(self.async_store, sid)
            written = save.write is None or await write_async(self.async_store, save.write)
        except SessionStoreError as error:
            raise store_failed(error, _doing(save)) from error
        await self.users.cap_async(save, written)
        return self._saved(session, save, written)

    def _plan(self, session: Session, keep_empty: bool) -> Save:
        """What saving ``session`` does (:meth:`.SavePolicy.plan`). A value that is not JSON, or
        a session over ``max_session_bytes``, is a logged 500, and nothing is saved."""
        try:
            return self.policy.plan(session.changes(), session.id, session.record, self.clock(), keep_empty)
        except SessionValueError as error:
            raise not_saved(error) from error

    def _saved(self, session: Session, save: Save, written: bool) -> Save:
        """Once ``save``'s calls are made: the session's new clean state, or :data:`ENDED` when
        its write found the session gone (the changes are dropped, the cookie expires)."""
        if not written:
            log.info("Session ended by a concurrent request; its changes were dropped")
            return ENDED
        if save.record is not None and save.sid is not None:
            session.stored_as(save.sid.settled(), save.record)  # a legacy session has moved to its key
        return save

    def _send_cookie(self, req: Any, resp: Any, save: Save) -> None:
        """Add the ``Set-Cookie`` header that ``save`` calls for: the session's, or an expired one
        when the request carried a session cookie (there is nothing to expire otherwise)."""
        if save.cookie is CookieChange.ISSUE:
            assert save.sid is not None
            set_cookie(resp, self.cookie.header(self.signer.sign(save.sid), save.max_age, self.clock()))
            if self.cookie.secure and req.scheme == "http":
                warn_secure_over_http(req.host)
        elif cookie_values(cookie_header(req) or "", self.cookie.name):
            set_cookie(resp, self.cookie.expired_header())


def _doing(save: Save) -> str:
    """The store call a failed save was making, for the log."""
    return type(save.write).__name__.lower() if save.write is not None else "delete"
