"""A browser speaks: Chromium publishes its (fake) microphone over WHIP from a page on
another origin, the way a web studio or an embed would, and is heard in the program.

Chromium is Debian's, driven by Playwright; the microphone is a speech recording.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from harness import Server, make_account
from media_signal import FIXTURES, RATE, best_alignment, decode, envelope, load_wav

CHROMIUM = "/usr/bin/chromium"

PAGE = b"""<!doctype html><meta charset="utf-8"><title>studio</title>
<script>
async function publish(whipUrl, token) {
  const stream = await navigator.mediaDevices.getUserMedia({audio: {
    echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  const pc = new RTCPeerConnection();
  pc.addTransceiver(stream.getAudioTracks()[0], {direction: "sendrecv"});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(resolve => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve());
  });
  const response = await fetch(whipUrl, {method: "POST", body: pc.localDescription.sdp,
    headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
  const answer = await response.text();
  if (response.status !== 201) throw new Error(response.status + " " + answer);
  window.session = new URL(response.headers.get("Location"), whipUrl).href;
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  await new Promise((resolve, reject) => {
    const check = () => pc.connectionState === "connected" ? resolve()
      : pc.connectionState === "failed" ? reject(new Error("ICE failed")) : null;
    pc.addEventListener("connectionstatechange", check);
    check();
  });
  window.pc = pc;
  return {etag: response.headers.get("ETag"), session: window.session};
}
async function patch(token, body, ifMatch) {
  const headers = {"Authorization": "Bearer " + token,
                   "Content-Type": "application/trickle-ice-sdpfrag"};
  if (ifMatch) headers["If-Match"] = ifMatch;
  const response = await fetch(window.session, {method: "PATCH", headers, body});
  return response.status;
}
async function leave(token) {
  const response = await fetch(window.session,
    {method: "DELETE", headers: {"Authorization": "Bearer " + token}});
  window.pc.close();
  return response.status;
}
</script>"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_origin() -> Iterator[str]:
    """A page served from a different origin (another port) than Podium's."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_chromium_publishes_over_whip_from_another_origin(
    server: Server, other_origin: str, tmp_path: Path
) -> None:
    speech = FIXTURES / "speech-02.wav"
    host = make_account(server, "host")
    with server.client(host.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "From a browser"}).json()
        client.post(f"/api/v1/spaces/{space['id']}/start")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={speech}",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(other_origin)
            published = page.evaluate(
                "([url, token]) => publish(url, token)", [space["whip_url"], host.token]
            )
            assert published["etag"], "ETag must be readable cross-origin (CORS expose)"
            assert published["session"].startswith(space["whip_url"] + "/")
            # Trickle ICE (RFC 9725 4.3.1): the ICE session's ETag is required and checked.
            fragment = (
                "a=ice-ufrag:"
                + page.evaluate(
                    "() => window.pc.localDescription.sdp.match(/a=ice-ufrag:(\\S+)/)[1]"
                )
                + "\r\na=ice-pwd:"
                + page.evaluate("() => window.pc.localDescription.sdp.match(/a=ice-pwd:(\\S+)/)[1]")
                + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n"
            )
            call = "([token, body, ifMatch]) => patch(token, body, ifMatch)"
            assert page.evaluate(call, [host.token, fragment, published["etag"]]) == 204
            assert page.evaluate(call, [host.token, fragment, '"another"']) == 412
            assert page.evaluate(call, [host.token, fragment, None]) == 428
            page.wait_for_timeout(8000)
            assert page.evaluate("(token) => leave(token)", host.token) == 200
        finally:
            browser.close()

    with server.client(host.token) as client:
        client.post(f"/api/v1/spaces/{space['id']}/end")
    program = decode(space["playlist_url"])
    # Chromium plays the file from its start, on a loop; a few seconds of it must be there.
    # Chromium's Opus at its default speech bitrate keeps the words, not every sample:
    # compare loudness contours (20 ms frames) at the best waveform alignment.
    reference = load_wav(speech)[RATE : RATE * 5]
    offset, correlation = best_alignment(program, reference)
    assert correlation > 0.3, f"the browser's speech is not in the program ({correlation:.2f})"
    heard = program[offset : offset + len(reference)]
    contour = np.corrcoef(envelope(heard), envelope(reference))[0, 1]
    # Unrelated speech scores near 0; jitter-buffer re-anchoring on a loaded machine can
    # shift part of the 4 s by a tick or two, which lowers a single-offset score.
    assert contour > 0.7, f"the speech's loudness contour differs ({contour:.2f})"
