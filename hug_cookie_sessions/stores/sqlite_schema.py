"""The tables of ``SQLiteStore``, the marker it leaves in its files, and how a file is recognised.

A session file carries ``PRAGMA application_id`` = :data:`APPLICATION_ID` (SQLite's own
place for "which program's file is this", shown by ``file(1)``) and ``PRAGMA
user_version`` = :data:`SCHEMA_VERSION`. The store writes both when it makes a file, and
when it opens a file that earlier versions made (no marker, exactly these tables). It never
marks a file that holds other tables too (sessions kept in an app's own database): the
app's migrations may use ``user_version`` themselves.

Version 2 added ``sessions.label``. A store that opens a file of version 1 (or an unmarked
one) adds the column itself (:func:`migrate`): no manual step, and sessions stored before
keep working, without a label.

:func:`check_session_file` decides, reading only, whether a file is a session store, so that
tools (the ``hug-sessions`` CLI) never change another program's database.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Optional

#: ``PRAGMA application_id`` of a session file: "HCSs" in ASCII, a fixed 32-bit value.
APPLICATION_ID = 0x48435373

#: ``PRAGMA user_version`` of a session file: the version of the tables below.
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    user_id TEXT,
    idle_timeout INTEGER,
    label TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id) WHERE user_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS session_values (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (session_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_locks (
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

#: Each table's columns, in order. ``session_locks`` came later: files made before it lack it.
TABLES = {
    "sessions": ("id", "created_at", "expires_at", "user_id", "idle_timeout", "label"),
    "session_values": ("session_id", "key", "value"),
    "session_locks": ("id", "token", "expires_at"),
}
REQUIRED_TABLES = ("sessions", "session_values")

#: The ``sessions`` columns of version 1, which :func:`migrate` brings up to date.
SESSIONS_V1 = TABLES["sessions"][:-1]


class NotASessionFile(Exception):
    """The file is not one this package's store made; the message says why, in one line."""


def mark(connection: sqlite3.Connection) -> None:
    """Write the marker into the file of ``connection``, whose tables :data:`SCHEMA` has just
    made sure of, if it holds these tables and nothing else and carries no other marker.

    A no-op on a marked file (one read of two pragmas), so every connection may call it.
    """
    application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    if application_id != 0:
        return
    names = {
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
    }
    if names == set(TABLES) and connection.execute("PRAGMA user_version").fetchone()[0] == 0:
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the ``sessions`` table of ``connection``'s file up to this version: add ``label`` to
    a table of version 1, and raise a version 1 marker to :data:`SCHEMA_VERSION`.

    One read on a file that is up to date, so every connection may call it. The change is made
    under a write lock, and looked for again once it is held: connections of several workers
    opening an old file together add the column once.
    """
    if _has_label(connection):
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        if not _has_label(connection):
            connection.execute("ALTER TABLE sessions ADD COLUMN label TEXT")
            if connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _has_label(connection: sqlite3.Connection) -> bool:
    return any(row[1] == "label" for row in connection.execute("SELECT * FROM pragma_table_info('sessions')"))


def check_session_file(path: str) -> None:
    """Return if the file at ``path`` is a session store; otherwise raise NotASessionFile.

    Reads only: the file is opened with ``mode=ro`` (no journal switch, no table made,
    nothing written), so a file that is not ours is left exactly as it was. A session store
    is a file marked with :data:`APPLICATION_ID`, or an unmarked one (earlier versions, or
    sessions kept in an app's own database) holding these tables with exactly these columns
    (or those of version 1, which a store brings up to date when it opens the file).
    """
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            problem = _schema_problem(db)
    except sqlite3.Error as error:
        raise NotASessionFile(f"cannot read the SQLite database at {path}: {error}") from error
    if application_id not in (0, APPLICATION_ID):
        raise NotASessionFile(
            f"{path} belongs to another program (SQLite application_id {application_id:#x}); left as it was"
        )
    if problem:
        raise NotASessionFile(
            f"{path} is an SQLite database but not a session store ({problem}); left as it was"
        )


def _schema_problem(db: sqlite3.Connection) -> Optional[str]:
    """What keeps ``db``'s tables from being the store's, or None if they are."""
    for table, columns in TABLES.items():
        found = tuple(row[1] for row in db.execute("SELECT * FROM pragma_table_info(?)", (table,)))
        if not found and table not in REQUIRED_TABLES:
            continue
        if not found:
            return f"no {table} table"
        if found != columns and (table, found) != ("sessions", SESSIONS_V1):
            return f"its {table} table has other columns"
    return None
