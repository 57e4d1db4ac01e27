"""A media node killed mid-space: the other media node takes the space over once its lease
expires, the recording put together from the web nodes' copies, the speaker publishes
again by itself, and listeners, the host console and the replay see one marked gap and
nothing else lost."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect, sync_playwright

from edge.edges import start_varnish
from fleetnodes import (
    Fleet,
    after_gap,
    eventually,
    lease,
    live_space_with_guest,
    manifest_parts,
    media_rooms,
    power_cut,
    signal_node,
    speakers_on,
    start_space,
)
from harness import Server, make_account
from media_signal import RATE, decode, has_tones, loud_spans, tone_wav
from services import Redis
from webapp.webapp_browser import WAIT_MS, host_on_stage, launch

TONE_HZ = 440.0  # podium speak's
PAGE_TONE_HZ = 1000.0  # the host's, from the console page in Chromium


def _runs(fleet: Fleet, node: Server, space_id: str) -> bool:
    return space_id in media_rooms(fleet, node)


class Watch:
    """A host's view of the room state and a listener's of the playlist, polled through
    one web node while the test runs: what they were shown, and when."""

    def __init__(self, node: Server, token: str, space_id: str) -> None:
        self.recording: list[tuple[float, str]] = []
        self.after_gap: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(node, token, space_id))
        self._thread.start()

    def _run(self, node: Server, token: str, space_id: str) -> None:
        with node.client(token) as api:
            while not self._stop.is_set():
                try:
                    state = api.get(f"/api/v1/spaces/{space_id}/state").json()
                    playlist = api.get(f"/hls/{space_id}/live.m3u8").text
                except httpx.HTTPError:
                    continue
                now = time.monotonic()
                if not self.recording or self.recording[-1][1] != state["recording"]:
                    self.recording.append((now, state["recording"]))
                self.after_gap.append((now, after_gap(playlist)))
                self.state = state
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.timeout(600)
def test_a_killed_media_node_costs_a_live_space_a_marked_gap_and_nothing_recorded(
    fleet: Fleet, redis_server: Redis, tmp_path: Path
) -> None:
    host = make_account(fleet.web[0], "failover_host")
    guest = make_account(fleet.web[0], "failover_guest")
    space_id = live_space_with_guest(fleet, host.token, guest.token, "Failover")
    first = lease(redis_server.url, space_id)["node"]
    victim = fleet.media_nodes[int(first.removeprefix("media-")) - 1]
    standby_name = "media-1" if first == "media-2" else "media-2"
    standby = fleet.media_nodes[int(standby_name.removeprefix("media-")) - 1]

    # Two speakers, each with the real client as people run it, neither told anything
    # when the space moves: the guest with podium speak (it reconnects by default), the
    # host from the console page in Chromium.
    speaker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "podium",
            "speak",
            f"{fleet.web[1].url}/api/v1/spaces/{space_id}/whip",
            "--token",
            guest.token,
            "--tone",
            str(TONE_HZ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watch = Watch(fleet.web[0], host.token, space_id)
    edge = start_varnish(fleet.web[1].url)
    heard_raw = tmp_path / "listener.raw"
    listener: subprocess.Popen[str] | None = None
    playwright = sync_playwright().start()
    browser = launch(playwright, tone_wav(tmp_path / "host.wav", PAGE_TONE_HZ))
    try:
        console, errors = host_on_stage(
            browser, fleet.web[0].url, host.handle, host.password, space_id
        )
        eventually(lambda: len(speakers_on(fleet, victim, space_id)) == 2, within=30)

        recording = victim.data_dir / "recordings" / space_id / "manifest.jsonl"
        copies = [web.data_dir / "replicas" / space_id / "manifest.jsonl" for web in fleet.web]
        # Some seconds of both recorded, and copied on both web nodes.
        base = len(manifest_parts(recording))
        eventually(lambda: len(manifest_parts(recording)) >= base + 24, within=30)
        eventually(lambda: all(len(manifest_parts(copy)) >= base + 24 for copy in copies))

        # A listener through an edge in front of a web node: ffmpeg, following the live
        # playlist until its end.
        listener = subprocess.Popen(
            [
                *("ffmpeg", "-v", "error", "-i", f"{edge.url}/hls/{space_id}/live.m3u8"),
                *("-f", "s16le", "-ac", "1", "-ar", str(RATE), str(heard_raw)),
            ],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(4)  # it plays the program before the cut
        power_cut(victim)
        killed = time.monotonic()
        # Heard before the cut: every part a web node served (its copy has each one
        # before serving it).
        heard = {
            (p["msn"], p["index"], p["sha256"]) for copy in copies for p in manifest_parts(copy)
        }
        # The machine is lost for good: its disk with it.
        shutil.rmtree(victim.data_dir / "recordings")

        eventually(lambda: lease(redis_server.url, space_id).get("node") == standby_name, 20)
        taken = time.monotonic()
        url = f"{fleet.web[0].url}/hls/{space_id}/live.m3u8"
        # The program goes on after the gap, on every web node.
        eventually(lambda: after_gap(httpx.get(url, timeout=10).text) >= 4, within=10)
        resumed = time.monotonic()
        # Both speakers publish again by themselves and land on the standby.
        eventually(lambda: len(speakers_on(fleet, standby, space_id)) == 2, within=30)
        back = time.monotonic()
        expect(console.locator("#speaker-conn")).to_have_text("Connected", timeout=WAIT_MS)
        # The host console says what happened.
        expect(console.locator("#rec-interruption")).to_contain_text(
            "Media moved to another server", timeout=WAIT_MS
        )
        eventually(lambda: watch.recording[-1][1] == "ok" and len(watch.recording) >= 3)
        time.sleep(6)  # both speakers after the gap
        watch.stop()  # what was shown while the space was live
        with fleet.web[1].client(host.token) as api:
            assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
        assert not errors, errors
        listener_err = listener.communicate(timeout=60)[1]  # it stops at the ENDLIST
    finally:
        watch.stop()
        browser.close()
        playwright.stop()
        speaker.send_signal(signal.SIGINT)
        _, err = speaker.communicate(timeout=30)
        if listener is not None:
            listener.kill()
        edge.stop()

    print(
        f"kill→lease taken {taken - killed:.1f} s, →4 parts after the gap"
        f" {resumed - killed:.1f} s, →both speakers back {back - killed:.1f} s"
    )
    # The standby took over within 5 s of the lease's expiry (6 s after the last renewal),
    # and the program was back on it at once.
    assert taken - killed < 6 + 5
    assert resumed - taken < 5
    # The host was told the truth throughout: recording ok, then degraded while no server
    # could record the space, then ok again; and what happened.
    states = [state for _, state in watch.recording]
    while states[0] == "off":  # the program had not reached that web node yet
        states.pop(0)
    assert states == ["ok", "degraded", "ok"], watch.recording
    interruption = watch.state["interruption"]
    assert interruption["moved"] is True, watch.state
    assert 0 < interruption["lost_s"] < 30

    # The recording, now on the standby: everything heard before the cut, then the gap.
    standby_recording = standby.data_dir / "recordings" / space_id / "manifest.jsonl"
    kept = {(p["msn"], p["index"], p["sha256"]) for p in manifest_parts(standby_recording)}
    assert heard <= kept, sorted(heard - kept)[:5]
    replay_url = f"{fleet.web[0].url}/hls/{space_id}/live.m3u8"
    eventually(lambda: "#EXT-X-ENDLIST" in httpx.get(replay_url, timeout=10).text)
    replay_playlist = httpx.get(replay_url, timeout=10).text
    assert replay_playlist.count("#EXT-X-GAP") >= 1
    assert "#EXT-X-DISCONTINUITY" in replay_playlist
    # By the signal, in the single-file replay (from the standby, through a web node):
    # both speakers before the cut and, after the gap and their reconnection, again.
    replay = f"{fleet.web[1].url}/hls/{space_id}/replay.m4a"
    eventually(lambda: httpx.get(replay, timeout=30).status_code == 200, within=30)
    audio = decode(replay)
    spans = loud_spans(audio)
    assert len(spans) >= 2, spans
    # The longest silence is the span lost, and the speakers' way back: what was heard
    # last before it and what ends the replay must hold both speakers.
    silences = [(spans[i + 1][0] - spans[i][1], i) for i in range(len(spans) - 1)]
    cut = max(silences)[1]
    for start, end in (spans[cut], spans[-1]):
        assert (end - start) / RATE > 3.0, spans
        second = audio[end - 2 * RATE : end - RATE]
        assert has_tones(second, (TONE_HZ, PAGE_TONE_HZ)), (start, end)
    assert "speak_reconnecting" in err, err[-2000:]  # podium speak said what it did
    # The listener through the edge kept following the same playlist across the move:
    # both speakers before it and after it, in what ffmpeg played.
    assert listener is not None
    assert listener.returncode == 0, listener_err
    played = np.frombuffer(heard_raw.read_bytes(), dtype="<i2").astype(np.float64) / 32768
    spans = loud_spans(played)
    silences = [(spans[i + 1][0] - spans[i][1], i) for i in range(len(spans) - 1)]
    cut = max(silences)[1]
    for start, end in (spans[cut], spans[-1]):
        assert (end - start) / RATE > 3.0, spans
        assert has_tones(played[end - 2 * RATE : end - RATE], (TONE_HZ, PAGE_TONE_HZ))
    for node in [standby, *fleet.web]:
        assert not any("Traceback" in line for line in node.stderr_lines), node.stderr_lines

    # The replay outlives both media nodes: each web node kept a whole copy, and serves
    # the replay (playlist, parts and single file) from it, the same audio.
    recorded = decode(f"{standby.url}/hls/{space_id}/replay.m4a")
    power_cut(standby)
    shutil.rmtree(standby.data_dir / "recordings")
    for web in fleet.web:
        assert "#EXT-X-ENDLIST" in httpx.get(f"{web.url}/hls/{space_id}/live.m3u8").text
        served = decode(f"{web.url}/hls/{space_id}/replay.m4a")
        assert np.array_equal(served, recorded)


def test_a_paused_media_node_is_taken_over_and_fenced_when_it_wakes(
    fleet: Fleet, redis_server: Redis
) -> None:
    host = make_account(fleet.web[0], "paused_host")
    placed = start_space(fleet, redis_server.url, host.token, "Paused")
    space_id, paused, standby = placed.space_id, placed.holder, placed.other
    standby_name = placed.other_name
    own = paused.data_dir / "recordings" / space_id / "manifest.jsonl"
    copy = fleet.web[0].data_dir / "replicas" / space_id / "manifest.jsonl"
    eventually(lambda: len(manifest_parts(copy)) >= 16, within=30)
    watch = Watch(fleet.web[0], host.token, space_id)
    try:
        # The node stops, processes and all, without a word (a VM paused, a long stall).
        signal_node(paused, signal.SIGSTOP)
        eventually(lambda: lease(redis_server.url, space_id).get("node") == standby_name, 20)
        url = f"{fleet.web[1].url}/hls/{space_id}/live.m3u8"
        eventually(lambda: after_gap(httpx.get(url, timeout=10).text) >= 4, within=10)
        # It wakes up, still running the room, and finds its lease taken: it stops the
        # room at once, and nothing it makes reaches a listener.
        signal_node(paused, signal.SIGCONT)
        eventually(lambda: not _runs(fleet, paused, space_id), within=10)
        stopped = len(manifest_parts(own))
        time.sleep(3)
        assert len(manifest_parts(own)) == stopped  # not one more part written
        eventually(lambda: watch.recording[-1][1] == "ok" and len(watch.recording) >= 3)
    finally:
        watch.stop()
    states = [state for _, state in watch.recording]
    assert states == ["ok", "degraded", "ok"], watch.recording  # the pause was noticed
    with fleet.web[0].client(host.token) as api:
        assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
    # Every part the web nodes served after the gap is the standby's, byte for byte.
    standby_parts = {
        (p["msn"], p["index"]): p["sha256"]
        for p in manifest_parts(standby.data_dir / "recordings" / space_id / "manifest.jsonl")
    }
    lines = (standby.data_dir / "recordings" / space_id / "manifest.jsonl").read_text()
    gap_msn = next(json.loads(line)["msn"] for line in lines.splitlines() if '"gap"' in line)
    for web in fleet.web:
        served = manifest_parts(web.data_dir / "replicas" / space_id / "manifest.jsonl")
        after = [p for p in served if int(str(p["msn"])) > gap_msn]
        assert after, "the web node served the standby's program"
        for part in after:
            assert standby_parts[(part["msn"], part["index"])] == part["sha256"]
