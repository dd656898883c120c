"""CrossOriginProtection through real requests on every framework (hug; Falcon WSGI and ASGI).

Each test serves a small app (the protection, then SessionMiddleware, then one
endpoint that writes the session for any method) on a loopback port and sends
the headers a browser would. The browser itself is in ``test_cross_origin_browser.py``.

hug reads handler annotations at run time: no ``from __future__ import annotations`` here.
"""

import itertools
import logging
from typing import Any, Callable, Dict, List

import falcon
import pytest

from hug_cookie_sessions import CrossOriginProtection, MemoryStore, SessionMiddleware
from hug_cookie_sessions.errors import CrossOriginRefused
from hug_cookie_sessions.origins import parse_origin, request_refusal

UNSAFE = ["POST", "PUT", "PATCH", "DELETE"]
SAFE = ["GET", "HEAD", "OPTIONS"]
METHODS = SAFE + UNSAFE

_apps = itertools.count()


class Served:
    """A served protected app: its URL, its own origin string and the requests that reached it."""

    def __init__(self, url: str, reached: List[str]) -> None:
        self.url = url
        self.origin = url  # http://127.0.0.1:<port>, exactly what a browser sends as Origin
        self.port = int(url.rsplit(":", 1)[1])
        self.reached = reached


def _build(framework: str, protection: CrossOriginProtection, reached: List[str]) -> Any:
    middleware = [protection, SessionMiddleware("cross-origin-test-secret-" + "x" * 16, MemoryStore())]

    def act(method: str, session: Any) -> dict:
        reached.append(method)
        session["last"] = method
        return {"reached": method}

    if framework == "hug":
        import hug

        api = hug.API(f"cross-origin-test-{next(_apps)}")
        for each in middleware:
            api.http.add_middleware(each)

        @hug.http("/thing", accept=tuple(METHODS), api=api)
        def thing(request, session: hug.directives.session):
            return act(request.method, session)

        return api.http.server()
    if framework == "falcon-asgi":
        from falcon.asgi import App as AsgiApp

        class AsyncThing:
            async def on_get(self, req, resp):
                resp.media = act(req.method, req.context.session)

            on_head = on_options = on_post = on_put = on_patch = on_delete = on_get

        app = AsgiApp(middleware=middleware)
        app.add_route("/thing", AsyncThing())
        return app

    class Thing:
        def on_get(self, req, resp):
            resp.media = act(req.method, req.context.session)

        on_head = on_options = on_post = on_put = on_patch = on_delete = on_get

    app = falcon.App(middleware=middleware)
    app.add_route("/thing", Thing())
    return app


def _https(app: Any, framework: str) -> Any:
    """``app`` as it runs behind a TLS-terminating proxy that its server believes: the scheme
    it sees is https (what gunicorn ``--forwarded-allow-ips`` or uvicorn ``--proxy-headers`` do)."""
    if framework == "falcon-asgi":

        async def asgi(scope, receive, send):
            await app({**scope, "scheme": "https"} if scope["type"] == "http" else scope, receive, send)

        return asgi

    def wsgi(environ, start_response):
        environ["wsgi.url_scheme"] = "https"
        return app(environ, start_response)

    return wsgi


@pytest.fixture
def protected(framework, serve) -> Callable[..., Served]:
    """``protected(trusted_origins=(), https=False) -> Served``."""

    def start(trusted_origins=(), https: bool = False) -> Served:
        reached: List[str] = []
        app = _build(framework, CrossOriginProtection(trusted_origins), reached)
        return Served(serve(_https(app, framework) if https else app), reached)

    return start


@pytest.fixture
def send(browser):
    """``send(served, method, **headers)``: one request to ``/thing`` with exactly these extra headers."""

    def request(served: Served, method: str, **headers: str):
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        return browser.request(method, served.url + "/thing", headers=named, allow_redirects=False)

    return request


def _refused(response, served: Served, reached_before: int = 0) -> None:
    assert response.status_code == 403, response.text
    assert len(served.reached) == reached_before, "a refused request reached the responder"
    assert "Set-Cookie" not in response.headers


def _allowed(response, served: Served, method: str) -> None:
    assert response.status_code == 200, response.text
    assert served.reached[-1] == method


# -- Sec-Fetch-Site ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", UNSAFE)
@pytest.mark.parametrize("site", ["cross-site", "same-site", "something-new"])
def test_unsafe_requests_a_browser_marks_as_from_elsewhere_are_refused(protected, send, method, site):
    served = protected()

    response = send(served, method, Sec_Fetch_Site=site)

    _refused(response, served)


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_same_origin_and_user_started_requests_pass(protected, send, site):
    served = protected()

    response = send(served, "POST", Sec_Fetch_Site=site)

    _allowed(response, served, "POST")
    assert "session=" in response.headers["Set-Cookie"]


def test_sec_fetch_site_decides_over_a_matching_origin(protected, send):
    served = protected()

    response = send(served, "POST", Sec_Fetch_Site="cross-site", Origin=served.origin)

    _refused(response, served)


def test_same_origin_fetch_with_origin_null_passes(protected, send):
    """A page with ``Referrer-Policy: no-referrer`` (the example's) posts its own forms with
    ``Origin: null``; the browser's ``Sec-Fetch-Site: same-origin`` is what counts."""
    served = protected()

    response = send(served, "POST", Sec_Fetch_Site="same-origin", Origin="null")

    _allowed(response, served, "POST")


# -- Origin, when there is no Sec-Fetch-Site ----------------------------------------------------


def test_origin_of_this_site_passes(protected, send):
    served = protected()

    response = send(served, "POST", Origin=served.origin)

    _allowed(response, served, "POST")


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda served: f"http://127.0.0.1:{served.port + 1}", id="other-port"),
        pytest.param(lambda served: f"https://127.0.0.1:{served.port}", id="other-scheme"),
        pytest.param(lambda served: f"http://localhost:{served.port}", id="other-host"),
        pytest.param(lambda served: "http://127.0.0.1", id="default-port-is-not-this-port"),
        pytest.param(lambda served: "null", id="null"),
        pytest.param(lambda served: "not an origin", id="malformed"),
        pytest.param(lambda served: served.origin + "/", id="with-a-path"),
    ],
)
@pytest.mark.parametrize("method", UNSAFE)
def test_unsafe_requests_from_another_origin_are_refused(protected, send, method, other):
    served = protected()

    response = send(served, method, Origin=other(served))

    _refused(response, served)


@pytest.mark.parametrize(
    ("scheme", "host", "origin", "passes"),
    [
        ("http", "app.test", "http://app.test:80", True),
        ("http", "app.test:80", "http://app.test", True),
        ("http", "APP.test", "http://app.TEST", True),
        ("http", "app.test", "http://app.test:443", False),
        ("http", "app.test:443", "https://app.test", False),
        ("https", "app.test", "https://app.test", True),
        ("https", "app.test", "https://app.test:443", True),
        ("https", "app.test:443", "https://app.test", True),
        ("https", "app.test", "http://app.test", False),
        ("https", "app.test:80", "http://app.test:80", False),
    ],
)
def test_origins_compare_scheme_host_and_port_with_default_ports(
    protected, send, scheme, host, origin, passes
):
    """The scheme is the one the app sees (``https``: as behind a proxy its server believes);
    an absent port is the scheme's default, on either side."""
    served = protected(https=scheme == "https")

    response = send(served, "POST", Host=host, Origin=origin)

    if passes:
        _allowed(response, served, "POST")
    else:
        _refused(response, served)


def test_forwarding_headers_from_the_client_are_not_believed(framework, protected, send):
    if framework == "falcon-asgi":
        pytest.skip("uvicorn itself believes X-Forwarded-Proto from 127.0.0.1 (its --proxy-headers)")
    served = protected()

    response = send(
        served,
        "POST",
        Origin=f"https://evil.test:{served.port}",
        Forwarded="proto=https;host=evil.test",
        X_Forwarded_Proto="https",
        X_Forwarded_Host=f"evil.test:{served.port}",
    )

    _refused(response, served)


# -- what always passes --------------------------------------------------------------------------


@pytest.mark.parametrize("method", UNSAFE)
def test_requests_without_either_header_pass(protected, send, method):
    """curl, servers and test clients send neither header; CSRF needs a browser, which does."""
    served = protected()

    response = send(served, method)

    _allowed(response, served, method)


@pytest.mark.parametrize("method", SAFE)
def test_safe_methods_are_never_refused(protected, send, method):
    served = protected()

    response = send(served, method, Sec_Fetch_Site="cross-site", Origin="https://evil.test")

    _allowed(response, served, method)


# -- trusted origins -----------------------------------------------------------------------------


@pytest.mark.parametrize("site", [None, "cross-site", "same-site"])
def test_a_trusted_origin_passes_even_cross_site(protected, send, site):
    served = protected(trusted_origins=["https://front.example", "http://127.0.0.2:8080"])
    headers = {"Origin": "https://front.example"}
    if site is not None:
        headers["Sec_Fetch_Site"] = site

    response = send(served, "POST", **headers)

    _allowed(response, served, "POST")


@pytest.mark.parametrize(
    "origin",
    ["https://front.example:8443", "http://front.example", "https://evil.front.example", "null", None],
)
def test_only_the_trusted_origin_itself_passes(protected, send, origin):
    served = protected(trusted_origins=["https://front.example"])
    headers = {"Sec_Fetch_Site": "cross-site"}
    if origin is not None:
        headers["Origin"] = origin

    response = send(served, "POST", **headers)

    _refused(response, served)


def test_trusted_origins_match_with_the_default_port_written_out(protected, send):
    served = protected(trusted_origins=["https://front.example:443"])

    response = send(served, "POST", Sec_Fetch_Site="cross-site", Origin="https://front.example")

    _allowed(response, served, "POST")


@pytest.mark.parametrize(
    "bad",
    [
        "front.example",
        "https://front.example/",
        "https://front.example/app",
        "https://front.example?x=1",
        "https://front.example#top",
        "https://user@front.example",
        "https://front.example:port",
        "https:// front.example",
        "null",
        "",
        b"https://front.example",
        None,
    ],
)
def test_a_malformed_trusted_origin_is_refused_at_construction(bad):
    with pytest.raises(ValueError, match="trusted_origins"):
        CrossOriginProtection(trusted_origins=[bad])


def test_a_single_string_is_not_a_list_of_trusted_origins():
    with pytest.raises(ValueError, match="trusted_origins"):
        CrossOriginProtection(trusted_origins="https://front.example")


# -- the answer ----------------------------------------------------------------------------------


def _title_and_description(framework: str, body: dict) -> tuple:
    """hug renders every Falcon error as ``{"errors": {title: description}}``; Falcon as both fields."""
    if framework == "hug":
        [(title, description)] = body["errors"].items()
        return title, description
    return body["title"], body["description"]


@pytest.mark.parametrize("accept", ["application/json", "*/*"])
def test_the_refusal_is_a_json_403_titled_cross_origin_request_refused(framework, protected, send, accept):
    served = protected()

    response = send(served, "POST", Sec_Fetch_Site="cross-site", Accept=accept)

    _refused(response, served)
    assert response.headers["Content-Type"].startswith("application/json")
    title, description = _title_and_description(framework, response.json())
    assert title == "Cross-origin request refused"
    assert "Sec-Fetch-Site" in description


def test_a_refusal_is_logged_without_reaching_the_session(protected, send, caplog):
    served = protected()
    cookie_holder = send(served, "POST")
    cookie = cookie_holder.headers["Set-Cookie"].split(";")[0]

    with caplog.at_level(logging.INFO, logger="hug_cookie_sessions"):
        response = send(served, "DELETE", Origin="https://evil.test", Cookie=cookie)

    _refused(response, served, reached_before=1)
    assert any("cross-origin DELETE /thing" in record.getMessage() for record in caplog.records)


def test_the_error_is_falcons_forbidden():
    error = CrossOriginRefused("because")

    assert isinstance(error, falcon.HTTPForbidden)
    assert error.to_dict() == {"title": "Cross-origin request refused", "description": "because"}


# -- the decision, without a server --------------------------------------------------------------

OWN = parse_origin("http://app.test:8000")


@pytest.mark.parametrize(
    ("method", "fetch_site", "origin", "refused"),
    [
        ("post", "cross-site", None, True),  # methods are compared case-insensitively
        ("POST", " Same-Origin ", None, False),
        ("POST", None, "http://app.test:8000", False),
        ("POST", None, "http://app.test:8001", True),
        ("POST", None, None, False),
        ("CUSTOM", None, "null", True),
        ("GET", "cross-site", "null", False),
    ],
)
def test_request_refusal_table(method, fetch_site, origin, refused):
    assert (request_refusal(method, fetch_site, origin, OWN) is not None) is refused


def test_without_a_usable_host_no_origin_matches():
    assert request_refusal("POST", None, "http://app.test:8000", None) is not None


def test_parse_origin_fills_in_default_ports():
    expected: Dict[str, Any] = {
        "http://a.test": ("http", "a.test", 80),
        "HTTPS://A.TEST": ("https", "a.test", 443),
        "http://[::1]:8000": ("http", "::1", 8000),
    }
    assert {value: parse_origin(value) for value in expected} == expected
