"""An older commit's copy of the package, importable next to this checkout's, for side-by-side runs.

Comparing two runs made at different times measures the machine's mood as much
as the code, so the benchmarks that compare commits (``bench.compare`` on WSGI,
``bench.asgi_lazy --base`` on ASGI) extract the older commit's package from git
under another import name and build the same apps on both copies in one process.
"""

from __future__ import annotations

import importlib
import io
import os
import re
import subprocess
import sys
import tarfile
import time
from types import ModuleType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "hug_cookie_sessions"
BASE_PACKAGE = "hug_cookie_sessions_base"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


# -- the base commit's package, under another name ----------------------------------------

_ABSOLUTE_IMPORT = re.compile(rf"^(\s*(?:from|import)\s+){PACKAGE}(?=[\s.])", re.MULTILINE)


def extract_base(base: str, into: str) -> str:
    """Unpack ``base``'s package from git into ``into`` as :data:`BASE_PACKAGE`; returns its folder.

    The package imports itself relatively; any absolute self-import is rewritten
    all the same, so the copy cannot reach into this checkout's package.
    """
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", base, PACKAGE],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except subprocess.CalledProcessError as error:
        raise SystemExit(
            f"git archive {base} failed: {error.stderr.decode().strip()} "
            "(a shallow clone needs `git fetch --unshallow`)"
        ) from error
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # 3.12 warns without
        tar.extractall(into, members=members, **safe)
    os.rename(os.path.join(into, PACKAGE), os.path.join(into, BASE_PACKAGE))
    rewritten = 0
    for folder, _, files in os.walk(os.path.join(into, BASE_PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as source:
                    text, count = _ABSOLUTE_IMPORT.subn(rf"\g<1>{BASE_PACKAGE}", source.read())
                if count:
                    rewritten += count
                    with open(path, "w", encoding="utf-8") as source:
                        source.write(text)
    if rewritten:
        log(f"rewrote {rewritten} line(s) importing {PACKAGE} absolutely in the base copy")
    return os.path.join(into, BASE_PACKAGE)


def import_base(into: str) -> ModuleType:
    """The package :func:`extract_base` unpacked into ``into``."""
    sys.path.insert(0, into)
    importlib.invalidate_caches()
    return importlib.import_module(BASE_PACKAGE)
