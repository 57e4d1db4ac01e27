"""``listen()`` against the real origin routes, served by uvicorn on a loopback port, with a
program of real AAC cut by the real segmenter and published part by part in real time.

Assertions are on the signal (FFT peaks, cross-correlation, exact sample counts) and on
counts; measured times are only checked for being reported and loosely bounded.
"""

from __future__ import annotations

import asyncio
import random
import time
import wave
from fractions import Fraction
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from listen_media import (
    PROGRAM_START,
    RATE,
    Faults,
    begin,
    chirp,
    cut,
    encode,
    end,
    gap,
    origin_app,
    peak_frequency,
    playlist_url,
    publish,
    publish_live,
    serve,
    tone,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from podium.clients.listen import ListenReport, RetryPolicy, listen
from podium.errors import ClientError

PART = 12288  # samples per part
SEGMENT = 8 * PART
PRIMING = 1024  # the AAC encoder's priming unit sits before program sample 0
HOLD_BACK = 0.768


def read_wav(path: Path) -> npt.NDArray[np.float64]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        data = wav.readframes(wav.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32767.0


def locate(haystack: npt.NDArray[np.float64], needle: npt.NDArray[np.float64]) -> tuple[int, float]:
    """Where ``needle`` sits in ``haystack``, and the normalised correlation there."""
    # Cross-correlation by FFT: np.correlate would take seconds on a few seconds of audio.
    size = len(haystack) + len(needle)
    spectrum = np.fft.rfft(haystack, size) * np.conj(np.fft.rfft(needle, size))
    scores = np.fft.irfft(spectrum, size)[: len(haystack) - len(needle) + 1]
    lag = int(np.argmax(scores))
    window = haystack[lag : lag + len(needle)]
    similarity = float(scores[lag] / (np.linalg.norm(window) * np.linalg.norm(needle)))
    return lag, similarity


class Sleeps:
    """A ``sleep`` that records what it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_live_listener_hears_the_tone_at_the_live_edge(tmp_path: Path) -> None:
    backlog = 64  # parts: 16 s of history, so that delta updates skip old segments
    encoded = encode(tone(backlog * PART / RATE + 5.0))
    program_start = Fraction(time.time()) - Fraction(backlog * PART - PRIMING, RATE)
    parts = cut(encoded.units, program_start)
    app, origin = origin_app(tmp_path)
    faults = Faults(app)
    begin(origin, encoded.init)
    publish(origin, parts[:backlog])
    out = tmp_path / "live.wav"

    async def scenario() -> ListenReport:
        async with serve(faults) as base:
            live = asyncio.create_task(publish_live(origin, parts[backlog:], then_end=False))
            try:
                return await listen(playlist_url(base), seconds=3.0, out_wav=out)
            finally:
                live.cancel()
                end(origin)  # releases any blocked request so the server stops at once

    report = asyncio.run(scenario())

    # Continuity: every part once, in order, decoded whole, nothing missing.
    fetched = [name for name in faults.names() if name.startswith("part-")]
    assert len(fetched) == len(set(fetched))
    # The server may have seen one more request: the part in flight when time ran out,
    # which the client abandoned (and rightly did not count).
    assert report.parts >= 3
    assert report.parts <= len(fetched) <= report.parts + 1
    numbers = [tuple(int(n) for n in name[5:-4].split("-")) for name in fetched]
    assert numbers == sorted(numbers)
    assert faults.names().count("init.mp4") == 1
    assert report.samples_written == report.parts * PART
    assert report.seconds == report.parts * PART / RATE
    assert report.continuity_errors == report.missing == report.http_errors == 0
    assert report.gaps == report.discontinuities == 0
    assert report.segments == 0
    assert not report.ended
    # Blocking reloads, answered as delta updates once the program is long enough.
    assert report.playlist_requests >= 2
    assert report.delta_updates >= 1
    assert any("_HLS_skip=YES" in r and "_HLS_part=" in r for r in faults.requests)

    # Signal: the tone, and as many samples as reported.
    pcm = read_wav(out)
    assert len(pcm) == report.samples_written
    assert abs(peak_frequency(pcm[2048:]) - 1000.0) < 5.0
    assert 0.3 < np.sqrt(np.mean(pcm[2048:] ** 2)) < 0.4  # 0.5 amplitude sine: 0.354

    # Measured values, bounded only loosely.
    assert report.stalls == 0
    assert report.time_to_first_audio is not None
    assert 0 < report.time_to_first_audio < 3.0
    assert report.time_to_playback is not None
    assert report.time_to_first_audio <= report.time_to_playback
    assert report.latency_p50 is not None
    assert report.latency_p95 is not None
    assert report.latency_p95 < HOLD_BACK + 2 * 0.256 + 1.0
    assert report.playback_latency_p95 is not None
    # A player plays PART-HOLD-BACK behind the newest part it has.
    assert HOLD_BACK - 0.1 < report.playback_latency_p95 < HOLD_BACK + 2 * 0.256 + 1.5


def test_live_listener_follows_to_the_end(tmp_path: Path) -> None:
    backlog = 5
    encoded = encode(chirp(backlog * PART / RATE + 1.2))
    program_start = Fraction(time.time()) - Fraction(backlog * PART - PRIMING, RATE)
    parts = cut(encoded.units, program_start)
    app, origin = origin_app(tmp_path)
    begin(origin, encoded.init)
    publish(origin, parts[:backlog])
    out = tmp_path / "end.wav"

    async def scenario() -> ListenReport:
        async with serve(app) as base:
            live = asyncio.create_task(publish_live(origin, parts[backlog:], then_end=True))
            report = await listen(playlist_url(base), seconds=10.0, out_wav=out)
            await live
            return report

    report = asyncio.run(scenario())
    assert report.ended
    assert report.stalls == 0
    assert report.continuity_errors == report.missing == 0
    # The end of what was heard is the end of the program, sample for sample, and it
    # started a whole number of parts into it.
    pcm = read_wav(out)
    signal = encoded.signal.astype(np.float64)
    start = len(signal) - len(pcm)
    assert (start + PRIMING) % PART == 0
    assert start > 0
    lag, similarity = locate(signal, pcm[2048:])
    assert lag == start + 2048
    assert similarity > 0.95


def replay(tmp_path: Path, seconds: float = 3.0) -> tuple[Faults, object, npt.NDArray[np.float32]]:
    """An ended program of a chirp, served through :class:`Faults`."""
    encoded = encode(chirp(seconds))
    app, origin = origin_app(tmp_path)
    begin(origin, encoded.init)
    publish(origin, cut(encoded.units, PROGRAM_START))
    end(origin)
    return Faults(app), origin, encoded.signal


def test_replay_is_read_whole_from_the_start(tmp_path: Path) -> None:
    faults, _, signal = replay(tmp_path)
    out = tmp_path / "replay.wav"
    wall = float(PROGRAM_START) + 100.0

    async def scenario() -> ListenReport:
        async with serve(faults) as base:
            return await listen(
                playlist_url(base),
                seconds=10.0,
                out_wav=out,
                from_start=True,
                wall_clock=lambda: wall,
            )

    report = asyncio.run(scenario())
    assert report.ended
    assert (report.segments, report.parts, report.playlist_requests) == (2, 0, 1)
    assert faults.names() == ["live.m3u8", "init.mp4", "seg-0.m4s", "seg-1.m4s"]
    total = PRIMING + len(signal)
    assert report.samples_written == total
    assert report.seconds == total / RATE
    assert report.stalls == 0

    pcm = read_wav(out)
    assert len(pcm) == total
    lag, similarity = locate(pcm, signal[: len(signal) // 2].astype(np.float64))
    assert lag == PRIMING
    assert similarity > 0.95

    # Latency from the fixed wall clock: each segment's end against "now".
    first_end = float(PROGRAM_START) - PRIMING / RATE + SEGMENT / RATE
    last_end = float(PROGRAM_START) + len(signal) / RATE
    assert report.latency_p50 == pytest.approx(wall - last_end, abs=1e-3)
    assert report.latency_p95 == pytest.approx(wall - first_end, abs=1e-3)


def test_gap_and_discontinuity_in_a_replay(tmp_path: Path) -> None:
    first = encode(tone(3.0, 1000.0))
    first_parts = cut(first.units, PROGRAM_START)
    first_end = PRIMING + len(first.signal)  # decode time where the first run stops
    gap_msn = first_parts[-1].msn + 1
    # The second encoder run resumes one segment later, on the same decode timeline.
    resume = len(first.signal) + SEGMENT
    second = encode(tone(2.5, 2000.0), pts=resume)
    second_parts = cut(second.units, PROGRAM_START, first_msn=gap_msn + 1, decode_origin=-PRIMING)
    app, origin = origin_app(tmp_path)
    faults = Faults(app)
    begin(origin, first.init)
    publish(origin, first_parts)
    gap(origin, gap_msn, SEGMENT, PROGRAM_START + Fraction(len(first.signal), RATE))
    publish(origin, second_parts)
    end(origin)
    out = tmp_path / "gap.wav"

    async def scenario() -> ListenReport:
        async with serve(faults) as base:
            return await listen(playlist_url(base), seconds=10.0, out_wav=out, from_start=True)

    report = asyncio.run(scenario())
    assert report.ended
    assert (report.gaps, report.discontinuities) == (1, 1)
    assert report.silence_seconds == SEGMENT / RATE
    assert report.continuity_errors == 0
    assert faults.names().count("init.mp4") == 1  # the map did not change
    second_start = first_end + SEGMENT
    assert report.samples_written == second_start + PRIMING + len(second.signal)

    pcm = read_wav(out)
    assert abs(peak_frequency(pcm[2048:first_end]) - 1000.0) < 5.0
    assert np.max(np.abs(pcm[first_end:second_start])) == 0.0
    assert abs(peak_frequency(pcm[second_start + 2048 :]) - 2000.0) < 5.0


def test_retry_after_is_honoured_with_jitter(tmp_path: Path) -> None:
    faults, _, signal = replay(tmp_path)
    faults.fail("live.m3u8", 503, {"Retry-After": "1"})
    faults.fail("seg-0.m4s", 429, {"Retry-After": "2"})
    sleeps = Sleeps()
    policy = RetryPolicy(base=0.5)

    async def scenario() -> ListenReport:
        async with serve(faults) as base:
            return await listen(
                playlist_url(base),
                seconds=10.0,
                out_wav=None,
                from_start=True,
                sleep=sleeps,
                rng=random.Random(3),
                retry=policy,
            )

    report = asyncio.run(scenario())
    assert len(sleeps.waits) == 2
    assert 1.0 <= sleeps.waits[0] < 1.0 + 0.5  # first retry: window base * 2**0
    assert 2.0 <= sleeps.waits[1] < 2.0 + 0.5
    assert (report.retries, report.http_errors, report.playlist_requests) == (2, 2, 2)
    assert faults.names() == [
        "live.m3u8",
        "live.m3u8",
        "init.mp4",
        "seg-0.m4s",
        "seg-0.m4s",
        "seg-1.m4s",
    ]
    assert report.samples_written == PRIMING + len(signal)
    assert report.missing == 0


@pytest.mark.parametrize(
    ("failures", "retry_after", "slept"),
    [(7, None, 6), (1, "3600", 0)],
    ids=["budget-exhausted", "retry-after-too-long"],
)
def test_a_playlist_that_stays_unavailable_is_a_client_error(
    tmp_path: Path, failures: int, retry_after: str | None, slept: int
) -> None:
    faults, _, _ = replay(tmp_path)
    for _ in range(failures):
        faults.fail("live.m3u8", 503, {"Retry-After": retry_after} if retry_after else {})
    sleeps = Sleeps()

    async def scenario() -> None:
        async with serve(faults) as base:
            await listen(playlist_url(base), seconds=10.0, out_wav=None, sleep=sleeps)

    with pytest.raises(ClientError, match="answered 503") as caught:
        asyncio.run(scenario())
    assert caught.value.status == 503
    assert len(sleeps.waits) == slept


def test_a_part_that_is_gone_is_counted_and_skipped(tmp_path: Path) -> None:
    encoded = encode(tone(6.0))
    app, origin = origin_app(tmp_path)
    faults = Faults(app)
    begin(origin, encoded.init)
    publish(origin, cut(encoded.units, PROGRAM_START)[: 2 * 8 + 4])  # live, not ended
    faults.fail("part-2-1.m4s", 404)
    out = tmp_path / "missing.wav"

    async def scenario() -> ListenReport:
        async with serve(faults) as base:
            try:
                # From the start of a live playlist: whole segments, then parts, then a
                # blocking reload for the next part that does not come within 1 s.
                return await listen(playlist_url(base), seconds=1.0, out_wav=out, from_start=True)
            finally:
                end(origin)

    report = asyncio.run(scenario())
    assert (report.segments, report.parts) == (2, 3)
    assert (report.missing, report.http_errors, report.continuity_errors) == (1, 1, 1)
    assert report.silence_seconds == PART / RATE
    assert not report.ended
    assert faults.requests[-1].endswith("live.m3u8?_HLS_msn=2&_HLS_part=4&_HLS_skip=YES")
    pcm = read_wav(out)
    assert len(pcm) == 2 * SEGMENT + 4 * PART
    hole = 2 * SEGMENT + PART
    assert np.max(np.abs(pcm[hole : hole + PART])) == 0.0
    assert abs(peak_frequency(pcm[2048:hole]) - 1000.0) < 5.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html>Details not available</html>", "not a valid HLS media playlist: line 1"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n#EXTINF:2,\ns.m4s\n", "line 4"),
        (
            '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS="avc1.64001f"\na.m3u8\n',
            "offers nothing to play: no variant is AAC audio",
        ),
        # A variant that is itself a multivariant playlist (here: the same one) is refused,
        # never followed round again.
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlive.m3u8\n", "multivariant playlist"),
    ],
)
def test_a_malformed_playlist_is_a_client_error(body: str, message: str) -> None:
    async def playlist(request: object) -> PlainTextResponse:
        return PlainTextResponse(body, media_type="application/vnd.apple.mpegurl")

    app = Starlette(routes=[Route("/live.m3u8", playlist)])

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as client:
            await listen("http://origin.test/live.m3u8", seconds=5.0, out_wav=None, client=client)

    with pytest.raises(ClientError, match=message):
        asyncio.run(scenario())


def test_an_unknown_space_is_a_client_error_with_the_servers_reason(tmp_path: Path) -> None:
    app, _ = origin_app(tmp_path)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as client:
            await listen(
                "http://origin.test/hls/nosuchspace/live.m3u8",
                seconds=5.0,
                out_wav=None,
                client=client,
            )

    with pytest.raises(ClientError, match="404 Not Found: space 'nosuchspace' has no program"):
        asyncio.run(scenario())


def test_ordinary_hls_is_polled_at_the_target_duration(tmp_path: Path) -> None:
    """No parts, no blocking reload: segments, and reloads paced as 8216bis 6.3.4 says."""
    encoded = encode(tone(9.0)[: 4 * SEGMENT - PRIMING])  # exactly four segments
    segments: dict[int, bytes] = {}
    for part in cut(encoded.units, PROGRAM_START):
        segments[part.msn] = segments.get(part.msn, b"") + part.data
    objects = {f"s{msn}.m4s": data for msn, data in segments.items()}
    objects["init.mp4"] = encoded.init
    served: list[str] = []

    def playlist_text(count: int, ended: bool) -> str:
        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", '#EXT-X-MAP:URI="init.mp4"']
        for msn in range(count):
            lines += ["#EXTINF:2.048,", f"s{msn}.m4s"]
        return "\n".join([*lines, "#EXT-X-ENDLIST"] if ended else lines) + "\n"

    async def playlist(request: object) -> PlainTextResponse:
        served.append("live.m3u8")
        # The first load shows three segments of a live stream; the next, the last
        # segment and the end.
        first = served.count("live.m3u8") == 1
        return PlainTextResponse(playlist_text(3 if first else len(segments), not first))

    async def media(request: Request) -> Response:
        name = request.path_params["name"]
        served.append(name)
        return Response(objects[name], media_type="audio/mp4")

    app = Starlette(routes=[Route("/live.m3u8", playlist), Route("/{name}", media)])
    sleeps = Sleeps()

    async def scenario() -> ListenReport:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as client:
            return await listen(
                "http://origin.test/live.m3u8",
                seconds=10.0,
                out_wav=None,
                client=client,
                sleep=sleeps,
            )

    report = asyncio.run(scenario())
    # HOLD-BACK defaults to three Target Durations: 6 s back is the first segment.
    assert served == ["live.m3u8", "init.mp4", "s0.m4s", "s1.m4s", "s2.m4s", "live.m3u8", "s3.m4s"]
    # "the client MUST wait for at least the target duration before attempting to reload
    # the Playlist file again, measured from the last time the client began loading".
    assert len(sleeps.waits) == 1
    assert 1.0 < sleeps.waits[0] <= 2.0
    assert report.ended
    assert (report.segments, report.parts, report.playlist_requests) == (4, 0, 2)
    assert report.samples_written == PRIMING + len(encoded.signal)


def test_a_server_that_keeps_refusing_directives_is_a_client_error() -> None:
    empty = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.768\n"
        '#EXT-X-PART-INF:PART-TARGET=0.256\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p-0-0.m4s"\n'
    )
    served: list[str] = []

    async def playlist(request: Request) -> PlainTextResponse:
        served.append(str(request.query_params))
        if "_HLS_msn" in request.query_params:
            return PlainTextResponse("too far ahead", status_code=400)
        return PlainTextResponse(empty)

    app = Starlette(routes=[Route("/live.m3u8", playlist)])

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as client:
            await listen("http://origin.test/live.m3u8", seconds=5.0, out_wav=None, client=client)

    with pytest.raises(ClientError, match="keeps refusing delivery directives"):
        asyncio.run(scenario())
    # The first load, then each refused blocking reload followed by a plain one.
    assert served[:3] == ["", "_HLS_msn=0&_HLS_part=0", ""]
    assert len(served) == 1 + 2 * 3 + 1
