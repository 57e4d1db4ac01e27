"""End to end: audio in over WHIP, out through LL-HLS (live and replay) and as one M4A file.

Real server, real WebRTC peer (aiortc) as the speaker, real ffmpeg/ffprobe as listeners;
the audio is checked by its signal.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from harness import Server, make_account
from media_signal import (
    FIXTURES,
    RATE,
    assert_contains_in_order,
    assert_continuous,
    best_alignment,
    decode,
    duration,
    load_wav,
    loud_spans,
    packet_times,
    peak_hz,
    rms,
)
from podium.clients.speak import ToneSource, WavSource, speak

TONE_SECONDS = 2.0


class ToneThenSpeech:
    """A 1 kHz tone, a short pause, then a speech recording: one source, two signals."""

    def __init__(self, speech: Path) -> None:
        self._tone = ToneSource(1000.0, amplitude=0.5)
        self._speech = WavSource(speech)
        self._ticks = 0

    def read(self) -> npt.NDArray[np.float32] | None:
        self._ticks += 1
        if self._ticks <= TONE_SECONDS * 50:
            return self._tone.read()
        if self._ticks <= (TONE_SECONDS + 1) * 50:
            return np.zeros(960, dtype=np.float32)
        return self._speech.read()

    def close(self) -> None:
        self._tone.close()
        self._speech.close()


def _preload_hint(playlist: str) -> tuple[int, int]:
    match = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-(\d+)-(\d+)\.m4s"', playlist)
    assert match, playlist
    return int(match[1]), int(match[2])


async def _broadcast_and_follow(space: dict[str, str], token: str) -> dict[str, object]:
    """Speak, and meanwhile follow the live playlist as an LL-HLS player would."""
    speech = FIXTURES / "speech-01.wav"
    speaking = asyncio.create_task(
        speak(space["whip_url"], token, ToneThenSpeech(speech), seconds=None)
    )
    observed: dict[str, object] = {}
    async with httpx.AsyncClient(timeout=15) as http:
        await asyncio.sleep(1.0)
        live = await http.get(space["media_playlist_url"])
        assert live.status_code == 200
        assert live.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert live.headers["cache-control"] == "public, max-age=1"
        msn, part = _preload_hint(live.text)
        # Blocking reload: ask for the hinted part; the answer waits until it exists.
        blocked = await http.get(
            space["media_playlist_url"], params={"_HLS_msn": str(msn), "_HLS_part": str(part)}
        )
        assert blocked.status_code == 200
        assert f'URI="part-{msn}-{part}.m4s"' in blocked.text
        assert blocked.headers["cache-control"] == "public, max-age=6"
        # The hinted part itself, requested before it exists, is held and then served.
        next_msn, next_part = _preload_hint(blocked.text)
        base = space["media_playlist_url"].rsplit("/", 1)[0]
        early = await http.get(f"{base}/part-{next_msn}-{next_part}.m4s")
        assert early.status_code == 200
        assert early.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert early.headers["access-control-allow-origin"] == "*"
        # Far ahead is refused at once, as 8216bis says.
        ahead = await http.get(space["media_playlist_url"], params={"_HLS_msn": str(msn + 10)})
        assert ahead.status_code == 400
        observed["live_playlist"] = live.text
    observed["report"] = await speaking
    return observed


def test_whip_in_hls_out_live_replay_and_download(server: Server, tmp_path: Path) -> None:
    host = make_account(server, "host")
    with server.client(host.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "Signal check"}).json()
        assert space["whip_url"].endswith(f"/api/v1/spaces/{space['id']}/whip")
        assert client.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200

    observed = asyncio.run(_broadcast_and_follow(space, host.token))
    live = str(observed["live_playlist"])
    for tag in (
        "#EXT-X-PART-INF:PART-TARGET=",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES",
        "#EXT-X-PROGRAM-DATE-TIME:",
        '#EXT-X-MAP:URI="init.mp4"',
    ):
        assert tag in live
    assert "#EXT-X-ENDLIST" not in live

    with server.client(host.token) as client:
        ended = client.post(f"/api/v1/spaces/{space['id']}/end")
        assert ended.json()["status"] == "ended"
        # The same playlist is the replay the moment the space ends: no 404 window.
        replay_playlist = client.get(space["media_playlist_url"])
        assert replay_playlist.status_code == 200
        assert replay_playlist.text.rstrip().endswith("#EXT-X-ENDLIST")
        assert "#EXT-X-PRELOAD-HINT" not in replay_playlist.text

    # The replay, as an ordinary HLS client (ffmpeg ignores the low-latency tags) sees it.
    program = decode(space["playlist_url"])
    assert_continuous(packet_times(space["playlist_url"]))

    spans = loud_spans(program)
    tone_start, tone_end = spans[0]
    tone = program[tone_start:tone_end]
    assert (tone_end - tone_start) / RATE == pytest.approx(TONE_SECONDS, abs=0.15)
    assert peak_hz(tone[RATE // 4 : -RATE // 4]) == pytest.approx(1000.0, abs=5)
    assert rms(tone[RATE // 4 : -RATE // 4]) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)

    # The recording's last second is near silence; the space may end while it is in flight.
    speech = load_wav(FIXTURES / "speech-01.wav")[: -RATE // 2]
    assert_contains_in_order(program[tone_end:], speech)

    # The single-file download: ready within seconds, the whole program, same audio.
    deadline = time.monotonic() + 30
    while True:
        answer = httpx.get(space["replay_url"], timeout=15)
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        assert answer.status_code == 503
        time.sleep(float(answer.headers["retry-after"]))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "audio/mp4"
    download = tmp_path / "replay.m4a"
    download.write_bytes(answer.content)
    assert duration(str(download)) == pytest.approx(len(program) / RATE, abs=0.1)
    file_audio = decode(str(download))
    _, file_correlation = best_alignment(file_audio, program[RATE : RATE * 10])
    assert file_correlation > 0.99


def test_speaking_needs_a_live_space_and_the_host(server: Server) -> None:
    host, other = make_account(server, "host"), make_account(server, "other")
    offer = "v=0\r\n"
    with server.client(host.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "Not yet"}).json()
        headers = {"Content-Type": "application/sdp"}
        early = client.post(f"/api/v1/spaces/{space['id']}/whip", content=offer, headers=headers)
        assert early.status_code == 409
        client.post(f"/api/v1/spaces/{space['id']}/start")
    with server.client(other.token) as client:
        refused = client.post(
            f"/api/v1/spaces/{space['id']}/whip",
            content=offer,
            headers={"Content-Type": "application/sdp"},
        )
        assert refused.status_code == 403
    with server.client() as anon:
        missing = anon.post(
            f"/api/v1/spaces/{space['id']}/whip",
            content=offer,
            headers={"Content-Type": "application/sdp"},
        )
        assert missing.status_code == 401
    with server.client(host.token) as client:
        wrong_type = client.post(
            f"/api/v1/spaces/{space['id']}/whip",
            content=offer,
            headers={"Content-Type": "application/json"},
        )
        assert wrong_type.status_code == 415
        malformed = client.post(
            f"/api/v1/spaces/{space['id']}/whip",
            content="v=0\r\nnonsense\r\n",
            headers={"Content-Type": "application/sdp"},
        )
        assert malformed.status_code == 422
        assert malformed.headers["content-type"].startswith("application/problem+json")
        huge = client.post(
            f"/api/v1/spaces/{space['id']}/whip",
            content="a=x\r\n" * 5000,
            headers={"Content-Type": "application/sdp"},
        )
        assert huge.status_code in (413, 422)
        # Nothing was left behind: the space still ends cleanly.
        assert client.post(f"/api/v1/spaces/{space['id']}/end").json()["status"] == "ended"


def test_cors_preflight_lets_a_page_on_another_origin_publish(server: Server) -> None:
    with server.client() as anon:
        preflight = anon.options(
            "/api/v1/spaces/abcdefghij/whip",
            headers={
                "Origin": "https://studio.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]


def test_bad_media_requests_get_clear_answers(server: Server) -> None:
    host = make_account(server, "host")
    with server.client(host.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "Probe"}).json()
    base = space["media_playlist_url"].rsplit("/", 1)[0]
    with httpx.Client(timeout=15) as http:
        assert http.get(space["media_playlist_url"]).status_code == 404  # not live yet: no program
        with server.client(host.token) as client:
            client.post(f"/api/v1/spaces/{space['id']}/start")
        assert http.get(space["media_playlist_url"]).status_code == 200
        for name in (
            "part-999999-0.m4s",  # far in the future: no waiting, just not there
            "part-00-1.m4s",  # not the canonical name of anything
            "seg-1.m4s.tmp",
            "manifest.jsonl",
            "..%2Fmanifest.jsonl",
            "%2e%2e%2f%2e%2e%2fpodium.sqlite3",
            "init.mp4%00.m3u8",
            "part-1-99999.m4s",
        ):
            answer = http.get(f"{base}/{name}")
            assert answer.status_code == 404, name
            assert answer.headers["content-type"].startswith("application/problem+json")
        for path in ("/hls/../../etc/passwd", "/hls/ABC/live.m3u8", "/hls/x/init.mp4"):
            assert http.get(f"{server.url}{path}").status_code == 404, path
        for query in ("_HLS_part=1", "_HLS_msn=x", "_HLS_msn=-1", "_HLS_msn=99999999"):
            refused = http.get(f"{space['media_playlist_url']}?{query}")
            assert refused.status_code == 400, query
            assert refused.headers["cache-control"] == "no-store"
        with server.client(host.token) as client:
            client.post(f"/api/v1/spaces/{space['id']}/end")
        # Once ended, delivery directives are ignored, as 8216bis says.
        assert http.get(f"{space['media_playlist_url']}?_HLS_msn=99999999").status_code == 200
