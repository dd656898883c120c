"""The test matrix: hug on Falcon 2.0, Falcon 3 and 4 (WSGI and ASGI) across Python 3.9-3.13.

``make test-all`` runs it (``.venv/bin/nox``); one environment alone:
``.venv/bin/nox -s "hug-3.12"``. Interpreters come from pyenv
(``~/.pyenv/versions/3.X.Y``) or else from PATH; nox never downloads one.
Environments live in ``.nox/`` and are reused: a run only installs what changed.

numpy stays out of every environment: hug imports it when installed and
breaks with numpy 2.
"""

from __future__ import annotations

import glob
import os

import nox

nox.options.download_python = "never"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

#: Tests that only the main environment (``make test``) runs: browsers, benchmarks.
PYTEST_ARGS = ["-m", "not main_env_only", "-p", "no:cacheprovider"]


def _pyenv_first(versions: list[str]) -> None:
    """Put the newest pyenv CPython of each version on PATH ahead of pyenv's shims."""
    found = []
    for version in versions:
        binaries = glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))
        if binaries:
            newest = max(binaries, key=lambda path: [int(n) for n in path.split("/")[-3].split(".")])
            found.append(os.path.dirname(newest))
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_pyenv_first(["3.9", "3.11", "3.12", "3.13"])


def run_tests(session: nox.Session, *requirements: str) -> None:
    session.install("--quiet", *requirements)
    session.run("python", "-m", "pytest", "-q", *PYTEST_ARGS, *session.posargs)


@nox.session(python=["3.9", "3.11", "3.12", "3.13"])
def hug(session: nox.Session) -> None:
    """hug 2.6 on Falcon 2.0: the whole suite against a hug API."""
    run_tests(session, "-e", ".[hug,redis,postgres,test,example]")  # the example app runs on hug


@nox.session(python=["3.11", "3.13"])
def falcon4(session: nox.Session) -> None:
    """Falcon 4: the whole suite against falcon.App (WSGI) and falcon.asgi.App (ASGI, uvicorn)."""
    run_tests(session, "-e", ".[redis,postgres,test]", "falcon>=4,<5")


@nox.session(python="3.11")
def falcon3(session: nox.Session) -> None:
    """Falcon 3.1: WSGI and ASGI, so the cookies are checked on every Falcon major version."""
    run_tests(session, "-e", ".[redis,postgres,test]", "falcon>=3.1,<4")
