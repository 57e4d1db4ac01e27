"""Wire bytes per listener-second against the audio payload, with and without delta
updates and compression, and Icecast's for the same audio.

DESIGN target: "wire bytes per listener-second: <= 1.25x the media payload". One run:
``podium serve --demo`` (AAC-LC 64 kbit/s mono, 256 ms parts) behind Varnish configured
by ``podium edge-config varnish``; ``--listeners`` simulated LL-HLS listeners
(:mod:`podium.clients.crowd`) follow the live edge for ``--seconds`` in each mode:

- **full playlists**: blocking reloads without ``_HLS_skip``, no compression;
- **delta updates**: ``_HLS_skip=YES`` (8216bis 6.2.5.1), no compression;
- **delta + gzip**: the same, ``Accept-Encoding: gzip`` (the edge compresses playlists).

Every byte of HTTP both ways is counted (request and response heads, bodies, chunk
framing; TCP/IP headers are not). The payload is the audio bitrate / 8. The same is
measured for Icecast 2.4 (one HTTP stream per listener of ffmpeg's AAC at the same
bitrate, ADTS framing). Also printed: the parts' fMP4 overhead over the payload, the
average playlist and head sizes and the compressed room state, the figures the
capacity model (``podium capacity``) uses. Asserts nothing. Run from the repository
root::

    .venv/bin/python bench/wire_bytes.py [--listeners 20] [--seconds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import httpx

from edgebench import (
    BITRATE,
    icecast_with_source,
    machine,
    pin_generator,
    start_origin,
    start_varnish,
    write_json,
)
from podium.clients.crowd import CrowdReport, run_crowd

MODES = (
    ("full playlists", False, False),
    ("delta updates", True, False),
    ("delta + gzip", True, True),
)


def _per_second(report: CrowdReport) -> dict[str, float]:
    seconds = report.listening_seconds
    down, up = report.total("bytes_down"), report.total("bytes_up")
    requests = report.total("requests")
    media_seconds = report.total("media_seconds")
    return {
        "down_Bps": down / seconds,
        "up_Bps": up / seconds,
        "ratio": (down + up) / seconds / (BITRATE / 8),
        "media_overhead": report.total("media_bytes") / media_seconds / (BITRATE / 8),
        "playlist_body": report.total("playlist_bytes") / report.total("playlists")
        - report.total("head_bytes") / requests,
        "head_bytes": (report.total("head_bytes") + up) / requests,
        "requests_per_s": requests / seconds,
        "stalls": report.total("stalls"),
    }


async def _icecast(url: str, listeners: int, seconds: float) -> float:
    """Bytes per listener-second, both ways, of ``listeners`` streams of ``url``."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    request = f"GET /live.aac HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode()

    async def listen() -> tuple[int, float]:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        received, start = 0, time.monotonic()
        # Skip what Icecast bursts on connect (64 KiB) to measure the steady rate.
        while received < 65536 + 4096:
            received += len(await reader.read(65536))
        received, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            received += len(await reader.read(65536))
        writer.close()
        return received, time.monotonic() - start

    results = await asyncio.gather(*(listen() for _ in range(listeners)))
    total = sum(received for received, _ in results)
    return (total + len(request) * listeners) / sum(wall for _, wall in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pin_generator()
    rows: dict[str, dict[str, float]] = {}
    origin = start_origin()
    edge = start_varnish(origin.url)
    space = origin.extra["space"]
    try:
        for name, delta, gzip in MODES:
            report = asyncio.run(
                run_crowd(
                    [edge.url],
                    f"/hls/{space}/live.m3u8",
                    args.listeners,
                    args.seconds,
                    delta=delta,
                    gzip=gzip,
                )
            )
            rows[name] = _per_second(report)
        with httpx.stream(
            "GET", f"{edge.url}/api/v1/spaces/{space}/state", headers={"Accept-Encoding": "gzip"}
        ) as state:
            state_bytes = len(b"".join(state.iter_raw()))
    finally:
        edge.stop()
        origin.stop()
    with icecast_with_source() as (icecast, _source):
        icecast_Bps = asyncio.run(_icecast(icecast.url, args.listeners, args.seconds))
    payload = BITRATE / 8
    print(f"{args.listeners} listeners, {args.seconds:g} s each mode; payload {payload:.0f} B/s")
    print("mode                  down B/s   up B/s   / payload   requests/s")
    for name, row in rows.items():
        print(
            f"{name:20}{row['down_Bps']:10.0f}{row['up_Bps']:9.0f}{row['ratio']:11.2f}x"
            f"{row['requests_per_s']:12.2f}"
        )
    print(f"{'Icecast 2.4':20}{icecast_Bps:10.0f}{0:9.0f}{icecast_Bps / payload:11.2f}x")
    best = rows["delta + gzip"]
    full = rows["full playlists"]["playlist_body"]
    print(
        f"fMP4 parts / payload {best['media_overhead']:.3f}; playlist body "
        f"{best['playlist_body']:.0f} B (gzip, delta), {full:.0f} B (full); heads "
        f"{best['head_bytes']:.0f} B per request; room state {state_bytes} B gzip"
    )
    document = {"listeners": args.listeners, "seconds": args.seconds, "rows": rows}
    document |= {"icecast_Bps": icecast_Bps, "state_bytes": state_bytes}
    write_json(args.json, {**document, "machine": machine()})


if __name__ == "__main__":
    main()
