"""``hug-sessions`` (or ``python -m hug_cookie_sessions``): look after a session store from a shell.

Commands: ``secret`` prints a new signing key; ``purge STORE_URL`` deletes
expired sessions; ``stats STORE_URL`` counts live and expired sessions and
reports the store's size; ``revoke STORE_URL USER_ID`` ends every session of
one user. Errors are one line on stderr, never a traceback.

Exit codes: 0 done; 2 usage error or a store URL that cannot be used; 3 the
store cannot be reached or read; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import os
import secrets
import sys
from typing import Any, Callable, Iterator, Optional, Sequence, TextIO

from . import __version__
from .signing import new_session_id
from .stores.base import SessionStoreError, redacted_url
from .stores.sqlite import SQLiteStore
from .stores.sqlite_schema import NotASessionFile, check_session_file
from .stores.url import store_from_url

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

PROG = "hug-sessions"


class CommandError(Exception):
    """A failure to report as one line, with the exit code to leave with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    args = _parser().parse_args(argv)
    # psycopg's pool logs each failed connection attempt; the one-line error below says it all.
    logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except CommandError as error:
        return _fail(str(error), error.exit_code)
    except SessionStoreError as error:
        return _fail(f"the session store failed: {error}", EXIT_UNREACHABLE)
    except OSError as error:
        return _fail(f"the session store cannot be reached: {error}", EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)


def _fail(message: str, exit_code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Look after a hug-cookie-sessions store.",
        epilog="Store URLs: sqlite:///relative.db, sqlite:////absolute/path.db, redis://host:port/db, "
        "postgresql://user@host/db[?table_prefix=session]. "
        "Exit codes: 0 done, 2 usage error or unusable URL, 3 store unreachable or unreadable, "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    secret = commands.add_parser("secret", help="print a new random secret key (256 bits, URL-safe)")
    secret.set_defaults(command=run_secret)

    purge = commands.add_parser("purge", help="delete expired sessions and print how many")
    purge.add_argument("store_url", metavar="STORE_URL")
    purge.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="a progress bar on stderr: auto draws one on a terminal when there is more than one batch",
    )
    purge.add_argument(
        "--batch-size", type=_positive_int, default=1000, help="sessions deleted per transaction"
    )
    purge.set_defaults(command=run_purge)

    stats = commands.add_parser("stats", help="live sessions, expired ones not purged yet, store size")
    stats.add_argument("store_url", metavar="STORE_URL")
    stats.add_argument("--json", action="store_true", help="one JSON object instead of text")
    stats.set_defaults(command=run_stats)

    revoke = commands.add_parser("revoke", help="end every session of one user (log out everywhere)")
    revoke.add_argument("store_url", metavar="STORE_URL")
    revoke.add_argument("user_id", metavar="USER_ID")
    revoke.set_defaults(command=run_revoke)
    return parser


def _positive_int(text: str) -> int:
    """``text`` as an integer of at least 1. Every refusal is an ArgumentTypeError, whose text
    argparse shows after the option's name (a ValueError would show this function's name)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# -- commands ------------------------------------------------------------------------------------


def run_secret(args: argparse.Namespace) -> int:
    """Print a key for ``SESSION_SECRET``: 32 random bytes from :mod:`secrets`, URL-safe base64."""
    print(secrets.token_urlsafe(32))
    return EXIT_OK


def run_purge(args: argparse.Namespace) -> int:
    """Delete expired sessions in batches, optionally drawing a progress bar."""
    with opened_store(args.store_url) as store:
        return _purge(store, args)


def _purge(store: Any, args: argparse.Namespace) -> int:
    purge = getattr(store, "purge_expired", None)
    if purge is None:
        print(f"{type(store).__name__} expires sessions by itself: nothing to purge")
        return EXIT_OK
    expired = _optional(store, "count_expired")
    bar = None
    if expired and (
        args.progress == "always"
        or (args.progress == "auto" and sys.stderr.isatty() and expired > args.batch_size)
    ):
        bar = ProgressBar(expired, sys.stderr)
    try:
        removed = _call(purge, batch_size=args.batch_size, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    print(f"removed {removed} expired session{'' if removed == 1 else 's'}")
    return EXIT_OK


def run_stats(args: argparse.Namespace) -> int:
    """Report what the store can tell: live sessions, expired ones not purged yet, size on disk."""
    with opened_store(args.store_url) as store:
        sizes = _sqlite_sizes(store.path) if isinstance(store, SQLiteStore) else _optional(store, "sizes")
        report = {
            "store": type(store).__name__,
            "live": len(store) if hasattr(store, "__len__") else None,
            "expired": _optional(store, "count_expired"),
            "size_bytes": sum(sizes.values()) if sizes else None,
        }
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    unknown = f"not reported by {report['store']}"
    size = unknown
    if sizes:
        parts = " + ".join(f"{name} {_human(count)}" for name, count in sizes.items())
        size = f"{_human(report['size_bytes'])} ({parts})"
    print(f"store:                   {report['store']}")
    print(f"live sessions:           {_or(report['live'], unknown)}")
    print(f"expired, not purged yet: {_or(report['expired'], unknown)}")
    print(f"store size:              {size}")
    return EXIT_OK


def run_revoke(args: argparse.Namespace) -> int:
    """Delete every session bound to USER_ID (``session.bind_user``); print how many."""
    with opened_store(args.store_url) as store:
        delete = getattr(store, "delete_user_sessions", None)
        if delete is None:
            raise CommandError(f"{type(store).__name__} keeps no per-user index", EXIT_USAGE)
        ended = delete(args.user_id)
    print(f"ended {ended} session{'' if ended == 1 else 's'} of user {args.user_id!r}")
    return EXIT_OK


# -- opening a store ---------------------------------------------------------------------------


@contextlib.contextmanager
def opened_store(url: str) -> Iterator[Any]:
    """The store behind ``url``, shown to answer, and closed afterwards.

    Raises CommandError for a URL that cannot be used, SessionStoreError for a
    store that does not answer. An SQLite URL must name an existing session
    database: the command never creates one, nor adds tables to another database.
    """
    if "://" not in url:
        shown = redacted_url(url)  # a mistyped URL ("redis:/:pw@host") may still hold a password
        raise CommandError(
            f"{shown!r} is not a store URL; for an SQLite file use sqlite:///{shown}", EXIT_USAGE
        )
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        raise CommandError("memory:// sessions live inside the serving process; nothing to reach", EXIT_USAGE)
    try:
        store = store_from_url(url)
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from error
    except ImportError as error:
        raise CommandError(
            f"this installation cannot open {scheme}:// stores ({error})", EXIT_USAGE
        ) from error
    try:
        if isinstance(store, SQLiteStore):
            _check_session_database(store.path)
        # A store that makes its tables on first use (PostgreSQL) checks them first, making none.
        check_schema = getattr(store, "check_schema", None)
        if callable(check_schema):
            check_schema()
        # One cheap read of an ID that cannot exist, so an unreachable store is an
        # error even for commands the store answers without a round trip.
        store.load(new_session_id())
        yield store
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


def _check_session_database(path: str) -> None:
    """CommandError (exit 3) unless ``path`` is an SQLite session store, decided reading only,
    so that the file of another program is left byte for byte as it was."""
    if not os.path.isfile(path):
        raise CommandError(f"no SQLite database at {path}", EXIT_UNREACHABLE)
    try:
        check_session_file(path)
    except NotASessionFile as error:
        raise CommandError(str(error), EXIT_UNREACHABLE) from error


def _sqlite_sizes(path: str) -> dict[str, int]:
    """Bytes on disk of the database file and of its write-ahead log, if there is one."""
    sizes = {"database": os.path.getsize(path)}
    with contextlib.suppress(FileNotFoundError):
        sizes["WAL"] = os.path.getsize(path + "-wal")
    return sizes


# -- small helpers --------------------------------------------------------------------------------


def _optional(store: Any, method: str) -> Any:
    """``store.method()`` where the store offers it, else None."""
    found = getattr(store, method, None)
    return found() if callable(found) else None


def _call(function: Callable[..., Any], **kwargs: Any) -> Any:
    """``function`` called with those of ``kwargs`` it accepts (stores differ in options)."""
    accepted = inspect.signature(function).parameters
    return function(**{name: value for name, value in kwargs.items() if name in accepted})


def _or(value: Optional[int], fallback: str) -> str:
    return fallback if value is None else str(value)


def _human(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    size = count / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class ProgressBar:
    """A one-line text progress bar, redrawn in place with a carriage return."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total = total
        self.stream = stream
        self.width = width

    def update(self, done: int) -> None:
        """Redraw for ``done`` items out of ``total``."""
        fraction = min(done / self.total, 1.0) if self.total else 1.0
        filled = round(self.width * fraction)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\rpurging [{bar}] {done}/{self.total} {fraction:4.0%}")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        self.stream.write("\n")
        self.stream.flush()
