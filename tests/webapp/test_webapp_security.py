"""An attacker's view of the pages, in a real browser (Chromium).

Stored XSS: a host's display name, a space's title and description and a listener's name
on a raised hand hold markup that would run if any page put it into the document as HTML;
every page that shows them must show the text, and no element of it. Open redirects: the
sign-in page goes back to ``next`` only when that is a path of this site as the browser
reads it (it drops tabs and line breaks, reads a backslash as a slash).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from webapp_browser import WAIT_MS, eventually, launch, watch_errors

from harness import Server, unique_handle
from media_signal import FIXTURES

# Markup that marks itself: an element with data-xss, or window.__xss set, means it ran.
MARKUP = '<img data-xss src=x onerror="window.__xss=1">'
PASSWORD = "correct horse battery"
COUNT_INJECTED = "() => document.querySelectorAll('[data-xss]').length + (window.__xss ? 1 : 0)"


def _host_with_markup(server: Server) -> tuple[str, str]:
    """An account whose display name is markup, with a live space full of markup and a
    listener's raised hand named with markup. Returns the handle and the space id."""
    handle = unique_handle("xss")
    with server.client(server.owner_token) as admin:
        created = admin.post(
            "/api/v1/users",
            json={"handle": handle, "password": PASSWORD, "display_name": MARKUP},
        )
        assert created.status_code == 201, created.text
    with server.client() as anonymous:
        issued = anonymous.post("/api/v1/tokens", json={"handle": handle, "password": PASSWORD})
        token = issued.json()["token"]
    with server.client(token) as host:
        space = host.post(
            "/api/v1/spaces",
            json={"title": f"Title {MARKUP}", "description": f"About {MARKUP}"},
        ).json()
        assert host.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
    with server.client() as listener:
        ticket = listener.post(f"/api/v1/spaces/{space['id']}/join").json()["ticket"]
        raised = listener.post(
            f"/api/v1/spaces/{space['id']}/hand", json={"ticket": ticket, "name": MARKUP[:64]}
        )
        assert raised.status_code == 200, raised.text
    return handle, str(space["id"])


def _sign_in(page: Page, server: Server, handle: str, next_value: str) -> str:
    """Sign in on /signin?next=…; return the address the page went to afterwards."""
    page.goto(f"{server.url}/signin?next={quote(next_value, safe='')}")
    page.get_by_label("Handle").fill(handle)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").last.click()
    page.wait_for_url(lambda url: "/signin" not in url, timeout=WAIT_MS)
    return page.url


def test_markup_from_people_is_shown_as_text_on_every_page(server: Server) -> None:
    handle, space_id = _host_with_markup(server)
    with sync_playwright() as playwright:
        browser = launch(playwright, FIXTURES / "speech-01.wav")
        try:
            page = browser.new_page()
            errors = watch_errors(page)
            _sign_in(page, server, handle, "/host")
            for path in ("/", f"/s/{space_id}", "/host", f"/s/{space_id}/host"):
                page.goto(f"{server.url}{path}")
                # The markup is on the page as text (so the test sees what it checks)...
                eventually(
                    lambda: (
                        'data-xss src=x onerror="window.__xss=1"'
                        in page.locator("body").inner_text()
                    ),
                    f"the markup shown as text on {path}",
                    timeout=30,
                )
                # ...and nowhere as an element, nor did it run.
                assert page.evaluate(COUNT_INJECTED) == 0, path
            console = page.locator("body").inner_text()
            assert console.count("data-xss") >= 2, "the host console shows the hand's name"
            assert not errors, errors
        finally:
            browser.close()
    # The pages' HTML as served: markup only ever escaped.
    for path in ("/", f"/s/{space_id}"):
        served = httpx.get(f"{server.url}{path}", timeout=10).text
        assert "<img data-xss" not in served, path


def _land_after_sign_in(server: Server, next_value: str) -> tuple[str, bool]:
    """A fresh account signs in on /signin?next=``next_value``: where the browser lands,
    and whether no script of ``next_value`` ran."""
    handle = unique_handle("redirect")
    with server.client(server.owner_token) as admin:
        created = admin.post("/api/v1/users", json={"handle": handle, "password": PASSWORD})
        assert created.status_code == 201, created.text
    with sync_playwright() as playwright:
        browser = launch(playwright, FIXTURES / "speech-01.wav")
        try:
            page = browser.new_page()
            landed = _sign_in(page, server, handle, next_value)
            return landed, bool(page.evaluate("() => window.__xss === undefined"))
        finally:
            browser.close()


@pytest.mark.parametrize(
    "next_value",
    [
        "//elsewhere.invalid/",
        "/\\elsewhere.invalid/",
        "/\t/elsewhere.invalid/",
        "/\n/elsewhere.invalid/",
        "https://elsewhere.invalid/",
        "javascript:window.__xss=1",
        " //elsewhere.invalid/",
    ],
    ids=["scheme-relative", "backslash", "tab", "newline", "absolute", "javascript", "space"],
)
def test_sign_in_never_sends_the_browser_to_another_site(server: Server, next_value: str) -> None:
    landed, clean = _land_after_sign_in(server, next_value)
    assert landed.startswith(f"{server.url}/"), landed
    assert clean


def test_a_path_of_this_site_is_where_sign_in_returns(server: Server) -> None:
    landed, _ = _land_after_sign_in(server, "/host?from=signin#top")
    assert landed == f"{server.url}/host?from=signin#top"
