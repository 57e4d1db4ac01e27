"""The recording survives what disks and servers do: kill -9, and storage that fails.

A crash loses at most the part in flight; a restart resumes the live space with the lost
span marked as a gap; a failing disk makes the recording "degraded" at once while the
broadcast carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from harness import PODIUM, Server, start_server
from media_signal import RATE, decode, loud_spans, peak_hz
from podium.clients.listen import listen
from podium.clients.speak import ToneSource, speak
from podium.errors import ClientError


def _create_live_space(server: Server) -> dict[str, str]:
    with server.client(server.owner_token) as client:
        space = client.post("/api/v1/spaces", json={"title": "Durable"}).json()
        started = client.post(f"/api/v1/spaces/{space['id']}/start")
        assert started.status_code == 200, started.text
    return dict(space)


def _manifest_parts(directory: Path) -> list[dict[str, object]]:
    lines = (directory / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if '"kind":"part"' in line]


async def _speak_for(space: dict[str, str], token: str, hz: float, seconds: float) -> None:
    with contextlib.suppress(ClientError):
        await speak(space["whip_url"], token, ToneSource(hz, 0.5), seconds=seconds)


def test_kill_9_mid_space_then_restart_recovers_everything_durable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    space = _create_live_space(first)
    token = first.owner_token
    recording = data / "recordings" / space["id"]

    async def speak_then_crash() -> None:
        speaking = asyncio.create_task(_speak_for(space, token, 1000.0, 30))
        await asyncio.sleep(5.0)
        first.process.kill()  # SIGKILL: no shutdown code runs, the worker dies with it
        first.process.wait()
        speaking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await speaking

    asyncio.run(speak_then_crash())
    first.stop()
    durable = _manifest_parts(recording)
    assert len(durable) >= 12, "several seconds of parts should be on disk"

    second = start_server(data)
    try:
        # The space is still live after the restart, and its playlist marks the loss.
        deadline = time.monotonic() + 20
        while True:
            playlist = httpx.get(space["media_playlist_url"].replace(first.url, second.url)).text
            if "#EXT-X-GAP" in playlist or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "#EXT-X-GAP" in playlist
        resumed = dict(space, whip_url=space["whip_url"].replace(first.url, second.url))
        asyncio.run(_speak_for(resumed, token, 2000.0, 3.0))
        assert second.process.poll() is None, "".join(second.stderr_lines[-30:])
        with second.client(token) as client:
            ended = client.post(f"/api/v1/spaces/{space['id']}/end")
            assert ended.json()["status"] == "ended"
        # Nothing already durable was lost: every part of the first run is still listed,
        # byte for byte the same.
        recovered = _manifest_parts(recording)
        assert recovered[: len(durable)] == durable
        replay = httpx.get(space["media_playlist_url"].replace(first.url, second.url)).text
        assert replay.index("#EXT-X-GAP") < replay.index("#EXT-X-DISCONTINUITY")
        assert replay.rstrip().endswith("#EXT-X-ENDLIST")
        for part in durable:
            if part["closes_segment"]:
                assert f"seg-{part['msn']}.m4s" in replay
        # By the signal: the first run's tone, then after the gap the second run's.
        program = decode(str(recording / "replay.m4a"))
        spans = loud_spans(program)
        first_tone = program[spans[0][0] : spans[0][1]]
        last_tone = program[spans[-1][0] : spans[-1][1]]
        assert peak_hz(first_tone[RATE // 4 : -RATE // 4]) == pytest.approx(1000, abs=5)
        assert peak_hz(last_tone[RATE // 4 : -RATE // 4]) == pytest.approx(2000, abs=5)
        assert len(first_tone) / RATE > 3.0
        # Sealed as it ended: podium verify finds it unedited, with the crash's gap named.
        replay_url = f"{second.url}/hls/{space['id']}/replay.m4a"
        archive_url = replay_url.replace("replay.m4a", "archive.json")
        deadline = time.monotonic() + 30
        while httpx.get(archive_url).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        checked = subprocess.run(
            [*PODIUM, "verify", replay_url], capture_output=True, text=True, timeout=120
        )
        assert checked.returncode == 0, (checked.stdout, checked.stderr)
        assert checked.stdout.startswith("UNEDITED"), checked.stdout
        assert "The recording itself has 1 gap(s):" in checked.stdout
        assert "the recording was interrupted here" in checked.stdout
    finally:
        second.stop()


def test_failing_storage_degrades_the_recording_not_the_broadcast(tmp_path: Path) -> None:
    data = tmp_path / "data"
    wav = tmp_path / "heard.wav"
    server = start_server(data)
    parts = None
    try:
        space = _create_live_space(server)
        parts = data / "recordings" / space["id"] / "parts"

        async def scenario() -> tuple[int, int]:
            speaking = asyncio.create_task(_speak_for(space, server.owner_token, 1000.0, 12.0))
            await asyncio.sleep(2.0)
            chattr = subprocess.run(  # noqa: ASYNC221 - a few ms, and must happen now
                ["chattr", "+i", str(parts)], capture_output=True
            )
            if chattr.returncode != 0:
                speaking.cancel()
                pytest.skip(f"this filesystem cannot be made to fail: {chattr.stderr!r}")
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                state = {}
                for _ in range(100):
                    state = (await http.get(f"/api/v1/spaces/{space['id']}")).json()
                    if state["recording"] == "degraded":
                        break
                    await asyncio.sleep(0.1)
                assert state["recording"] == "degraded"
                assert "could not write" in state["recording_detail"]
                before = (await http.get(space["media_playlist_url"])).text.count("#EXTINF")
                # A listener joining now still hears the speaker, without a stall.
                heard = await listen(space["playlist_url"], seconds=3.0, out_wav=wav)
                after = (await http.get(space["media_playlist_url"])).text.count("#EXTINF")
                assert heard.stalls == 0
            speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await speaking
            return before, after

        before, after = asyncio.run(scenario())
        assert after > before, "the broadcast must go on while the recording is degraded"
        listened = decode(str(wav))
        assert peak_hz(listened[RATE // 2 :]) == pytest.approx(1000, abs=5)
        with server.client(server.owner_token) as client:
            ended = client.post(f"/api/v1/spaces/{space['id']}/end").json()
            assert ended["recording"] == "degraded"
        metrics = httpx.get(f"{server.url}/metrics").text
        assert "podium_media_worker_up 1.0" in metrics
    finally:
        if parts is not None:
            subprocess.run(["chattr", "-i", str(parts)], capture_output=True)
        server.stop()
