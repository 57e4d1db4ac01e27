"""Crowds of simulated LL-HLS listeners through real edges, counted at the origin.

Each listener follows the live playlist as a low-latency player does (blocking reloads
with delta updates, every part fetched once, its buffer modelled for stalls); see
:mod:`podium.clients.crowd`. Behind one edge, or behind two edges and a shield, the
origin answers about one request per part and per playlist update, whatever the number
of listeners, and its CPU does not grow with them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvloop
from edges import (
    PARTS_ROUTE,
    PLAYLIST_ROUTE,
    Edge,
    cpu_seconds,
    end_space,
    live_hint,
    live_space,
    origin_requests,
    start_nginx,
    start_varnish,
)

from harness import MACHINE_IDLE_MIN, Server, cpu_times
from podium.clients.crowd import CrowdReport, run_crowd

SECONDS = 8.0
# A third of the 768 ms a listener holds back: later than this, the generator's timing
# cannot tell a stall of the edge from one of its own.
GENERATOR_LAG_LIMIT_S = 0.25
# Below MACHINE_IDLE_MIN of the machine's CPU time left idle while a crowd ran, the whole
# machine (origin, edges and crowd on the same cores) was full: stalls then say as little
# about the edges as those of a late generator do.
PARTS_PER_SEGMENT = 8
# Listeners who join at once all read the plain live playlist; an edge may ask the origin
# for it more than once while they arrive (nginx does not hold requests for an expired
# object behind its cache lock). A fixed allowance, not one that grows with N.
JOIN_ALLOWANCE = 6
# Each listener makes about 8 requests a second (a blocking reload and a part every
# 256 ms). On a 2-core CI machine that also runs the origin, its media worker and three
# Varnish servers, 600 listeners leave a margin: at 1,000 the machine itself is full (the
# crowd alone takes half a core, the edges most of another), and about one run in four
# sees some listeners stall for a part's length. A machine with more cores can raise them.
ONE_EDGE_CROWD = int(os.environ.get("PODIUM_TEST_ONE_EDGE_CROWD", "600"))
SMALL_CROWD = int(os.environ.get("PODIUM_TEST_SMALL_CROWD", "60"))
LARGE_CROWD = int(os.environ.get("PODIUM_TEST_LARGE_CROWD", "600"))


@dataclass(frozen=True, slots=True)
class Measured:
    report: CrowdReport
    parts_made: int
    origin_parts: float
    origin_playlists: float
    origin_cpu: float
    machine_idle: float  # the share of all cores' time left idle meanwhile


def _part_number(hint: tuple[int, int]) -> int:
    return hint[0] * PARTS_PER_SEGMENT + hint[1]


def _crowd(origin: Server, edges: list[Edge], playlist: str, listeners: int) -> Measured:
    """Run a crowd through ``edges`` and count what reached the origin meanwhile."""
    before = live_hint(edges[0].url + playlist)
    parts, playlists = origin_requests(origin, PARTS_ROUTE), origin_requests(origin, PLAYLIST_ROUTE)
    cpu = cpu_seconds(origin.process.pid)
    idle, total = cpu_times()
    # On uvloop, as ``podium load`` runs: the crowd's CPU is mostly the event loop's.
    report = uvloop.run(
        run_crowd([edge.url for edge in edges], playlist, listeners, SECONDS, ramp_s=1.0)
    )
    cpu = cpu_seconds(origin.process.pid) - cpu
    idle_after, total_after = cpu_times()
    after = live_hint(edges[0].url + playlist)
    return Measured(
        report,
        # The parts made meanwhile, plus those a listener starts behind the live edge.
        _part_number(after) - _part_number(before) + 4,
        origin_requests(origin, PARTS_ROUTE) - parts,
        origin_requests(origin, PLAYLIST_ROUTE) - playlists,
        cpu,
        (idle_after - idle) / max(1, total_after - total),
    )


def _assert_every_listener_listened(measured: Measured, stalls_allowed: bool) -> None:
    report = measured.report
    listeners = report.listeners
    assert all(listener.errors == 0 for listener in listeners), [
        (listener.edge, listener.errors, listener.last_error)
        for listener in listeners
        if listener.errors
    ][:5]
    short = [listener.parts for listener in listeners if listener.parts < SECONDS * 2]
    assert not short, f"listeners with fewer than {SECONDS * 2:.0f} parts: {short[:10]}"
    if stalls_allowed or report.loop_lag_max > GENERATOR_LAG_LIMIT_S:
        # A load generator whose own timers fire this late (a machine busy with other
        # work) makes stalls of its own: they say nothing about the edges.
        return
    if measured.machine_idle < MACHINE_IDLE_MIN:
        # Nor do those of a machine with no core to spare: the edges, the origin and the
        # crowd then wait for each other's CPU, not for the network.
        return
    stalled = [listener for listener in listeners if listener.stalls]
    assert not stalled, (
        f"{len(stalled)} of {len(listeners)} listeners stalled "
        f"({sum(listener.stall_seconds for listener in stalled):.2f} s in all; the load "
        f"generator's event loop was up to {report.loop_lag_max:.2f} s late; the machine"
        f" was {measured.machine_idle:.0%} idle)"
    )


def _assert_fan_in(measured: Measured, upstreams: int) -> None:
    """The DESIGN target: at most one origin request per part per cache in front of the
    origin, plus one; the same for the playlist updates that announce the parts."""
    limit = (upstreams + 1) * measured.parts_made
    assert measured.origin_parts <= limit, (measured.origin_parts, measured.parts_made)
    assert measured.origin_playlists <= limit + JOIN_ALLOWANCE, (
        measured.origin_playlists,
        measured.parts_made,
    )


@pytest.fixture
def space(origin: Server) -> Iterator[dict[str, str]]:
    created = live_space(origin)
    yield created
    end_space(origin, created)


@pytest.mark.parametrize("kind", ["varnish", "nginx"])
def test_a_crowd_behind_one_edge_costs_the_origin_one_request_per_part(
    kind: str, origin: Server, space: dict[str, str]
) -> None:
    edge = (start_varnish if kind == "varnish" else start_nginx)(origin.url)
    try:
        measured = _crowd(origin, [edge], f"/hls/{space['id']}/live.m3u8", ONE_EDGE_CROWD)
    finally:
        edge.stop()
    # nginx wakes the requests queued behind its cache lock on a 500 ms poll, not when
    # the object arrives: with 256 ms parts and 768 ms of buffer, its listeners may stall
    # (bench/edge_herd.py measures the added wait). Varnish wakes them at once.
    _assert_every_listener_listened(measured, stalls_allowed=kind == "nginx")
    _assert_fan_in(measured, upstreams=1)


def test_two_edges_behind_a_shield_cost_the_origin_the_same_at_any_crowd(
    origin: Server, space: dict[str, str]
) -> None:
    shield = start_varnish(origin.url)
    edges: list[Edge] = []
    try:
        edges += [start_varnish(shield.url), start_varnish(shield.url)]
        playlist = f"/hls/{space['id']}/live.m3u8"
        small = _crowd(origin, edges, playlist, SMALL_CROWD)
        large = _crowd(origin, edges, playlist, LARGE_CROWD)
    finally:
        for running in (*edges, shield):
            running.stop()
    for measured in (small, large):
        _assert_every_listener_listened(measured, stalls_allowed=False)
        _assert_fan_in(measured, upstreams=1)
    # Ten times the listeners, about the same origin CPU: the crowd costs the edges, not
    # the origin. (Without edges, the origin would answer every request itself.) The
    # bound is loose: the two runs see different machine load; 10x would be linear.
    assert large.origin_cpu <= 2 * small.origin_cpu + 0.5, (small.origin_cpu, large.origin_cpu)
