"""Edge CPU per 1,000 listeners: Podium's LL-HLS through Varnish against Icecast 2.4.

DESIGN target: "edge CPU per 1,000 listeners: <= 2x Icecast at <= 1.5 s latency". In one
run, on one machine, servers pinned to the first CPU and this load generator to the
others, the same crowd size listens for the same time to:

- **Podium LL-HLS via Varnish**: ``podium serve --demo`` (a speaker reading on a loop,
  AAC-LC 64 kbit/s mono, 256 ms parts) behind Varnish configured by ``podium
  edge-config varnish``; every listener follows the live edge with blocking playlist
  reloads and delta updates and fetches every part (:mod:`podium.clients.crowd`).
- **Podium classic HLS via Varnish**: the same stream, listeners that ignore the parts:
  a playlist reload and a whole 2.048 s segment per segment.
- **Icecast 2.4** (Debian's ``icecast2``), fed by ffmpeg with the same speech recording
  encoded to AAC-LC 64 kbit/s mono 48 kHz in real time; every listener holds one HTTP
  stream of ``/live.aac`` open and reads it.

CPU is user + system time of the edge's processes (varnishd manager and child; the
icecast2 process) from /proc over the listening window, after a ramp-up; the origin and
ffmpeg, which feed the edges, are not counted. The figure is CPU seconds per second per
1,000 listeners, i.e. **cores per 1,000 listeners**. Asserts nothing. Run from the
repository root::

    .venv/bin/python bench/edge_cpu.py [--listeners 300] [--seconds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from edgebench import (
    Process,
    icecast_with_source,
    machine,
    pin_generator,
    start_origin,
    start_varnish,
    write_json,
)
from podium.clients.crowd import CrowdReport, run_crowd

RAMP_S = 3.0


async def _measured(
    edge: Process, seconds: float, crowd: Callable[[float], Awaitable[object]]
) -> tuple[float, float, object]:
    """Run ``crowd(seconds + RAMP_S)`` and measure the edge's CPU after the ramp."""
    task = asyncio.ensure_future(crowd(seconds + RAMP_S))
    await asyncio.sleep(RAMP_S)
    cpu, start = edge.cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = edge.cpu_seconds() - cpu, time.monotonic() - start
    return cpu, wall, await task


async def _icecast_crowd(url: str, listeners: int, seconds: float) -> list[int]:
    """``listeners`` HTTP streams of ``url`` read for ``seconds``; bytes each received."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    path = "/" + url.removeprefix("http://").split("/", 1)[1]
    until = time.monotonic() + seconds

    async def listen(index: int) -> int:
        await asyncio.sleep(1.0 * index / listeners)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        received = 0
        try:
            while (remaining := until - time.monotonic()) > 0:
                try:
                    async with asyncio.timeout(remaining):
                        chunk = await reader.read(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                received += len(chunk)
        finally:
            writer.close()
        return received

    return list(await asyncio.gather(*(listen(i) for i in range(listeners))))


def _row(
    name: str, cpu: float, wall: float, listeners: int, extra: dict[str, float]
) -> dict[str, float | str]:
    return {
        "name": name,
        "cpu_s": cpu,
        "wall_s": wall,
        "cores_per_1000": cpu / wall / listeners * 1000,
        **extra,
    }


def _crowd_row(
    name: str, cpu: float, wall: float, listeners: int, report: CrowdReport
) -> dict[str, float | str]:
    span = report.ended_at - report.started_at
    requests = report.total("requests")
    extra = {
        "requests_per_listener_s": requests / span / listeners,
        "requests_per_core_s": requests / span / (cpu / wall),
        "stalls": report.total("stalls"),
        "errors": report.total("errors"),
        "generator_lag_s": report.loop_lag_max,
    }
    return _row(name, cpu, wall, listeners, extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pin_generator()
    rows: list[dict[str, float | str]] = []
    origin = start_origin()
    edge = start_varnish(origin.url)
    playlist = f"/hls/{origin.extra['space']}/live.m3u8"
    pipelines = (("Podium LL-HLS via Varnish", True), ("Podium HLS via Varnish", False))
    try:
        for name, parts in pipelines:

            def crowd(seconds: float, parts: bool = parts) -> Awaitable[CrowdReport]:
                edges = [edge.url]
                return run_crowd(edges, playlist, args.listeners, seconds, parts=parts, gzip=True)

            cpu, wall, report = asyncio.run(_measured(edge, args.seconds, crowd))
            assert isinstance(report, CrowdReport)
            rows.append(_crowd_row(name, cpu, wall, args.listeners, report))
    finally:
        edge.stop()
        origin.stop()
    with icecast_with_source() as (icecast, _source):
        stream = f"{icecast.url}/live.aac"

        def streams(seconds: float) -> Awaitable[list[int]]:
            return _icecast_crowd(stream, args.listeners, seconds)

        cpu, wall, received = asyncio.run(_measured(icecast, args.seconds, streams))
        assert isinstance(received, list)
        receiving = {"listeners_receiving": float(sum(1 for r in received if r > 0))}
        rows.append(_row("Icecast 2.4", cpu, wall, args.listeners, receiving))
    icecast_cores = float(rows[-1]["cores_per_1000"])
    print(f"{args.listeners} listeners, {args.seconds:g} s measured after a {RAMP_S:g} s ramp")
    print("pipeline                      edge cores / 1000 listeners   ratio to Icecast")
    for row in rows:
        cores = float(row["cores_per_1000"])
        print(f"{row['name']:30}{cores:10.3f}{cores / icecast_cores:24.2f}x")
    for row in rows[:2]:
        print(
            f"{row['name']}: {float(row['requests_per_listener_s']):.2f} requests/s per "
            f"listener, {float(row['requests_per_core_s']):,.0f} requests per core-second, "
            f"stalls {row['stalls']:.0f}, errors {row['errors']:.0f}, "
            f"generator late by up to {float(row['generator_lag_s']):.2f} s"
        )
    document = {"listeners": args.listeners, "seconds": args.seconds, "rows": rows}
    write_json(args.json, {**document, "machine": machine()})


if __name__ == "__main__":
    main()
