"""How many listeners one core of ``podium load`` simulates, at the scale it is used at.

``podium load join-storm`` is meant to be efficient enough that one core simulates
thousands of listeners. Measured where the server is not what limits it: ``podium serve
--demo`` behind a Varnish edge (``podium edge-config varnish``) that serves the crowd's
playlists and parts from its cache, with joins and beacons passed through to the origin
(which trusts the edge's ``X-Forwarded-For``, so the per-address limits see the
simulated addresses). Servers are pinned to the first CPU, this generator to the others.

For each crowd size: ``--listeners`` listeners arrive over 5 s, each joining, reading the
room state, following the live playlist with blocking reloads and fetching every part
for ``--seconds``. Reported: the generator's CPU (this process, user + system) per
request and as a share of one core over the run, requests per listener-second, stalls
counted by its player model, and the listeners one core would carry at that cost. On a
machine with two CPUs the edge and the origin share one; stalls then say that the
servers, not the generator, fell behind. Asserts nothing. Run from the repository root::

    .venv/bin/python bench/generator_scale.py [--listeners 250,1000] [--seconds 20]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from edgebench import free_port, machine, pin_generator, start_origin, start_varnish, write_json
from podium.clients.load import StormPlan, join_storm

ARRIVE_OVER_S = 5.0


def measure(edge_url: str, space: str, listeners: int, seconds: float) -> dict[str, float]:
    plan = StormPlan(
        edge_url,
        space,
        listeners,
        ARRIVE_OVER_S,
        duration_s=seconds,
        source_network="127.64.0.0/12",
    )
    cpu, wall = time.process_time(), time.monotonic()
    report = asyncio.run(join_storm(plan))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    requests = max(1, int(report["traffic"]["requests"]))
    per_request = cpu / requests
    rate = requests / (listeners * seconds)
    return {
        "listeners": listeners,
        "admitted": report["admitted"],
        "unexplained_errors": report["unexplained_errors"],
        "stalls": report["stalls"],
        "requests": requests,
        "requests_per_listener_second": round(rate, 2),
        "cpu_us_per_request": round(per_request * 1e6, 1),
        "cores": round(cpu / wall, 2),
        "listeners_per_core": round(1 / (per_request * rate)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", default="250,1000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    crowds = [int(n) for n in args.listeners.split(",")]

    edge_port = free_port()
    edge_url = f"http://127.0.0.1:{edge_port}"
    origin = start_origin(
        "--max-listeners",
        "0",
        "--max-join-rate",
        "0",
        settings={
            "PODIUM_PUBLIC_URL": edge_url,
            "PODIUM_TRUSTED_PROXIES": "127.0.0.1",
            "PODIUM_JOIN_POW": "off",
        },
    )
    edge = start_varnish(origin.url, port=edge_port)
    pin_generator()
    results = []
    try:
        space = str(origin.extra["space"])
        for listeners in crowds:
            results.append(measure(edge_url, space, listeners, args.seconds))
    finally:
        edge.stop()
        origin.stop()

    print(f"podium load join-storm through Varnish, {args.seconds:g} s each:")
    print("listeners  admitted  unexplained  stalls  req/listener-s  us/request  cores  per core")
    for r in results:
        print(
            f"{r['listeners']:9}  {r['admitted']:8}  {r['unexplained_errors']:11}  "
            f"{r['stalls']:6}  {r['requests_per_listener_second']:14}  "
            f"{r['cpu_us_per_request']:10}  {r['cores']:5}  {r['listeners_per_core']:8}"
        )
    write_json(args.json, {"machine": machine(), "seconds": args.seconds, "crowds": results})


if __name__ == "__main__":
    main()
