"""One simulated listener of a join storm: join, room state, LL-HLS, beacons.

:class:`SimulatedListener` does what Podium's web page does for one person, over HTTP
only, and writes what happened into its :class:`~podium.clients.loadreport.ListenerRecord`
and the crowd's :class:`~podium.clients.loadreport.Tally`: the join contract of
:mod:`podium.clients.joining` (queue, proof of work, backoff after refusals, within a
retry budget), the room state checked against what the join said, the live playlist
followed with blocking reloads and delta updates, every part fetched (the init segment
once) into a player model that counts stalls, and a beacon every ``beacon_every_s``.

The decisions are those of :mod:`podium.clients.listen` (:func:`start_cursor`,
:func:`next_step`, :class:`PlayerModel`, :func:`backoff`). What the whole crowd shares is
a :class:`PlaylistCache`: identical playlist bodies are parsed once.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from podium.clients.hls import Playlist, merge_delta, parse_playlist
from podium.clients.http1 import HttpClient, Response, TransportError
from podium.clients.joining import (
    Admitted,
    Challenge,
    Queued,
    Refused,
    Unexpected,
    join_body,
    read_join_answer,
    solve_some,
)
from podium.clients.listen import (
    Behind,
    Cursor,
    Done,
    FetchPart,
    FetchSegment,
    PlayerModel,
    SkipGap,
    Wait,
    advance,
    backoff,
    next_step,
    parse_retry_after,
    start_cursor,
)
from podium.clients.loadreport import ListenerRecord, Tally
from podium.errors import ClientError

if TYPE_CHECKING:
    from podium.clients.load import StormPlan

MAX_DIFFICULTY = 28
"""A proof of work harder than this (2**28 hashes, minutes of CPU) is not attempted."""

_SOLVE_SLICE = 2048  # hashes between yields to the event loop while solving
_MAX_REFUSED_DIRECTIVES = 3
_MEDIA_BOXES = frozenset({b"styp", b"moof", b"prft", b"emsg", b"sidx"})
_INIT_BOXES = frozenset({b"ftyp", b"moov"})
_BEFORE_START = frozenset({"scheduled", "starting", "live"})
_OPEN = frozenset({"live"})

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class PlaylistCache:
    """Playlists parsed once per distinct body, and media URIs resolved once: a crowd
    following one stream receives the same bytes again and again, and parsing them is
    most of a listener's CPU."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._full: dict[bytes, Playlist] = {}
        self._merged: dict[tuple[int, bytes], tuple[Playlist, Playlist]] = {}
        self._urls: dict[tuple[str, str], str] = {}

    def resolve(self, base: str, uri: str) -> str:
        """``uri`` (from the playlist at ``base``) as an absolute URL (RFC 3986 5.2)."""
        key = (base, uri)
        url = self._urls.get(key)
        if url is None:
            url = urljoin(base, uri)
            self._remember(self._urls, key, url)
        return url

    def parse(self, body: bytes) -> Playlist:
        """Raises :class:`ValueError` for a body that is not a media playlist."""
        playlist = self._full.get(body)
        if playlist is None:
            playlist = parse_playlist(body.decode("utf-8", errors="replace"))
            self._remember(self._full, body, playlist)
        return playlist

    def merge(self, previous: Playlist, body: bytes) -> Playlist:
        """The full playlist a delta update ``body`` stands for, given ``previous``.

        Raises:
            ValueError: malformed, or ``previous`` lacks skipped segments.
        """
        delta = self.parse(body)
        if not delta.skipped:
            return delta
        key = (id(previous), body)
        cached = self._merged.get(key)
        if cached is not None and cached[0] is previous:
            return cached[1]
        merged = merge_delta(previous, delta)
        self._remember(self._merged, key, (previous, merged))
        return merged

    def _remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if len(table) >= self.size:
            del table[next(iter(table))]
        table[key] = value


def _with_query(url: str, params: dict[str, str]) -> str:
    if not params:
        return url
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


class SimulatedListener:
    """One simulated listener: join, state, follow, beacon. Never raises a
    :class:`ClientError`: every failure is counted in the tally and ends the listener."""

    def __init__(
        self,
        plan: StormPlan,
        record: ListenerRecord,
        tally: Tally,
        cache: PlaylistCache,
        http: HttpClient,
        rng: random.Random,
        clock: Clock,
        wall_clock: Clock,
        sleep: Sleep,
    ) -> None:
        self.plan = plan
        self.record = record
        self.tally = tally
        self.cache = cache
        self.http = http
        self.rng = rng
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        base = f"{plan.server.rstrip('/')}/api/v1/spaces/{plan.space}"
        self.join_url = f"{base}/join"
        self.state_url = f"{base}/state"
        self.beacon_url = f"{base}/beacon"
        self.retries_left = plan.retry.attempts * 4  # for the whole life of the listener
        self.ticket = ""
        self.player: PlayerModel | None = None
        self.deadline: asyncio.Timeout | None = None
        self.leave_at = 0.0
        self.init_url: str | None = None
        self.loaded_at = 0.0
        self.refused_directives = 0

    async def run(self) -> None:
        try:
            admitted = await self._join()
            if admitted is not None:
                self.ticket = admitted.ticket
                await self._state_after_admission(admitted)
                await self._listen(admitted)
        except ClientError as exc:
            self._fail("client", str(exc))
        finally:
            if self.record.left_at is None:
                self.record.left_at = self.clock()
            await self.http.aclose()

    def _fail(self, kind: str, detail: str) -> None:
        self.tally.error(self.clock(), kind, f"listener {self.record.index}: {detail}")
        self.record.outcome = "error"

    # -- joining ------------------------------------------------------------------------

    async def _join(self) -> Admitted | None:
        plan, record, tally = self.plan, self.record, self.tally
        queue_token: str | None = None
        solution: tuple[str, str] | None = None
        refusals = challenges = 0
        while True:
            record.join_requests += 1
            body = join_body(queue_token, *(solution or (None, None)))
            solution = None  # proof-of-work tokens are single-use
            sent = self.clock()
            response = await self._send("join", "POST", self.join_url, body)
            if response is None:
                return None
            now = self.clock()
            answer = read_join_answer(
                response.status, response.headers, response.body, self.wall_clock()
            )
            if isinstance(answer, Admitted):
                record.admitted_sent_at, record.admitted_at = sent, now
                record.outcome = "replay" if answer.replay else "admitted"
                return answer
            if isinstance(answer, Queued):
                refusals = challenges = 0
                await self._queued(answer, sent, now)
                if now - (record.first_queued_at or now) + answer.retry_after_s > plan.max_wait_s:
                    record.outcome, record.left_at = "queued", now
                    return None
                queue_token = answer.queue_token
                await self.sleep(max(0.01, answer.retry_after_s))
            elif isinstance(answer, Challenge):
                tally.challenges += 1
                challenges += 1
                if challenges > plan.pow_attempts or answer.difficulty > MAX_DIFFICULTY:
                    self._fail(
                        "proof_of_work",
                        f"challenge {challenges} of difficulty {answer.difficulty} bits",
                    )
                    return None
                solution = (answer.token, await self._solve(answer))
            elif isinstance(answer, Refused):
                tally.refused(now, answer.reason)
                retry_after = answer.retry_after_s
                if refusals >= plan.retry.attempts or (
                    retry_after is not None and retry_after > plan.retry.max_retry_after
                ):
                    record.outcome = "refused"
                    record.gave_up_reason = answer.reason
                    record.left_at = now
                    return None
                await self.sleep(backoff(refusals, retry_after, plan.retry, self.rng))
                refusals += 1
            else:
                assert isinstance(answer, Unexpected)
                self._fail("join", answer.why)
                return None

    async def _queued(self, answer: Queued, sent: float, now: float) -> None:
        record, tally = self.record, self.tally
        record.polls += 1
        tally.check(
            "queue_place_consistent",
            answer.position is None or answer.position <= max(answer.queue_length, 1),
            f"position {answer.position} of a queue of {answer.queue_length}",
        )
        if record.last_position is not None and answer.position is not None:
            tally.check(
                "queue_moves_forward",
                answer.position <= record.last_position,
                f"listener {record.index} went from {record.last_position} to {answer.position}",
            )
        record.last_position = answer.position
        if record.first_queued_at is not None:
            return
        record.first_queued_sent_at, record.first_queued_at = sent, now
        record.first_position = answer.position
        record.first_queue_length = answer.queue_length
        record.first_estimate = answer.estimated_wait_s
        record.first_reason = answer.reason
        state = await self._state()
        if state is not None:
            # Queued before the start: the space is scheduled ("starting" when close), or
            # went live in the moment between the two answers. Otherwise it is live.
            expected = _BEFORE_START if answer.reason == "pre_start" else _OPEN
            tally.check(
                "queued_space_open",
                state.get("status") in expected,
                f"queued ({answer.reason}) while the state says {state.get('status')!r}",
            )

    async def _solve(self, challenge: Challenge) -> str:
        started = self.clock()
        start = 0
        while True:
            found = solve_some(challenge.token, challenge.difficulty, start, _SOLVE_SLICE)
            if found is not None:
                self.tally.hashes += int(found) - start + 1
                self.tally.solved += 1
                self.tally.solve_seconds += self.clock() - started
                return found
            self.tally.hashes += _SOLVE_SLICE
            start += _SOLVE_SLICE
            await asyncio.sleep(0)  # the rest of the crowd goes on meanwhile

    # -- the room state -----------------------------------------------------------------

    async def _state(self) -> dict[str, Any] | None:
        response = await self._send("state", "GET", self.state_url)
        if response is None:
            return None
        if response.status != 200:
            self._fail("state", f"the room state answered {response.status}")
            return None
        try:
            document = json.loads(response.body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            self._fail("state", "the room state is not a JSON object")
            return None
        self._check_capacity(document)
        return document

    def _check_capacity(self, state: dict[str, Any]) -> None:
        capacity = state.get("capacity")
        ok = (
            isinstance(capacity, dict)
            and isinstance(capacity.get("admitting"), bool)
            and isinstance(capacity.get("queue_length"), int)
        )
        self.tally.check("state_has_capacity", ok, f"capacity is {capacity!r}")
        if not ok:
            return
        assert isinstance(capacity, dict)
        seated, limit = capacity.get("listeners"), capacity.get("max_listeners")
        if isinstance(seated, int) and isinstance(limit, int):
            self.tally.check(
                "seats_within_limit", seated <= limit, f"{seated} listeners, at most {limit}"
            )

    async def _state_after_admission(self, admitted: Admitted) -> None:
        state = await self._state()
        if state is None:
            return
        status = state.get("status")
        if admitted.replay:
            self.tally.check("replay_is_ended", status == "ended", f"replay while {status!r}")
        else:
            # A space may end in the moment between the two answers; never "scheduled".
            self.tally.check(
                "admitted_is_live", status in ("live", "ended"), f"admitted while {status!r}"
            )

    # -- listening ----------------------------------------------------------------------

    async def _listen(self, admitted: Admitted) -> None:
        """Listen for ``duration_s`` from the admission; a listener still waiting for its
        first audio then waits up to ``timeout_s`` more for it (that is what is being
        measured), and leaves as soon as it comes."""
        assert self.record.admitted_at is not None
        self.leave_at = self.record.admitted_at + self.plan.duration_s
        url = admitted.playlist_url
        ended = False
        patience = self.leave_at + self.plan.timeout_s - self.clock()
        try:
            async with asyncio.timeout(max(0.0, patience)) as deadline:
                self.deadline = deadline
                ended = await self._follow(url, admitted.beacon_every_s)
        except TimeoutError:
            pass
        if self.player is not None:
            self.player.finish(self.clock(), ended=ended)
            self.record.stalls = self.player.stalls
            self.record.stall_seconds = self.player.stall_seconds

    async def _follow(self, url: str, beacon_every_s: float) -> bool:
        """Follow the playlist at ``url``; True when it ended, False on a failure."""
        playlist = await self._playlist(url, {})
        if playlist is None:
            return False
        cursor = start_cursor(playlist, from_start=False)
        model = self.player = PlayerModel(float(playlist.start_hold_back))
        # Beacons are due every beacon_every_s from the admission (the join counted once).
        assert self.record.admitted_at is not None
        next_beacon = self.record.admitted_at + beacon_every_s
        while True:
            if self.clock() >= next_beacon:
                await self._beacon()
                next_beacon += beacon_every_s
            step = next_step(playlist, cursor)
            if isinstance(step, Wait):
                reloaded = await self._reload(url, playlist, step)
                if reloaded is None:
                    return False
                playlist = reloaded
            elif isinstance(step, Behind):
                cursor = Cursor(step.msn)
            elif isinstance(step, Done):
                return True
            elif isinstance(step, SkipGap):
                model.add(self.clock(), float(step.duration))
                cursor = advance(step)
            else:
                seconds = _media_seconds(step, cursor)
                if not await self._media(url, step, seconds, model):
                    return False
                cursor = _after(step, cursor)

    async def _playlist(
        self, url: str, params: dict[str, str], held: Playlist | None = None
    ) -> Playlist | None:
        """GET the playlist with delivery directives ``params``; a delta update is
        merged into ``held``, the playlist the listener has."""
        self.loaded_at = self.clock()
        response = await self._send("playlist", "GET", _with_query(url, params))
        if response is None:
            return None
        if response.status == 400 and params:
            # Directives refused ("too far ahead"): resynchronise with a plain reload,
            # unless it keeps happening (8216bis 6.2.5.2).
            self.refused_directives += 1
            if self.refused_directives > _MAX_REFUSED_DIRECTIVES:
                self._fail("playlist", f"{url} keeps refusing delivery directives")
                return None
            return await self._playlist(url, {})
        if response.status != 200:
            self._fail("playlist", f"{url} answered {response.status}")
            return None
        if params:
            self.refused_directives = 0
        try:
            playlist = self.cache.parse(response.body)
        except ValueError as exc:
            self._fail("playlist", f"{url} is not a media playlist: {exc}")
            return None
        if not playlist.skipped:
            return playlist
        try:
            if held is None:
                raise ValueError("a delta update that was not asked for")
            return self.cache.merge(held, response.body)
        except ValueError:
            # 8216bis 6.3.5: a delta that cannot be applied needs a full reload.
            return await self._playlist(url, {k: v for k, v in params.items() if k != "_HLS_skip"})

    async def _reload(self, url: str, held: Playlist, wait: Wait) -> Playlist | None:
        if not held.can_block_reload:
            # 8216bis 6.3.4: no blocking reload offered; poll every half target duration.
            await self.sleep(held.target_duration / 2)
            return await self._playlist(url, {})
        params = {"_HLS_msn": str(wait.msn)}
        if wait.part is not None:
            params["_HLS_part"] = str(wait.part)
        skip_until = held.can_skip_until
        if skip_until is not None and self.clock() - self.loaded_at < float(skip_until) / 2:
            params["_HLS_skip"] = "YES"
        return await self._playlist(url, params, held)

    async def _media(
        self, url: str, step: FetchPart | FetchSegment, seconds: float, model: PlayerModel
    ) -> bool:
        segment = step.segment
        if segment.map_uri is None:
            self._fail("media", f"segment {segment.msn} has no EXT-X-MAP")
            return False
        init_url = self.cache.resolve(url, segment.map_uri)
        if init_url != self.init_url:
            if not await self._object("init", init_url, _INIT_BOXES):
                return False
            self.init_url = init_url
        uri = segment.parts[step.index].uri if isinstance(step, FetchPart) else segment.uri
        assert uri is not None
        if not await self._object("part", self.cache.resolve(url, uri), _MEDIA_BOXES):
            return False
        now = self.clock()
        self.record.parts += 1
        if self.record.first_audio_at is None:
            self.record.first_audio_at = now
            if self.deadline is not None:
                loop = asyncio.get_running_loop()
                self.deadline.reschedule(loop.time() + max(0.0, self.leave_at - now))
        model.add(now, seconds)
        return True

    async def _object(self, kind: str, url: str, boxes: frozenset[bytes]) -> bool:
        response = await self._send(kind, "GET", url)
        if response is None:
            return False
        if response.status != 200:
            self._fail(kind, f"{url} (listed in the playlist) answered {response.status}")
            return False
        if response.body[4:8] not in boxes:
            self._fail(kind, f"{url} is not an MP4 box sequence")
            return False
        return True

    async def _beacon(self) -> None:
        body = json.dumps({"ticket": self.ticket}).encode()
        self.tally.beacons_sent += 1
        response = await self._send("beacon", "POST", self.beacon_url, body, retry=False)
        if response is None:
            return
        if response.status in (200, 202, 204):
            self.tally.beacons_accepted += 1
        elif response.status not in (429, 503):
            self._fail("beacon", f"a beacon answered {response.status}")

    # -- HTTP ---------------------------------------------------------------------------

    async def _send(
        self, kind: str, method: str, url: str, body: bytes = b"", *, retry: bool = True
    ) -> Response | None:
        """One request, repeated after a failed connection, a 429 or a 503 (full-jitter
        backoff, at least ``Retry-After``) within the retry budget. Returns the answer
        (any other status: the caller judges it), or ``None`` once the failure is
        counted. Join refusals are the caller's (they carry the contract's reasons)."""
        attempt = 0
        tally = self.tally
        while True:
            tally.requests[kind] += 1
            retry_after: float | None = None
            try:
                if method == "GET":
                    response = await self.http.get(url)
                else:
                    response = await self.http.post_json(url, body)
            except TransportError as exc:
                if not retry or attempt >= self.plan.retry.attempts or self.retries_left <= 0:
                    self._fail("connection", f"{kind}: {exc} (after {attempt} retries)")
                    return None
            else:
                status = response.status
                tally.statuses[str(status)] += 1
                if kind == "join" and status in (429, 503):
                    return response
                if status != 429 and status < 500:
                    return response
                if status >= 500 and status != 503:
                    self._fail("status", f"{kind}: {url} answered {status}")
                    return None
                retry_after = parse_retry_after(response.header("retry-after"), self.wall_clock())
                if not retry or attempt >= self.plan.retry.attempts or self.retries_left <= 0:
                    self._fail("retries", f"{kind}: {url} still answers {status}")
                    return None
                if kind == "playlist" and status == 503:
                    tally.reload_retries += 1
            tally.retries += 1
            self.retries_left -= 1
            await self.sleep(backoff(attempt, retry_after, self.plan.retry, self.rng))
            attempt += 1


def _after(step: FetchPart | FetchSegment, cursor: Cursor) -> Cursor:
    """:func:`podium.clients.listen.advance`, with the end of a part taken from the cursor
    rather than by adding up the segment's parts: every listener takes this step every
    part, and exact fractions are not cheap."""
    segment = step.segment
    if isinstance(step, FetchPart) and (cursor.msn, cursor.index) == (segment.msn, step.index):
        return Cursor(
            segment.msn, step.index + 1, cursor.played + segment.parts[step.index].duration
        )
    return advance(step)


def _media_seconds(step: FetchPart | FetchSegment, cursor: Cursor) -> float:
    """Seconds of new media ``step`` brings to the player."""
    segment = step.segment
    if isinstance(step, FetchPart):
        return float(segment.parts[step.index].duration)
    return float(segment.duration - min(cursor.played, Fraction(segment.duration)))


__all__ = ["MAX_DIFFICULTY", "PlaylistCache", "SimulatedListener"]
