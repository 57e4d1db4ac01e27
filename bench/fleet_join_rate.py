"""Joins per CPU-second of a fleet node (PostgreSQL and Redis) beside the embedded node.

What a node pays for sharing its state: the same join (a ticket issued for a live space),
hammered the same way (:func:`join_rate.hammer`: keep-alive connections from many source
addresses), against ``podium serve`` on its own (SQLite, everything in the process) and
against a node with ``database_url`` and ``redis_url`` set, whose per-address limit is a
Redis script call and whose audience is counted in Redis. Rounds alternate the two; the
figure is the median answers per CPU-second of the web process, and the ratio fleet /
embedded is the one to read.

Then what the fleet's shared services are asked per listener action, counted by Redis
itself (``INFO commandstats``: the commands nodes send, pipelined ones each counted, the
commands the rate-limit script runs inside Redis not) and by PostgreSQL
(``pg_stat_database``: transactions): per join, and per beacon (a fresh ticket each, so
no beacon is refused; 100 actions per source address, so no per-address limit answers).
And the fleet's join throughput with 1, 2 and 3 nodes on this
machine, all hammered at once: on a machine with fewer cores than nodes plus the load
generator the figure cannot grow with the nodes; it says what this machine carries.

PostgreSQL and Redis are throwaway instances (``tests/services.py``: ``initdb`` and
``redis-server`` from Debian's packages). Run from the repository root::

    .venv/bin/python bench/fleet_join_rate.py [--seconds 10] [--rounds 3]
        [--connections 16] [--beacons 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

import join_rate
from join_rate import PODIUM_ENV, URL_LINE, Process, RateRun, hammer, start_podium

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from services import Postgres, Redis


def _node(data: Path, settings: dict[str, str], space: str, name: str) -> Process:
    """One more node of the fleet, for the space the first one made live."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")} | settings
    env["PODIUM_NODE_NAME"] = name
    command = [sys.executable, "-m", "podium", "serve", "--data", str(data), "--port", "0"]
    process, (url,) = join_rate._start(command, env, [URL_LINE])
    return Process("podium", url, process, f"/api/v1/spaces/{space}/join")


# The rate-limit script runs these inside Redis for each EVALSHA: not calls of a node.
_IN_SCRIPT = ("time", "hmget", "hset", "pexpire")


def _redis_commands(url: str) -> dict[str, int]:
    """Commands Redis has run, by name (``INFO commandstats``)."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def _calls(before: dict[str, int], after: dict[str, int]) -> tuple[int, int]:
    """(commands nodes sent, of which rate-limit script runs) between two readings:
    everything but ``INFO`` itself and what the script runs inside Redis."""
    delta = {name: after[name] - before.get(name, 0) for name in after}
    scripts = delta.get("evalsha", 0) + delta.get("eval", 0)
    sent = sum(n for name, n in delta.items() if name not in ("info", "script|load"))
    return sent - len(_IN_SCRIPT) * scripts, scripts


def _pg_transactions(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def _throughput(nodes: list[Process], seconds: float, connections: int) -> float:
    """Tickets issued a wall-second by ``nodes`` hammered together."""
    runs = await asyncio.gather(
        *(
            hammer(node, seconds, max(1, connections // len(nodes)), (20 + i) << 16)
            for i, node in enumerate(nodes)
        )
    )
    return sum(r.answers for r in runs) / max(r.wall_seconds for r in runs)


def _client(node: Process, n: int) -> httpx.Client:
    """A client from a loopback address of its own (127.0.N.1): the per-address limits
    are never what answers."""
    transport = httpx.HTTPTransport(local_address=f"127.0.{n % 250 + 1}.1")
    return httpx.Client(base_url=node.url, timeout=30, transport=transport)


def _send_beacons(node: Process, space: str, tickets: list[str]) -> int:
    accepted = 0
    for start in range(0, len(tickets), 100):
        with _client(node, start // 100) as client:
            for ticket in tickets[start : start + 100]:
                answer = client.post(f"/api/v1/spaces/{space}/beacon", json={"ticket": ticket})
                accepted += answer.status_code == 204
    return accepted


def _tickets(node: Process, space: str, count: int) -> tuple[list[str], int]:
    """``count`` tickets, 100 joins from each address; and how many joins that took."""
    found: list[str] = []
    asked = 0
    while len(found) < count:
        with _client(node, asked // 100) as client:
            for _ in range(100):
                asked += 1
                joined = client.post(f"/api/v1/spaces/{space}/join")
                if joined.status_code == 200:
                    found.append(joined.json()["ticket"])
    return found[:count], asked


async def _rates(
    args: argparse.Namespace, embedded: Process, fleet: Process
) -> tuple[list[RateRun], dict[str, float]]:
    runs: list[RateRun] = []
    address = 1 << 16
    for _ in range(args.rounds):
        for target, name in ((embedded, "embedded"), (fleet, "fleet")):
            run = await hammer(target, args.seconds, args.connections, address)
            runs.append(replace(run, server=name))
            address += 1 << 16
            await asyncio.sleep(1.0)
    medians = {
        name: statistics.median(r.per_cpu_second for r in runs if r.server == name)
        for name in ("embedded", "fleet")
    }
    return runs, medians


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    postgres, cache = Postgres(), Redis()
    nodes: list[Process] = []
    try:
        database = postgres.create_database("bench")
        subprocess.run(
            [sys.executable, "-m", "podium", "migrate", "--database-url", database],
            check=True,
            capture_output=True,
        )
        settings = PODIUM_ENV | {
            "PODIUM_DATABASE_URL": database,
            "PODIUM_REDIS_URL": cache.url,
            "PODIUM_SECRET_KEY": secrets.token_urlsafe(40),
            "PODIUM_NODE_NAME": "node-1",
        }
        embedded, _ = start_podium(root / "embedded")
        nodes.append(embedded)
        fleet, space = start_podium(root / "node-1", settings)
        nodes.append(fleet)
        time.sleep(3.0)
        runs, medians = asyncio.run(_rates(args, embedded, fleet))

        commands, transactions = _redis_commands(cache.url), _pg_transactions(database)
        tickets, asked = _tickets(fleet, space, args.beacons)
        time.sleep(1.5)  # the audience's last pipeline of the joins is sent
        sent, scripts = _calls(commands, _redis_commands(cache.url))
        per_join_redis, per_join_scripts = sent / asked, scripts / asked
        per_join_pg = (_pg_transactions(database) - transactions) / asked
        commands, transactions = _redis_commands(cache.url), _pg_transactions(database)
        # The node's own background work (tickers, heartbeats) over a quiet second, taken
        # off what the beacons are charged.
        idle, idle_wall = fleet.cpu_seconds(), time.monotonic()
        time.sleep(1.0)
        idle_rate = (fleet.cpu_seconds() - idle) / (time.monotonic() - idle_wall)
        cpu, wall = fleet.cpu_seconds(), time.monotonic()
        accepted = _send_beacons(fleet, space, tickets)
        beacon_cpu = fleet.cpu_seconds() - cpu - idle_rate * (time.monotonic() - wall)
        time.sleep(1.5)
        sent, scripts = _calls(commands, _redis_commands(cache.url))
        per_beacon_redis, per_beacon_scripts = sent / max(1, accepted), scripts / max(1, accepted)
        per_beacon_pg = (_pg_transactions(database) - transactions) / max(1, accepted)

        embedded.stop()
        nodes.remove(embedded)
        throughput = {1: asyncio.run(_throughput(nodes, args.seconds, args.connections))}
        for count in (2, 3):
            nodes.append(_node(root / f"node-{count}", settings, space, f"node-{count}"))
            time.sleep(2.0)
            throughput[count] = asyncio.run(_throughput(nodes, args.seconds, args.connections))
    finally:
        for node in nodes:
            node.stop()
        cache.close()
        postgres.close()
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "runs": [asdict(r) | {"per_cpu_second": r.per_cpu_second} for r in runs],
        "per_cpu_second": medians,
        "ratio_fleet_to_embedded": medians["fleet"] / medians["embedded"],
        "redis_commands_per_join": per_join_redis,
        "redis_script_runs_per_join": per_join_scripts,
        "redis_script_runs_per_beacon": per_beacon_scripts,
        "joins": asked,
        "postgres_transactions_per_join": per_join_pg,
        "redis_commands_per_beacon": per_beacon_redis,
        "postgres_transactions_per_beacon": per_beacon_pg,
        "beacons": accepted,
        # Sent one after another: the node's CPU per beacon, not its throughput.
        "fleet_beacons_per_cpu_second": accepted / beacon_cpu if beacon_cpu > 0 else 0.0,
        "fleet_tickets_per_second": throughput,
    }


def render(result: dict[str, Any]) -> str:
    per = result["per_cpu_second"]
    lines = [
        "joins (ticket issued) per CPU-second of the web process, median of rounds:",
        f"  embedded node (SQLite, in-process state)  {per['embedded']:>8.0f}",
        f"  fleet node (PostgreSQL + Redis)           {per['fleet']:>8.0f}",
        f"  fleet / embedded: {result['ratio_fleet_to_embedded']:.2f}x",
        "",
        "asked of the shared services, per listener action:",
        f"  per join:   Redis {result['redis_commands_per_join']:.2f} commands"
        f" ({result['redis_script_runs_per_join']:.2f} of them the rate-limit script),"
        f" PostgreSQL {result['postgres_transactions_per_join']:.3f} transactions"
        f" ({result['joins']} joins)",
        f"  per beacon: Redis {result['redis_commands_per_beacon']:.3f} commands"
        f" ({result['redis_script_runs_per_beacon']:.2f} of them the rate-limit script),"
        f" PostgreSQL {result['postgres_transactions_per_beacon']:.3f} transactions"
        f" ({result['beacons']} beacons)",
        f"  beacons per CPU-second of the fleet node: {result['fleet_beacons_per_cpu_second']:.0f}",
        "",
        f"fleet tickets issued per wall-second on this machine ({result['machine']['cpus']}"
        " cores, load generator included):",
    ]
    for count, rate in result["fleet_tickets_per_second"].items():
        lines.append(f"  {count} node(s): {rate:>8.0f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--beacons", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="podium-fleet-bench-") as tmp:
        result = measure(args, Path(tmp))
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
