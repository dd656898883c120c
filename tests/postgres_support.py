"""PostgreSQL for the tests: a scratch database on the shared server, and private servers of a test's own.

A private server (``PrivateServer``) is a cluster made with ``initdb`` in a
temporary directory and run with ``pg_ctl`` as the ``postgres`` user on a free
loopback port, so a test may stop and restart it without disturbing the shared one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlsplit, urlunsplit

import psycopg


def unreachable(url: str) -> Optional[str]:
    """Why ``url`` cannot be used (psycopg missing, server down), or None if it answers."""
    try:
        with psycopg.connect(url, connect_timeout=3) as db:
            db.execute("SELECT 1")
    except psycopg.Error as error:
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
    return None


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new database with a random name on the server of ``server_url``; dropped (connections
    and all) afterwards."""
    name = "hcs_test_" + secrets.token_hex(6)
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_binary(name: str) -> Optional[str]:
    """``initdb`` or ``pg_ctl``: on PATH, else Debian's newest ``/usr/lib/postgresql/*/bin``."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda path: int(path.split("/")[4])
    )
    return candidates[-1] if candidates else None


class PrivateServer:
    """A PostgreSQL of one test's own on ``port``, its files under ``directory``, run as ``postgres``
    (the server refuses to run as root). Trust authentication, loopback only, no fsync."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.data = directory / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *command: str) -> None:
        user = {"user": self._user.pw_uid, "group": self._user.pw_gid} if self._user else {}
        subprocess.run(command, check=True, capture_output=True, timeout=60, **user)

    def start(self) -> None:
        if not self.data.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._user:
                os.chown(self.directory, self._user.pw_uid, self._user.pw_gid)
            self._run(
                server_binary("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"
            )
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.directory / "server.log")
        self._run(
            server_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "-t", "30", "start"
        )

    #: How :meth:`stop` stops the server by default: ``fast``, or ``immediate`` (like a crash).
    stop_mode = "fast"

    def stop(self, mode: Optional[str] = None) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(
                server_binary("pg_ctl"), "-D", str(self.data), "-m", mode or self.stop_mode, "-w", "stop"
            )
