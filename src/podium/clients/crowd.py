"""A crowd of lean LL-HLS listeners, about a thousand per core, for edge tests and benchmarks.

Each simulated listener follows a live playlist as a low-latency player does (it starts
``PART-HOLD-BACK`` behind the live edge, asks for each next part with a Blocking Playlist
Reload and a delta update, ``_HLS_msn``/``_HLS_part``/``_HLS_skip=YES``, and fetches every
part once), models its player's buffer to count stalls, and retries failures with full
jitter backoff. It does not decode audio: what it measures is the delivery (requests,
bytes, stalls, recovery) at about 115 µs of CPU per request: some thousand listeners
following 256 ms parts per core.

The decisions are those of :mod:`podium.clients.listen` (:func:`start_cursor`,
:func:`next_step`, :class:`PlayerModel`, :func:`backoff`), on playlists parsed once per
distinct body (a crowd behind an edge receives the same bytes many times). The HTTP/1.1
client is a few lines over asyncio streams, one keep-alive connection per listener, and
counts the bytes on the wire. Requests go only to the addresses the caller gives.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from urllib.parse import urlsplit

from podium.clients.hls import Playlist, parse_playlist
from podium.clients.listen import (
    Behind,
    Cursor,
    Done,
    FetchPart,
    FetchSegment,
    PlayerModel,
    RetryPolicy,
    SkipGap,
    Wait,
    advance,
    backoff,
    next_step,
    parse_retry_after,
    start_cursor,
)
from podium.errors import ClientError

Clock = Callable[[], float]

# A listener keeps retrying a failed request this many times (with backoff doubling to
# the cap) before it gives up: about a minute, enough to ride out an edge restart.
CROWD_RETRIES = RetryPolicy(attempts=16, base=0.1, cap=5.0, max_retry_after=60.0)
# A request unanswered for this long is abandoned and retried: longer than the longest
# blocking reload an origin may hold (three target durations) plus the edge's own wait.
REQUEST_TIMEOUT_S = 20.0
_MAX_HEAD_BYTES = 16 * 1024
_LAG_TICK_S = 0.05


@dataclass(slots=True)
class ListenerStats:
    """What one simulated listener did. Times are the crowd's clock (monotonic seconds).

    ``bytes_down``/``bytes_up`` count HTTP on the wire (heads, bodies, chunk framing), not
    TCP/IP headers; of ``bytes_down``, ``head_bytes`` are response heads and
    ``playlist_bytes`` whole playlist responses; ``media_bytes`` are the bodies of parts,
    segments and init segments.
    ``outages`` are (first failure, next success) pairs: how long it was cut off.
    """

    edge: str
    parts: int = 0
    segments: int = 0
    playlists: int = 0
    requests: int = 0
    errors: int = 0
    retries: int = 0
    gave_up: bool = False
    bytes_down: int = 0
    bytes_up: int = 0
    head_bytes: int = 0
    playlist_bytes: int = 0
    media_bytes: int = 0
    media_seconds: float = 0.0
    stalls: int = 0
    stall_seconds: float = 0.0
    started_at: float | None = None
    first_media_at: float | None = None
    last_media_at: float | None = None
    outages: list[tuple[float, float | None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CrowdReport:
    """The crowd's listeners, and totals over them."""

    listeners: list[ListenerStats]
    started_at: float
    ended_at: float
    loop_lag_max: float = 0.0  # the load generator's own lateness: its event loop's worst

    def total(self, name: str) -> float:
        return float(sum(getattr(listener, name) for listener in self.listeners))

    @property
    def listening_seconds(self) -> float:
        """Seconds between each listener's first media and its end, summed."""
        return sum(
            self.ended_at - listener.first_media_at
            for listener in self.listeners
            if listener.first_media_at is not None
        )


@functools.lru_cache(maxsize=512)
def parse_cached(body: bytes) -> Playlist:
    """:func:`parse_playlist`, once per distinct body: behind an edge, thousands of
    listeners receive the same bytes for the same blocking reload."""
    return parse_playlist(body.decode())


# -- HTTP/1.1, lean ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    wire: int  # bytes read: head, body and chunk framing
    head: int = 0  # of which the status line and header fields
    retry_after: str | None = None


class _Stale(Exception):
    """A kept-alive connection was closed by the server before this request's answer."""


class Connection:
    """One keep-alive HTTP/1.1 connection; it reconnects when the server closes it.

    Just enough HTTP for GETs of playlists and media: ``Content-Length``, chunked
    transfer coding, ``Connection: close``, and gzip bodies when asked for.
    """

    def __init__(self, host: str, port: int, *, gzip: bool = False) -> None:
        self._address = (host, port)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        accept = "Accept-Encoding: gzip\r\n" if gzip else ""
        self._head_tail = f"Host: {host}:{port}\r\nUser-Agent: podium-crowd\r\n{accept}\r\n"
        self.sent = 0

    async def get(self, target: str) -> Reply:
        """GET ``target`` (a path and query). Raises :class:`OSError` (or
        :class:`asyncio.IncompleteReadError`, ``ValueError``) when the exchange fails."""
        reused = self._writer is not None
        try:
            return await self._exchange(target)
        except _Stale:
            if not reused:
                raise ConnectionResetError("the server closed the connection") from None
            # An idempotent request on a connection the server had just closed: retry once
            # on a new one, as every HTTP client does (RFC 9112 9.3.1).
            return await self._exchange(target)

    async def _exchange(self, target: str) -> Reply:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(*self._address)
        reader, writer = self._reader, self._writer
        assert reader is not None
        request = f"GET {target} HTTP/1.1\r\n{self._head_tail}".encode()
        self.sent += len(request)
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            self.close()
            if not exc.partial:
                raise _Stale from exc
            raise
        except (OSError, asyncio.LimitOverrunError):
            self.close()
            raise _Stale from None
        try:
            return await self._body(head, reader)
        except BaseException:
            self.close()
            raise

    async def _body(self, head: bytes, reader: asyncio.StreamReader) -> Reply:
        if not head.startswith(b"HTTP/1.") or len(head) > _MAX_HEAD_BYTES:
            raise ValueError("not an HTTP/1.x response")
        status = int(head[9:12])
        fields = head.lower()
        wire = len(head)
        length = _field(fields, b"content-length")
        if status in (204, 304) or status < 200:
            body = b""
        elif length is not None:
            body = await reader.readexactly(int(length))
            wire += len(body)
        elif _field(fields, b"transfer-encoding") == b"chunked":
            body, framing = await _chunked(reader)
            wire += len(body) + framing
        else:
            body = await reader.read()
            wire += len(body)
            self.close()
        if _field(fields, b"content-encoding") == b"gzip":
            body = zlib.decompress(body, wbits=31)
        if _field(fields, b"connection") == b"close":
            self.close()
        retry_after = _field(fields, b"retry-after")
        retry = retry_after.decode() if retry_after else None
        return Reply(status, body, wire, len(head), retry)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _field(fields: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` in a lower-cased response head, or ``None``."""
    start = fields.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    return fields[start : fields.index(b"\r\n", start)].strip()


async def _chunked(reader: asyncio.StreamReader) -> tuple[bytes, int]:
    """A chunked body (RFC 9112 7.1) and the bytes of framing around it."""
    chunks: list[bytes] = []
    framing = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0], 16)
        framing += len(line)
        if size == 0:
            while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                framing += len(trailer)
            return b"".join(chunks), framing + 2
        chunk = await reader.readexactly(size + 2)
        chunks.append(chunk[:-2])
        framing += 2


# -- one listener ------------------------------------------------------------------------


class _GaveUp(Exception):
    pass


class _Listener:
    """The asyncio shell of one simulated listener."""

    def __init__(
        self,
        edge: str,
        playlist_path: str,
        until: float,
        *,
        gzip: bool,
        delta: bool,
        parts: bool,
        policy: RetryPolicy,
        rng: random.Random,
        clock: Clock,
    ) -> None:
        address = urlsplit(edge)
        assert address.hostname is not None
        self.stats = ListenerStats(edge)
        self._connection = Connection(address.hostname, address.port or 80, gzip=gzip)
        self._path = playlist_path
        self._base = playlist_path.rsplit("/", 1)[0] + "/"
        self._until = until
        self._delta = delta
        self._parts = parts
        self._policy = policy
        self._rng = rng
        self._clock = clock
        self._model: PlayerModel | None = None
        self._map_uri: str | None = None

    async def run(self) -> ListenerStats:
        stats = self.stats
        stats.started_at = self._clock()
        try:
            await self._follow()
        except _GaveUp:
            stats.gave_up = True
        except TimeoutError:
            pass  # the listening time ran out during a request
        finally:
            self._connection.close()
            stats.bytes_up = self._connection.sent
            if self._model is not None:
                self._model.finish(self._clock(), ended=False)
                stats.stalls = self._model.stalls
                stats.stall_seconds = self._model.stall_seconds
        return stats

    async def _follow(self) -> None:
        playlist = await self._playlist(self._path)
        self._model = PlayerModel(float(playlist.start_hold_back))
        if not self._parts:
            await self._follow_segments(playlist)
            return
        cursor = start_cursor(playlist, from_start=False)
        while self._clock() < self._until:
            step = next_step(playlist, cursor)
            if isinstance(step, FetchPart | FetchSegment):
                await self._init(step.segment.map_uri)
            if isinstance(step, FetchPart):
                part = step.segment.parts[step.index]
                await self._media(part.uri, part.duration)
                self.stats.parts += 1
                cursor = advance(step)
            elif isinstance(step, FetchSegment):
                assert step.segment.uri is not None
                await self._media(step.segment.uri, step.segment.duration - cursor.played)
                self.stats.segments += 1
                cursor = advance(step)
            elif isinstance(step, SkipGap):
                cursor = advance(step)
            elif isinstance(step, Wait):
                playlist = await self._playlist(self._reload(step))
            elif isinstance(step, Behind):
                playlist = await self._playlist(self._path)
                cursor = Cursor(step.msn)
            else:
                assert isinstance(step, Done)
                return

    async def _follow_segments(self, playlist: Playlist) -> None:
        """Classic HLS: whole segments, a playlist reload per segment (blocking on the
        segment's number, the cost of a reload every target duration)."""
        msn = max(playlist.first_msn, playlist.next_msn - 2)
        while self._clock() < self._until:
            segment = playlist.segment(msn)
            if segment is not None and segment.complete and segment.uri is not None:
                await self._init(segment.map_uri)
                await self._media(segment.uri, segment.duration)
                self.stats.segments += 1
                msn += 1
                continue
            target = f"{self._path}?_HLS_msn={msn}"
            reloaded = await self._playlist(target + ("&_HLS_skip=YES" if self._delta else ""))
            if reloaded is playlist:
                # The same answer again (segment msn still in progress): wait instead of
                # asking the cache for it in a loop.
                await asyncio.sleep(float(playlist.target_duration) / 4)
            playlist = reloaded

    async def _init(self, uri: str | None) -> None:
        """Fetch the initialization section once, and again whenever it changes."""
        if uri is not None and uri != self._map_uri:
            await self._media(uri, Fraction(0))
            self._map_uri = uri

    def _reload(self, wait: Wait) -> str:
        query = f"_HLS_msn={wait.msn}"
        if wait.part is not None:
            query += f"&_HLS_part={wait.part}"
        if self._delta:
            query += "&_HLS_skip=YES"
        return f"{self._path}?{query}"

    async def _playlist(self, target: str) -> Playlist:
        reply = await self._get(target)
        self.stats.playlists += 1
        self.stats.playlist_bytes += reply.wire
        try:
            return parse_cached(reply.body)
        except (ValueError, UnicodeDecodeError):
            self._failed()  # not a playlist this listener can follow: it stops here
            raise _GaveUp from None

    async def _media(self, uri: str, seconds: Fraction) -> None:
        reply = await self._get(uri if uri.startswith("/") else self._base + uri)
        now = self._clock()
        stats = self.stats
        stats.media_bytes += len(reply.body)
        if seconds > 0:
            stats.media_seconds += float(seconds)
            if stats.first_media_at is None:
                stats.first_media_at = now
            stats.last_media_at = now
            assert self._model is not None
            self._model.add(now, float(seconds))

    async def _get(self, target: str) -> Reply:
        """GET with retries: 429, 5xx and failed connections are tried again after a full
        jitter backoff (a ``Retry-After`` is a floor), up to the policy's attempts."""
        stats = self.stats
        for attempt in range(self._policy.attempts + 1):
            remaining = self._until - self._clock()
            if remaining <= 0:
                raise TimeoutError
            stats.requests += 1
            retry_after: float | None = None
            try:
                async with asyncio.timeout(min(REQUEST_TIMEOUT_S, remaining)):
                    reply = await self._connection.get(target)
            except TimeoutError:
                self._connection.close()
                if self._clock() >= self._until:
                    raise
                self._failed()
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self._failed()
            else:
                stats.bytes_down += reply.wire
                stats.head_bytes += reply.head
                if reply.status < 400:
                    self._recovered()
                    return reply
                self._failed()
                if reply.status != 429 and reply.status < 500:
                    break  # not worth repeating: this listener stops here
                retry_after = parse_retry_after(reply.retry_after, time.time())
                if retry_after is not None and retry_after > self._policy.max_retry_after:
                    break
            stats.retries += 1
            await asyncio.sleep(backoff(attempt, retry_after, self._policy, self._rng))
        raise _GaveUp

    def _failed(self) -> None:
        self.stats.errors += 1
        outages = self.stats.outages
        if not outages or outages[-1][1] is not None:
            outages.append((self._clock(), None))

    def _recovered(self) -> None:
        outages = self.stats.outages
        if outages and outages[-1][1] is None:
            outages[-1] = (outages[-1][0], self._clock())


# -- the crowd ---------------------------------------------------------------------------


async def run_crowd(
    edges: Sequence[str],
    playlist_path: str,
    listeners: int,
    seconds: float,
    *,
    ramp_s: float = 1.0,
    gzip: bool = False,
    delta: bool = True,
    parts: bool = True,
    policy: RetryPolicy = CROWD_RETRIES,
    seed: int = 0,
    clock: Clock = time.monotonic,
) -> CrowdReport:
    """``listeners`` simulated listeners of ``playlist_path`` (a path such as
    ``/hls/ID/live.m3u8``), spread over ``edges`` (``http://host:port``) in turn, arriving
    evenly over ``ramp_s`` seconds and all stopping ``seconds`` after the first arrived.

    ``gzip``: ask for compressed playlists. ``delta``: ask for delta updates. ``parts``:
    follow part by part (LL-HLS); ``False`` plays classic HLS, whole segments.
    """
    if listeners < 1 or seconds <= 0 or not edges:
        raise ClientError("a crowd needs at least one listener, one edge and some time")
    rng = random.Random(seed)
    started = clock()
    until = started + seconds
    crowd = [
        _Listener(
            edges[i % len(edges)],
            playlist_path,
            until,
            gzip=gzip,
            delta=delta,
            parts=parts,
            policy=policy,
            rng=random.Random(rng.random()),
            clock=clock,
        )
        for i in range(listeners)
    ]

    async def arrive(index: int, listener: _Listener) -> ListenerStats:
        await asyncio.sleep(ramp_s * index / listeners)
        return await listener.run()

    lag = [0.0]

    async def watch_lag() -> None:
        # A timer that fires late says the generator, not the edge, is behind: stalls
        # measured meanwhile may be its own.
        while (now := clock()) < until:
            await asyncio.sleep(_LAG_TICK_S)
            lag[0] = max(lag[0], clock() - now - _LAG_TICK_S)

    async with asyncio.TaskGroup() as group:
        group.create_task(watch_lag())
        tasks = [group.create_task(arrive(i, listener)) for i, listener in enumerate(crowd)]
    return CrowdReport([task.result() for task in tasks], started, clock(), lag[0])
