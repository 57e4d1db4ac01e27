"""A bounded flood of junk and public requests at one server (run as a subprocess).

Usage: python flood.py URL SPACE_ID SECONDS CONCURRENCY. Prints one JSON line of counts.
Only the URL given is targeted, for at most SECONDS; it stops by itself.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

import httpx


async def worker(
    client: httpx.AsyncClient, space: str, until: float, counts: dict[str, int]
) -> None:
    rng = random.Random()
    requests = [
        lambda: client.get(f"/hls/{space}/live.m3u8"),
        lambda: client.get("/api/v1/spaces"),
        lambda: client.get(f"/s/{space}"),
        lambda: client.get(f"/hls/{space}/part-999999-0.m4s"),
        lambda: client.get(f"/nope/{rng.random()}"),
        lambda: client.post(
            "/api/v1/spaces", content=b"{junk", headers={"Content-Type": "application/json"}
        ),
        lambda: client.post("/api/v1/tokens", json={"handle": "owner", "password": "x" * 12}),
        lambda: client.post("/api/v1/spaces", content=b"x" * 200_000),
    ]
    while time.monotonic() < until:
        try:
            response = await rng.choice(requests)()
            counts[str(response.status_code)] = counts.get(str(response.status_code), 0) + 1
        except httpx.HTTPError:
            counts["error"] = counts.get("error", 0) + 1


async def main() -> None:
    url, space, seconds, concurrency = (
        sys.argv[1],
        sys.argv[2],
        float(sys.argv[3]),
        int(sys.argv[4]),
    )
    until = time.monotonic() + seconds
    counts: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=5) as client:
        await asyncio.gather(*(worker(client, space, until, counts) for _ in range(concurrency)))
    print(json.dumps(counts))


if __name__ == "__main__":
    asyncio.run(main())
