"""The example page in a real headless Chromium, served by gunicorn on a loopback port.

Needs Playwright for Python (the ``test`` extra) and Debian's ``chromium``
(``playwright install`` cannot download browsers here). Without them these
tests skip, except under ``CI=true``, where they fail. A failing test leaves a
screenshot in ``test-artifacts/`` (git ignores it; CI keeps it), and the page
is photographed there at desktop and phone widths on every run
(``example-page-desktop.png``, ``example-page-phone.png``).
"""

import html
import os
import re
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# A browser adds nothing per Python or Falcon version: the nox matrix leaves these to `make test`.
pytestmark = pytest.mark.main_env_only

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

#: Browser contexts the page is checked and photographed in: a laptop, and a phone 390 px wide
#: (iPhone 12 to 15) that honours the page's viewport meta tag as phones do.
SCREENS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}

#: The words of the text under ``selector`` that the layout splits across two lines.
SPLIT_WORDS = """(selector) => {
  const split = [];
  for (const element of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
        if (lines.size > 1) split.push(word[0]);
      }
    }
  }
  return split;
}"""


@pytest.fixture(scope="module")
def chromium(unavailable):
    """One headless Chromium for the module; each test gets fresh contexts (fresh profiles)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install -e '.[test]')")
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium, example_server, request):
    """``new_page(**options)`` opens a page in a new, empty browser context (its own cookie jar),
    made with Playwright's context ``options`` (``user_agent=...``).

    When the test fails, each page opened is saved as a screenshot.
    """
    contexts = []

    def open_page(**options):
        context = chromium.new_context(base_url=example_server.url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    report = getattr(request.node, "report_call", None)
    failed = report is not None and report.failed
    name = re.sub(r"[^\w.-]", "_", request.node.name)
    for index, context in enumerate(contexts):
        try:
            if failed:
                ARTIFACTS.mkdir(exist_ok=True)
                for number, page in enumerate(context.pages):
                    page.screenshot(path=str(ARTIFACTS / f"{name}-{index}-{number}.png"), full_page=True)
        finally:
            context.close()


@pytest.fixture
def page(new_page):
    return new_page()


def _session_cookie(page):
    return next((cookie for cookie in page.context.cookies() if cookie["name"] == "session"), None)


def _save(page, key: str, value: str) -> None:
    page.fill("input[name=key]", key)
    page.fill("input[name=value]", value)
    with page.expect_navigation():
        page.get_by_role("button", name="Save").click()


def _data(page) -> dict:
    rows = page.locator("#data tr").all()[1:]
    return dict(tuple(row.locator("td").all_inner_texts()) for row in rows)


def _log_in(page, name: str) -> None:
    page.fill("input[name=username]", name)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def test_first_visit_shows_no_session_and_gets_no_cookie(page):
    page.goto("/")

    assert page.is_visible("#no-session")
    assert "No session yet" in page.inner_text("#no-session")
    assert _session_cookie(page) is None


def test_submitting_the_form_sets_the_cookie_and_the_value_shows_after_a_reload(page):
    page.goto("/")

    _save(page, "greeting", "<b>안녕하세요</b>")
    page.reload()

    assert _session_cookie(page) is not None
    assert _data(page)["greeting"] == "<b>안녕하세요</b>"
    assert page.locator("#data b").count() == 0
    assert "UTC" in page.inner_text("#expires")


def test_the_visit_counter_increments_across_reloads(page):
    page.goto("/")
    _save(page, "k", "v")
    first = int(page.inner_text("#visits"))

    page.reload()
    page.reload()

    assert int(page.inner_text("#visits")) == first + 2


def test_javascript_cannot_read_the_session_cookie(page):
    page.goto("/")
    _save(page, "k", "v")

    cookie = _session_cookie(page)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert "session=" not in page.evaluate("document.cookie")


def test_login_changes_the_cookie_value_and_logout_removes_it(page):
    page.goto("/")
    _save(page, "cart", "2 pears")
    anonymous = _session_cookie(page)["value"]

    page.fill("input[name=username]", "alice")
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    logged_in = _session_cookie(page)["value"]

    assert logged_in != anonymous
    assert page.inner_text("#user") == "alice"
    assert _data(page)["cart"] == "2 pears"

    with page.expect_navigation():
        page.get_by_role("button", name="Log out and end the session").click()

    assert _session_cookie(page) is None
    assert page.is_visible("#no-session")


def test_a_second_browser_context_is_a_separate_session(new_page):
    first, second = new_page(), new_page()
    first.goto("/")
    _save(first, "owner", "first")

    second.goto("/")
    assert second.is_visible("#no-session")
    _save(second, "owner", "second")
    first.reload()

    assert _data(first)["owner"] == "first"
    assert _data(second)["owner"] == "second"
    assert _session_cookie(first)["value"] != _session_cookie(second)["value"]


def test_remember_me_and_log_out_everywhere_across_two_browsers(new_page):
    laptop, phone = new_page(), new_page()
    for page, remember in ((laptop, True), (phone, False)):
        page.goto("/")
        page.fill("input[name=username]", "zoe")
        if remember:
            page.check("input[name=remember]")
        with page.expect_navigation():
            page.get_by_role("button", name="Log in").click()
    remembered = _session_cookie(laptop)["expires"] - time.time()
    assert remembered > 29 * 24 * 3600
    laptop.reload()
    assert laptop.locator("#devices tr").count() == 3  # header + two sessions

    with laptop.expect_navigation():
        laptop.get_by_role("button", name="Log out everywhere").click()
    phone.reload()

    assert _session_cookie(laptop) is None
    assert phone.is_visible("#no-session")


def test_this_browser_is_marked_and_what_the_forms_did_is_confirmed(new_page):
    laptop, phone = new_page(), new_page()
    for page in (laptop, phone):
        page.goto("/")
        _log_in(page, "uma")
    laptop.reload()
    this_browser = laptop.locator("#devices tbody tr.current")
    assert this_browser.count() == 1
    assert "this browser" in this_browser.inner_text()
    assert this_browser.get_by_role("button", name="End").count() == 0

    with laptop.expect_navigation():
        laptop.locator("#devices tbody tr:not(.current)").get_by_role("button", name="End").click()
    assert laptop.inner_text("#notice") == "Ended: that session is logged out."
    assert laptop.locator("#devices tbody tr").count() == 1
    phone.reload()
    assert phone.is_visible("#no-session")

    _save(laptop, "colour", "teal")
    assert laptop.inner_text("#notice") == "Saved."
    with laptop.expect_navigation():
        laptop.get_by_role("button", name="Log out everywhere").click()
    assert laptop.inner_text("#notice") == "Logged out everywhere: every one of your sessions has ended."
    assert laptop.is_visible("#no-session")


@pytest.mark.parametrize("screen", SCREENS)
def test_the_page_wraps_by_word_and_fits_the_screen(new_page, screen, record_property):
    elsewhere, page = new_page(), new_page(**SCREENS[screen])
    for browser in (elsewhere, page):
        browser.goto("/")
        _log_in(browser, f"noor-{screen}")
    _save(page, "language", "español")
    _save(page, "favourite", "teal")
    _save(page, "greeting", "Good morning, and welcome back to the example page of hug-cookie-sessions")
    width = SCREENS[screen]["viewport"]["width"]

    assert page.inner_text("#notice") == "Saved."
    assert "this browser" in page.inner_text("#devices tbody tr.current")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate(SPLIT_WORDS, "#data td, #devices td, dd, #notice") == []
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"example-page-{screen}.png"
    png = page.screenshot(path=str(shot), full_page=True)
    record_property("screenshot", str(shot))
    assert int.from_bytes(png[16:20], "big") == width  # the PNG is as wide as the screen: nothing sticks out


IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.5 Mobile/15E148 Safari/604.1"
)


def test_the_sessions_list_names_each_browser_by_its_user_agent(new_page):
    laptop, phone = new_page(), new_page(user_agent=IPHONE)
    for page in (phone, laptop):
        page.goto("/")
        page.fill("input[name=username]", "yan")
        with page.expect_navigation():
            page.get_by_role("button", name="Log in").click()

    rows = laptop.locator("#devices tr").all_inner_texts()[1:]

    assert len(rows) == 2
    assert any(row.startswith("HeadlessChrome on Linux") and "this browser" in row for row in rows)
    assert any(row.startswith("Mobile Safari on iOS") and "End" in row for row in rows)


# -- cross-origin protection: a hostile page on another loopback origin ----------------------------

#: Posts into the visitor's session (a same-site page's fetch carries the SameSite=Lax cookie),
#: then logs the visitor in as "attacker" with a form that submits itself (login CSRF).
HOSTILE_PAGE = """<!doctype html><html><body>
<form id="login" method="post" action="{app}/login">
<input name="username" value="attacker"><input name="return_to" value="/"></form>
<script>
fetch("{app}/api/data", {{method: "POST", mode: "no-cors", credentials: "include",
  body: new URLSearchParams({{key: "planted", value: "by the attacker"}})}})
  .finally(() => document.getElementById("login").submit());
</script></body></html>"""


@pytest.fixture
def hostile_site(example_server, unavailable):
    """``hostile_site(host) -> URL`` of a page served from ``host`` on a port of its own."""
    servers = []

    def serve(host: str) -> str:
        try:
            with socket.socket() as probe:
                probe.bind((host, 0))
        except OSError as error:
            unavailable(f"this machine does not route {host} ({error})")
        body = HOSTILE_PAGE.format(app=html.escape(example_server.url)).encode()

        class Hostile(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer((host, 0), Hostile)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://{host}:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _attacked(page, hostile_url: str) -> dict:
    """Open the hostile page in ``page``'s browser; the headers of the two forged requests."""
    with (
        page.expect_response(re.compile(r"/api/data$")) as write,
        page.expect_response(re.compile(r"/login$")) as login,
    ):
        page.goto(hostile_url)
    page.wait_for_url(re.compile(r"/login$"))  # the refusal is shown; nothing is still loading
    seen = {}
    for name, response in (("write", write.value), ("login", login.value)):
        assert response.status == 403, f"the forged {name} was not refused"
        seen[name] = response.request.all_headers()
    return seen


@pytest.mark.parametrize(
    ("host", "fetch_site"),
    [
        pytest.param("127.0.0.1", "same-site", id="another-port-same-site"),
        pytest.param("127.0.0.2", "cross-site", id="another-host-cross-site"),
    ],
)
def test_a_page_on_another_origin_can_neither_log_a_visitor_in_nor_write_to_their_session(
    new_page, hostile_site, host, fetch_site
):
    hostile = hostile_site(host)
    newcomer, visitor = new_page(), new_page()
    visitor.goto("/")
    _save(visitor, "cart", "2 pears")
    cookie_before = _session_cookie(visitor)["value"]

    forged = _attacked(newcomer, hostile)
    _attacked(visitor, hostile)

    assert forged["login"]["sec-fetch-site"] == fetch_site
    assert forged["login"]["origin"] == hostile.rstrip("/")
    assert _session_cookie(newcomer) is None
    visitor.goto("/")
    assert _session_cookie(visitor)["value"] == cookie_before
    assert visitor.inner_text("#user") == "not logged in"
    assert _data(visitor) == {"cart": "2 pears", "visits": _data(visitor)["visits"]}


def test_the_pages_own_forms_pass_as_same_origin(page):
    """The page sends ``Referrer-Policy: no-referrer``, so Chromium posts its forms with
    ``Origin: null``; ``Sec-Fetch-Site: same-origin`` is what lets them through."""
    page.goto("/")
    page.fill("input[name=username]", "bea")
    with page.expect_request(re.compile(r"/login$")) as login, page.expect_navigation():
        page.get_by_role("button", name="Log in").click()

    headers = login.value.all_headers()
    assert headers["sec-fetch-site"] == "same-origin"
    assert headers.get("origin") == "null"
    assert page.inner_text("#user") == "bea"
