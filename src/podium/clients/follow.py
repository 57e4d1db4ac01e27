"""One simulated player following a live playlist, driven by callbacks: a crowd's hot path.

A :class:`Follower` does what a low-latency HLS player does on its own keep-alive
HTTP/1.1 connection: it starts ``PART-HOLD-BACK`` behind the live edge, asks for each
next part with a Blocking Playlist Reload (``_HLS_msn``/``_HLS_part``, and ``_HLS_skip``
for a delta update while its playlist is fresh enough), fetches every part once (the
initialization section once, and again whenever it changes), and feeds a
:class:`~podium.clients.listen.PlayerModel` that counts the stalls. ``parts=False`` plays
classic HLS instead: whole segments, a reload per segment. Failed connections, timeouts,
429 and 5xx answers are retried after a full-jitter backoff (a ``Retry-After`` is a
floor), within the policy's attempts per request and a budget for the follower's life.

The decisions are those of :mod:`podium.clients.listen` (:func:`start_cursor`,
:func:`next_step`, :func:`backoff`). What is particular here is the shape: a follower is
a state machine that the event loop calls when bytes arrive. There is no task, future or
timer per request, only a response parser and a few attribute updates, so that one core
follows thousands of listeners (``bench/generator_scale.py`` measures it). A follower
only ever contacts the origin (scheme, host and port) of the playlist it follows.

:meth:`Follower.start` begins; the ``done`` callback is called once, when the stream
ended, the time was up, or a failure stopped it (:attr:`FollowStats.failure` says which).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import cast

from podium.clients.hls import Playlist
from podium.clients.httpwire import Origin, ProtocolError, Response, ResponseParser, requestable
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
    parse_retry_after,
    start_cursor,
)
from podium.clients.playlists import PlaylistCache

Clock = Callable[[], float]

# Keep retrying a failed request this many times (the backoff doubling to its cap)
# before giving up: about a minute, enough to ride out an edge restart.
FOLLOW_RETRIES = RetryPolicy(attempts=16, base=0.1, cap=5.0, max_retry_after=60.0)
# A request unanswered for this long is abandoned and retried: longer than the longest
# blocking reload an origin may hold (three target durations) plus an edge's own wait.
REQUEST_TIMEOUT_S = 20.0
MAX_REFUSED_DIRECTIVES = 3
"""Delivery directives refused (400) this many times in a row end the follower."""

_MEDIA_BOXES = frozenset({b"styp", b"moof", b"prft", b"emsg", b"sidx"})
_INIT_BOXES = frozenset({b"ftyp", b"moov"})
_PLAYLIST, _INIT, _MEDIA = "playlist", "init", "part"


@dataclass(slots=True)
class FollowStats:
    """What one follower did. Times are its clock's (monotonic seconds).

    ``requests`` counts every attempt, ``errors`` every failed one (a retry follows while
    the policy allows), ``retries`` the retries. ``bytes_down``/``bytes_up`` count HTTP
    on the wire (heads, bodies, chunk framing), not TCP/IP headers; of ``bytes_down``,
    ``head_bytes`` are response heads and ``playlist_bytes`` whole playlist responses;
    ``media_bytes`` are the bodies of parts, segments and init segments. ``outages`` are
    (first failure, next success) pairs: how long it was cut off. ``failure`` is what
    stopped it early, as (kind, detail); ``None`` when the time ran out or the stream
    ended (``ended``); ``last_error`` says what the latest failed attempt met.
    """

    edge: str
    parts: int = 0
    segments: int = 0
    playlists: int = 0
    requests: int = 0
    errors: int = 0
    retries: int = 0
    reload_retries: int = 0
    gave_up: bool = False
    ended: bool = False
    failure: tuple[str, str] | None = None
    last_error: str | None = None
    connections: int = 0
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
    stopped_at: float | None = None
    outages: list[tuple[float, float | None]] = field(default_factory=list)
    by_kind: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)


@dataclass(frozen=True, slots=True)
class FollowOptions:
    """How to follow.

    Attributes:
        parts: part by part (LL-HLS); ``False``: whole segments (classic HLS).
        delta: ask for delta updates (``_HLS_skip=YES``) when the playlist offers them.
        gzip: ask for compressed playlists (``Accept-Encoding: gzip``), as browsers do.
        policy: retries per request after a failure.
        budget: retries for the follower's whole life.
        timeout_s: the limit for one request.
        local_address: the source address of its connections (``None``: the system's).
        user_agent: its ``User-Agent``.
        ssl_context: for an ``https`` playlist (``None``: the system's trusted roots).
    """

    parts: bool = True
    delta: bool = True
    gzip: bool = False
    policy: RetryPolicy = FOLLOW_RETRIES
    budget: int = 1_000_000
    timeout_s: float = REQUEST_TIMEOUT_S
    local_address: str | None = None
    user_agent: str = "podium-load"
    ssl_context: ssl.SSLContext | None = None


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """One context for the whole crowd: loading the trusted roots takes milliseconds."""
    return ssl.create_default_context()


class _Wire(asyncio.Protocol):
    """One TCP connection of a follower: it hands what happens to the follower as long
    as it is the follower's current connection, and is ignored afterwards."""

    __slots__ = ("follower", "transport")

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        follower = self.follower
        if follower.wire is self:
            try:
                follower.received(data)
            except Exception as exc:  # an answer nothing here foresaw: reported, not hung
                follower.crashed(exc)

    def eof_received(self) -> bool:
        return False  # close: this client never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        follower = self.follower
        if follower.wire is self:
            try:
                follower.lost(exc)
            except Exception as error:
                follower.crashed(error)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Follower:
    """One player following the live playlist at ``url`` (see the module's text).

    Args:
        url: the playlist's absolute URL (``ValueError`` if it cannot be requested).
        cache: playlists parsed once per distinct body, shared by a crowd.
        options: how to follow.
        until: when to stop (clock time).
        patience: a follower still without media at ``until`` goes on for up to this
            much longer, and stops as soon as its first media comes.
        done: called once, with the stats, when the follower stops.

    Its :attr:`origin` (scheme, host, port) is the only one it ever contacts.
    """

    def __init__(
        self,
        url: str,
        cache: PlaylistCache,
        options: FollowOptions,
        *,
        until: float,
        done: Callable[[FollowStats], None],
        patience: float = 0.0,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        origin = Origin.of(url)
        if not requestable(url):
            raise ValueError(f"{url[:80]!r} holds a space, a control or a non-ASCII character")
        self.stats = FollowStats(str(origin))
        self.wire: _Wire | None = None
        self.origin = origin
        self._prefix = f"{origin}/"
        self._url = url
        self._path = url[len(self._prefix) - 1 :].split("#", 1)[0]
        self._cache = cache
        self._options = options
        self._until = until
        self._patience = patience
        self._done = done
        self._rng = rng or random.Random()
        self._clock = clock
        self._wall_clock = wall_clock
        self._loop = asyncio.get_running_loop()
        self._parser = ResponseParser()
        accept = "Accept-Encoding: gzip\r\n" if options.gzip else ""
        self._head_tail = (
            f" HTTP/1.1\r\nHost: {origin.authority}\r\nUser-Agent: {options.user_agent}\r\n"
            f"{accept}\r\n"
        ).encode("latin-1")
        self._budget = options.budget
        # The request in flight (or waiting for a connection or a retry).
        self._kind: str | None = None
        self._target = ""
        self._sent_at = 0.0
        self._attempt = 0
        self._served = 0  # answers the current connection has carried
        self._directives = False
        self._connecting = False
        self._retry: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._end: asyncio.TimerHandle | None = None
        self._stopped = False
        # The player.
        self._playlist: Playlist | None = None
        self._cursor = Cursor(0)
        self._step: FetchPart | FetchSegment | None = None
        self._model: PlayerModel | None = None
        self._init: str | None = None
        self._loaded_at = 0.0
        self._loaded_at_request = 0.0
        self._refused = 0

    # -- life ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin: fetch the playlist. Its first answer places the player."""
        now = self._clock()
        self.stats.started_at = now
        self._end = self._loop.call_at(self._loop_time(self._until), self._guarded, self._time_up)
        self._reload("")

    def stop(self, failure: tuple[str, str] | None = None, *, ended: bool = False) -> None:
        """Stop now (idempotent); ``done`` is called."""
        if self._stopped:
            return
        self._stopped = True
        now = self._clock()
        stats = self.stats
        stats.stopped_at = now
        stats.ended = ended
        stats.failure = failure
        for handle in (self._retry, self._watchdog, self._end):
            if handle is not None:
                handle.cancel()
        self._drop_wire()
        self._kind = None
        if self._model is not None:
            self._model.finish(now, ended=ended)
            stats.stalls = self._model.stalls
            stats.stall_seconds = self._model.stall_seconds
        self._done(stats)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def crashed(self, exc: Exception) -> None:
        """Something raised in one of the follower's callbacks: it stops, and says what,
        rather than waiting forever for an answer it will never handle."""
        self.stop(("client", f"{type(exc).__name__}: {exc}"))

    def _guarded(self, callback: Callable[..., None], *args: object) -> None:
        """``callback(*args)`` from a timer, with :meth:`crashed` for what it raises."""
        try:
            callback(*args)
        except Exception as exc:
            self.crashed(exc)

    def _loop_time(self, at: float) -> float:
        """Clock time ``at`` as event-loop time."""
        return self._loop.time() + (at - self._clock())

    def _time_up(self) -> None:
        self._end = None
        if self.stats.first_media_at is None and self._patience > 0:
            deadline, self._patience = self._until + self._patience, 0.0
            self._end = self._loop.call_at(self._loop_time(deadline), self._guarded, self._time_up)
            return
        self.stop()

    # -- requests -----------------------------------------------------------------------

    def _send(self, kind: str, target: str) -> None:
        self._kind, self._target = kind, target
        self._transmit()

    def _transmit(self) -> None:
        """Send the current request, on a new connection if there is none."""
        self._retry = None
        wire = self.wire
        if wire is None or wire.transport is None:
            if not self._connecting:
                self._connect()
            return
        stats = self.stats
        stats.requests += 1
        stats.by_kind[self._kind or ""] += 1
        self._sent_at = now = self._clock()
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(
                self._loop_time(now + self._options.timeout_s), self._guarded, self._check_time
            )
        self._parser.expect("GET")
        data = b"GET " + self._target.encode("latin-1") + self._head_tail
        stats.bytes_up += len(data)
        wire.transport.write(data)

    def _connect(self) -> None:
        wire = self.wire = _Wire(self)
        self._connecting = True
        self._served = 0
        address = self._options.local_address
        tls = None
        if self.origin.scheme == "https":
            tls = self._options.ssl_context or _default_tls()
        opening = self._loop.create_connection(
            lambda: wire,
            self.origin.host,
            self.origin.port,
            local_addr=(address, 0) if address else None,
            ssl=tls,
            server_hostname=self.origin.host if tls else None,
        )
        task = self._loop.create_task(opening)
        task.add_done_callback(lambda task: self._guarded(self._connected, wire, task))

    def _connected(self, wire: _Wire, task: asyncio.Task[object]) -> None:
        if self.wire is not wire:
            if not task.cancelled() and task.exception() is None:
                wire.close()  # stopped or replaced meanwhile
            return
        self._connecting = False
        if task.cancelled():
            self.wire = None
            return
        error = task.exception()
        if error is not None:
            self.wire = None
            self._failed("connection", f"{self.origin}: cannot connect: {error}")
            return
        self.stats.connections += 1
        if self._kind is not None and not self._stopped:
            self._transmit()

    def _drop_wire(self) -> None:
        wire, self.wire = self.wire, None
        self._connecting = False
        if wire is not None:
            wire.close()

    def _check_time(self) -> None:
        """The watchdog: one timer a follower, moved on only when it fires."""
        self._watchdog = None
        if self._kind is None or self._retry is not None or self._stopped:
            return
        due = self._sent_at + self._options.timeout_s
        if self._clock() < due:
            self._watchdog = self._loop.call_at(
                self._loop_time(due), self._guarded, self._check_time
            )
            return
        self._drop_wire()
        limit = self._options.timeout_s
        self._failed("connection", f"{self.origin}: no whole answer in {limit:g} s")

    def received(self, data: bytes) -> None:
        """Bytes from the current connection."""
        self.stats.bytes_down += len(data)
        if self._kind is None or self._retry is not None:
            self._drop_wire()  # unsolicited bytes: nothing after them can be trusted
            return
        try:
            response = self._parser.feed(data)
        except ProtocolError as exc:
            self._drop_wire()
            self._failed("connection", f"{self.origin}: {exc}")
            return
        if response is not None:
            self._answer(response)

    def lost(self, exc: Exception | None) -> None:
        """The current connection closed."""
        self.wire = None
        self._connecting = False
        if self._kind is None or self._retry is not None or self._stopped:
            return
        try:
            response = self._parser.feed_eof()
        except ProtocolError as error:
            self._failed("connection", f"{self.origin}: {error}")
            return
        if response is not None:
            self._answer(response)
        elif self._served and self._parser.received == 0:
            # An idempotent request on a kept-alive connection the server had just
            # closed: sent again on a new one at once, as every client does (RFC 9112
            # 9.3.1).
            self._transmit()
        else:
            reason = f" ({exc})" if exc else ""
            self._failed("connection", f"{self.origin} closed the connection{reason}")

    def _answer(self, response: Response) -> None:
        self._served += 1
        stats = self.stats
        stats.head_bytes += self._parser.head_bytes
        stats.statuses[response.status] += 1
        if not response.keep_alive:
            self._drop_wire()
        status = response.status
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.header("retry-after"), self._wall_clock())
            if self._kind == _PLAYLIST:
                stats.reload_retries += 1
            self._failed("status", f"{self._target} answered {status}", retry_after)
            return
        if self._attempt or (stats.outages and stats.outages[-1][1] is None):
            self._recovered()
        kind, self._kind = self._kind, None
        if kind == _PLAYLIST:
            self._playlist_answer(response)
        else:
            self._media_answer(kind, response)

    def _failed(self, kind: str, detail: str, retry_after: float | None = None) -> None:
        """An attempt failed: retry after a backoff, or stop when the policy says so."""
        stats = self.stats
        stats.errors += 1
        stats.last_error = detail
        if not stats.outages or stats.outages[-1][1] is not None:
            stats.outages.append((self._clock(), None))
        policy = self._options.policy
        if retry_after is not None and retry_after > policy.max_retry_after:
            self._give_up(kind, f"{detail} (Retry-After {retry_after:g} s)")
        elif self._attempt >= policy.attempts or self._budget <= 0:
            self._give_up(kind, f"{detail} (after {self._attempt} retries)")
        else:
            delay = backoff(self._attempt, retry_after, policy, self._rng)
            self._attempt += 1
            self._budget -= 1
            stats.retries += 1
            self._retry = self._loop.call_later(delay, self._guarded, self._transmit)

    def _give_up(self, kind: str, detail: str) -> None:
        self.stats.gave_up = True
        self.stop((kind, detail))

    def _recovered(self) -> None:
        self._attempt = 0
        outages = self.stats.outages
        if outages and outages[-1][1] is None:
            outages[-1] = (outages[-1][0], self._clock())

    # -- playlists ----------------------------------------------------------------------

    def _reload(self, query: str) -> None:
        self._directives = bool(query)
        self._loaded_at_request = self._clock()
        self._send(_PLAYLIST, f"{self._path}?{query}" if query else self._path)

    def _playlist_answer(self, response: Response) -> None:
        stats = self.stats
        stats.playlists += 1
        stats.playlist_bytes += self._parser.received
        if response.status == 400 and self._directives:
            # Directives refused ("too far ahead"): resynchronise with a plain reload,
            # unless it keeps happening (8216bis 6.2.5.2).
            self._refused += 1
            if self._refused > MAX_REFUSED_DIRECTIVES:
                self._give_up(_PLAYLIST, f"{self._path} keeps refusing delivery directives")
            else:
                self._reload("")
            return
        if response.status != 200:
            self._give_up(_PLAYLIST, f"{self._target} answered {response.status}")
            return
        self._refused = 0 if self._directives else self._refused
        body = response.body
        if self._playlist is None and not self._directives and self._entered(body):
            return
        try:
            playlist = self._cache.parse(body)
            if playlist.skipped:
                if self._playlist is None:
                    raise ValueError("a delta update that was not asked for")
                playlist = self._cache.merge(self._playlist, body)
        except ValueError as exc:
            if self._directives and "_HLS_skip" in self._target:
                # 8216bis 6.3.5: a delta that cannot be applied needs a full reload.
                query = self._target.partition("?")[2].replace("&_HLS_skip=YES", "")
                self._reload(query)
                return
            self._give_up(_PLAYLIST, f"{self._target} is not a media playlist: {exc}")
            return
        self._loaded_at = self._loaded_at_request
        held, self._playlist = self._playlist, playlist
        if self._model is None:
            self._model = PlayerModel(float(playlist.start_hold_back))
            self._cursor = (
                start_cursor(playlist, from_start=False)
                if self._options.parts
                else Cursor(max(playlist.first_msn, playlist.next_msn - 2))
            )
        if self._options.parts:
            self._play()
        elif playlist is held:
            # Classic HLS, the same answer again (the segment is still in progress):
            # wait instead of asking the cache for it in a loop.
            self._retry = self._loop.call_later(
                float(playlist.target_duration) / 4, self._guarded, self._play_segments
            )
        else:
            self._play_segments()

    def _entered(self, body: bytes) -> bool:
        """When ``body`` is a multivariant playlist (a space's entry point): follow its
        audio variant from now on, and ask for it. Whether it was one."""
        try:
            uri = self._cache.variant(body)
        except ValueError as exc:
            self._give_up(_PLAYLIST, f"{self._target} offers nothing to play: {exc}")
            return True
        if uri is None:
            return False
        target = self._resolve(uri)
        if target is not None:
            self._url = self._prefix + target[1:]
            self._path = target.split("#", 1)[0]
            self._reload("")
        return True

    def _skip(self, playlist: Playlist) -> str:
        """``&_HLS_skip=YES`` when a delta update is offered and the playlist held is
        fresh enough to apply it to (8216bis 6.2.5.1)."""
        if self._options.delta:
            window = self._cache.skip_window(playlist)
            if window is not None and self._clock() - self._loaded_at < window:
                return "&_HLS_skip=YES"
        return ""

    # -- the player ---------------------------------------------------------------------

    def _play(self) -> None:
        """Take the next steps (LL-HLS) until one needs a request, or the end."""
        playlist = self._playlist
        model = self._model
        assert playlist is not None
        assert model is not None
        cursor = self._cursor
        steps = self._cache
        while True:
            step = steps.next_step(playlist, cursor)
            if isinstance(step, FetchPart | FetchSegment):
                self._cursor = cursor
                self._fetch(step)
                return
            if isinstance(step, Wait):
                self._cursor = cursor
                if not playlist.can_block_reload:
                    # 8216bis 6.3.4: no blocking reload offered; poll every half target.
                    self._retry = self._loop.call_later(
                        float(playlist.target_duration) / 2, self._guarded, self._reload, ""
                    )
                    return
                query = f"_HLS_msn={step.msn}"
                if step.part is not None:
                    query += f"&_HLS_part={step.part}"
                self._reload(query + self._skip(playlist))
                return
            if isinstance(step, Behind):
                cursor = Cursor(step.msn)
            elif isinstance(step, SkipGap):
                model.add(self._clock(), float(step.duration))
                cursor = advance(step)
            else:
                assert isinstance(step, Done)
                self._cursor = cursor
                self.stop(ended=True)
                return

    def _play_segments(self) -> None:
        """Classic HLS: the next whole segment, or a reload blocking on its number."""
        self._retry = None
        playlist = self._playlist
        assert playlist is not None
        msn = self._cursor.msn
        segment = playlist.segment(msn)
        if segment is not None and segment.complete and segment.uri is not None:
            self._fetch(FetchSegment(segment))
        elif playlist.ended and msn >= playlist.next_msn:
            self.stop(ended=True)
        else:
            self._reload(f"_HLS_msn={msn}" + self._skip(playlist))

    def _fetch(self, step: FetchPart | FetchSegment) -> None:
        segment = step.segment
        self._step = step
        if segment.map_uri is None:
            self._give_up(_MEDIA, f"segment {segment.msn} has no EXT-X-MAP")
            return
        init = self._resolve(segment.map_uri)
        if init is None:
            return
        if init != self._init:
            self._send(_INIT, init)
            return
        uri = segment.parts[step.index].uri if isinstance(step, FetchPart) else segment.uri
        assert uri is not None
        target = self._resolve(uri)
        if target is not None:
            self._send(_MEDIA, target)

    def _resolve(self, uri: str) -> str | None:
        """``uri`` from the playlist as a request target on this follower's origin."""
        try:
            url = self._cache.resolve(self._url, uri)
        except ValueError as exc:
            self._give_up(_MEDIA, str(exc))
            return None
        if not url.startswith(self._prefix):
            self._give_up(_MEDIA, f"{uri} is not on {self.origin}, the playlist's origin")
            return None
        return url[len(self._prefix) - 1 :]

    def _media_answer(self, kind: str | None, response: Response) -> None:
        stats = self.stats
        target = self._target
        if response.status != 200:
            self._give_up(kind or _MEDIA, f"{target} (listed) answered {response.status}")
            return
        body = response.body
        stats.media_bytes += len(body)
        if body[4:8] not in (_INIT_BOXES if kind == _INIT else _MEDIA_BOXES):
            self._give_up(kind or _MEDIA, f"{target} is not an MP4 box sequence")
            return
        step = self._step
        assert step is not None
        if kind == _INIT:
            self._init = target
            self._fetch(step)
            return
        now = self._clock()
        segment = step.segment
        if isinstance(step, FetchPart):
            self._cursor, seconds = self._cache.after(step)
            stats.parts += 1
        else:
            played = min(self._cursor.played, Fraction(segment.duration))
            seconds = float(segment.duration - played)
            stats.segments += 1
            self._cursor = advance(step)
        stats.media_seconds += seconds
        if stats.first_media_at is None:
            stats.first_media_at = now
        stats.last_media_at = now
        assert self._model is not None
        self._model.add(now, seconds)
        if now >= self._until:
            self.stop()
        elif self._options.parts:
            self._play()
        else:
            self._play_segments()


__all__ = [
    "FOLLOW_RETRIES",
    "MAX_REFUSED_DIRECTIVES",
    "REQUEST_TIMEOUT_S",
    "FollowOptions",
    "FollowStats",
    "Follower",
]
