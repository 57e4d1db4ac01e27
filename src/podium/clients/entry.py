"""Getting into a space as one listener: the join contract, followed to the end.

``podium listen --space ID`` joins before it listens, the way the web page does: it waits
its turn in the queue (coming back when told, with its ``queue_token``), solves a proof of
work when asked, and backs off with full jitter on a refusal, never sooner than
``Retry-After`` and within a retry budget, so a crowd of these never makes an overload
worse. While it listens it sends the beacons that count it as present.

The answers themselves are read by :mod:`podium.clients.joining` (pure); this is the
asyncio shell around them, on httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

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
from podium.clients.listen import RetryPolicy, backoff
from podium.errors import ClientError

# Tries per slice of the proof-of-work search, between which other tasks may run.
_POW_SLICE = 20_000


@dataclass(frozen=True, slots=True)
class Entry:
    """How the way in went."""

    admitted: Admitted
    waited_s: float  # from the first join request to the admission
    queued_answers: int
    proofs_solved: int
    refusals: int


Progress = Callable[[str], None]


async def enter(
    http: httpx.AsyncClient,
    server: str,
    space_id: str,
    *,
    on_progress: Progress = lambda line: None,
    retry: RetryPolicy = RetryPolicy(attempts=8, max_retry_after=300.0),  # noqa: B008
    max_wait_s: float = 3600.0,
    rng: random.Random | None = None,
) -> Entry:
    """Join ``space_id`` on ``server`` and return once admitted (or sent to the replay).

    Raises :class:`ClientError` when the server answers outside the contract, the retry
    budget for refusals is spent, or ``max_wait_s`` passes in the queue.
    """
    rng = rng or random.Random()
    url = f"{server.rstrip('/')}/api/v1/spaces/{space_id}/join"
    started = time.monotonic()
    queue_token: str | None = None
    proof: tuple[str, str] | None = None
    queued = solved = refusals = 0
    while True:
        if time.monotonic() - started > max_wait_s:
            raise ClientError(f"still queued after {max_wait_s:.0f} s; giving up")
        body = join_body(queue_token, *(proof or (None, None)))
        proof = None
        try:
            response = await http.post(
                url,
                content=body,
                headers={"Content-Type": "application/json"} if body else {},
            )
        except httpx.HTTPError as exc:
            refusals += 1
            if refusals > retry.attempts:
                raise ClientError(f"cannot reach {server}: {exc}") from exc
            await asyncio.sleep(backoff(refusals, None, retry, rng))
            continue
        answer = read_join_answer(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
            time.time(),
        )
        if isinstance(answer, Admitted):
            return Entry(answer, time.monotonic() - started, queued, solved, refusals)
        if isinstance(answer, Queued):
            queued += 1
            queue_token = answer.queue_token
            on_progress(_queue_line(answer))
            await asyncio.sleep(answer.retry_after_s)
        elif isinstance(answer, Challenge):
            on_progress(f"solving a proof of work ({answer.difficulty} bits)")
            proof = (answer.token, await _solve(answer.token, answer.difficulty))
            solved += 1
        elif isinstance(answer, Refused):
            refusals += 1
            after = answer.retry_after_s or 0.0
            if refusals > retry.attempts or after > retry.max_retry_after:
                raise ClientError(
                    f"the server refused the join ({answer.reason}); try again in {after:.0f} s",
                    answer.status,
                )
            wait = backoff(refusals, after, retry, rng)
            on_progress(f"refused ({answer.reason}); trying again in {wait:.1f} s")
            await asyncio.sleep(wait)
        else:
            assert isinstance(answer, Unexpected)
            raise ClientError(f"the join was answered {answer.why}", answer.status)


def _queue_line(answer: Queued) -> str:
    if answer.position is None:
        return "waiting for the space to start"
    if answer.estimated_wait_s is None:
        wait = "waiting for a seat to free"
    elif answer.estimated_wait_s < 1:
        wait = "in less than a second"
    else:
        wait = f"about {answer.estimated_wait_s:.0f} s"
    return f"in the queue: position {answer.position} of {answer.queue_length}, {wait}"


async def _solve(token: str, difficulty: int) -> str:
    start = 0
    while (nonce := solve_some(token, difficulty, start, _POW_SLICE)) is None:
        start += _POW_SLICE
        await asyncio.sleep(0)
    return nonce


async def send_beacons(
    http: httpx.AsyncClient, server: str, space_id: str, admitted: Admitted
) -> None:
    """Say "still listening" every ``beacon_every_s`` until cancelled; a refused or lost
    beacon is skipped (the next one counts the same)."""
    url = f"{server.rstrip('/')}/api/v1/spaces/{space_id}/beacon"
    while True:
        await asyncio.sleep(admitted.beacon_every_s)
        with contextlib.suppress(httpx.HTTPError):
            await http.post(url, json={"ticket": admitted.ticket})


__all__ = ["Entry", "enter", "send_beacons"]
