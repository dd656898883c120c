"""``SessionMiddleware``: the whole life of a session, top to bottom.

1. ``process_request`` puts an unloaded :class:`Session` into the request context.
2. The handler's first use of it verifies the cookie and loads the record.
3. ``process_response`` saves what changed, unless the response is a 5xx or
   the handler raised, and sends ``Set-Cookie`` only when the cookie changes.

A request that never touches the session costs one small object and nothing
else: no cookie parsing, no signature check, no store I/O, no header.

The same middleware serves ``falcon.asgi.App`` through the ``*_async`` hooks.
A mapping access cannot await, so there the session is loaded in
``process_request_async``, and only when the request carries a session cookie.

Saving is decided before any I/O. The commonest write, new values for a stored
session whose expiry stays, is one ``apply`` call, made at once; the session
works out its new state only if something uses it after that. Any other save
goes through :meth:`_plan_save`, which turns the session's changes into a short
list of store calls (usually one, often none). :meth:`_save` makes the calls
with blocking calls and :meth:`_save_async` by awaiting.
Loading with a lock, locking and the per-user calls, whose next call depends on
the last one's result, are written once as steps (:mod:`hug_cookie_sessions.steps`):
generators that *yield* the store calls and pauses they need and receive the
results, carried out by :meth:`_run` or :meth:`_run_async`. So WSGI and ASGI
share every decision, and only the I/O differs. A blocking load without a lock,
which nearly every request that reads its session makes, is plain calls.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import falcon

from .cookies import CookieSettings, cookie_values
from .locking import LockTimeout, RequestLock, SessionLocks
from .memo import BoundedMemo
from .session import NO_CHANGES, Changes, Session, SessionValueError
from .signing import SecretKey, SessionSigner, new_session_id
from .steps import Pause, Steps, StoreCall, T, call
from .stores.aio import as_async_store, is_async_store
from .stores.base import Record, SessionStoreError, Store
from .stores.memory import MemoryStore

log = logging.getLogger("hug_cookie_sessions")

_Context = falcon.Context
_new_object = object.__new__

#: Browsers cap cookie lifetimes at 400 days; with both timeouts disabled a
#: session lives that long after its last refresh.
MAX_LIFETIME = 400 * 24 * 3600

#: At most this many same-named cookies are checked (first that opens wins).
MAX_COOKIES_CHECKED = 4

#: How many ``Cookie`` headers, of up to ``MAX_REMEMBERED_HEADER`` characters, have their
#: session cookie values remembered (the header and its values: at most about 35 MB).
REMEMBERED_HEADERS = 4096
MAX_REMEMBERED_HEADER = 4096


class SessionUnavailable(SessionStoreError, falcon.HTTPServiceUnavailable):
    """The store failed; Falcon renders it as ``503`` with a JSON body.

    It is still a :class:`SessionStoreError`, so a handler that can work
    without its session may catch it.
    """

    def __init__(self) -> None:
        falcon.HTTPServiceUnavailable.__init__(
            self,
            title="Session store unavailable",
            description="Sessions cannot be read or saved right now. Please try again shortly.",
            retry_after=5,
        )


class SessionBusy(SessionUnavailable):
    """With ``lock=True``: another request of the session held its lock for the whole
    ``lock_timeout``. A 503 saying so; the request's session was neither read nor saved."""

    def __init__(self) -> None:
        falcon.HTTPServiceUnavailable.__init__(
            self,
            title="Session busy",
            description="Another request of this session is still running. Please try again shortly.",
            retry_after=1,
        )


@dataclass(frozen=True)
class SessionInfo:
    """One of a user's sessions as listed by :meth:`SessionMiddleware.user_sessions`.

    ``last_active`` is exact to within the idle-refresh step (see ``refresh_fraction``).
    """

    handle: str
    created_at: float
    last_active: float
    expires_at: float


#: Session cookies that verified: ``(session id, signed with the newest key)`` each, in order.
Verified = tuple[tuple[str, bool], ...]

#: What loading gives a :class:`Session`: ``(session id, record, reissue)``.
Opened = tuple[Optional[str], Optional[Record], bool]


class SessionMiddleware:
    """Server-side sessions behind a signed session-ID cookie, for hug and Falcon.

    Add one instance to the API; handlers get the session from
    ``hug.directives.session`` or ``req.context["session"]``. Timeouts are in
    seconds, ``None`` disables one. ``persistent=False`` makes the cookie last
    until the browser closes. ``lock=True`` serialises the requests of one
    session that load it (see :mod:`hug_cookie_sessions.locking`): a request
    waits up to ``lock_timeout`` seconds for the lock, then gets a 503; a lock
    not released lives ``lock_lease`` seconds. ``clock`` exists for tests.
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
    ) -> None:
        for name, value in (("idle_timeout", idle_timeout), ("absolute_timeout", absolute_timeout)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds or None")
        if not 0 <= refresh_fraction < 1:
            raise ValueError("refresh_fraction must be in [0, 1)")
        self.signer = SessionSigner(secret_key)
        self.store: Store = adapt_store(store)
        self.async_store = as_async_store(self.store)
        self._store_is_async = is_async_store(self.store)
        self.cookie = CookieSettings(
            cookie_name, cookie_path, cookie_domain, cookie_secure, cookie_http_only, cookie_same_site
        )
        self.context_name = context_name
        self._idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self.persistent = persistent
        self._refresh_fraction = refresh_fraction
        self.clock = clock
        self.locks = SessionLocks(self.store, lock_timeout, lock_lease) if lock else None
        # Bound once, not per request: every request's session is handed this loader.
        self._cookie_loader = self._open_from_cookie
        self._lock_key = f"{context_name}.lock"
        self._sids_by_header: BoundedMemo[str, Verified] = BoundedMemo(REMEMBERED_HEADERS)
        # Worked out once for the sessions on the default idle timeout, nearly all of them.
        self._refresh_lead = self._refresh_lead_for(self._idle(None))

    @property
    def idle_timeout(self) -> Optional[int]:
        """The default idle timeout, in seconds (None: none). Fixed once the middleware is made,
        like ``refresh_fraction``: the quick refresh check is worked out from both then."""
        return self._idle_timeout

    @property
    def refresh_fraction(self) -> float:
        """The fraction of its idle timeout by which a session's expiry must move before a read
        writes it (fixed once the middleware is made)."""
        return self._refresh_fraction

    # -- Falcon hooks (WSGI: hug, falcon.App) ---------------------------------------------

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        # The session keeps the Cookie header, not the request: the request holds
        # the session, and that cycle would leave every request to the garbage collector.
        cookie_header = req.env.get("HTTP_COOKIE")
        if self.locks is None:
            # Session(self._cookie_loader, cookie_header) without the Python-level __init__
            # call, a tenth of what an untouched session costs a request.
            session = _new_object(Session)
            session._loader = self._cookie_loader
            session._source = cookie_header
        else:
            session = Session(partial(self._open_from_cookie, lock=self._new_lock(req)), cookie_header)
        # falcon.Context (the default context type) keeps its items in its __dict__: used
        # directly, it spares every request two calls of Context's Python-level methods.
        context = req.context
        (context.__dict__ if type(context) is _Context else context)[self.context_name] = session

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        context = req.context
        session = (context.__dict__ if type(context) is _Context else context).get(self.context_name)
        try:
            # session.loaded without the property call (every request comes this way); they
            # differ only for a session this hook has already saved, which cannot come here.
            if isinstance(session, Session) and session._loader is None:
                _add_vary_cookie(resp)
                # A clean session, most requests, saves nothing unless its expiry is due to move.
                may_write = session._dirty or self._expiry_due(session._record)
                if may_write and req_succeeded and not _is_server_error(resp.status):
                    outcome = self._save(session, explicit=False)
                    if outcome is not None:
                        self._send_cookie(resp, outcome)
        finally:
            if self.locks is not None:
                self._run(self._release_lock(req))

    # -- Falcon hooks (ASGI: falcon.asgi.App) ------------------------------------------------

    async def process_request_async(self, req: Any, resp: Any) -> None:
        """Load the session now if the request carries a session cookie; without one, no store I/O.

        A store failure here is raised only when the handler uses the
        session, so routes that never do keep working during an outage.
        """
        lock = self._new_lock(req) if self.locks is not None else None
        opened: Opened = (None, None, False)
        header = req.get_header("Cookie")
        sids = self._cookie_sids(header) if header else ()
        if sids:
            try:
                opened = await self._run_async(self._open_steps(sids, lock))
            except SessionUnavailable as error:
                req.context[self.context_name] = Session(_raise, error)
                return
        req.context[self.context_name] = Session(_given, opened)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        session = req.context.get(self.context_name)
        try:
            if isinstance(session, Session) and session.loaded:
                _add_vary_cookie(resp)
                may_write = session._dirty or self._expiry_due(session._record)
                if may_write and req_succeeded and not _is_server_error(resp.status):
                    outcome = await self._save_async(session, explicit=False)
                    if outcome is not None:
                        self._send_cookie(resp, outcome)
        finally:
            if self.locks is not None:
                await self._run_async(self._release_lock(req))

    # -- what both kinds of hooks share ----------------------------------------------------------

    def _new_lock(self, req: Any) -> RequestLock:
        """With ``lock=True``: the request's lock holder (nothing is locked yet)."""
        assert self.locks is not None
        lock = req.context[self._lock_key] = RequestLock(self.locks)
        return lock

    def _release_lock(self, req: Any) -> Steps[None]:
        lock = req.context.get(self._lock_key)
        if lock is not None:
            yield from lock.finish()

    def _send_cookie(self, resp: Any, outcome: Any) -> None:
        """Add the ``Set-Cookie`` header that :meth:`_save`'s ``outcome`` (not None) calls for."""
        if outcome is _EXPIRE:
            resp.append_header("Set-Cookie", self.cookie.expired_header())
        else:
            sid, record = outcome
            now = self.clock()
            header = self.cookie.header(self.signer.sign(sid), self._cookie_max_age(record, now), now)
            resp.append_header("Set-Cookie", header)
        if resp.get_header("Cache-Control") is None:
            resp.set_header("Cache-Control", "no-store")

    # -- sessions outside cookies --------------------------------------------------------

    def open(self, token: Optional[str]) -> Session:
        """A session for a signed ``token`` from somewhere other than the cookie.

        An invalid, unknown or expired token gives an empty new session.
        """
        return Session(self._open_token, token)

    def save(self, session: Session) -> Optional[str]:
        """Store ``session`` now, even if empty; its signed token, or None if it ended."""
        return self._token(session, self._save(session, explicit=True))

    async def open_async(self, token: Optional[str]) -> Session:
        """:meth:`open` for asyncio apps: the session is loaded before it is returned."""
        return Session(
            _given, await self._run_async(self._open_steps(self._verified_sids([token] if token else [])))
        )

    async def save_async(self, session: Session) -> Optional[str]:
        """:meth:`save` for asyncio apps, for a session from :meth:`open_async` or the ASGI hooks."""
        return self._token(session, await self._save_async(session, explicit=True))

    def _token(self, session: Session, outcome: Any) -> Optional[str]:
        """The signed token that names ``session`` after a save with ``outcome``."""
        if outcome is _EXPIRE:
            return None
        if outcome is None:
            return self.signer.sign(session.id) if session.id else None
        return self.signer.sign(outcome[0])

    # -- one user's sessions ------------------------------------------------------------------

    def user_sessions(self, user_id: str) -> list[SessionInfo]:
        """``user_id``'s live sessions, newest first, with handles for :meth:`revoke` (never IDs)."""
        return self._run(self._user_sessions(user_id))

    def revoke_user(self, user_id: str) -> int:
        """End every session of ``user_id`` ("log out everywhere"); returns how many."""
        return self._run(self._revoke_user(user_id))

    def revoke(self, handle: str) -> bool:
        """End the one session named by ``handle`` (from :meth:`user_sessions`); False if none.

        Check that the handle belongs to the logged-in user before calling this
        on their behalf: :meth:`SessionSigner.handle_user` tells whose it is.
        """
        return self._run(self._revoke(handle))

    async def user_sessions_async(self, user_id: str) -> list[SessionInfo]:
        """:meth:`user_sessions` for asyncio apps."""
        return await self._run_async(self._user_sessions(user_id))

    async def revoke_user_async(self, user_id: str) -> int:
        """:meth:`revoke_user` for asyncio apps."""
        return await self._run_async(self._revoke_user(user_id))

    async def revoke_async(self, handle: str) -> bool:
        """:meth:`revoke` for asyncio apps."""
        return await self._run_async(self._revoke(handle))

    def _user_sessions(self, user_id: str) -> Steps[list[SessionInfo]]:
        self._check_user_index()
        now = self.clock()
        records = yield call("user_sessions", user_id)
        sessions = [
            SessionInfo(
                self.signer.handle(user_id, sid),
                record.created_at,
                max(record.created_at, min(now, record.expires_at - self._idle(record.idle_timeout))),
                record.expires_at,
            )
            for sid, record in records.items()
            if record.expires_at > now
        ]
        return sorted(sessions, key=lambda info: info.created_at, reverse=True)

    def _revoke_user(self, user_id: str) -> Steps[int]:
        self._check_user_index()
        return (yield call("delete_user_sessions", user_id))

    def _revoke(self, handle: str) -> Steps[bool]:
        self._check_user_index()
        user_id = self.signer.handle_user(handle)
        if user_id is None:
            return False
        for sid in (yield call("user_sessions", user_id)):
            if hmac.compare_digest(self.signer.handle(user_id, sid), handle):
                yield call("delete", sid)
                return True
        return False

    def session_handle(self, session: Session) -> Optional[str]:
        """The handle of a stored, user-bound ``session`` (to mark "this device" in a listing)."""
        if session.id is None or session.user_id is None:
            return None
        return self.signer.handle(session.user_id, session.id)

    def _check_user_index(self) -> None:
        """Raise TypeError unless the store keeps a per-user index (:class:`~.stores.base.UserIndex`)."""
        # Not isinstance(store, UserIndex): from Python 3.12 that ignores methods a
        # wrapper provides through __getattr__.
        if not all(
            callable(getattr(self.store, name, None)) for name in ("user_sessions", "delete_user_sessions")
        ):
            raise TypeError(f"{type(self.store).__name__} cannot list or revoke a user's sessions")

    # -- loading --------------------------------------------------------------------------

    def _open_from_cookie(self, header: Optional[str], lock: Optional[RequestLock] = None) -> Opened:
        # _cookie_sids written out: a returning visitor's header needs no call beyond the memo's.
        sids = self._sids_by_header.get(header) if header else ()
        if sids is None:
            sids = self._verify_header(header)
        if lock is not None or self._store_is_async:
            return self._run(self._open_steps(sids, lock))
        # _open_steps without a lock, as plain blocking calls: every request that
        # reads its session comes this way, and here a generator's cost would show.
        now = self.clock()
        for sid, current_key in sids:
            try:
                record = self.store.load(sid)
            except SessionStoreError as error:
                raise _unavailable(error, "load") from error
            if record is not None and record.expires_at > now:
                return sid, record, not current_key
        return None, None, False

    def _open_token(self, token: Optional[str]) -> Opened:
        return self._run(self._open_steps(self._verified_sids([token] if token else [])))

    def _cookie_sids(self, header: str) -> Verified:
        """The session IDs that the session cookies in a ``Cookie`` header verify as (see
        :meth:`_verified_sids`), checking at most :data:`MAX_COOKIES_CHECKED` cookies.

        A visitor sends the same header request after request, so the answer is
        remembered per header (at most :data:`REMEMBERED_HEADERS`, oldest dropped
        first) when every cookie in it verified: only an exact copy of that header
        gets it again. A header with a cookie that fails is checked, and logged, every time.
        """
        sids = self._sids_by_header.get(header)
        return sids if sids is not None else self._verify_header(header)

    def _verify_header(self, header: str) -> Verified:
        """:meth:`_cookie_sids` for a header not remembered: every session cookie checked."""
        tokens = cookie_values(header, self.cookie.name)[:MAX_COOKIES_CHECKED]
        sids = self._verified_sids(tokens)
        if len(sids) == len(tokens) and len(header) <= MAX_REMEMBERED_HEADER:
            self._sids_by_header.remember(header, sids)
        return sids

    def _verified_sids(self, tokens: Sequence[str]) -> Verified:
        """``(session id, signed with the newest key)`` for each of ``tokens`` that verifies, in order."""
        verified = []
        for token in tokens:
            sid = self.signer.unsign(token)
            if sid is None:
                _log_bad_signature(token)
            else:
                verified.append(sid)
        return tuple(verified)

    def _open_steps(self, sids: Verified, lock: Optional[RequestLock] = None) -> Steps[Opened]:
        """The first of ``sids`` that names a live session wins (locked first, with a ``lock``)."""
        now = self.clock()
        for sid, current_key in sids:
            if lock is not None:
                try:
                    yield from lock.acquire(sid)
                except LockTimeout as error:
                    log.warning("Session request refused: %s", error)
                    raise SessionBusy() from error
            record = yield call("load", sid)
            if record is not None and record.expires_at > now:
                return sid, record, not current_key
            if lock is not None:
                yield from lock.release()
        return None, None, False

    # -- saving ---------------------------------------------------------------------------

    def _save(self, session: Session, *, explicit: bool) -> Any:
        """Persist ``session``, at the end of its request or, ``explicit``, for :meth:`save`.
        Returns what the cookie must become: None (unchanged), ``_EXPIRE``, or
        ``(sid, record)`` to (re)issue."""
        changes, old = self._changes_to_save(session, explicit)
        if old is not None:
            if self._store_is_async:
                raise _async_store_on_wsgi(self.store)
            try:
                applied = self.store.apply(session._sid, changes.changed, changes.removed, old.expires_at)
            except SessionStoreError as error:
                raise _unavailable(error, "apply") from error
            return _values_saved(session, changes, applied)
        write = self._plan_save(session, changes, keep_empty=explicit)
        if not write.calls:
            return write.outcome
        if self._store_is_async:
            raise _async_store_on_wsgi(self.store)
        result = None
        for method, args, kwargs in write.calls:
            try:
                result = getattr(self.store, method)(*args, **kwargs)
            except SessionStoreError as error:
                raise _unavailable(error, method) from error
        return _finish(session, write, result)

    async def _save_async(self, session: Session, *, explicit: bool) -> Any:
        """:meth:`_save` for the ASGI hooks and :meth:`save_async`."""
        changes, old = self._changes_to_save(session, explicit)
        if old is not None:
            try:
                applied = await self.async_store.apply(
                    session._sid, changes.changed, changes.removed, old.expires_at
                )
            except SessionStoreError as error:
                raise _unavailable(error, "apply") from error
            return _values_saved(session, changes, applied)
        write = self._plan_save(session, changes, keep_empty=explicit)
        if not write.calls:
            return write.outcome
        result = None
        for method, args, kwargs in write.calls:
            try:
                result = await getattr(self.async_store, method)(*args, **kwargs)
            except SessionStoreError as error:
                raise _unavailable(error, method) from error
        return _finish(session, write, result)

    def _changes_to_save(self, session: Session, explicit: bool) -> tuple[Changes, Optional[Record]]:
        """The changes that saving ``session`` persists, and its stored record when they are a
        plain update: new values for a stored session whose expiry stays, not ``explicit``
        (the commonest write, one ``apply``, no plan). A value that is not JSON is a logged
        500, and nothing is saved."""
        try:
            changes = session.changes()
        except SessionValueError as error:
            log.error("Session not saved: %s", error)
            raise falcon.HTTPInternalServerError(
                title="Session not saved",
                description="A session value could not be stored.",
            ) from error
        old = session._record
        if explicit or not changes.values_only or old is None or self._expiry_due(old):
            return changes, None
        return changes, old

    def _plan_save(self, session: Session, changes: Changes, *, keep_empty: bool) -> _Write:
        """The store calls that persist ``changes`` to ``session`` and what follows them
        (see :class:`_Write`).

        Nothing is written when nothing changed and either the stored expiry need
        not move yet or there is no stored session and an empty one is not kept.
        """
        old = session.record
        now = self.clock()
        expires_at, refreshed = self._next_expiry(old, changes.idle_timeout, now)
        # NO_CHANGES first: a clean session, most requests, skips the property.
        unchanged = changes is NO_CHANGES or not changes.any
        if unchanged and (not keep_empty if old is None else not refreshed):
            return _Write((), (session.id, old)) if changes.reissue else _NO_WRITE
        return self._plan_write(session, changes, now, expires_at, refreshed, keep_empty)

    def _plan_write(
        self,
        session: Session,
        changes: Changes,
        now: float,
        expires_at: float,
        refreshed: bool,
        keep_empty: bool,
    ) -> _Write:
        """How to persist ``changes`` to ``session``, to expire at ``expires_at``
        (``refreshed``: a new expiry)."""
        calls: list[StoreCall] = [call("delete", changes.ended_sid)] if changes.ended_sid else []
        old, old_sid = session.record, session.id

        if old is not None and not changes.regenerate:
            if changes.removed and not keep_empty and not session.full_data(changes.changed):
                calls.append(call("delete", old_sid))
                return _Write(calls, _EXPIRE)
            # A bound session whose expiry moves names its user again, so that a
            # store's user index can move its own expiry too (Redis).
            user_id = changes.user_id or (old.user_id if refreshed else None)
            calls.append(
                call(
                    "apply",
                    old_sid,
                    changes.changed or {},  # a store gets a dict, never the shared NO_CHANGES mapping
                    changes.removed,
                    expires_at,
                    user_id=user_id,
                    idle_timeout=changes.idle_timeout,
                )
            )
            sid = old_sid
            record = old.updated(changes.changed, changes.removed, expires_at, user_id, changes.idle_timeout)
        else:
            data = session.full_data(changes.changed)
            if not data and not keep_empty and (old is None or changes.removed):
                if old is not None:
                    calls.append(call("delete", old_sid))
                return _Write(calls, _EXPIRE if old is not None or changes.ended_sid else None)
            user_id = changes.user_id or (old.user_id if old is not None else None)
            idle_timeout = changes.idle_timeout
            if idle_timeout is None and old is not None:
                idle_timeout = old.idle_timeout
            created_at = old.created_at if old is not None else now
            record = Record(data, created_at, expires_at, user_id, idle_timeout)
            sid = new_session_id()
            calls.append(call("create", sid, record) if old is None else call("rotate", old_sid, sid, record))
        cookie_changes = (
            sid != old_sid
            or changes.reissue
            or changes.idle_timeout is not None
            or (refreshed and self._cookie_max_age(record, now) is not None)
        )
        return _Write(calls, (sid, record) if cookie_changes else None, sid, record)

    # -- timing ---------------------------------------------------------------------------

    def _idle(self, idle_timeout: Optional[int]) -> int:
        """The idle timeout in force: the session's own (0 means the default) or the middleware's."""
        return idle_timeout or self._idle_timeout or MAX_LIFETIME

    def _next_expiry(
        self, old: Optional[Record], idle_timeout: Optional[int], now: float
    ) -> tuple[float, bool]:
        """The expiry a save now gives the session stored as ``old`` (None: not stored yet),
        ``idle_timeout`` being the one set for it in this request, if any; and whether
        that is a new expiry.

        A stored expiry moves only once it would move by the refresh step (a fraction
        of the idle timeout), so that a busy reader does not write on every request.
        """
        idle = self._idle(old.idle_timeout if idle_timeout is None and old is not None else idle_timeout)
        expires_at = now + idle
        if self.absolute_timeout is not None:
            created_at = old.created_at if old is not None else now
            expires_at = min(expires_at, created_at + self.absolute_timeout)
        if old is None or idle_timeout is not None:
            return expires_at, True
        moved = expires_at - old.expires_at
        if moved >= 1.0 and moved >= idle * self._refresh_fraction:
            return expires_at, True
        return old.expires_at, False

    def _expiry_due(self, old: Optional[Record]) -> bool:
        """Whether saving now moves the expiry of ``old``, a stored session's record (None for
        a session not stored: False), when nothing sets its timeout (:meth:`_next_expiry`,
        quicker: every request that used its session asks)."""
        if old is None:
            return False
        now = self.clock()
        # Most requests come before the refresh step and stop here.
        lead = self._refresh_lead if not old.idle_timeout else self._refresh_lead_for(old.idle_timeout)
        if now + lead < old.expires_at:
            return False
        return self._next_expiry(old, None, now)[1]

    def _refresh_lead_for(self, idle: int) -> float:
        """How long before its expiry a session on the idle timeout ``idle`` may be due for a
        refresh: the refresh step short of ``idle``, plus a margin for rounding (a request
        inside the margin gets the exact rule). The absolute timeout is left out: its cap can
        only make a move smaller."""
        return idle - max(1.0, idle * self._refresh_fraction) + 0.001

    def _cookie_max_age(self, record: Record, now: float) -> Optional[int]:
        if record.idle_timeout == 0 or (record.idle_timeout is None and not self.persistent):
            return None
        return max(round(record.expires_at - now), 0)

    # -- store calls ----------------------------------------------------------------------

    def _run(self, steps: Steps[T]) -> T:
        """Carry out ``steps`` with blocking calls on :attr:`store`; what ``steps`` returns.

        A store failure the steps do not handle becomes :class:`SessionUnavailable` (a 503), logged once.
        """
        request: Any = None
        try:
            request = steps.send(None)
            while True:
                if type(request) is Pause:
                    time.sleep(request.seconds)
                    request = steps.send(None)
                    continue
                if self._store_is_async:
                    raise _async_store_on_wsgi(self.store)
                method, args, kwargs = request
                try:
                    result = getattr(self.store, method)(*args, **kwargs)
                except SessionStoreError as error:
                    request = steps.throw(error)
                else:
                    request = steps.send(result)
        except StopIteration as done:
            return done.value
        except SessionUnavailable:
            raise
        except SessionStoreError as error:
            raise _unavailable(error, _doing(request)) from error

    async def _run_async(self, steps: Steps[T]) -> T:
        """Carry out ``steps`` by awaiting :attr:`async_store`; what ``steps`` returns.

        A store failure the steps do not handle becomes :class:`SessionUnavailable` (a 503), logged once.
        """
        request: Any = None
        try:
            request = steps.send(None)
            while True:
                if type(request) is Pause:
                    await asyncio.sleep(request.seconds)
                    request = steps.send(None)
                    continue
                method, args, kwargs = request
                try:
                    result = await getattr(self.async_store, method)(*args, **kwargs)
                except SessionStoreError as error:
                    request = steps.throw(error)
                else:
                    request = steps.send(result)
        except StopIteration as done:
            return done.value
        except SessionUnavailable:
            raise
        except SessionStoreError as error:
            raise _unavailable(error, _doing(request)) from error


def _unavailable(error: SessionStoreError, doing: str) -> SessionUnavailable:
    """The 503 for a store failure that no step handled (logged here, once)."""
    log.error("Session store failed in %s: %s", doing, error)
    return SessionUnavailable()


def _async_store_on_wsgi(store: Any) -> TypeError:
    return TypeError(
        f"{type(store).__name__} is an async store: use it with falcon.asgi.App "
        "(a WSGI app needs a blocking store, such as RedisStore instead of AsyncRedisStore)"
    )


def _doing(request: Any) -> str:
    """What a step's driver was doing when the store failed: a store method's name."""
    return request[0] if request is not None and type(request) is not Pause else "a lock wait"


def _log_bad_signature(token: str) -> None:
    log.warning("Ignored a session cookie with a bad signature (starts %r)", token[:6])


def _given(opened: Opened) -> Opened:
    return opened


def _raise(error: Exception) -> Opened:
    raise error


_EXPIRE = object()


class _Write(NamedTuple):
    """What saving a session does: the store ``calls``, in order, then what the cookie
    becomes (see ``SessionMiddleware._save``).

    When ``record`` is given, the last call stores it as ``sid``: if that call
    returns False (the session ended meanwhile), nothing was written and the cookie
    expires; otherwise ``record`` becomes the session's clean state and the cookie
    becomes ``outcome``. Without a ``record``, the outcome stands once the calls ran.
    """

    calls: Sequence[StoreCall]
    outcome: Any
    sid: Optional[str] = None
    record: Optional[Record] = None


#: Saving a session that writes nothing and keeps its cookie: what most requests do.
_NO_WRITE = _Write((), None)


def _finish(session: Session, write: _Write, result: Any) -> Any:
    """The cookie outcome once ``write``'s calls ran, the last one returning ``result``."""
    if write.record is None:
        return write.outcome
    if result is False:
        return _ended_meanwhile()
    session.stored_as(write.sid, write.record)
    return write.outcome


def _values_saved(session: Session, changes: Changes, applied: bool) -> Any:
    """The cookie outcome once the store's ``apply`` of ``changes``, which only set values (the
    plain update of ``SessionMiddleware._changes_to_save``), returned ``applied``."""
    if applied is False:
        return _ended_meanwhile()
    session.values_saved(changes)
    return None


def _ended_meanwhile() -> Any:
    """The cookie outcome when a write found its session gone: the changes are dropped, the cookie expires."""
    log.info("Session ended by a concurrent request; its changes were dropped")
    return _EXPIRE


def adapt_store(store: Optional[Any]) -> Store:
    """``store`` itself if it speaks the store protocol; a hug-style store wrapped; None: memory."""
    if store is None:
        return MemoryStore()
    if all(callable(getattr(store, name, None)) for name in ("load", "create", "apply", "rotate", "delete")):
        return store
    if all(callable(getattr(store, name, None)) for name in ("get", "exists", "set", "delete")):
        from .stores.hug_adapter import HugStoreAdapter

        return HugStoreAdapter(store)
    raise TypeError("store must implement load/create/apply/rotate/delete, or hug's get/exists/set/delete")


#: The status codes below 500, as a status line starts: "000" to "499".
_BELOW_500 = frozenset(f"{code:03d}" for code in range(500))


def _is_server_error(status: Any) -> bool:
    """Whether a response status (``"503 Service Unavailable"``, ``503`` or ``HTTPStatus``) is a 5xx;
    an unreadable one counts as one."""
    if type(status) is str:  # Falcon 2's only kind, and the commonest on any Falcon
        return status[:3] not in _BELOW_500
    if isinstance(status, int):
        return status >= 500
    return str(status)[:3] not in _BELOW_500


def _add_vary_cookie(resp: falcon.Response) -> None:
    """Add ``Cookie`` to the response's ``Vary`` header unless it is there."""
    # Falcon 2 to 4 keep a response's headers in a dict by lower-case name. Used directly
    # when there is no Vary yet, the common case, it spares every response that used its
    # session two of Falcon's Python-level calls.
    headers = getattr(resp, "_headers", None)
    if type(headers) is dict and "vary" not in headers:
        headers["vary"] = "Cookie"
        return
    vary = resp.get_header("Vary")
    if vary is None:
        resp.set_header("Vary", "Cookie")
    elif "cookie" not in vary.lower():
        resp.set_header("Vary", f"{vary}, Cookie")
