"""Store URLs keep their credentials out of every log line and CLI message (checklist 32).

Each form a password can take in a URL, through the real parts: the middleware's log line
when a RedisStore at a closed loopback port fails a request, and a real ``hug-sessions`` run.
"""

from __future__ import annotations

import logging
import socket

import pytest

from hug_cookie_sessions import RedisStore
from hug_cookie_sessions.stores.base import redacted_url, url_secrets

from .support import make_site
from .test_cli import hug_sessions

PASSWORD = "hunter2-Secret"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def url_forms(port: int, tmp_path) -> dict[str, str]:
    """Every way a Redis URL carries a password, each to a server that is not there."""
    return {
        "userinfo": f"redis://ada:{PASSWORD}@127.0.0.1:{port}/0",
        "password only": f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
        "?password=": f"redis://127.0.0.1:{port}/0?db=0&password={PASSWORD}",
        "unix ?password=": f"unix://{tmp_path}/no-such.sock?db=0&password={PASSWORD}",
        "rediss": f"rediss://:{PASSWORD}@127.0.0.1:{port}/0",
        "redis+cluster": f"redis+cluster://:{PASSWORD}@127.0.0.1:{port}",
    }


FORMS = ["userinfo", "password only", "?password=", "unix ?password=", "rediss", "redis+cluster"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://ada:pw@host:6379/0", "redis://ada:***@host:6379/0"),
        ("redis://:pw@host/0", "redis://:***@host/0"),
        ("redis://ada@host/0", "redis://ada@host/0"),
        ("redis://host/0?password=pw&db=1", "redis://host/0?password=***&db=1"),
        ("unix:///run/redis.sock?db=0&password=pw", "unix:///run/redis.sock?db=0&password=***"),
        ("rediss://:p%40w@host", "rediss://:***@host"),
        ("redis+cluster://:pw@host:7000", "redis+cluster://:***@host:7000"),
        (
            "postgresql://app:pw@db/sessions?sslmode=require&sslpassword=pw2",
            "postgresql://app:***@db/sessions?sslmode=require&sslpassword=***",
        ),
        (
            "postgresql://db/s?PassWord=pw&auth_token=t&client_secret=s",
            "postgresql://db/s?PassWord=***&auth_token=***&client_secret=***",
        ),
        ("redis://:pa/ss@host/0", "redis://:***@host/0"),  # an unencoded "/" in the password
        ("sqlite:////var/lib/app/sessions.sqlite3", "sqlite:////var/lib/app/sessions.sqlite3"),
        ("redis://host/0#pw", "redis://host/0"),
    ],
)
def test_redacted_url_hides_every_credential_of_any_scheme(url, shown):
    assert redacted_url(url) == shown


def test_url_secrets_lists_each_credential_as_written_and_decoded():
    assert url_secrets("redis://:p%40w@h/0?password=x%2By") == ["p%40w", "x%2By", "p@w", "x+y"]
    assert url_secrets("redis://:pa/ss@h/0") == ["pa/ss", "pa"]


@pytest.mark.parametrize("form", FORMS)
def test_a_failing_store_logs_no_password_whatever_the_url_form(serve, clock, caplog, tmp_path, form):
    url = url_forms(closed_port(), tmp_path)[form]
    site = make_site(serve, RedisStore(url), clock)

    with caplog.at_level(logging.ERROR, logger="hug_cookie_sessions"):
        response = site.visitor().post("/set", key="n", value="1")

    assert response.status_code == 503
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Session store failed" in logged
    assert "***" in logged  # the URL is named, redacted
    assert PASSWORD not in logged and PASSWORD not in response.text


@pytest.mark.parametrize("command", [("stats",), ("purge",), ("revoke", "ada")])
@pytest.mark.parametrize("form", FORMS)
def test_the_cli_prints_no_password_whatever_the_url_form(tmp_path, form, command):
    url = url_forms(closed_port(), tmp_path)[form]

    result = hug_sessions(command[0], url, *command[1:])

    assert result.returncode == 3
    assert result.stderr.startswith("hug-sessions: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_a_url_the_client_cannot_parse_is_refused_without_the_password():
    # urllib reads ":pa" as the host's port here, and says so: the message must not show it.
    with pytest.raises(ValueError) as refused:
        RedisStore(f"redis://:{PASSWORD}/x@127.0.0.1:{closed_port()}/0")

    assert PASSWORD not in str(refused.value) and refused.value.__cause__ is None
    result = hug_sessions("stats", f"redis://:{PASSWORD}/x@127.0.0.1/0")
    assert result.returncode == 2 and PASSWORD not in result.stderr
