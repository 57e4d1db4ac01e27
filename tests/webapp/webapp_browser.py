"""Real-browser helpers for the web app tests: Debian's Chromium driven by Playwright, each
browser with its own fake microphone (a speech recording), and the screenshots kept as
artifacts of the run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
# Generous: a loaded two-core machine runs the server, its media worker and two browsers.
WAIT_MS = 60_000
T = TypeVar("T")


def launch(playwright: Playwright, microphone: Path) -> Browser:
    """Chromium whose microphone plays ``microphone`` (a WAV, looped) with no prompt."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ],
    )


def watch_errors(page: Page) -> list[str]:
    """Script errors of ``page`` (uncaught exceptions, console errors), as they happen.

    Chromium also logs every non-2xx answer as a console error; those are part of the
    protocol here (a replay file still being made answers 503 with Retry-After) and the
    pages handle them, so they are left out.
    """
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(f"console: {message.text}")

    page.on("console", console)
    return errors


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # Let transitions and fonts settle on what is already shown; nothing is waited for.
    page.evaluate("document.fonts.ready")
    # A full-page capture of a scrolled page draws the sticky header mid-page.
    page.evaluate("window.scrollTo({top: 0, behavior: 'instant'})")
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path


def eventually(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy; fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


# Counts `waiting` (stall) events of an audio element from the moment it is installed.
STALL_COUNTER = """(selector) => {
  const audio = document.querySelector(selector);
  window.__stalls = 0;
  audio.addEventListener("waiting", () => { window.__stalls += 1; });
}"""


def host_on_stage(
    browser: Browser, base_url: str, handle: str, password: str, space_id: str
) -> tuple[Page, list[str]]:
    """The host signed in on the space's console, on stage with the fake microphone in
    music mode (a tone goes through unprocessed); the page, and its errors as they come."""
    console = browser.new_page()
    errors = watch_errors(console)
    console.goto(f"{base_url}/signin?next=/s/{space_id}/host")
    console.get_by_label("Handle").fill(handle)
    console.get_by_label("Password").fill(password)
    console.get_by_role("button", name="Sign in").last.click()
    console.wait_for_url(f"**/s/{space_id}/host", timeout=WAIT_MS)
    console.get_by_role("switch", name="Music mode").check()
    console.locator("#join-stage").click()
    expect(console.locator("#speaker-conn")).to_have_text("Connected", timeout=WAIT_MS)
    return console, errors


def watch_publishing(page: Page) -> Callable[[], list[str]]:
    """Start noting what the page's speaker goes through: each state the page shows
    (``#speaker-conn``) and each WHIP request's answer, with the page's own clock (seconds
    since watching began). Returns what reads the notes, for a test's failure message:
    where the time a speaker was off the air went."""
    page.evaluate(
        """() => {
          const began = performance.now();
          const notes = window.podiumPublishing = [];
          const seconds = () => ((performance.now() - began) / 1000).toFixed(2);
          const note = (text) => notes.push(`${seconds()} ${text}`);
          const shown = document.querySelector("#speaker-conn");
          new MutationObserver(() => note(shown.textContent))
            .observe(shown, {childList: true, characterData: true, subtree: true});
          const fetched = window.fetch;
          window.fetch = async (url, init = {}) => {
            const whip = String(url).includes("/whip");
            if (whip) note(`${init.method || "GET"} WHIP`);
            try {
              const answer = await fetched(url, init);
              if (whip) note(`answered ${answer.status}`);
              return answer;
            } catch (error) {
              if (whip) note(`failed: ${error}`);
              throw error;
            }
          };
        }"""
    )
    return lambda: list(page.evaluate("() => window.podiumPublishing"))
