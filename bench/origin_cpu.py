"""Origin CPU as the crowd grows: behind a Varnish edge, and with no edge at all.

DESIGN target: "origin requests per part, N listeners behind E edges: <= E + 1 at any N";
its consequence is that the origin's CPU stays flat as N grows. One run:
``podium serve --demo`` (a speaker reading on a loop) and Varnish configured by ``podium
edge-config varnish``, servers pinned to the first CPU and this load generator to the
others. For each crowd size, ``--seconds`` of simulated LL-HLS listeners
(:mod:`podium.clients.crowd`) follow the live edge, first through the edge, then (for
the sizes up to ``--direct-max``) straight at the origin, the reference.

Measured: user + system CPU of the ``podium serve`` process (the web process: HTTP,
playlists, room state; its media worker encodes the same program whatever N is, and is
reported apart) from /proc, per second; the origin's own request counters per part.
Asserts nothing. Run from the repository root::

    .venv/bin/python bench/origin_cpu.py [--listeners 25,100,1000,2000] [--seconds 15] \\
        [--direct-max 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from edgebench import (
    Process,
    cpu_of,
    machine,
    origin_requests,
    pin_generator,
    start_origin,
    start_varnish,
    write_json,
)
from podium.clients.crowd import run_crowd

ROUTES = ("/hls/{space_id}/{name}", "/hls/{space_id}/live.m3u8")
PART_S = 0.256


def _measure(origin: Process, target: str, listeners: int, seconds: float) -> dict[str, float]:
    playlist = f"/hls/{origin.extra['space']}/live.m3u8"
    requests = sum(origin_requests(origin, route) for route in ROUTES)
    web = cpu_of(origin.popen.pid)
    total, start = origin.cpu_seconds(), time.monotonic()
    report = asyncio.run(run_crowd([target], playlist, listeners, seconds, ramp_s=1.0))
    wall = time.monotonic() - start
    web, total = cpu_of(origin.popen.pid) - web, origin.cpu_seconds() - total
    requests = sum(origin_requests(origin, route) for route in ROUTES) - requests
    return {
        "listeners": listeners,
        "web_cpu_per_s": web / wall,
        "media_cpu_per_s": (total - web) / wall,
        "origin_requests_per_part": requests / (wall / PART_S),
        "stalls": report.total("stalls"),
        "errors": report.total("errors"),
        "parts_per_listener_s": report.total("parts") / report.listening_seconds,
        "generator_lag_s": report.loop_lag_max,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", default="25,100,1000,2000")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--direct-max", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [int(n) for n in args.listeners.split(",")]
    pin_generator()
    origin = start_origin()
    edge = start_varnish(origin.url)
    rows: dict[str, list[dict[str, float]]] = {"via Varnish": [], "direct": []}
    try:
        idle = cpu_of(origin.popen.pid)
        time.sleep(args.seconds)
        idle = (cpu_of(origin.popen.pid) - idle) / args.seconds
        for n in sizes:
            rows["via Varnish"].append(_measure(origin, edge.url, n, args.seconds))
            if n <= args.direct_max:
                rows["direct"].append(_measure(origin, origin.url, n, args.seconds))
    finally:
        edge.stop()
        origin.stop()
    print(f"origin web process CPU, {args.seconds:g} s per size; idle {idle:.3f} core")
    print("path          listeners   web CPU (cores)   / smallest N   requests per part")
    for name, measured in rows.items():
        for row in measured:
            print(
                f"{name:14}{row['listeners']:9.0f}{row['web_cpu_per_s']:16.3f}"
                f"{row['web_cpu_per_s'] / measured[0]['web_cpu_per_s']:14.2f}x"
                f"{row['origin_requests_per_part']:18.1f}"
            )
    write_json(
        args.json, {"seconds": args.seconds, "idle_cores": idle, "rows": rows, "machine": machine()}
    )


if __name__ == "__main__":
    main()
