"""hls.js in Chromium plays a live space through a real Varnish edge.

The page lives on another origin (as an embed would), loads Podium's vendored hls.js
through the edge, and plays the space's entry point (the multivariant playlist, whose
variant is the LL-HLS media playlist) from the edge in low-latency mode: the edge's
cross-origin answers, its blocking reloads and its parts are what a real player gets.
Chromium is Debian's, driven by Playwright.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from edges import Edge, end_space, live_hint, live_space, start_varnish
from playwright.sync_api import sync_playwright

from harness import Server

CHROMIUM = "/usr/bin/chromium"
PLAYED_S = 3.0

PAGE = """<!doctype html><meta charset="utf-8"><title>player</title>
<audio id="player"></audio>
<script src="{edge}/static/vendor/hls.min.js"></script>
<script>
window.failures = [];
function play(src) {{
  const audio = document.getElementById("player");
  const hls = new Hls({{lowLatencyMode: true}});
  hls.on(Hls.Events.ERROR, (_, data) => {{
    if (data.fatal) window.failures.push(data.type + ": " + data.details);
  }});
  hls.on(Hls.Events.MANIFEST_PARSED, () => {{
    audio.play().catch(error => window.failures.push("play: " + error));
  }});
  hls.loadSource(src);
  hls.attachMedia(audio);
  window.hls = hls;
}}
</script>"""


@pytest.fixture
def edge(origin: Server) -> Iterator[Edge]:
    running = start_varnish(origin.url)
    yield running
    running.stop()


@pytest.fixture
def page_origin(edge: Edge) -> Iterator[str]:
    """The player page, served from another origin than the edge's."""
    body = PAGE.format(edge=edge.url).encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_hls_js_plays_the_live_space_through_the_edge(
    origin: Server, edge: Edge, page_origin: str
) -> None:
    space = live_space(origin)
    live_hint(f"{edge.url}/hls/{space['id']}/live.m3u8")
    playlist = f"{edge.url}/hls/{space['id']}/index.m3u8"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(page_origin)
            assert page.evaluate("typeof Hls !== 'undefined' && Hls.isSupported()")
            page.evaluate("src => play(src)", playlist)
            page.wait_for_function(
                f"() => document.getElementById('player').currentTime > {PLAYED_S}"
                " || window.failures.length > 0",
                timeout=60_000,
            )
            assert page.evaluate("window.failures") == []
            start = page.evaluate("document.getElementById('player').currentTime")
            page.wait_for_function(
                f"() => document.getElementById('player').currentTime > {start + 1.0}",
                timeout=30_000,
            )
            assert page.evaluate("window.hls.lowLatencyMode") is True
            # hls.js took the variant's codec from the multivariant playlist.
            assert page.evaluate("window.hls.levels.map(l => l.audioCodec)") == ["mp4a.40.2"]
            assert page.evaluate("window.failures") == []
        finally:
            browser.close()
    end_space(origin, space)
