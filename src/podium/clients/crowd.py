"""A crowd of lean LL-HLS listeners behind edges, for edge tests and benchmarks.

Each simulated listener is a :class:`~podium.clients.follow.Follower`: it follows a live
playlist as a low-latency player does (``PART-HOLD-BACK`` behind the live edge, a
Blocking Playlist Reload with a delta update for each next part, every part fetched
once), models its player's buffer to count stalls, and retries failures with full jitter
backoff, on its own keep-alive connection. It does not decode audio: what it measures is
the delivery (requests, bytes, stalls, recovery). The crowd shares one
:class:`~podium.clients.playlists.PlaylistCache`, so a playlist body received by thousands
is parsed once; ``bench/generator_scale.py`` measures what a listener costs (about two
thousand following 256 ms parts on a core, on uvloop). Requests go only to the edges
given.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from podium.clients.follow import (
    FOLLOW_RETRIES,
    REQUEST_TIMEOUT_S,
    Follower,
    FollowOptions,
    FollowStats,
)
from podium.clients.listen import RetryPolicy
from podium.clients.playlists import PlaylistCache
from podium.errors import ClientError

Clock = Callable[[], float]

_LAG_TICK_S = 0.05


@dataclass(frozen=True, slots=True)
class CrowdReport:
    """The crowd's listeners, and totals over them."""

    listeners: list[FollowStats]
    started_at: float
    ended_at: float
    loop_lag_max: float = 0.0  # the load generator's own lateness: its event loop's worst

    def total(self, name: str) -> float:
        return float(sum(getattr(listener, name) for listener in self.listeners))

    @property
    def listening_seconds(self) -> float:
        """Seconds between each listener's first media and its end, summed."""
        return sum(
            (listener.stopped_at or self.ended_at) - listener.first_media_at
            for listener in self.listeners
            if listener.first_media_at is not None
        )


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
    policy: RetryPolicy = FOLLOW_RETRIES,
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
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    cache = PlaylistCache()
    options = FollowOptions(
        parts=parts,
        delta=delta,
        gzip=gzip,
        policy=policy,
        timeout_s=REQUEST_TIMEOUT_S,
        user_agent="podium-crowd",
    )
    started = clock()
    until = started + seconds
    finished: asyncio.Future[None] = loop.create_future()
    results: list[FollowStats | None] = [None] * listeners
    left = [listeners]

    def done(index: int, stats: FollowStats) -> None:
        results[index] = stats
        left[0] -= 1
        if not left[0] and not finished.done():
            finished.set_result(None)

    try:
        crowd = [
            Follower(
                edges[index % len(edges)].rstrip("/") + playlist_path,
                cache,
                options,
                until=until,
                done=functools.partial(done, index),
                rng=random.Random(rng.random()),
                clock=clock,
            )
            for index in range(listeners)
        ]
    except ValueError as exc:
        raise ClientError(f"bad edge URL: {exc}") from exc
    now = loop.time()
    arrivals = [
        loop.call_at(now + ramp_s * index / listeners, follower.start)
        for index, follower in enumerate(crowd)
    ]
    lag = [0.0]

    async def watch_lag() -> None:
        # A timer that fires late says the generator, not the edge, is behind: stalls
        # measured meanwhile may be its own.
        while (now := clock()) < until:
            await asyncio.sleep(_LAG_TICK_S)
            lag[0] = max(lag[0], clock() - now - _LAG_TICK_S)

    watcher = asyncio.create_task(watch_lag())
    try:
        await finished
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for arrival in arrivals:
            arrival.cancel()
        for follower in crowd:
            follower.stop()  # a follower that never started reports nothing done
    stats = [entry or follower.stats for entry, follower in zip(results, crowd, strict=True)]
    return CrowdReport(stats, started, clock(), lag[0])


__all__ = ["CrowdReport", "run_crowd"]
