"""An edge killed in the middle of a live space and started again, empty.

Its listeners lose their connections, retry with full jitter backoff, and carry on from
where they were once it answers again. The origin sees no thundering herd: the restarted
edge fetches each object it lacks once, however many listeners ask for it.
"""

from __future__ import annotations

import asyncio
import time

from edges import (
    PARTS_ROUTE,
    PLAYLIST_ROUTE,
    end_space,
    live_hint,
    live_space,
    origin_requests,
    start_varnish,
)

from harness import Server
from podium.clients.crowd import CrowdReport, run_crowd
from podium.clients.listen import RetryPolicy

LISTENERS = 200
SECONDS = 16.0
KILL_AT_S = 4.0
DOWN_FOR_S = 2.0
PARTS_PER_SEGMENT = 8
# Players retry a failed load with a capped backoff (hls.js caps fragment retries at 8 s
# by default); 2 s keeps the test short. Full jitter spreads the returning crowd.
PLAYER_RETRIES = RetryPolicy(attempts=40, base=0.1, cap=2.0)


def test_listeners_of_a_restarted_edge_recover_without_a_herd_at_the_origin(
    origin: Server,
) -> None:
    space = live_space(origin)
    playlist = f"/hls/{space['id']}/live.m3u8"
    steady, doomed = start_varnish(origin.url), start_varnish(origin.url)
    edges = [steady, doomed]
    first = live_hint(steady.url + playlist)

    async def scenario() -> tuple[CrowdReport, float, float, float, float]:
        crowd = asyncio.create_task(
            run_crowd(
                [steady.url, doomed.url],
                playlist,
                LISTENERS,
                SECONDS,
                ramp_s=1.0,
                policy=PLAYER_RETRIES,
            )
        )
        await asyncio.sleep(KILL_AT_S)
        await asyncio.to_thread(doomed.kill)
        killed_at = time.monotonic()
        await asyncio.sleep(DOWN_FOR_S)
        parts = await asyncio.to_thread(origin_requests, origin, PARTS_ROUTE)
        playlists = await asyncio.to_thread(origin_requests, origin, PLAYLIST_ROUTE)
        back_at = time.monotonic()
        edges.append(await asyncio.to_thread(start_varnish, origin.url, doomed.port))
        return await crowd, killed_at, back_at, parts, playlists

    try:
        report, killed_at, back_at, parts, playlists = asyncio.run(scenario())
        last = live_hint(steady.url + playlist)
        parts = origin_requests(origin, PARTS_ROUTE) - parts
        playlists = origin_requests(origin, PLAYLIST_ROUTE) - playlists
    finally:
        for edge in edges:
            edge.stop()
    end_space(origin, space)

    assert back_at + PLAYER_RETRIES.cap + 2 < report.ended_at, "the edge was slow to restart"
    cut_off = [listener for listener in report.listeners if listener.edge == doomed.url]
    others = [listener for listener in report.listeners if listener.edge == steady.url]
    assert len(cut_off) == len(others) == LISTENERS // 2
    assert all(listener.errors == 0 for listener in others)
    for listener in cut_off:
        assert listener.outages, "a listener of the killed edge saw no failure"
        assert not listener.gave_up
        started, ended = listener.outages[0]
        assert killed_at - 1 <= started <= back_at
        assert ended is not None, "it did not come back"
        assert ended >= back_at
        assert listener.last_media_at is not None
        assert listener.last_media_at >= back_at + 1, "no media after the edge came back"
    # From its restart on, the restarted edge fetched what its listeners missed while it
    # was down and what was made since, once each; the steady edge fetched the new parts
    # too. Bounded by two requests per part made in the whole test, whatever the crowd;
    # a herd would be a request per listener per object, LISTENERS / 2 times as many.
    made = (last[0] - first[0]) * PARTS_PER_SEGMENT + last[1] - first[1]
    assert parts <= 2 * made + 8, (parts, made)
    assert playlists <= 2 * made + 16, (playlists, made)
