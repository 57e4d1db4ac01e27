"""One simulated listener of a join storm: join, room state, LL-HLS, beacons.

:class:`SimulatedListener` does what Podium's web page does for one person, over HTTP
only, and writes what happened into its :class:`~podium.clients.loadreport.ListenerRecord`
and the crowd's :class:`~podium.clients.loadreport.Tally`: the join contract of
:mod:`podium.clients.joining` (queue, proof of work, backoff after refusals, within a
retry budget), the room state checked against what the join said, the live playlist
followed by a :class:`~podium.clients.follow.Follower` (blocking reloads and delta
updates, every part fetched, the init segment once, into a player model that counts
stalls), and a beacon every ``beacon_every_s``.

The backoff is :func:`podium.clients.listen.backoff`. What the whole crowd shares is a
:class:`~podium.clients.playlists.PlaylistCache`: identical playlist bodies are parsed once.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from podium.clients.follow import Follower, FollowOptions, FollowStats
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
from podium.clients.listen import backoff, parse_retry_after
from podium.clients.loadreport import ListenerRecord, Tally
from podium.clients.playlists import PlaylistCache
from podium.errors import ClientError

if TYPE_CHECKING:
    from podium.clients.load import StormPlan

MAX_DIFFICULTY = 28
"""A proof of work harder than this (2**28 hashes, minutes of CPU) is not attempted."""

_SOLVE_SLICE = 2048  # hashes between yields to the event loop while solving
_BEFORE_START = frozenset({"scheduled", "starting", "live"})
_OPEN = frozenset({"live"})

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


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
                record.last_wait_s = max(0.01, answer.retry_after_s)
                await self.sleep(record.last_wait_s)
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
                tally.refused(now, answer.reason, answer.scope)
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
        measured), and leaves as soon as it comes. The playlist is followed by a
        :class:`~podium.clients.follow.Follower` on its own connection, as a player does;
        beacons go out meanwhile, due every ``beacon_every_s`` from the admission."""
        record, plan = self.record, self.plan
        assert record.admitted_at is not None
        finished: asyncio.Future[FollowStats] = asyncio.get_running_loop().create_future()

        def done(stats: FollowStats) -> None:
            if not finished.done():
                finished.set_result(stats)

        options = FollowOptions(
            gzip=True,  # as a browser asks
            policy=plan.retry,
            budget=max(0, self.retries_left),
            timeout_s=plan.timeout_s,
            local_address=self.http.local_address,
            user_agent=self.http.user_agent,
            ssl_context=self.http.ssl_context,
        )
        try:
            follower = Follower(
                admitted.playlist_url,
                self.cache,
                options,
                until=record.admitted_at + plan.duration_s,
                patience=plan.timeout_s,
                done=done,
                rng=self.rng,
                clock=self.clock,
                wall_clock=self.wall_clock,
            )
        except ValueError as exc:
            raise ClientError(f"the join answered a playlist URL that is not one: {exc}") from None
        self.http.check_origin(follower.origin)  # before any socket is opened
        follower.start()
        every = admitted.beacon_every_s
        next_beacon = record.admitted_at + every
        try:
            while not finished.done():
                await asyncio.wait((finished,), timeout=max(0.0, next_beacon - self.clock()))
                if not finished.done():
                    await self._beacon()
                    next_beacon += every
        finally:
            follower.stop()  # the run's hard limit: it stops where it is
            self._account(follower.stats)

    def _account(self, stats: FollowStats) -> None:
        """What the follower did, into the listener's record and the crowd's totals."""
        record, tally = self.record, self.tally
        record.parts += stats.parts + stats.segments
        record.first_audio_at = stats.first_media_at
        record.stalls, record.stall_seconds = stats.stalls, stats.stall_seconds
        tally.requests.update(stats.by_kind)
        tally.statuses.update({str(status): n for status, n in stats.statuses.items()})
        tally.retries += stats.retries
        tally.reload_retries += stats.reload_retries
        self.retries_left -= stats.retries
        traffic = self.http.traffic
        traffic.connections += stats.connections
        traffic.requests += stats.requests
        traffic.bytes_sent += stats.bytes_up
        traffic.bytes_received += stats.bytes_down
        if stats.failure is not None:
            self._fail(*stats.failure)

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


__all__ = ["MAX_DIFFICULTY", "SimulatedListener"]
