"""Herd collapsing: 200 simultaneous requests for a part that does not exist yet.

Varnish and nginx, each configured by ``podium edge-config``, stand side by side in front
of the same Podium origin (``podium serve --demo``). Each round takes the part the live
playlist's preload hint announces (the origin holds a request for it until it is made),
opens ``--requests`` connections to one edge, and sends them all at once, together with
one request straight to the origin as the reference for when the part became available.
The rounds alternate between the two edges.

- **upstream fetches**: requests the origin answered for the part route during the round,
  less the reference one (the ideal is 1).
- **added wait**: when each request through the edge completed, minus when the reference
  request completed; what coalescing costs a waiting listener. nginx wakes the requests
  queued behind its cache lock on a 500 ms timer; Varnish wakes its waiting list when the
  object arrives.

Asserts nothing. Run from the repository root::

    .venv/bin/python bench/edge_herd.py [--rounds 10] [--requests 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from pathlib import Path

from edgebench import (
    Process,
    machine,
    origin_requests,
    pin_generator,
    start_nginx,
    start_origin,
    start_varnish,
    write_json,
)
from podium.clients.http1 import HttpClient

PARTS_ROUTE = "/hls/{space_id}/{name}"
HINT = re.compile(r'PRELOAD-HINT:TYPE=PART,URI="([^"]+)"')


async def _round(origin: Process, edge: Process, requests: int) -> tuple[float, list[float]]:
    """One herd: (upstream fetches, each request's added wait in seconds)."""
    space = origin.extra["space"]
    base = f"/hls/{space}/"
    clients = [HttpClient([edge.url], max_connections=1) for _ in range(requests)]
    await asyncio.gather(*(c.get(f"{edge.url}/livez") for c in clients))  # connected, warm
    direct = HttpClient([origin.url], max_connections=1)
    await direct.get(f"{origin.url}/livez")
    hint = HINT.search((await direct.get(f"{origin.url}{base}live.m3u8")).text)
    assert hint, "the live playlist has no preload hint"
    target = base + hint[1]
    before = origin_requests(origin, PARTS_ROUTE)

    async def timed(client: HttpClient, url: str) -> float:
        reply = await client.get(url + target)
        assert reply.status == 200, reply.status
        return time.monotonic()

    done = await asyncio.gather(timed(direct, origin.url), *(timed(c, edge.url) for c in clients))
    fetches = origin_requests(origin, PARTS_ROUTE) - before - 1
    for client in (direct, *clients):
        await client.aclose()
    return fetches, [moment - done[0] for moment in done[1:]]


def _summary(fetches: list[float], waits: list[float]) -> dict[str, float]:
    ordered = sorted(waits)
    return {
        "fetches_mean": statistics.fmean(fetches),
        "fetches_max": max(fetches),
        "wait_p50_s": ordered[len(ordered) // 2],
        "wait_p95_s": ordered[int(len(ordered) * 0.95) - 1],
        "wait_max_s": ordered[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pin_generator()
    origin = start_origin()
    edges = [start_varnish(origin.url), start_nginx(origin.url)]
    results: dict[str, tuple[list[float], list[float]]] = {e.name: ([], []) for e in edges}
    try:
        for _ in range(args.rounds):
            for edge in edges:
                fetches, waits = asyncio.run(_round(origin, edge, args.requests))
                results[edge.name][0].append(fetches)
                results[edge.name][1].extend(waits)
                time.sleep(0.6)  # the next round's part is a new one
    finally:
        for process in (*edges, origin):
            process.stop()
    table = {name: _summary(*result) for name, result in results.items()}
    print(f"{args.requests} simultaneous requests for a part not made yet, {args.rounds} rounds")
    print("edge     fetches (mean, max)   added wait p50 / p95 / max")
    for name, row in table.items():
        print(
            f"{name:8} {row['fetches_mean']:6.2f} {row['fetches_max']:5.0f}"
            f"          {row['wait_p50_s'] * 1000:6.1f} / {row['wait_p95_s'] * 1000:6.1f} / "
            f"{row['wait_max_s'] * 1000:6.1f} ms"
        )
    varnish, nginx = table["varnish"], table["nginx"]
    ratios = {
        "wait_p50": nginx["wait_p50_s"] / max(varnish["wait_p50_s"], 1e-4),
        "wait_p95": nginx["wait_p95_s"] / max(varnish["wait_p95_s"], 1e-4),
    }
    print(
        f"nginx / Varnish added wait: p50 {ratios['wait_p50']:.1f}x, p95 {ratios['wait_p95']:.1f}x"
    )
    write_json(
        args.json,
        {
            "rounds": args.rounds,
            "requests": args.requests,
            "edges": table,
            "ratios": ratios,
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
