"""Every space's entry point is a multivariant playlist (``index.m3u8``) with one
audio-only variant, ``CODECS="mp4a.40.2"``, whose URI is the LL-HLS media playlist.

Players nobody here wrote start from it, live and replay: ffmpeg, VLC (``test_players``),
hls.js (``test_webapp_browser`` through the page, ``tests/edge`` through Varnish); so does
``podium listen``. Its declaration is true: the m3u8 library reads it as the spec says, and
every segment of a real spoken program stays within its ``BANDWIDTH``, the whole within its
``AVERAGE-BANDWIDTH``.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import httpx
import m3u8
import pytest

from harness import Server, make_account
from media_signal import FIXTURES, decode, loud_spans
from podium.clients import hls
from podium.clients.speak import WavSource, speak
from podium.segment.multivariant import AVERAGE_BANDWIDTH, PEAK_BANDWIDTH

SPEECH = FIXTURES / "speech-01.wav"
SPOKEN_S = 14.0


def _check_multivariant(url: str, ended: bool) -> None:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert answer.headers["access-control-allow-origin"] == "*"
    expected_cache = "public, max-age=86400" if ended else "public, max-age=60"
    assert answer.headers["cache-control"] == expected_cache
    document = m3u8.loads(answer.text)
    assert document.is_variant
    (variant,) = document.playlists
    assert variant.uri == "live.m3u8"
    assert variant.stream_info.codecs == "mp4a.40.2"
    assert variant.stream_info.bandwidth == PEAK_BANDWIDTH
    assert variant.stream_info.average_bandwidth == AVERAGE_BANDWIDTH
    assert variant.stream_info.resolution is None  # audio only
    assert hls.audio_variant(hls.parse_multivariant(answer.text)).uri == "live.m3u8"


def _podium_listen(url: str, out: Path, seconds: float) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "podium",
            "listen",
            url,
            "--seconds",
            str(seconds),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _speech_heard(program: object, at_least_s: float) -> None:
    spans = loud_spans(program)  # type: ignore[arg-type]
    loud = sum(end - start for start, end in spans) / 48_000
    assert loud >= at_least_s, f"only {loud:.1f} s of speech heard"


def _segment_bit_rates(media_playlist_url: str) -> list[tuple[int, Fraction]]:
    """(bytes, seconds) of every complete segment of an ended media playlist."""
    text = httpx.get(media_playlist_url, timeout=10).text
    base = media_playlist_url.rsplit("/", 1)[0]
    sizes = []
    for duration, name in re.findall(r"#EXTINF:([\d.]+),\s*\n(seg-\d+\.m4s)", text):
        segment = httpx.get(f"{base}/{name}", timeout=10)
        assert segment.status_code == 200, name
        sizes.append((len(segment.content), Fraction(duration)))
    return sizes


def test_every_space_is_entered_by_its_multivariant_playlist(
    server: Server, tmp_path: Path
) -> None:
    host = make_account(server, "entry")
    with server.client(host.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "Entry point"}).json()
        base = f"{server.url}/hls/{space['id']}"
        assert space["playlist_url"] == f"{base}/index.m3u8"
        assert space["media_playlist_url"] == f"{base}/live.m3u8"
        # Not live yet: no program, and no entry point to it either.
        assert httpx.get(space["playlist_url"], timeout=10).status_code == 404
        assert client.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
    with server.client() as listener:
        joined = listener.post(f"/api/v1/spaces/{space['id']}/join").json()
        assert joined["playlist_url"] == space["playlist_url"]
        assert joined["media_playlist_url"] == space["media_playlist_url"]
        links = listener.get(f"/api/v1/spaces/{space['id']}/state").json()["links"]
        assert links["playlist"] == space["playlist_url"]
    page = httpx.get(f"{server.url}/s/{space['id']}", timeout=10).text
    assert space["playlist_url"] in page

    async def live() -> None:
        speaking = asyncio.create_task(
            speak(space["whip_url"], host.token, WavSource(SPEECH), seconds=SPOKEN_S)
        )
        await asyncio.sleep(3.0)
        _check_multivariant(space["playlist_url"], ended=False)
        # ffmpeg and podium listen, live, from the entry point.
        ffmpeg_live = await asyncio.to_thread(decode, space["playlist_url"], "-t", "4")
        await asyncio.to_thread(_podium_listen, space["playlist_url"], tmp_path / "live.wav", 4.0)
        await speaking
        _speech_heard(ffmpeg_live, 1.0)
        _speech_heard(decode(str(tmp_path / "live.wav")), 1.0)

    asyncio.run(live())
    with server.client(host.token) as client:
        assert client.post(f"/api/v1/spaces/{space['id']}/end").status_code == 200
    _check_multivariant(space["playlist_url"], ended=True)
    # The replay, from the same entry point.
    replay = decode(space["playlist_url"])
    _speech_heard(replay, SPOKEN_S / 3)
    _podium_listen(space["playlist_url"], tmp_path / "replay.wav", 30.0)
    _speech_heard(decode(str(tmp_path / "replay.wav")), SPOKEN_S / 3)

    # The declared bit rates hold for what was served, fMP4 framing included.
    segments = _segment_bit_rates(space["media_playlist_url"])
    assert len(segments) >= 4
    peak = max(size * 8 / seconds for size, seconds in segments)
    average = sum(size for size, _ in segments) * 8 / sum(seconds for _, seconds in segments)
    assert peak <= PEAK_BANDWIDTH, (peak, PEAK_BANDWIDTH)
    assert average <= AVERAGE_BANDWIDTH, (average, AVERAGE_BANDWIDTH)
    # And says something: the average is not far below what is declared.
    assert average >= AVERAGE_BANDWIDTH * 0.7, (average, AVERAGE_BANDWIDTH)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg-0.m4s\n", "media playlist"),
        ('#EXTM3U\n#EXT-X-STREAM-INF:CODECS="mp4a.40.2"\nlive.m3u8\n', "BANDWIDTH"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=96000\n", "without a URI"),
        ("#EXTM3U\nlive.m3u8\n", "without #EXT-X-STREAM-INF"),
        ("#EXTM3U\n", "no variant"),
        ("live.m3u8\n", "#EXTM3U"),
    ],
    ids=["media", "no-bandwidth", "no-uri", "bare-uri", "empty", "not-hls"],
)
def test_what_is_not_a_multivariant_playlist_is_refused_by_line(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=r"^line \d+: ") as refused:
        hls.parse_multivariant(text)
    assert words in str(refused.value)


def test_each_parser_says_which_kind_it_was_given() -> None:
    entry = '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS="mp4a.40.2"\nlive.m3u8\n'
    with pytest.raises(ValueError, match="multivariant"):
        hls.parse_playlist(entry)
    video = '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="avc1.64001f"\nv.m3u8\n'
    with pytest.raises(ValueError, match="no variant is AAC audio"):
        hls.audio_variant(hls.parse_multivariant(video))
    both = entry + '#EXT-X-STREAM-INF:BANDWIDTH=160000,CODECS="mp4a.40.2"\nhigh.m3u8\n'
    assert hls.audio_variant(hls.parse_multivariant(video + both[8:])).uri == "high.m3u8"
