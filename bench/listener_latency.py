"""Listener latency: speaker mouth to LL-HLS listener ear, and time to first audio.

DESIGN targets: "listener mouth-to-ear latency through an edge: p95 <= 1.5 s" (anchors:
Apple LL-HLS <= 2 s, classic HLS >= 6 s) and "time to first audio for a new listener:
p95 <= 1 s" (typical HLS players 2-5 s). This is a benchmark, not a test: it measures,
prints a table and asserts nothing. By default it measures **direct to the origin** (no
edge, no CDN in between); with ``--edge varnish`` every listener goes **through an edge**
instead: a real ``varnishd`` configured by :func:`podium.edge.varnish.render` in front of
Podium's origin, and another, configured the same way, in front of the reference's HTTP
server. The speaker still talks to the origin (WHIP is not cached).

One run, one machine, one signal, three pipelines fed the same samples at the same moment:

- The **source** is 1 kHz bursts of 50 ms at amplitude 0.5, one every second, silence in
  between, the first one second in. When the WHIP client's track asks the source for the
  20 ms tick in which a burst starts, the source notes ``time.monotonic()`` and
  ``time.time()``: the burst's *emission*, the moment the "mouth" hands it over. The
  same tick is written, at that moment, to the stdin of one ffmpeg process.
- **Podium**: a real ``podium serve`` subprocess on loopback; the bursts go in through
  the real WHIP client (:func:`podium.clients.speak.speak`, aiortc, Opus) and come out
  through the real LL-HLS client (:func:`podium.clients.listen.listen`, blocking playlist
  reloads, parts). The listen client is handed an ``httpx.AsyncClient`` with a response
  hook that reads each body and notes when it was complete: the *arrival* of every part
  (and of any whole segment), without changing the client.
- **Reference**: ``ffmpeg -f f32le -i pipe:0`` encoding the same ticks with its native
  ``aac`` (64 kbit/s mono, like Podium) into two classic HLS outputs, ``-hls_time 2`` and
  ``-hls_time 6`` (fMP4 segments, ``temp_file`` so a segment is listed only once it is
  whole), served by Python's plain ``http.server`` with Podium's origin's cache policy
  (live playlist ``public, max-age=1``, init and segments ``immutable``, errors
  ``no-store``; under ``/hls/`` so the edge applies the same rules as to Podium's
  playlists). A follower per output reloads the playlist every 50 ms and fetches each
  new segment at once: the *arrival* is when the segment could first be had. A real
  player reloads every target duration (8216bis 6.3.4), so this favours the reference.

Every received AAC frame, in decode order, is decoded with PyAV to 48 kHz PCM; burst
onsets are found in that signal (first sample above 0.2 after 0.5 s under it), and each
onset is matched to its emission. For ffmpeg, by media position (its timeline starts
with the first sample written to it). For Podium, whose program timeline starts before
the speaker, by ``EXT-X-PROGRAM-DATE-TIME``: the onset's program time is matched to the
emission with the nearest wall time (bursts are 1 s apart, so a match is unambiguous
while ingest takes well under 0.5 s).

- **received** latency: arrival of the part (segment) holding the onset's AAC frame,
  minus the emission. What a listener has, before it buffers anything.
- **played** latency: when a player would play the onset. A player starts once it holds
  the playlist's start hold-back (8216bis: ``PART-HOLD-BACK`` with parts, else
  ``HOLD-BACK``, by default three target durations) counted from where it started, then
  plays in real time; media arriving after its slot delays it (a stall) and everything
  after. Played minus emission is the mouth-to-ear latency.
- **time to first audio**: ``--listeners`` more listen clients join at random moments
  while the speaker talks, each for 3 s; :attr:`ListenReport.time_to_first_audio` is the
  time from the call to the first decoded audio (connection, playlist, init, first part),
  :attr:`ListenReport.time_to_playback` until the modelled player would start. Their
  bursts are also pooled into a second Podium row: each joins at another phase of the
  part grid, so their played latencies spread where the one long listener's cannot.
  Bursts emitted before a listener began are left out of its figures.

Run from the repository root::

    .venv/bin/python bench/listener_latency.py [--seconds 30] [--listeners 10] \
        [--edge none|varnish] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import functools
import http.server
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import numpy.typing as npt

from edgebench import start_varnish
from podium.clients.hls import AudioTrack, Sample, parse_init, parse_playlist, parse_samples
from podium.clients.listen import ListenReport, listen, percentile
from podium.clients.speak import speak
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES

BURST_HZ = 1000.0
BURST_SAMPLES = SAMPLE_RATE // 20  # 50 ms
PERIOD_SAMPLES = SAMPLE_RATE  # one burst a second: a multiple of the 20 ms tick
AMPLITUDE = 0.5
# Onset detection: above THRESHOLD after QUIET of nothing above it. The bursts arrive at
# about AMPLITUDE (Opus and AAC at 64 kbit/s keep a pure tone's level within 1 dB);
# 0.2 is well clear of codec noise and of AAC pre-echo before the onset.
THRESHOLD = 0.4 * AMPLITUDE
QUIET_SAMPLES = SAMPLE_RATE // 2
# A detected onset further than this from every emission is not a burst (or is lost).
MATCH_SECONDS = 0.4
JOIN_SECONDS = 3.0  # how long each joining listener listens
POLL_SECONDS = 0.05  # the reference follower's playlist reload interval
BITRATE = "64k"
URL_LINE = re.compile(r"Podium is listening on (http://\S+)")
# What listeners fetch through: nothing (the origin itself) or a Varnish edge.
EDGES = {"none": "origin", "varnish": "through Varnish"}
# The reference's HTTP server sends what Podium's origin sends for the same kinds of
# object (podium.origin.routes): a live playlist may be a second old at an edge, media
# never changes once listed, and an error (a segment asked for too early) must not stick.
PLAYLIST_CACHE = "public, max-age=1"
MEDIA_CACHE = "public, max-age=31536000, immutable"


# -- the source --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Emission:
    """Burst ``index`` starts at source sample ``position``; handed over at these times."""

    index: int
    position: int
    monotonic: float
    wall: float


class BurstSource:
    """An :class:`~podium.clients.speak.AudioSource`: 50 ms 1 kHz bursts every second.

    Endless (the WHIP client stops after its ``seconds``). Each tick is also passed to
    ``tee`` (the reference encoder's stdin) in the same call, so both pipelines get the
    same samples at the same moment.
    """

    def __init__(self, tee: Callable[[npt.NDArray[np.float32]], None] | None) -> None:
        self.tee = tee
        self.position = 0
        self.emissions: list[Emission] = []
        self.first_read: float | None = None

    def read(self) -> npt.NDArray[np.float32]:
        now, wall = time.monotonic(), time.time()
        if self.first_read is None:
            self.first_read = now
        start = self.position
        n = np.arange(start, start + TICK_SAMPLES)
        offset = n % PERIOD_SAMPLES
        # No burst in the first period: the connection settles before the first onset.
        on = (offset < BURST_SAMPLES) & (n >= PERIOD_SAMPLES)
        tick = np.where(
            on, AMPLITUDE * np.sin(2 * np.pi * BURST_HZ * offset / SAMPLE_RATE), 0.0
        ).astype(np.float32)
        if start >= PERIOD_SAMPLES and start % PERIOD_SAMPLES == 0:
            index = start // PERIOD_SAMPLES - 1
            self.emissions.append(Emission(index, start, now, wall))
        self.position += TICK_SAMPLES
        if self.tee is not None:
            self.tee(tick)
        return tick

    def close(self) -> None:
        pass


# -- what arrived, and when --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetched:
    """A media object's body (init, part or segment), complete at ``arrival`` (monotonic);
    ``wall``: ``PROGRAM-DATE-TIME`` of its first sample, when the playlist said."""

    url: str
    arrival: float
    body: bytes
    wall: Fraction | None = None


@dataclass
class Capture:
    """Everything one listener fetched: the init segment and the media, in fetch order.
    ``started``: when the listener began (monotonic); bursts emitted before do not count."""

    started: float = field(default_factory=time.monotonic)
    init: bytes | None = None
    media: list[Fetched] = field(default_factory=list)
    hold_back: Fraction | None = None
    walls: dict[str, Fraction] = field(default_factory=dict)

    async def hook(self, response: httpx.Response) -> None:
        """httpx response hook: read the body now, so the arrival is when it was complete."""
        await response.aread()
        arrival = time.monotonic()
        if not response.is_success:
            return
        url, path = str(response.url.copy_with(query=None)), response.url.path
        if path.endswith(".m3u8"):
            self.note_playlist(response.url, response.text)
        elif path.endswith(".mp4"):
            self.init = response.content
        elif path.endswith(".m4s"):
            self.media.append(Fetched(url, arrival, response.content, self.walls.get(url)))

    def note_playlist(self, base: httpx.URL, text: str) -> None:
        playlist = parse_playlist(text)
        self.hold_back = playlist.start_hold_back
        for segment in playlist.segments:
            if segment.program_date_time is None:
                continue
            if segment.uri is not None:
                self.walls[str(base.join(segment.uri))] = segment.program_date_time
            for index, part in enumerate(segment.parts):
                pdt = segment.program_date_time + segment.part_offset(index)
                self.walls[str(base.join(part.uri))] = pdt


# -- decoding and timing -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One AAC frame of the received stream: PCM ``[start, start + length)``."""

    start: int
    length: int
    arrival: float
    wall: float | None


@dataclass(frozen=True, slots=True)
class Stream:
    """The received audio in decode order (index 0 = first frame) and its frames."""

    pcm: npt.NDArray[np.float32]
    frames: tuple[Frame, ...]
    origin: int  # decode time (48 kHz samples) of pcm[0]

    def wall_at(self, index: int) -> float | None:
        """Program wall time of PCM sample ``index``, from the nearest frame that has one."""
        known = [frame for frame in self.frames if frame.wall is not None]
        if not known:
            return None
        nearest = min(known, key=lambda frame: abs(frame.start - index))
        assert nearest.wall is not None
        return nearest.wall + (index - nearest.start) / SAMPLE_RATE


def assemble(capture: Capture) -> Stream:
    """Decode every received AAC frame once, in decode order (earliest arrival wins)."""
    if capture.init is None:
        raise RuntimeError("no init segment was received")
    track = parse_init(capture.init)
    if track.sample_rate != SAMPLE_RATE:
        raise RuntimeError(f"the stream is {track.sample_rate} Hz, not {SAMPLE_RATE}")
    first: dict[int, tuple[Sample, float, float | None]] = {}
    for fetched in capture.media:
        samples = parse_samples(fetched.body, track)
        if not samples:
            continue
        base = samples[0].decode_time
        for sample in samples:
            if sample.decode_time in first:
                continue  # a whole segment after some of its parts: already had these
            wall = None
            if fetched.wall is not None:
                wall = float(fetched.wall + Fraction(sample.decode_time - base, track.timescale))
            first[sample.decode_time] = (sample, fetched.arrival, wall)
    if not first:
        raise RuntimeError("no media was received")
    decoder = _decoder(track)
    chunks: list[npt.NDArray[np.float32]] = []
    frames: list[Frame] = []
    origin = _samples(min(first), track)
    at = 0
    for decode_time in sorted(first):
        sample, arrival, wall = first[decode_time]
        start = _samples(decode_time, track) - origin
        if start > at:  # a hole (nothing received there): keep the timeline
            chunks.append(np.zeros(start - at, dtype=np.float32))
            at = start
        pcm = _decode(decoder, sample, track)
        chunks.append(pcm)
        frames.append(Frame(at, len(pcm), arrival, wall))
        at += len(pcm)
    return Stream(np.concatenate(chunks), tuple(frames), origin)


def _samples(decode_time: int, track: AudioTrack) -> int:
    return decode_time * SAMPLE_RATE // track.timescale


def _decoder(track: AudioTrack) -> av.AudioCodecContext:
    context = av.CodecContext.create("aac", "r")
    assert isinstance(context, av.AudioCodecContext)
    context.extradata = track.config
    return context


def _decode(
    context: av.AudioCodecContext, sample: Sample, track: AudioTrack
) -> npt.NDArray[np.float32]:
    frames = context.decode(av.Packet(sample.data))
    expected = _samples(sample.duration, track)
    if not frames:
        return np.zeros(expected, dtype=np.float32)
    planes = np.concatenate([frame.to_ndarray() for frame in frames], axis=1)
    pcm = np.asarray(planes.mean(axis=0), dtype=np.float32)[:expected]
    if len(pcm) < expected:
        pcm = np.concatenate([pcm, np.zeros(expected - len(pcm), dtype=np.float32)])
    return pcm


def onsets(pcm: npt.NDArray[np.float32]) -> list[int]:
    """Sample indices where the signal first exceeds THRESHOLD after QUIET_SAMPLES under it."""
    loud = np.flatnonzero(np.abs(pcm) > THRESHOLD)
    found: list[int] = []
    previous = -QUIET_SAMPLES - 1
    for index in loud.tolist():
        if index - previous > QUIET_SAMPLES:
            found.append(index)
        previous = index
    return found


def play_times(stream: Stream, hold_back: float) -> list[float] | None:
    """When a player plays each frame of ``stream`` (monotonic seconds).

    It starts once ``hold_back`` seconds of media, counted from the first frame, have
    arrived; then plays in real time. A frame that arrives after its slot delays it and
    everything after it (a stall). ``None`` if less than ``hold_back`` ever arrived.
    """
    need, have, started = hold_back * SAMPLE_RATE, 0, None
    for frame in sorted(stream.frames, key=lambda frame: frame.arrival):
        have += frame.length
        if have >= need - 1:
            started = frame.arrival
            break
    if started is None:
        return None
    clock, times = started, []
    for frame in stream.frames:
        slot = max(clock, frame.arrival)
        times.append(slot)
        clock = slot + frame.length / SAMPLE_RATE
    return times


@dataclass(frozen=True, slots=True)
class Measured:
    """One burst through one pipeline: seconds from emission to received and to played
    (``None``: the player never started); ``stamped``: from emission to the program
    time the server gave the onset (``PROGRAM-DATE-TIME``), when known."""

    burst: int
    received: float
    played: float | None
    stamped: float | None


def measure(
    stream: Stream,
    hold_back: float,
    match: Callable[[Stream, int], Emission | None],
    since: float,
) -> tuple[list[Measured], int]:
    """Every onset matched to its emission; and how many onsets matched none.

    Bursts emitted before ``since`` (when the listener began) are left out: a listener
    that joins gets the last ``hold_back`` seconds at once, and their "latency" would be
    the moment it joined, not the pipeline's.
    """
    played = play_times(stream, hold_back)
    starts = [frame.start for frame in stream.frames]
    results: list[Measured] = []
    unmatched = 0
    seen: set[int] = set()
    for index in onsets(stream.pcm):
        emission = match(stream, index)
        if emission is None or emission.index in seen:
            unmatched += 1
            continue
        seen.add(emission.index)
        if emission.monotonic < since:
            continue
        slot = bisect.bisect_right(starts, index) - 1
        frame = stream.frames[slot]
        play = None
        if played is not None:
            play = played[slot] + (index - frame.start) / SAMPLE_RATE - emission.monotonic
        wall = stream.wall_at(index)
        stamped = None if wall is None else wall - emission.wall
        results.append(Measured(emission.index, frame.arrival - emission.monotonic, play, stamped))
    return results, unmatched


def by_wall(emissions: Sequence[Emission]) -> Callable[[Stream, int], Emission | None]:
    """Match an onset to the emission nearest its ``PROGRAM-DATE-TIME`` wall time."""

    def match(stream: Stream, index: int) -> Emission | None:
        wall = stream.wall_at(index)
        if wall is None or not emissions:
            return None
        nearest = min(emissions, key=lambda emission: abs(emission.wall - wall))
        return nearest if abs(nearest.wall - wall) < MATCH_SECONDS else None

    return match


def by_position(emissions: Sequence[Emission]) -> Callable[[Stream, int], Emission | None]:
    """Match an onset to the emission at the same position of a stream that began with the
    source's first sample (decode time 0)."""

    def match(stream: Stream, index: int) -> Emission | None:
        position = stream.origin + index
        if not emissions:
            return None
        nearest = min(emissions, key=lambda emission: abs(emission.position - position))
        near = abs(nearest.position - position) < MATCH_SECONDS * SAMPLE_RATE
        return nearest if near else None

    return match


# -- the reference: ffmpeg's hls muxer and a plain HTTP server ---------------------------


class _ReferenceHandler(http.server.SimpleHTTPRequestHandler):
    """Serves ffmpeg's HLS output with Podium's origin's cache policy, so that an edge in
    front of it keeps a playlist no longer than it keeps Podium's; and answers ``/livez``,
    the health probe of Podium's VCL (a backend that fails it is sick: nothing is served).
    """

    def do_GET(self) -> None:
        if self.path == "/livez":
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        path = self.path.split("?", 1)[0]
        if code not in (200, 304):
            self.send_header("Cache-Control", "no-store")
        elif path.endswith(".m3u8"):
            self.send_header("Cache-Control", PLAYLIST_CACHE)
        elif path.endswith((".mp4", ".m4s")):
            self.send_header("Cache-Control", MEDIA_CACHE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_directory(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_ReferenceHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def start_ffmpeg(root: Path, durations: Sequence[int]) -> subprocess.Popen[bytes]:
    """One ffmpeg reading raw float PCM on stdin, one classic HLS output per duration,
    in ``root/hls/{duration}s/``."""
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-probesize", "32", "-analyzeduration", "0",
        "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0",
    ]  # fmt: skip
    for seconds in durations:
        out = root / "hls" / f"{seconds}s"
        out.mkdir(parents=True)
        command += [
            "-map", "0:a", "-c:a", "aac", "-b:a", BITRATE, "-ac", "1",
            "-f", "hls", "-hls_time", str(seconds), "-hls_list_size", "0",
            "-hls_segment_type", "fmp4", "-hls_flags", "temp_file",
            "-hls_fmp4_init_filename", "init.mp4",
            "-hls_segment_filename", str(out / "seg-%05d.m4s"),
            str(out / "index.m3u8"),
        ]  # fmt: skip
    return subprocess.Popen(command, stdin=subprocess.PIPE, bufsize=0)


async def follow_classic(
    http_client: httpx.AsyncClient, url: str, capture: Capture, stop: asyncio.Event
) -> None:
    """Reload ``url`` every POLL_SECONDS; fetch the init and every new segment at once."""
    seen: set[str] = set()
    while not stop.is_set():
        response = await http_client.get(url)
        if response.status_code == 200:
            playlist = parse_playlist(response.text)
            capture.hold_back = playlist.start_hold_back
            for segment in playlist.segments:
                if segment.uri is None or segment.uri in seen:
                    continue
                if capture.init is None and segment.map_uri is not None:
                    init = await http_client.get(str(response.url.join(segment.map_uri)))
                    init.raise_for_status()
                    capture.init = init.content
                media_url = str(response.url.join(segment.uri))
                media = await http_client.get(media_url)
                media.raise_for_status()
                capture.media.append(Fetched(media_url, time.monotonic(), media.content))
                seen.add(segment.uri)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_SECONDS)


# -- Podium ------------------------------------------------------------------------------


@dataclass
class Podium:
    url: str
    data: Path
    process: subprocess.Popen[str]

    @property
    def token(self) -> str:
        return (self.data / "owner.token").read_text().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_podium(data: Path) -> Podium:
    """``podium serve`` on a free loopback port; returns once it says where it listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    command = [sys.executable, "-m", "podium", "serve", "--data", str(data), "--port", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:  # keep reading: a full pipe would block the server
            match = URL_LINE.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(timeout=30)
    if not found:
        process.kill()
        raise RuntimeError("podium serve did not start")
    return Podium(found[0], data, process)


# -- the edge ----------------------------------------------------------------------------


@contextlib.contextmanager
def fronted(origin: str, edge: str) -> Iterator[str]:
    """The base URL listeners use for ``origin``: the origin itself (``edge="none"``), or a
    ``varnishd`` started in front of it with Podium's VCL (``podium edge-config varnish``),
    stopped on exit. Its files lie in a 0755 directory the varnish user can read."""
    if edge == "none":
        yield origin
        return
    process = start_varnish(origin)
    try:
        yield process.url
    finally:
        process.stop()


def rebase(url: str, base: str) -> str:
    """``url``'s path and query on ``base`` (``http://host:port``): the same object, asked
    of the edge instead of the origin."""
    parsed = httpx.URL(url)
    return str(httpx.URL(base).copy_with(path=parsed.path, query=parsed.query or None))


# -- the run -----------------------------------------------------------------------------


@dataclass
class Run:
    emissions: list[Emission]
    podium: Capture
    classic: dict[int, Capture]
    latency_report: ListenReport
    joins: list[ListenReport]
    join_captures: list[Capture]
    join_offsets: list[float]


async def _listen_captured(
    playlist_url: str, seconds: float, delay: float = 0.0
) -> tuple[ListenReport, Capture]:
    """The listen client, after ``delay``, with an HTTP client that notes every arrival."""
    await asyncio.sleep(delay)
    capture = Capture()
    # The read timeout the listen client uses by default: a blocking reload may be held.
    timeout = httpx.Timeout(5.0, read=20.0)
    async with httpx.AsyncClient(timeout=timeout, event_hooks={"response": [capture.hook]}) as h:
        report = await listen(playlist_url, seconds=seconds, out_wav=None, client=h)
    return report, capture


def create_space(podium: Podium) -> dict[str, str]:
    """Create a space as the owner and start it: its ``whip_url`` and ``playlist_url``."""
    with httpx.Client(base_url=podium.url, timeout=10) as api:
        auth = {"Authorization": f"Bearer {podium.token}"}
        space = api.post("/api/v1/spaces", json={"title": "Latency"}, headers=auth)
        space.raise_for_status()
        body: dict[str, str] = space.json()
        api.post(f"/api/v1/spaces/{body['id']}/start", headers=auth).raise_for_status()
    return body


async def run_all(
    podium: Podium,
    body: dict[str, str],
    seconds: float,
    listeners: int,
    durations: Sequence[int],
    seed: int,
    edge: str,
) -> Run:
    with (
        tempfile.TemporaryDirectory(prefix="podium-latency-") as temp,
        contextlib.ExitStack() as servers,
    ):
        root = Path(temp)
        static, static_url = serve_directory(root)
        servers.callback(static.server_close)
        servers.callback(static.shutdown)
        # The edges start (and wait for their first answer) before any task runs here.
        podium_base = servers.enter_context(fronted(podium.url, edge))
        reference_base = servers.enter_context(fronted(static_url, edge))
        ffmpeg = start_ffmpeg(root, durations)
        assert ffmpeg.stdin is not None
        stdin = ffmpeg.stdin

        def tee(tick: npt.NDArray[np.float32]) -> None:
            with contextlib.suppress(BrokenPipeError):
                stdin.write(tick.astype("<f4").tobytes())

        source = BurstSource(tee)
        classic = {duration: Capture() for duration in durations}
        stop = asyncio.Event()
        async with httpx.AsyncClient(timeout=10) as plain:
            followers = [
                asyncio.create_task(
                    follow_classic(plain, f"{reference_base}/hls/{d}s/index.m3u8", classic[d], stop)
                )
                for d in durations
            ]
            # One second of silence first, then ``seconds`` of bursts.
            speaking = asyncio.create_task(
                speak(body["whip_url"], podium.token, source, seconds=seconds + 1.0)
            )
            while source.first_read is None:
                if speaking.done():
                    await speaking  # raises why it could not connect
                await asyncio.sleep(0.02)
            rng = random.Random(seed)
            offsets = sorted(rng.uniform(1.0, max(1.5, seconds - 2.0)) for _ in range(listeners))
            url = rebase(body["playlist_url"], podium_base)
            (latency_report, capture), *joined = await asyncio.gather(
                _listen_captured(url, seconds + 2.0),
                *(_listen_captured(url, JOIN_SECONDS, offset) for offset in offsets),
            )
            await speaking
            # Whatever is still in an unfinished reference segment is not counted: closing
            # ffmpeg's input would cut that segment early and make it look faster.
            stop.set()
            await asyncio.gather(*followers)
        stdin.close()
        ffmpeg.wait(timeout=30)
    return Run(
        source.emissions,
        capture,
        classic,
        latency_report,
        [report for report, _ in joined],
        [joined_capture for _, joined_capture in joined],
        offsets,
    )


# -- report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    path: str
    hold_back: float
    bursts: int
    unmatched: int
    received_p50: float | None
    received_p95: float | None
    played_p50: float | None
    played_p95: float | None
    stamped_p50: float | None
    stalls_seconds: float
    raw: tuple[Measured, ...]


def row(
    name: str,
    path: str,
    captures: Sequence[Capture],
    emissions: Sequence[Emission],
    *,
    wall: bool,
) -> Row:
    """The figures of one pipeline, pooled over the listeners in ``captures``; ``path``
    says how they reached it (the origin, or through which edge)."""
    match = by_wall(emissions) if wall else by_position(emissions)
    results: list[Measured] = []
    unmatched, stalled, hold_back = 0, 0.0, 0.0
    for capture in captures:
        if not capture.media:
            continue
        stream = assemble(capture)
        hold_back = float(capture.hold_back or 0)
        found, missed = measure(stream, hold_back, match, capture.started)
        results += found
        unmatched += missed
        times = play_times(stream, hold_back) or []
        stalled += sum(
            max(0.0, times[i] - (times[i - 1] + stream.frames[i - 1].length / SAMPLE_RATE))
            for i in range(1, len(times))
        )
    received = [result.received for result in results]
    played = [result.played for result in results if result.played is not None]
    stamped = [result.stamped for result in results if result.stamped is not None]
    return Row(
        name,
        path,
        hold_back,
        len(results),
        unmatched,
        percentile(received, 0.5),
        percentile(received, 0.95),
        percentile(played, 0.5),
        percentile(played, 0.95),
        percentile(stamped, 0.5),
        stalled,
        tuple(results),
    )


def _s(value: float | None) -> str:
    return "  -  " if value is None else f"{value:5.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "  -  " if a is None or not b else f"{a / b:5.2f}"


def _version(command: Sequence[str]) -> str:
    """The first line ``command`` prints (stdout, else stderr), or ``?``."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0] if lines else "?"


def machine(edge: str) -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model or platform.processor(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "pyav": av.__version__,
        "ffmpeg": _version(["ffmpeg", "-hide_banner", "-version"]),
        **({"varnish": _version(["varnishd", "-V"])} if edge == "varnish" else {}),
        "load_average": " ".join(f"{load:.2f}" for load in os.getloadavg()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of bursts")
    parser.add_argument("--listeners", type=int, default=10, help="listeners joining")
    parser.add_argument("--seed", type=int, default=1, help="for the join moments")
    parser.add_argument(
        "--edge",
        choices=sorted(EDGES),
        default="none",
        help="what listeners fetch through: the origin itself, or a Varnish edge",
    )
    parser.add_argument("--json", type=Path, help="write the figures and raw data here")
    args = parser.parse_args(argv)
    needed = ["ffmpeg"] + (["varnishd"] if args.edge == "varnish" else [])
    for program in needed:
        if shutil.which(program) is None:
            print(f"{program} is not on PATH", file=sys.stderr)
            return 2
    load_at_start = os.getloadavg()[0]
    durations = (2, 6)
    with tempfile.TemporaryDirectory(prefix="podium-data-") as data:
        podium = start_podium(Path(data))
        try:
            body = create_space(podium)
            work = run_all(
                podium, body, args.seconds, args.listeners, durations, args.seed, args.edge
            )
            run = asyncio.run(work)
        finally:
            podium.stop()

    path = EDGES[args.edge]
    joining = f"Podium, {len(run.joins)} joining"
    rows = [
        row("Podium LL-HLS", path, [run.podium], run.emissions, wall=True),
        row(joining, path, run.join_captures, run.emissions, wall=True),
    ]
    rows += [
        row(f"ffmpeg HLS {d} s segments", path, [run.classic[d]], run.emissions, wall=False)
        for d in durations
    ]
    first_audio = [r.time_to_first_audio for r in run.joins if r.time_to_first_audio is not None]
    playback = [r.time_to_playback for r in run.joins if r.time_to_playback is not None]

    print(f"Listener latency: {args.seconds:g} s of 50 ms 1 kHz bursts, one a second;")
    if args.edge == "none":
        print("listeners fetch direct from the origins (no edge). ", end="")
    else:
        print("listeners fetch through a Varnish edge in front of each origin. ", end="")
    print(f"Load average at the start: {load_at_start:.2f}.")
    print("Seconds from the burst leaving the source to the listener having it (received)")
    print("and to a player playing it.\n")
    header = (
        "pipeline                     path             hold-back  bursts  "
        "received p50  p95   played p50  p95"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.name:<28} {r.path:<16} {r.hold_back:7.3f} s  {r.bursts:4d}    "
            f"{_s(r.received_p50)}   {_s(r.received_p95)}    "
            f"{_s(r.played_p50)}  {_s(r.played_p95)}"
        )
    podium_row = rows[0]
    print("\nratio Podium / reference (below 1: Podium is faster)")
    for mine in rows[:2]:
        for r in rows[2:]:
            print(
                f"  {mine.name:<24} / {r.name:<24}"
                f" received p50 {_ratio(mine.received_p50, r.received_p50)}"
                f"  p95 {_ratio(mine.received_p95, r.received_p95)}"
                f"   played p50 {_ratio(mine.played_p50, r.played_p50)}"
                f"  p95 {_ratio(mine.played_p95, r.played_p95)}"
            )
    print(
        f"\ntime to first audio, {len(first_audio)} of {len(run.joins)} listeners joining at "
        f"random moments: p50 {_s(percentile(first_audio, 0.5))} s, "
        f"p95 {_s(percentile(first_audio, 0.95))} s"
    )
    print(
        f"time to playback (PART-HOLD-BACK buffered):        "
        f"p50 {_s(percentile(playback, 0.5))} s, p95 {_s(percentile(playback, 0.95))} s"
    )
    report = run.latency_report
    print(
        f"\nlisten client's own figures (PROGRAM-DATE-TIME of a part's last sample to its "
        f"arrival): p50 {_s(report.latency_p50)} s, p95 {_s(report.latency_p95)} s; "
        f"played p50 {_s(report.playback_latency_p50)} s, "
        f"p95 {_s(report.playback_latency_p95)} s; stalls {report.stalls}"
    )
    print(
        f"burst leaving the source to its PROGRAM-DATE-TIME (ingest: Opus, WebRTC, jitter "
        f"buffer, mixer): p50 {_s(podium_row.stamped_p50)} s"
    )
    for r in rows:
        if r.unmatched or r.stalls_seconds > 0:
            print(
                f"note: {r.name}: {r.unmatched} onsets matched no burst, "
                f"modelled player stalled {r.stalls_seconds:.2f} s"
            )
    if args.json:
        document = {
            "seconds": args.seconds,
            "edge": args.edge,
            "load_average_at_start": load_at_start,
            "machine": machine(args.edge),
            "rows": [asdict(r) for r in rows],
            "time_to_first_audio": {
                "p50": percentile(first_audio, 0.5),
                "p95": percentile(first_audio, 0.95),
                "values": first_audio,
                "join_offsets": run.join_offsets,
            },
            "time_to_playback": {
                "p50": percentile(playback, 0.5),
                "p95": percentile(playback, 0.95),
                "values": playback,
            },
            "listen_report": asdict(report),
            "joins": [asdict(r) for r in run.joins],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
