"""``podium listen``: follow a space's LL-HLS stream as a player does, and measure it.

:func:`listen` loads the media playlist, starts ``PART-HOLD-BACK`` behind the live edge,
then asks for each next part with a Blocking Playlist Reload (``_HLS_msn``/``_HLS_part``,
with ``_HLS_skip=YES`` delta updates when offered), fetches every part once, decodes the
AAC to PCM with PyAV, optionally writes a WAV file, and returns a :class:`ListenReport`:
audio received, stalls, time to first audio, latency behind live, errors. It also reads
ordinary HLS (segments, no parts) and ended playlists (replays, read from the start as
fast as the server allows).

It talks HTTP only, like any third-party player; the wire formats are in
:mod:`podium.clients.hls`. The decisions are pure and unit-tested on their own:
:func:`start_cursor` and :func:`next_step` (what to fetch or wait for),
:class:`PlayerModel` (a player's buffer, for stalls and latency), :func:`backoff` and
:func:`parse_retry_after` (how long to wait before a retry), :func:`percentile`. The
asyncio shell owns the HTTP client, the clocks (injectable) and the WAV file.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import wave
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from fractions import Fraction
from pathlib import Path

import av
import av.error
import httpx
import numpy as np
import numpy.typing as npt

from podium import __version__
from podium.clients.hls import (
    AudioTrack,
    Playlist,
    Sample,
    SegmentRef,
    audio_variant,
    is_multivariant,
    merge_delta,
    parse_init,
    parse_multivariant,
    parse_playlist,
    parse_samples,
)
from podium.errors import ClientError

SAMPLE_RATE = 48_000
"""The rate of the WAV output and of Podium's program; other rates are refused."""

# Float comparisons of buffer levels: measured times are never this close by chance.
_EPSILON = 1e-6
# A hole in decode times longer than this is not filled with silence: it means the
# timestamps restarted, not that media is missing.
_MAX_FILL_SECONDS = 10.0

# Blocking reloads refused (400) in a row before the listener gives up: the server and
# the listener disagree about the playlist, and plain reloads did not settle it.
_MAX_REFUSED = 3

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ListenReport:
    """What one listening session received and how a player would have fared.

    Attributes:
        seconds: seconds of audio decoded.
        silence_seconds: silence written in place of ``EXT-X-GAP`` segments and holes.
        samples_written: samples in the WAV file (decoded audio plus that silence).
        parts: parts fetched. ``segments``: whole segments fetched.
        playlist_requests: playlist GETs, retries included. ``delta_updates``: of which
            were Playlist Delta Updates merged into the playlist held.
        bytes_received: response bodies, all requests.
        stalls, stall_seconds: how often, and how long, the modelled player's buffer ran
            dry while the stream went on (see :class:`PlayerModel`).
        time_to_first_audio: seconds from the call to the first decoded audio.
        time_to_playback: seconds from the call to the modelled player starting, once
            ``PART-HOLD-BACK`` (or ``HOLD-BACK``) of audio was buffered.
        latency_p50, latency_p95: for each part (or segment) when it arrived, wall time
            minus the wall time of its last sample (``PROGRAM-DATE-TIME`` + offset in the
            segment + duration).
        playback_latency_p50, playback_latency_p95: the same plus the buffer the player
            holds: how far behind live the sound it plays is.
        gaps: ``EXT-X-GAP`` segments crossed. ``discontinuities``: ``EXT-X-DISCONTINUITY``
            crossed.
        continuity_errors: fragments whose decode time did not follow the previous one.
        ended: the playlist carried ``EXT-X-ENDLIST``.
        http_errors: responses other than 2xx, and failed connections.
        retries: requests repeated after a 429, a 5xx or a connection failure.
        missing: media objects skipped: 404 (gone), retries exhausted, or fallen out of
            the playlist before being fetched.
    """

    seconds: float
    silence_seconds: float
    samples_written: int
    parts: int
    segments: int
    playlist_requests: int
    delta_updates: int
    bytes_received: int
    stalls: int
    stall_seconds: float
    time_to_first_audio: float | None
    time_to_playback: float | None
    latency_p50: float | None
    latency_p95: float | None
    playback_latency_p50: float | None
    playback_latency_p95: float | None
    gaps: int
    discontinuities: int
    continuity_errors: int
    ended: bool
    http_errors: int
    retries: int
    missing: int


# -- retries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a request is retried after 429, 5xx or a failed connection.

    Attributes:
        attempts: retries per request before giving up.
        base, cap: the full-jitter window after retry ``n`` is ``min(cap, base * 2**n)``
            seconds; 0.1 s doubles to the 5 s cap in six steps.
        max_retry_after: a ``Retry-After`` longer than this means "not in this session":
            give up at once rather than sleep through the listening time.
    """

    attempts: int = 6
    base: float = 0.1
    cap: float = 5.0
    max_retry_after: float = 60.0


def backoff(
    attempt: int, retry_after: float | None, policy: RetryPolicy, rng: random.Random
) -> float:
    """Seconds to wait before retry ``attempt`` (0 for the first).

    "Full jitter": a uniform draw from ``[0, min(cap, base * 2**attempt))``, so a crowd
    of listeners refused at once comes back spread out rather than in a wave. A server's
    ``Retry-After`` is a floor (RFC 9110 10.2.3: how long "the user agent ought to wait
    before making a follow-up request"); the jitter is added on top of it.
    """
    window = min(policy.cap, policy.base * 2**attempt)
    return (retry_after or 0.0) + rng.uniform(0.0, window)


def parse_retry_after(value: str | None, wall_now: float) -> float | None:
    """A ``Retry-After`` header in seconds from now; ``None`` if absent or unreadable.

    RFC 9110 10.2.3: ``Retry-After = HTTP-date / delay-seconds``.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - wall_now)


# -- measurements ------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` in ``(0, 1]``); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class PlayerModel:
    """The buffer of a player fed by the parts as they arrive.

    Playback starts when ``startup`` seconds are buffered (a player holds back
    ``PART-HOLD-BACK`` before it plays) and drains in real time from then on. Whenever it
    runs dry before the next media arrives, that is a stall; it lasts until media arrives,
    and playback resumes at once. Draining to empty after the stream's end is no stall.
    Pure: every method takes ``now``, monotonic seconds.
    """

    def __init__(self, startup: float) -> None:
        self.startup = startup
        self.level = 0.0
        self.started_at: float | None = None
        self.stalls = 0
        self.stall_seconds = 0.0
        self._at: float | None = None
        self._dry = False

    @property
    def playing(self) -> bool:
        return self.started_at is not None

    def add(self, now: float, seconds: float) -> None:
        """``seconds`` of media arrived at ``now``."""
        self._drain(now)
        if seconds <= 0:
            return
        self.level += seconds
        self._dry = False
        if self.started_at is None and self.level >= self.startup - _EPSILON:
            self.started_at = now

    def level_at(self, now: float) -> float:
        """The buffer at ``now``, without changing the model."""
        if self.started_at is None or self._at is None:
            return self.level
        return max(0.0, self.level - (now - self._at))

    def finish(self, now: float, *, ended: bool) -> None:
        """Listening stops at ``now``; ``ended``: because the stream is over."""
        if not ended:
            self._drain(now)

    def _drain(self, now: float) -> None:
        at, self._at = self._at, now
        if self.started_at is None or at is None:
            return
        elapsed = now - at
        if elapsed <= self.level + _EPSILON:
            self.level = max(0.0, self.level - elapsed)
            return
        self.stall_seconds += elapsed - self.level
        self.level = 0.0
        if not self._dry:
            self.stalls += 1
            self._dry = True


# -- what to fetch next ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the listener is: the next part ``index`` of segment ``msn`` (0 = its start),
    and ``played`` seconds of that segment already consumed."""

    msn: int
    index: int = 0
    played: Fraction = Fraction(0)


@dataclass(frozen=True, slots=True)
class FetchPart:
    segment: SegmentRef
    index: int


@dataclass(frozen=True, slots=True)
class FetchSegment:
    """Fetch the whole segment; any media in it already played is dropped by decode time."""

    segment: SegmentRef


@dataclass(frozen=True, slots=True)
class SkipGap:
    """Step over a gap (``EXT-X-GAP`` segment, or part with ``GAP=YES``) of ``duration``."""

    segment: SegmentRef
    index: int | None
    duration: Fraction


@dataclass(frozen=True, slots=True)
class Wait:
    """Reload the playlist until it has part ``part`` of segment ``msn`` (``part`` is
    ``None`` for a playlist without parts: wait for the whole segment)."""

    msn: int
    part: int | None


@dataclass(frozen=True, slots=True)
class Behind:
    """The cursor's segment has left the playlist; continue from ``msn``."""

    msn: int


@dataclass(frozen=True, slots=True)
class Done:
    """The playlist has ended and everything in it was consumed."""


Step = FetchPart | FetchSegment | SkipGap | Wait | Behind | Done


def start_cursor(playlist: Playlist, *, from_start: bool) -> Cursor:
    """Where a player starts in ``playlist``.

    An ended playlist (a replay), or ``from_start``, starts at its first segment. A live
    one starts at the latest independent part (or segment, for ordinary HLS) that begins
    at least :attr:`Playlist.start_hold_back` before the end: 8216bis 6.3.3, a client
    "SHOULD NOT choose a segment which starts less than three target durations from the
    end", and for low latency "the client SHOULD ... be at least PART-HOLD-BACK seconds"
    from the end. With less media listed than that, it starts at the first listed.
    """
    if from_start or playlist.ended:
        return Cursor(playlist.first_msn)
    hold_back = playlist.start_hold_back
    behind = Fraction(0)
    chosen: Cursor | None = None
    for segment in reversed(playlist.segments):
        if segment.parts and playlist.part_target is not None:
            for index in reversed(range(len(segment.parts))):
                part = segment.parts[index]
                behind += part.duration
                chosen = Cursor(segment.msn, index, segment.part_offset(index))
                if behind >= hold_back and part.independent:
                    return chosen
        elif segment.complete:
            behind += segment.duration
            chosen = Cursor(segment.msn)
            if behind >= hold_back:
                return chosen
    return chosen or Cursor(playlist.next_msn)


def next_step(playlist: Playlist, cursor: Cursor) -> Step:
    """What to do to continue from ``cursor`` with ``playlist`` in hand.

    A complete segment reached at its start is fetched whole (one request instead of one
    per part: this is how a listener behind the edge, or reading a replay, catches up);
    at the live edge the segment is still in progress, so parts are fetched one by one.
    """
    msn, index, played = cursor.msn, cursor.index, cursor.played
    while True:
        if msn < playlist.first_msn:
            return Behind(playlist.first_msn)
        segment = playlist.segment(msn)
        if segment is None:
            if playlist.ended:
                return Done()
            return Wait(msn, index if playlist.part_target is not None else None)
        if segment.gap:
            return SkipGap(segment, None, segment.duration)
        if index < len(segment.parts) and (index > 0 or not segment.complete):
            part = segment.parts[index]
            if part.gap:
                return SkipGap(segment, index, part.duration)
            return FetchPart(segment, index)
        if not segment.complete:
            return Wait(msn, index)
        if index == 0 or (not segment.parts and played < segment.duration):
            return FetchSegment(segment)
        msn, index, played = msn + 1, 0, Fraction(0)


def advance(step: FetchPart | FetchSegment | SkipGap) -> Cursor:
    """The cursor after ``step`` was carried out."""
    segment = step.segment
    if isinstance(step, FetchPart | SkipGap) and step.index is not None:
        played = segment.part_offset(step.index) + segment.parts[step.index].duration
        return Cursor(segment.msn, step.index + 1, played)
    return Cursor(segment.msn + 1)


# -- decoding ----------------------------------------------------------------------------


class _Decoder:
    """AAC access units to 48 kHz mono float32, through FFmpeg's decoder."""

    def __init__(self, track: AudioTrack) -> None:
        if track.sample_rate != SAMPLE_RATE:
            raise ClientError(f"the stream is {track.sample_rate} Hz; only 48 kHz is supported")
        self.track = track
        self._context = av.CodecContext.create("aac", "r")
        self._context.extradata = track.config

    def decode(self, sample: Sample) -> npt.NDArray[np.float32]:
        try:
            frames = self._context.decode(av.Packet(sample.data))
        except av.error.FFmpegError as exc:
            raise ClientError(f"cannot decode an AAC frame: {exc}") from exc
        if not frames:
            return np.zeros(0, dtype=np.float32)
        planes = np.concatenate([frame.to_ndarray() for frame in frames], axis=1)
        pcm = planes.mean(axis=0, dtype=np.float32) if planes.shape[0] > 1 else planes[0]
        # The last frame of a program is shorter than 1024 samples: trun says how long.
        expected = sample.duration * SAMPLE_RATE // self.track.timescale
        return np.asarray(pcm[:expected], dtype=np.float32)


class _WavSink:
    """A 48 kHz mono 16-bit WAV file, written as audio arrives; or nowhere."""

    def __init__(self, path: Path | None) -> None:
        self.samples = 0
        self._file: wave.Wave_write | None = None
        if path is not None:
            self._file = wave.open(str(path), "wb")  # noqa: SIM115 - closed in close()
            self._file.setnchannels(1)
            self._file.setsampwidth(2)
            self._file.setframerate(SAMPLE_RATE)

    def write(self, pcm: npt.NDArray[np.float32]) -> None:
        self.samples += len(pcm)
        if self._file is not None and len(pcm):
            scaled = np.rint(np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2")
            self._file.writeframes(scaled.tobytes())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


# -- the shell ---------------------------------------------------------------------------


@dataclass
class _Counters:
    parts: int = 0
    segments: int = 0
    playlist_requests: int = 0
    delta_updates: int = 0
    bytes_received: int = 0
    gaps: int = 0
    discontinuities: int = 0
    continuity_errors: int = 0
    http_errors: int = 0
    retries: int = 0
    missing: int = 0
    decoded: int = 0
    silence: int = 0
    latencies: list[float] = field(default_factory=list)
    playback_latencies: list[float] = field(default_factory=list)
    first_audio: float | None = None


class _Listener:
    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        sink: _WavSink,
        *,
        from_start: bool,
        clock: Clock,
        wall_clock: Clock,
        sleep: Sleep,
        rng: random.Random,
        retry: RetryPolicy,
    ) -> None:
        self.url = httpx.URL(url)
        self.http = http
        self.sink = sink
        self.from_start = from_start
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.rng = rng
        self.retry = retry
        self.started = clock()
        self.count = _Counters()
        self.player: PlayerModel | None = None
        self.playlist: Playlist | None = None
        self._loaded_at = 0.0
        self._changed = True
        self._track: AudioTrack | None = None
        self._map: str | None = None
        self._decoder: _Decoder | None = None
        self._next_decode: int | None = None
        self._last_msn: int | None = None
        self._refused = 0
        self.done = False

    async def run(self) -> None:
        playlist = await self._load({})
        cursor = start_cursor(playlist, from_start=self.from_start)
        self.player = PlayerModel(float(playlist.start_hold_back))
        while True:
            step = next_step(playlist, cursor)
            if isinstance(step, Done):
                self.done = True
                return
            if isinstance(step, Wait):
                playlist = await self._reload(playlist, step)
            elif isinstance(step, Behind):
                self.count.missing += 1
                cursor = Cursor(step.msn)
            else:
                await self._consume(step)
                cursor = advance(step)

    def report(self) -> ListenReport:
        count, player = self.count, self.player
        if player is not None:
            player.finish(self.clock(), ended=self.done)
        started_at = player.started_at if player is not None else None
        return ListenReport(
            seconds=count.decoded / SAMPLE_RATE,
            silence_seconds=count.silence / SAMPLE_RATE,
            samples_written=self.sink.samples,
            parts=count.parts,
            segments=count.segments,
            playlist_requests=count.playlist_requests,
            delta_updates=count.delta_updates,
            bytes_received=count.bytes_received,
            stalls=player.stalls if player is not None else 0,
            stall_seconds=player.stall_seconds if player is not None else 0.0,
            time_to_first_audio=count.first_audio,
            time_to_playback=None if started_at is None else started_at - self.started,
            latency_p50=percentile(count.latencies, 0.5),
            latency_p95=percentile(count.latencies, 0.95),
            playback_latency_p50=percentile(count.playback_latencies, 0.5),
            playback_latency_p95=percentile(count.playback_latencies, 0.95),
            gaps=count.gaps,
            discontinuities=count.discontinuities,
            continuity_errors=count.continuity_errors,
            ended=self.playlist is not None and self.playlist.ended,
            http_errors=count.http_errors,
            retries=count.retries,
            missing=count.missing,
        )

    # -- playlists ----------------------------------------------------------------------

    async def _load(self, params: dict[str, str]) -> Playlist:
        """GET the playlist (with delivery directives ``params``) and parse it."""
        self._loaded_at = self.clock()
        response = await self._get(self.url, params, what="the playlist", playlist=True)
        if response.status_code == 400 and params:
            # Directives the server refuses (8216bis: "too far ahead") mean the cursor and
            # the server disagree; a plain reload resynchronises, unless it keeps happening.
            self._refused += 1
            if self._refused > _MAX_REFUSED:
                raise ClientError(
                    f"{self.url} keeps refusing delivery directives" + _detail(response), 400
                )
            response = await self._get(self.url, {}, what="the playlist", playlist=True)
        elif params:
            self._refused = 0
        if not response.is_success:
            raise ClientError(
                f"{self.url} answered {response.status_code} {response.reason_phrase}"
                + _detail(response),
                response.status_code,
            )
        if self.playlist is None and not params and is_multivariant(response.text):
            # The entry point: play its audio variant, a media playlist, from now on.
            try:
                variant = audio_variant(parse_multivariant(response.text))
            except ValueError as exc:
                raise ClientError(f"{self.url} offers nothing to play: {exc}") from exc
            self.url = self.url.join(variant.uri)
            response = await self._get(self.url, {}, what="the playlist", playlist=True)
            if not response.is_success:
                raise ClientError(
                    f"{self.url} answered {response.status_code} {response.reason_phrase}"
                    + _detail(response),
                    response.status_code,
                )
        try:
            playlist = parse_playlist(response.text)
        except ValueError as exc:
            raise ClientError(f"{self.url} is not a valid HLS media playlist: {exc}") from exc
        if playlist.skipped:
            previous = self.playlist
            if previous is None:
                raise ClientError(f"{self.url} sent a delta update that was not asked for")
            try:
                playlist = merge_delta(previous, playlist)
            except ValueError:
                # 8216bis 6.3.5: a delta the client cannot apply needs a full reload.
                return await self._load({k: v for k, v in params.items() if k != "_HLS_skip"})
            self.count.delta_updates += 1
        if not playlist.can_block_reload:
            # Only polling needs to know (8216bis 6.3.4); comparing costs a full walk.
            self._changed = self.playlist is None or playlist != self.playlist
        self.playlist = playlist
        return playlist

    async def _reload(self, playlist: Playlist, wait: Wait) -> Playlist:
        if not playlist.can_block_reload:
            # 8216bis 6.3.4: after a changed playlist wait one Target Duration from the
            # start of the last load, after an unchanged one half of that.
            period = playlist.target_duration / (1 if self._changed else 2)
            delay = self._loaded_at + period - self.clock()
            if delay > 0:
                await self.sleep(delay)
            return await self._load({})
        params = {"_HLS_msn": str(wait.msn)}
        if wait.part is not None:
            params["_HLS_part"] = str(wait.part)
        skip_until = playlist.can_skip_until
        # 8216bis 6.3.5: a delta update only when the playlist held is "no older than
        # one-half the Skip Boundary"; it always is when reloads follow one another.
        if skip_until is not None and self.clock() - self._loaded_at < float(skip_until) / 2:
            params["_HLS_skip"] = "YES"
        return await self._load(params)

    # -- media --------------------------------------------------------------------------

    async def _consume(self, step: FetchPart | FetchSegment | SkipGap) -> None:
        segment = step.segment
        if segment.msn != self._last_msn:
            if segment.discontinuity and self._last_msn is not None:
                self.count.discontinuities += 1
                # A new encoder run: fresh decoder state and a new timestamp sequence.
                self._decoder = None
                self._next_decode = None
            self._last_msn = segment.msn
        if isinstance(step, SkipGap):
            self.count.gaps += 1
            silence = np.zeros(int(step.duration * SAMPLE_RATE), dtype=np.float32)
            self.count.silence += len(silence)
            self.sink.write(silence)
            self._next_decode = None
            assert self.player is not None
            self.player.add(self.clock(), len(silence) / SAMPLE_RATE)
            return
        await self._ensure_init(segment)
        if isinstance(step, FetchPart):
            uri = segment.parts[step.index].uri
            offset, duration = segment.part_offset(step.index), segment.parts[step.index].duration
        else:
            assert segment.uri is not None
            uri, offset, duration = segment.uri, Fraction(0), segment.duration
        url = self.url.join(uri)
        try:
            response = await self._get(url, {}, what=uri)
        except ClientError:
            self.count.missing += 1
            return
        if not response.is_success:
            # 404: the object has gone (or never came); a player moves on.
            self.count.missing += 1
            return
        now, wall = self.clock(), self.wall_clock()
        if isinstance(step, FetchPart):
            self.count.parts += 1
        else:
            self.count.segments += 1
        try:
            samples = parse_samples(response.content, self._require_track())
        except ValueError as exc:
            raise ClientError(f"{url} is not a CMAF fragment: {exc}") from exc
        pcm = self._decode(samples)
        if len(pcm) and self.count.first_audio is None:
            self.count.first_audio = self.clock() - self.started
        self.sink.write(pcm)
        assert self.player is not None
        self.player.add(now, len(pcm) / SAMPLE_RATE)
        if segment.program_date_time is not None:
            latency = wall - float(segment.program_date_time + offset + duration)
            self.count.latencies.append(latency)
            if self.player.playing:
                self.count.playback_latencies.append(latency + self.player.level)

    async def _ensure_init(self, segment: SegmentRef) -> None:
        if segment.map_uri is None:
            raise ClientError(
                f"segment {segment.msn} has no EXT-X-MAP: only CMAF (fMP4) streams are supported"
            )
        url = str(self.url.join(segment.map_uri))
        if url == self._map and self._track is not None:
            if self._decoder is None:
                self._decoder = _Decoder(self._track)
            return
        response = await self._get(httpx.URL(url), {}, what=segment.map_uri)
        if not response.is_success:
            raise ClientError(
                f"{url} answered {response.status_code}" + _detail(response),
                response.status_code,
            )
        try:
            self._track = parse_init(response.content)
        except ValueError as exc:
            raise ClientError(f"{url} is not a CMAF init segment: {exc}") from exc
        self._map = url
        self._decoder = _Decoder(self._track)
        self._next_decode = None

    def _require_track(self) -> AudioTrack:
        assert self._track is not None
        return self._track

    def _decode(self, samples: list[Sample]) -> npt.NDArray[np.float32]:
        """Decode in order, dropping samples already played and filling holes."""
        assert self._decoder is not None
        timescale = self._decoder.track.timescale
        chunks: list[npt.NDArray[np.float32]] = []
        for sample in samples:
            expected = self._next_decode
            if expected is not None and sample.decode_time < expected:
                continue  # already played: a whole segment fetched after some of its parts
            if expected is not None and sample.decode_time > expected:
                self.count.continuity_errors += 1
                hole = (sample.decode_time - expected) * SAMPLE_RATE // timescale
                if hole <= _MAX_FILL_SECONDS * SAMPLE_RATE:
                    chunks.append(np.zeros(hole, dtype=np.float32))
                    self.count.silence += hole
            self._next_decode = sample.decode_time + sample.duration
            pcm = self._decoder.decode(sample)
            self.count.decoded += len(pcm)
            chunks.append(pcm)
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    # -- HTTP ---------------------------------------------------------------------------

    async def _get(
        self, url: httpx.URL, params: dict[str, str], *, what: str, playlist: bool = False
    ) -> httpx.Response:
        """GET with retries after 429, 5xx and connection failures; other answers return.

        Raises:
            ClientError: when the retries are exhausted, or a ``Retry-After`` exceeds the
                policy's limit.
        """
        attempt = 0
        while True:
            if playlist:
                self.count.playlist_requests += 1
            retry_after: float | None = None
            try:
                response = await self.http.get(url, params=params)
            except httpx.TransportError as exc:
                self.count.http_errors += 1
                if attempt >= self.retry.attempts:
                    raise ClientError(f"cannot fetch {what} from {url}: {exc}") from exc
            else:
                self.count.bytes_received += len(response.content)
                status = response.status_code
                if status < 400:
                    return response
                self.count.http_errors += 1
                if status != 429 and status < 500:
                    return response
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), self.wall_clock()
                )
                if attempt >= self.retry.attempts or (
                    retry_after is not None and retry_after > self.retry.max_retry_after
                ):
                    raise ClientError(
                        f"{what}: {url} answered {status} {response.reason_phrase}"
                        f" after {attempt} retries" + _detail(response),
                        status,
                    )
            self.count.retries += 1
            await self.sleep(backoff(attempt, retry_after, self.retry, self.rng))
            attempt += 1


def _detail(response: httpx.Response) -> str:
    """The server's own explanation, from an RFC 9457 problem document, if any."""
    try:
        problem = response.json()
    except ValueError:
        return ""
    if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
        return f": {problem['detail']}"
    return ""


async def listen(
    playlist_url: str,
    *,
    seconds: float,
    out_wav: Path | None,
    client: httpx.AsyncClient | None = None,
    from_start: bool = False,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> ListenReport:
    """Listen to the playlist at ``playlist_url`` for ``seconds`` of wall time: a media
    playlist, or a multivariant one (a space's entry point), whose AAC variant is played.

    Follows a live playlist from ``PART-HOLD-BACK`` behind its end (or from its first
    segment with ``from_start``) until ``seconds`` pass or it ends; reads an ended
    playlist (a replay) from its start as fast as the server answers. Writes the audio to
    ``out_wav`` (48 kHz mono 16-bit) when given, gap and hole silence included.

    Args:
        client: the HTTP client to use (and leave open); by default one is made for the
            call, with a read timeout long enough for blocking reloads.
        clock: monotonic seconds, for stalls, time to first audio and pacing.
        wall_clock: Unix seconds, compared with ``PROGRAM-DATE-TIME`` for latency.
        sleep: how to wait between retries and polls.
        rng: the source of backoff jitter.
        retry: the retry policy for 429, 5xx and failed connections.

    Raises:
        ClientError: the playlist cannot be fetched (unreachable, 4xx, retries
            exhausted) or is malformed, or the media is not AAC in CMAF at 48 kHz.
    """
    if not seconds > 0:
        raise ClientError(f"seconds must be positive, not {seconds}")
    owned = client is None
    http = client or httpx.AsyncClient(
        headers={"User-Agent": f"podium-listen/{__version__}"},
        # A blocking reload may be held three Target Durations (8216bis 6.2.5.2).
        timeout=httpx.Timeout(5.0, read=20.0),
        follow_redirects=True,
    )
    sink = _WavSink(out_wav)
    listener = _Listener(
        playlist_url,
        http,
        sink,
        from_start=from_start,
        clock=clock,
        wall_clock=wall_clock,
        sleep=sleep,
        rng=rng or random.Random(),
        retry=retry,
    )
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            await listener.run()
    except TimeoutError:
        if not deadline.expired():
            raise
    finally:
        sink.close()
        if owned:
            await http.aclose()
    return listener.report()


__all__ = [
    "Behind",
    "Cursor",
    "Done",
    "FetchPart",
    "FetchSegment",
    "ListenReport",
    "PlayerModel",
    "RetryPolicy",
    "SkipGap",
    "Step",
    "Wait",
    "advance",
    "backoff",
    "listen",
    "next_step",
    "parse_retry_after",
    "percentile",
    "start_cursor",
]
