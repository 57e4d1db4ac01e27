"""Joins per second per core, and time to first audio for listeners arriving in a storm.

DESIGN targets: "joins per second per core (ticket issued): >= 0.5x a bare HTTP
hello-world on the same server" and "time to first audio for a new listener: p95 <= 1 s"
(typical HLS players 2-5 s). This is a benchmark, not a test: it measures, prints a table
and asserts nothing.

One run, one machine, three servers side by side, each a real process on loopback:

- **Podium**: ``podium serve`` with one live space, started through the API with no
  speaker (the program is silence; the demo speaker would run its WebRTC stack inside
  the web process and be counted as join cost). Its health guard is relaxed and proof
  of work is off (``PODIUM_SHED_LOOP_LAG_MS``, ``PODIUM_SHED_CPU_PERCENT``,
  ``PODIUM_JOIN_POW=off``): they exist to turn joins away under exactly this load, and
  what is measured here is the cost of a join that is let in. Joins come from many
  source addresses (127.0.0.0/8, a fresh one every 100 joins), so the per-address limit
  is never what answers.
- **bare**: the same uvicorn (same version, same settings as ``podium serve``: one
  worker, h11, no access log, 5 s keep-alive, 16 KiB head limit, no lifespan) serving a
  bare ASGI app that answers every request with a small JSON document.
- **fastapi**: the same, with a FastAPI app of one ``POST`` route returning a small
  dict: the framework's own floor, to tell Podium's join logic from FastAPI's cost.

Each round, for each server in turn, ``--connections`` keep-alive connections send
``POST`` requests back to back for ``--seconds`` (Podium: ``POST …/join`` with an empty
body; the others: ``POST /join``). A **ticket issued** is a ``200`` whose body holds a
``ticket``; for the references, any ``200``. The server process's CPU time (user + sys
from ``/proc/PID/stat``; Podium's media worker is a separate process and not counted)
is read before and after: **answers per CPU-second** is the figure, as "per core" means
one core fully busy. The load generator runs in this process with the lean client of
:mod:`podium.clients.http1`; on a small machine it competes with the server for CPU,
which the per-CPU-second figure factors out. Rounds alternate the servers so that all
see the same machine state; the figures are medians over ``--rounds``.

Then **time to first audio**: ``podium load``'s join storm
(:func:`podium.clients.load.join_storm`, ``--storm-listeners`` listeners arriving over
``--storm-over`` seconds, each listening 5 s) against the Podium server: from each
listener's join request to the whole first part in hand, p50 and p95. The reference is
the same measure for single listeners arriving one at a time on the idle server (five of
them). The generator's own cost is reported per listener-second and per request, in the
storm and with ``--follow-listeners`` (50) following for ``--follow-seconds`` (20), few
enough for the server to keep up: its steady cost per request.

Run from the repository root::

    .venv/bin/python bench/join_rate.py [--seconds 10] [--rounds 3] [--connections 16]
        [--storm-listeners 300] [--storm-over 3] [--follow-listeners 50]
        [--follow-seconds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from podium.clients.http1 import HttpClient, TransportError
from podium.clients.load import StormPlan, join_storm

URL_LINE = re.compile(r"Podium is listening on (http://\S+)")
PORT_LINE = re.compile(r"listening on port (\d+)")
HELLO_BODY = b'{"hello":"world"}'
JOINS_PER_ADDRESS = 100  # below the per-address burst of 200
# As in podium.server.serve: the same HTTP server, configured the same way.
MAX_HEAD_BYTES = 16 * 1024
UVICORN_OPTIONS: dict[str, Any] = {
    "log_config": None,
    "access_log": False,
    "server_header": False,
    "timeout_keep_alive": 5,
    "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    "lifespan": "off",
}
PODIUM_ENV = {
    "PODIUM_LOG_LEVEL": "warning",
    "PODIUM_SHED_LOOP_LAG_MS": "60000",
    "PODIUM_SHED_CPU_PERCENT": "10000",
    "PODIUM_JOIN_POW": "off",
}


# -- the reference servers (run as subprocesses of this script) ----------------------------


async def bare_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """A bare ASGI hello-world: read the request, answer a small JSON document."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(HELLO_BODY)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": HELLO_BODY})


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.post("/join")
    async def join() -> dict[str, str]:
        return {"hello": "world"}

    return app


def serve_reference(kind: str) -> None:
    """Run a reference server on a free loopback port until killed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(f"listening on port {sock.getsockname()[1]}", flush=True)
    app: Any = bare_app if kind == "bare" else fastapi_app()
    server = uvicorn.Server(uvicorn.Config(app, **UVICORN_OPTIONS))
    asyncio.run(server.serve(sockets=[sock]))


# -- processes -----------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    url: str
    process: subprocess.Popen[str]
    path: str  # the path joins are POSTed to

    def cpu_seconds(self) -> float:
        """User + system CPU of the process itself (not its children)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _start(
    command: list[str], env: dict[str, str], patterns: Sequence[re.Pattern[str]]
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``command``; return it and the first group of each pattern, once all matched."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    found: dict[int, str] = {}
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:  # keep reading: a full pipe would block the server
            for index, pattern in enumerate(patterns):
                match = pattern.search(line)
                if match and index not in found:
                    found[index] = match.group(1)
            if len(found) == len(patterns):
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(timeout=60)
    if len(found) < len(patterns):
        process.kill()
        raise RuntimeError(f"{command[:4]} did not start")
    return process, [found[i] for i in range(len(patterns))]


def start_podium(
    data: Path, settings: Mapping[str, str] = PODIUM_ENV, title: str = "Join rate"
) -> tuple[Process, str]:
    """``podium serve`` with ``settings`` (``PODIUM_*`` variables; none other is passed
    on) and one space, titled ``title``, taken live through the API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")} | dict(settings)
    command = [sys.executable, "-m", "podium", "serve", "--data", str(data), "--port", "0"]
    process, (url,) = _start(command, env, [URL_LINE])
    token = (data / "owner.token").read_text().strip()
    with httpx.Client(
        base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        created = api.post("/api/v1/spaces", json={"title": title})
        created.raise_for_status()
        space = str(created.json()["id"])
        api.post(f"/api/v1/spaces/{space}/start").raise_for_status()
    return Process("podium", url, process, f"/api/v1/spaces/{space}/join"), space


def start_reference(kind: str) -> Process:
    command = [sys.executable, __file__, "--serve-reference", kind]
    process, (port,) = _start(command, dict(os.environ), [PORT_LINE])
    return Process(kind, f"http://127.0.0.1:{port}", process, "/join")


# -- the join rate -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateRun:
    server: str
    answers: int
    others: int
    cpu_seconds: float
    wall_seconds: float
    idle_cpu_share: float  # of one core, in the second before: background work

    @property
    def per_cpu_second(self) -> float:
        return self.answers / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


async def hammer(target: Process, seconds: float, connections: int, first_address: int) -> RateRun:
    """``connections`` keep-alive connections POSTing back to back for ``seconds``."""
    url = target.url + target.path
    counts = {"answers": 0, "others": 0}
    addresses = iter(range(first_address, first_address + 10_000_000))

    def address() -> str:
        n = next(addresses)
        return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{max(1, n & 255)}"

    async def worker(deadline: float) -> None:
        client = HttpClient([target.url], max_connections=1, local_address=address())
        sent = 0
        while time.monotonic() < deadline:
            if sent == JOINS_PER_ADDRESS:
                await client.aclose()
                client = HttpClient([target.url], max_connections=1, local_address=address())
                sent = 0
            sent += 1
            try:
                response = await client.request("POST", url)
            except TransportError:
                counts["others"] += 1
                continue
            ok = response.status == 200 and (
                target.name != "podium" or b'"ticket"' in response.body
            )
            counts["answers" if ok else "others"] += 1
        await client.aclose()

    idle = target.cpu_seconds()
    await asyncio.sleep(1.0)
    cpu, wall = target.cpu_seconds(), time.monotonic()
    idle_share = cpu - idle
    deadline = wall + seconds
    await asyncio.gather(*(worker(deadline) for _ in range(connections)))
    return RateRun(
        target.name,
        counts["answers"],
        counts["others"],
        target.cpu_seconds() - cpu,
        time.monotonic() - wall,
        idle_share,
    )


# -- time to first audio -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Storm:
    listeners: int
    admitted: int
    unexplained: int
    ttfa_p50_s: float | None
    ttfa_p95_s: float | None
    ttfa_p99_s: float | None
    stalls: int
    requests: int
    generator_cpu_per_listener_second: float
    generator_cpu_per_request_us: float
    follow_requests_per_listener_second: float
    follow_cpu_per_request_us: float
    idle_ttfa_p50_s: float | None
    idle_ttfa_max_s: float | None


async def follow(
    podium: Process, space: str, listeners: int, seconds: float
) -> tuple[float, float]:
    """The generator's steady cost: ``listeners`` following for ``seconds``, few enough
    for the server to keep up. Requests per listener-second, and CPU µs per request."""
    cpu = time.process_time()
    report = await join_storm(
        StormPlan(
            podium.url, space, listeners, 1.0, duration_s=seconds, source_network="127.11.0.0/16"
        )
    )
    cpu = time.process_time() - cpu
    requests = max(1, report["traffic"]["requests"])
    return requests / (listeners * seconds), cpu / requests * 1e6


async def ttfa(
    podium: Process, space: str, listeners: int, over: float, followers: int, seconds: float
) -> Storm:
    idle: list[float] = []
    for index in range(5):  # one at a time, on the idle server
        alone = await join_storm(
            StormPlan(
                podium.url, space, 1, 0.0, duration_s=1.0, source_network=f"127.9.{index}.0/24"
            )
        )
        if alone["ttfa_p50_s"] is not None:
            idle.append(alone["ttfa_p50_s"])
    cpu = time.process_time()
    duration = 5.0
    report = await join_storm(
        StormPlan(
            podium.url,
            space,
            listeners,
            over,
            duration_s=duration,
            source_network="127.10.0.0/16",
        )
    )
    cpu = time.process_time() - cpu
    rate, per_request = await follow(podium, space, followers, seconds)
    return Storm(
        listeners=listeners,
        admitted=report["admitted"],
        unexplained=report["unexplained_errors"],
        ttfa_p50_s=report["ttfa_p50_s"],
        ttfa_p95_s=report["ttfa_p95_s"],
        ttfa_p99_s=report["ttfa_p99_s"],
        stalls=report["stalls"],
        requests=report["traffic"]["requests"],
        generator_cpu_per_listener_second=cpu / (listeners * duration),
        generator_cpu_per_request_us=cpu / max(1, report["traffic"]["requests"]) * 1e6,
        follow_requests_per_listener_second=rate,
        follow_cpu_per_request_us=per_request,
        idle_ttfa_p50_s=statistics.median(idle) if idle else None,
        idle_ttfa_max_s=max(idle) if idle else None,
    )


# -- the run -------------------------------------------------------------------------------


async def run(args: argparse.Namespace, targets: list[Process], space: str) -> dict[str, Any]:
    runs: list[RateRun] = []
    address = 1 << 16  # 127.1.0.1 onwards; each round and server takes fresh addresses
    for _ in range(args.rounds):
        for target in targets:
            runs.append(await hammer(target, args.seconds, args.connections, address))
            address += 1 << 16
            await asyncio.sleep(1.0)  # let the server settle (closing connections)
    medians = {
        name: statistics.median(r.per_cpu_second for r in runs if r.server == name)
        for name in (t.name for t in targets)
    }
    storm = await ttfa(
        targets[0],
        space,
        args.storm_listeners,
        args.storm_over,
        args.follow_listeners,
        args.follow_seconds,
    )
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "serve_reference")},
        "runs": [asdict(r) | {"per_cpu_second": r.per_cpu_second} for r in runs],
        "per_cpu_second": medians,
        "ratio_podium_to_bare": medians["podium"] / medians["bare"] if medians["bare"] else None,
        "ratio_podium_to_fastapi": (
            medians["podium"] / medians["fastapi"] if medians["fastapi"] else None
        ),
        "storm": asdict(storm),
    }


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def render(result: dict[str, Any]) -> str:
    per = result["per_cpu_second"]
    storm = result["storm"]
    lines = [
        "answers per CPU-second of the server process (median of rounds):",
        f"  podium join (ticket issued)  {per['podium']:>8.0f}",
        f"  bare ASGI hello-world        {per['bare']:>8.0f}",
        f"  FastAPI one-route hello      {per['fastapi']:>8.0f}",
        f"  podium / bare: {result['ratio_podium_to_bare']:.2f}x   (target >= 0.5x)",
        f"  podium / FastAPI: {result['ratio_podium_to_fastapi']:.2f}x",
        "",
        "rounds: server, answers, other answers, server CPU s, wall s, idle CPU share",
    ]
    for run_ in result["runs"]:
        lines.append(
            f"  {run_['server']:<8} {run_['answers']:>7} {run_['others']:>6}"
            f" {run_['cpu_seconds']:>7.2f} {run_['wall_seconds']:>6.2f}"
            f" {run_['idle_cpu_share']:>6.1%}"
        )
    lines += [
        "",
        f"time to first audio, {storm['listeners']} listeners arriving over"
        f" {result['settings']['storm_over']:g} s: p50 {_seconds(storm['ttfa_p50_s'])},"
        f" p95 {_seconds(storm['ttfa_p95_s'])}, p99 {_seconds(storm['ttfa_p99_s'])}"
        f" (admitted {storm['admitted']}, unexplained {storm['unexplained']},"
        f" stalls {storm['stalls']})",
        f"  one listener at a time on the idle server: p50 {_seconds(storm['idle_ttfa_p50_s'])},"
        f" max {_seconds(storm['idle_ttfa_max_s'])}",
        f"  load generator: {storm['generator_cpu_per_listener_second'] * 1000:.2f} ms CPU per"
        f" listener-second, {storm['generator_cpu_per_request_us']:.0f} us per request"
        f" ({storm['requests']} requests)",
        f"  following steadily ({result['settings']['follow_listeners']} listeners,"
        f" {storm['follow_requests_per_listener_second']:.1f} requests per listener-second):"
        f" {storm['follow_cpu_per_request_us']:.0f} us per request",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=10.0, help="per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--storm-listeners", type=int, default=300)
    parser.add_argument("--storm-over", type=float, default=3.0)
    parser.add_argument("--follow-listeners", type=int, default=50)
    parser.add_argument("--follow-seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--serve-reference", choices=["bare", "fastapi"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_reference:
        serve_reference(args.serve_reference)
        return 0
    with tempfile.TemporaryDirectory(prefix="podium-join-rate-") as tmp:
        podium, space = start_podium(Path(tmp) / "data")
        targets = [podium]
        try:
            targets += [start_reference("bare"), start_reference("fastapi")]
            time.sleep(3.0)  # the first parts are made
            result = asyncio.run(run(args, targets, space))
        finally:
            for target in targets:
                target.stop()
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
