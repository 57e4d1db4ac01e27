"""Players nobody here wrote: VLC follows the live playlist and plays the replay.

VLC ignores the low-latency tags and must still play the stream as ordinary HLS. It
refuses to run as root, so it runs as ``nobody`` and writes what it decoded to a WAV.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness import Server, make_account
from media_signal import (
    FIXTURES,
    RATE,
    assert_contains_in_order,
    decode,
    duration,
    loud_spans,
    rms,
)
from podium.clients.speak import WavSource, speak


def vlc_to_wav(url: str, out: Path, seconds: float | None = None) -> np.ndarray:
    os.chmod(out.parent, 0o777)  # noqa: S103 - VLC runs as nobody and writes here
    limit = [] if seconds is None else ["--run-time", str(seconds)]
    subprocess.run(
        [
            "runuser",
            "-u",
            "nobody",
            "--",
            "cvlc",
            "--intf",
            "dummy",
            "--no-video",
            *limit,
            "--play-and-exit",
            url,
            "--sout",
            "#transcode{acodec=s16l,channels=1,samplerate=48000}"
            f":std{{access=file,mux=wav,dst={out}}}",
            "vlc://quit",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return decode(str(out))


@pytest.fixture
def vlc_dir() -> Iterator[Path]:
    """Somewhere ``nobody`` may write (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="podium-vlc-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_vlc_plays_live_and_replay(server: Server, vlc_dir: Path) -> None:
    speech = FIXTURES / "speech-02.wav"
    host = make_account(server, "host")
    with server.client(host.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "For VLC"}).json()
        client.post(f"/api/v1/spaces/{space['id']}/start")

    async def broadcast() -> np.ndarray:
        speaking = asyncio.create_task(
            speak(space["whip_url"], host.token, WavSource(speech), seconds=10.0)
        )
        await asyncio.sleep(3.0)
        live = await asyncio.to_thread(vlc_to_wav, space["playlist_url"], vlc_dir / "live.wav", 4.0)
        await speaking
        return live

    live = asyncio.run(broadcast())
    assert len(live) / RATE > 2.5, "VLC did not play the live stream"
    assert rms(live) > 0.02, "VLC played silence"

    with server.client(host.token) as client:
        client.post(f"/api/v1/spaces/{space['id']}/end")
    replay = vlc_to_wav(space["playlist_url"], vlc_dir / "replay.wav")
    ffmpeg_view = decode(space["playlist_url"])
    assert len(replay) / RATE == pytest.approx(len(ffmpeg_view) / RATE, abs=0.3)
    # VLC must play what the server serves: compare with ffmpeg's reading of the same
    # replay (what the speaker's capture did to the speech is another test's business).
    start = loud_spans(ffmpeg_view)[0][0]
    assert_contains_in_order(replay, ffmpeg_view[start : start + RATE * 6])
    assert duration(space["playlist_url"]) > 9.0
