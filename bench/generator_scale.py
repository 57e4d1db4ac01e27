"""How many listeners one core of ``podium load`` simulates, at the scale it is used at.

``podium load join-storm`` is meant to be efficient enough that one core simulates
thousands of listeners. Measured where the server is not what limits it: ``podium serve
--demo`` behind a Varnish edge (``podium edge-config varnish``) that serves the crowd's
playlists and parts from its cache, with joins and beacons passed through to the origin
(which trusts the edge's ``X-Forwarded-For``, so the per-address limits see the
simulated addresses). Servers are pinned to the first CPU, this generator to the others.

For each crowd size: ``--listeners`` listeners arrive over 5 s, each joining, reading the
room state, following the live playlist with blocking reloads and fetching every part
for ``--seconds``. Measured, with the generator's CPU (this process, user + system):

- **steady**: while every listener is listening (from 2 s after the last arrival to 1 s
  before the first leaves), the share of a core the crowd takes and its CPU per request,
  and so the listeners one core carries at the full request rate (the highest
  requests per listener-second of the run: a crowd the servers cannot keep up with asks
  less often): what "simulates N listeners" means;
- **all-in**: over the whole run, arrivals (joins, room state, connections) included, per
  request;
- requests per listener-second, and the stalls its player models counted. On a machine
  with two CPUs the edge and the origin share one: stalls then say that the servers, not
  the generator, fell behind.

Side by side, on the same edge: the largest crowd again on asyncio's own event loop
(``podium load`` runs on uvloop), and the reference, wrk (Debian's ``wrk``, a C load
generator) fetching one part again and again on as many keep-alive connections: its CPU
per request is what a request costs a lean C client on this machine. Asserts nothing.
Run from the repository root::

    .venv/bin/python bench/generator_scale.py [--listeners 500,1000,2000] [--seconds 20]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import uvloop

from edgebench import free_port, machine, pin_generator, start_origin, start_varnish, write_json
from podium.clients.load import StormPlan, join_storm

ARRIVE_OVER_S = 5.0
WRK_SECONDS = 8.0

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


async def _windowed(plan: StormPlan) -> tuple[dict[str, Any], float, float]:
    """The storm's report, and the CPU and wall seconds of its steady window."""
    storm = asyncio.ensure_future(join_storm(plan))
    await asyncio.sleep(plan.over_s + 2.0)
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(plan.duration_s - plan.over_s - 3.0)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return await storm, cpu, wall


def measure(edge_url: str, space: str, listeners: int, seconds: float, loop: str) -> dict[str, Any]:
    plan = StormPlan(
        edge_url,
        space,
        listeners,
        ARRIVE_OVER_S,
        duration_s=seconds,
        source_network="127.64.0.0/12",
    )
    run: Runner = uvloop.run if loop == "uvloop" else asyncio.run
    cpu, wall = time.process_time(), time.monotonic()
    report, steady_cpu, steady_wall = run(_windowed(plan))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    requests = max(1, int(report["traffic"]["requests"]))
    rate = requests / (listeners * seconds)
    steady_cores = steady_cpu / steady_wall
    return {
        "loop": loop,
        "listeners": listeners,
        "admitted": report["admitted"],
        "unexplained_errors": report["unexplained_errors"],
        "unexplained_by_kind": report["unexplained_by_kind"],
        "stalls": report["stalls"],
        "requests": requests,
        "requests_per_listener_second": round(rate, 2),
        "steady_cores": round(steady_cores, 3),
        "steady_cpu_us_per_request": round(steady_cores / (listeners * rate) * 1e6, 1),
        "all_in_cpu_us_per_request": round(cpu / requests * 1e6, 1),
        "all_in_cores": round(cpu / wall, 2),
    }


def measure_wrk(edge_url: str, space: str, connections: int) -> dict[str, Any] | None:
    """wrk (C, epoll) fetching one part again and again on ``connections`` keep-alive
    connections for a few seconds: its CPU per request is the reference."""
    if shutil.which("wrk") is None:
        return None
    playlist = httpx.get(f"{edge_url}/hls/{space}/live.m3u8", timeout=10).text
    part = [line for line in playlist.splitlines() if line.startswith("#EXT-X-PART:")][-1]
    uri = part.split('URI="', 1)[1].split('"', 1)[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{WRK_SECONDS:g}s"]
    out = subprocess.run(
        [*command, f"{edge_url}/hls/{space}/{uri}"], capture_output=True, text=True, check=True
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    match = re.search(r"(\d+) requests in", out)
    requests = int(match.group(1)) if match else 0
    return {
        "connections": connections,
        "requests": requests,
        "cpu_us_per_request": round(cpu / max(1, requests) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", default="500,1000,2000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    crowds = [int(n) for n in args.listeners.split(",")]
    if args.seconds < ARRIVE_OVER_S + 5:
        parser.error(f"--seconds must be at least {ARRIVE_OVER_S + 5:g}")

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
            results.append(measure(edge_url, space, listeners, args.seconds, "uvloop"))
        results.append(measure(edge_url, space, max(crowds), args.seconds, "asyncio"))
        wrk = measure_wrk(edge_url, space, max(crowds))
    finally:
        edge.stop()
        origin.stop()

    # Listeners per core at the full request rate: a crowd the servers could not keep up
    # with asks less often, and would look cheaper than it is.
    full_rate = max(r["requests_per_listener_second"] for r in results)
    for r in results:
        r["listeners_per_core"] = round(1e6 / (r["steady_cpu_us_per_request"] * full_rate))
    print(f"podium load join-storm through Varnish, {args.seconds:g} s each:")
    print(
        "loop     listeners  admitted  unexplained  stalls  req/listener-s  "
        "steady: cores  per core  us/req   all-in: us/req"
    )
    for r in results:
        print(
            f"{r['loop']:8} {r['listeners']:9}  {r['admitted']:8}  {r['unexplained_errors']:11}  "
            f"{r['stalls']:6}  {r['requests_per_listener_second']:14}  "
            f"{r['steady_cores']:13}  {r['listeners_per_core']:8}  "
            f"{r['steady_cpu_us_per_request']:6}   {r['all_in_cpu_us_per_request']:14}"
        )
    best = results[len(crowds) - 1]
    ratio = None
    if wrk is not None:
        ratio = round(best["steady_cpu_us_per_request"] / wrk["cpu_us_per_request"], 2)
        print(
            f"wrk, {wrk['connections']} connections, one part again and again: "
            f"{wrk['cpu_us_per_request']} us per request; podium load at {best['listeners']} "
            f"listeners costs {ratio}x that per request"
        )
    write_json(
        args.json,
        {
            "machine": machine(),
            "seconds": args.seconds,
            "crowds": results,
            "wrk": wrk,
            "ratio_to_wrk": ratio,
        },
    )


if __name__ == "__main__":
    main()
