"""Principle 4: a flood on the public endpoints cannot put a gap into the program or the
recording. The media worker runs in its own process at a higher priority; this floods the
web process while a speaker talks, then measures the recording by its signal. And when the
media worker itself is stalled (starved of CPU, paged out), the audio that reached it in
the meantime is not lost."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from harness import Server, start_server
from media_signal import RATE, assert_continuous, decode, loud_spans, packet_times, peak_hz
from podium.clients.speak import ToneSource, speak

FLOOD = Path(__file__).with_name("flood.py")
FLOOD_SECONDS = 6
SPEAK_SECONDS = 10.0


def _media_metric(server: Server, name: str, space_id: str) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(rf'{name}{{space="{space_id}"}} (\S+)', metrics)
    assert found is not None, f"{name} is missing from /metrics"
    return float(found.group(1))


def _assert_one_unbroken_tone(server: Server, space_id: str, seconds: float) -> None:
    """End the space and check that its recording holds the 1 kHz tone, whole."""
    with server.client(server.owner_token) as client:
        client.post(f"/api/v1/spaces/{space_id}/end")
    recording = server.data_dir / "recordings" / space_id / "replay.m4a"
    for _ in range(50):
        if recording.exists():
            break
        time.sleep(0.2)
    assert_continuous(packet_times(str(recording)))
    program = decode(str(recording))
    spans = loud_spans(program, threshold=0.1)
    assert len(spans) == 1, f"the tone was interrupted: {[(a / RATE, b / RATE) for a, b in spans]}"
    start, end = spans[0]
    assert (end - start) / RATE > seconds - 0.5
    tone = program[start + RATE // 4 : end - RATE // 4]
    frames = tone[: len(tone) // 960 * 960].reshape(-1, 960)
    levels = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)))
    assert levels.max() - levels.min() < 1.5, "dropouts or glitches in the tone"
    assert abs(peak_hz(tone) - 1000) < 5


async def _speak_tone(server: Server, whip_url: str) -> None:
    """The host speaks a steady 1 kHz tone for ``SPEAK_SECONDS``."""
    await speak(whip_url, server.owner_token, ToneSource(1000.0, 0.5), seconds=SPEAK_SECONDS)


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:  # the process ended while we looked
            continue
        if re.search(rf"^PPid:\s+{pid}$", text, re.MULTILINE):
            found.append(int(status.parent.name))
    return found


def test_flood_on_public_endpoints_leaves_no_gap_in_the_recording(tmp_path: Path) -> None:
    # Access logs off: at thousands of requests a second, reading them in this process
    # (where the speaker's WebRTC stack also runs) would starve the speaker, not Podium.
    server = start_server(tmp_path / "data", env={"PODIUM_LOG_LEVEL": "warning"})
    try:
        with server.client(server.owner_token) as client:
            space = client.post("/api/v1/spaces", json={"title": "Under fire"}).json()
            client.post(f"/api/v1/spaces/{space['id']}/start")

        # The speaker stands for someone on another machine: give this process (where its
        # WebRTC stack runs) the CPU it would have there, so what is measured is Podium.
        own_priority = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, -5)

        async def scenario() -> dict[str, int]:
            speaking = asyncio.create_task(_speak_tone(server, space["whip_url"]))
            await asyncio.sleep(2.0)
            # The attacker gets the leftovers of the CPU (it would be on other machines).
            flood = await asyncio.create_subprocess_exec(
                "nice",
                "-n",
                "10",
                sys.executable,
                str(FLOOD),
                server.url,
                space["id"],
                str(FLOOD_SECONDS),
                "48",
                stdout=subprocess.PIPE,
            )
            out, _ = await flood.communicate()
            await speaking
            return dict(json.loads(out))

        try:
            counts = asyncio.run(scenario())
        finally:
            os.setpriority(os.PRIO_PROCESS, 0, own_priority)
        assert sum(counts.values()) > 500, f"the flood was too weak to prove anything: {counts}"

        assert _media_metric(server, "podium_media_late_ticks", space["id"]) == 0.0, (
            "the mixer's clock was starved"
        )
        _assert_one_unbroken_tone(server, space["id"], SPEAK_SECONDS)
    finally:
        server.stop()


STALLS = 4
STALL_SECONDS = 0.2


def test_a_stalled_media_worker_loses_no_audio_that_reached_it(tmp_path: Path) -> None:
    """The media worker is stopped (SIGSTOP) for 200 ms, four times, while a speaker talks.
    The speaker's packets wait in the worker's socket; when it resumes, the mixer catches
    up on its schedule without playing silence for audio that is about to be read."""
    server = start_server(tmp_path / "data", env={"PODIUM_LOG_LEVEL": "warning"})
    try:
        with server.client(server.owner_token) as client:
            space = client.post("/api/v1/spaces", json={"title": "Stalled"}).json()
            client.post(f"/api/v1/spaces/{space['id']}/start")
        (worker,) = _children(server.process.pid)

        def stall() -> None:
            os.kill(worker, signal.SIGSTOP)
            try:
                time.sleep(STALL_SECONDS)
            finally:
                os.kill(worker, signal.SIGCONT)

        async def scenario() -> None:
            speaking = asyncio.create_task(_speak_tone(server, space["whip_url"]))
            await asyncio.sleep(2.0)
            for _ in range(STALLS):
                # From a thread: the speaker, in this process's event loop, keeps sending.
                await asyncio.to_thread(stall)
                await asyncio.sleep(1.0)
            await speaking

        asyncio.run(scenario())
        # Each stall is seen by the clock (so the test did stall it), and none of the audio
        # waiting in the socket was thrown away: the recorded tone is whole.
        assert _media_metric(server, "podium_media_late_ticks", space["id"]) >= STALLS
        # The jitter counters are exported (what they read depends on the machine's timing).
        _media_metric(server, "podium_media_late_frames", space["id"])
        _media_metric(server, "podium_media_concealed_seconds", space["id"])
        _assert_one_unbroken_tone(server, space["id"], SPEAK_SECONDS)
    finally:
        server.stop()
