"""How long a live space is off the air when its media node dies, against the lease.

A fleet on this machine (PostgreSQL, Redis, two media nodes, two web nodes:
``tests/fleetnodes.py``), one live space with a ``podium speak`` speaker. Each round
SIGKILLs the media node hosting the space (its worker too), measures, ends the space and
starts the node again. The reference is the lease itself: a space cannot be taken over
before its lease expires (``LEASE_S`` after the dead node's last renewal), so each figure
is also given as the time past that expiry, the part failover adds:

- ``taken``: the other node holds the lease;
- ``resumed``: a web node's playlist has a part after the marked gap;
- ``speaker``: the speaker published again, by itself, on the new node;
- ``lost_s``: the span the room state says was lost.

And what the copies cost: part bytes the web nodes wrote for the space per part byte of
its recording (each web node keeps a whole copy: about the number of web nodes).

Each round also drains the node hosting a second live space (``POST
/api/v1/admin/fleet/nodes/{node}/drain``, what ``podium fleet drain`` calls), the planned
counterpart of a kill: ``drain_moved_s`` (from the ask until the other node holds the
lease: the wait for the segment's end included), ``drain_handover_s`` (from the old room's
stop until the new node has the room on air, from the old node's log), ``drain_speaker_s``
(from the ask until the speaker is on the new node) and ``drain_gaps`` (``EXT-X-GAP`` in
the playlist: 0 is the point).

Run from the repository root::

    .venv/bin/python bench/failover.py [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fleetnodes import Fleet, after_gap, eventually, lease, power_cut, start_fleet
from harness import Server, make_account, start_server
from services import Postgres, Redis


def _holder(fleet: Fleet, redis_url: str, space_id: str) -> tuple[Server, Server]:
    name = lease(redis_url, space_id)["node"]
    nodes = {f"media-{n}": node for n, node in enumerate(fleet.media_nodes, 1)}
    victim = nodes[name]
    return victim, next(node for node in nodes.values() if node is not victim)


def _speakers(fleet: Fleet, node: Server, space_id: str) -> int:
    secret = fleet.env["PODIUM_MEDIA_SECRET"]
    answer = httpx.get(
        f"{node.url}/internal/media/status",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
    return len((answer.json()["rooms"].get(space_id) or {}).get("speakers", []))


def _bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def _live_space(fleet: Fleet, token: str, title: str) -> str:
    with fleet.web[0].client(token) as api:
        space_id = str(api.post("/api/v1/spaces", json={"title": title}).json()["id"])
        api.post(f"/api/v1/spaces/{space_id}/start").raise_for_status()
    return space_id


def _speaker(fleet: Fleet, token: str, space_id: str) -> subprocess.Popen[bytes]:
    """``podium speak`` with a tone, through the second web node."""
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "podium", "speak", "--tone", "440", "--token", token),
            f"{fleet.web[1].url}/api/v1/spaces/{space_id}/whip",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _round(fleet: Fleet, redis_url: str, token: str) -> dict[str, float]:
    space_id = _live_space(fleet, token, "Failover bench")
    speaker = _speaker(fleet, token, space_id)
    try:
        victim, standby = _holder(fleet, redis_url, space_id)
        eventually(lambda: _speakers(fleet, victim, space_id) == 1, within=30)
        time.sleep(4)  # some recording, copied to the web nodes
        # The lease outlives its holder by what Redis says is left of it.
        with redis.Redis.from_url(redis_url) as client:
            left_ms = int(client.pttl(f"podium:lease:{space_id}"))
        power_cut(victim)
        killed = time.monotonic()
        expiry = killed + left_ms / 1000
        standby_name = next(
            f"media-{n}" for n, node in enumerate(fleet.media_nodes, 1) if node is standby
        )
        eventually(lambda: lease(redis_url, space_id).get("node") == standby_name, within=30)
        taken = time.monotonic()
        playlist = f"{fleet.web[0].url}/hls/{space_id}/live.m3u8"
        eventually(lambda: after_gap(httpx.get(playlist, timeout=10).text) >= 1, within=30)
        resumed = time.monotonic()
        eventually(lambda: _speakers(fleet, standby, space_id) == 1, within=60)
        back = time.monotonic()
        with fleet.web[0].client(token) as api:
            state = api.get(f"/api/v1/spaces/{space_id}/state").json()
            api.post(f"/api/v1/spaces/{space_id}/end").raise_for_status()
    finally:
        speaker.terminate()
        speaker.wait(timeout=30)
    # Parts only: the recording's directory also holds the single-file export.
    recording = _bytes(standby.data_dir / "recordings" / space_id / "parts")
    copies = sum(_bytes(web.data_dir / "replicas" / space_id / "parts") for web in fleet.web)
    # The node comes back (empty of rooms: its space was taken over).
    revived = start_server(victim.data_dir, env=victim.env)
    if victim is fleet.media:
        fleet.media = revived
    else:
        fleet.more_media[fleet.more_media.index(victim)] = revived
    eventually(lambda: len(_followed(fleet)) == 2, within=30)
    return {
        "taken_s": taken - killed,
        "resumed_s": resumed - killed,
        "speaker_s": back - killed,
        "taken_after_expiry_s": taken - expiry,
        "resumed_after_expiry_s": resumed - expiry,
        "speaker_after_expiry_s": back - expiry,
        "lost_s": float((state.get("interruption") or {}).get("lost_s") or 0.0),
        "copy_bytes_per_recorded_byte": copies / recording if recording else 0.0,
    }


def _drain_round(fleet: Fleet, redis_url: str, token: str) -> dict[str, float]:
    space_id = _live_space(fleet, token, "Drain bench")
    speaker = _speaker(fleet, token, space_id)
    try:
        drained, other = _holder(fleet, redis_url, space_id)
        names = {id(node): f"media-{n}" for n, node in enumerate(fleet.media_nodes, 1)}
        eventually(lambda: _speakers(fleet, drained, space_id) == 1, within=30)
        time.sleep(3)
        logged = len(drained.stderr_lines)
        with fleet.web[0].client(fleet.owner) as api:
            asked = time.monotonic()
            path = f"/api/v1/admin/fleet/nodes/{names[id(drained)]}/drain"
            api.post(path).raise_for_status()
            eventually(lambda: lease(redis_url, space_id).get("node") == names[id(other)], 30)
            moved = time.monotonic()
            eventually(lambda: _speakers(fleet, other, space_id) == 1, within=60)
            back = time.monotonic()
            api.delete(path).raise_for_status()
        time.sleep(2)
        playlist = httpx.get(f"{fleet.web[0].url}/hls/{space_id}/live.m3u8", timeout=10).text
        with fleet.web[0].client(token) as api:
            api.post(f"/api/v1/spaces/{space_id}/end").raise_for_status()
    finally:
        speaker.terminate()
        speaker.wait(timeout=30)
    handed = [
        json.loads(line)
        for line in drained.stderr_lines[logged:]
        if '"space_handed_over"' in line and space_id in line
    ]
    return {
        "drain_moved_s": moved - asked,
        "drain_handover_s": float(handed[0]["handover_s"]) if handed else float("nan"),
        "drain_speaker_s": back - asked,
        "drain_gaps": float(playlist.count("#EXT-X-GAP")),
    }


def _followed(fleet: Fleet) -> list[str]:
    """The media nodes every web node follows (what it says in its heartbeat)."""
    with fleet.web[0].client(fleet.owner) as api:
        nodes = api.get("/api/v1/admin/fleet").json()["nodes"]
    follows = [sorted(n["load"].get("follows") or []) for n in nodes if n["role"] == "web"]
    if len(follows) < len(fleet.web) or any(f != follows[0] for f in follows):
        return []
    return follows[0]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(rounds: int) -> dict[str, Any]:
    postgres, cache = Postgres(), Redis()
    root = Path(tempfile.mkdtemp(prefix="podium-failover-"))
    fleet = start_fleet(postgres, cache, root, web=2, media=2)
    try:
        eventually(lambda: len(_followed(fleet)) == 2, within=30)
        token = make_account(fleet.web[0], "bench_host").token
        results = [
            {**_round(fleet, cache.url, token), **_drain_round(fleet, cache.url, token)}
            for _ in range(rounds)
        ]
    finally:
        fleet.stop()
        cache.close()
        postgres.close()
    summary: dict[str, Any] = {
        "rounds": rounds,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "runs": results,
    }
    for key in results[0]:
        values = [r[key] for r in results]
        summary[key] = {"p50": statistics.median(values), "p95": _quantile(values, 0.95)}
    return summary


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"failover: {summary['rounds']} kills of the hosting media node ({summary['machine']})",
        "                        after the kill     after the lease expired",
    ]
    for what in ("taken", "resumed", "speaker"):
        since_kill = summary[f"{what}_s"]
        since_expiry = summary[f"{what}_after_expiry_s"]
        lines.append(
            f"  {what:<9} p50/p95   {since_kill['p50']:5.1f} / {since_kill['p95']:5.1f} s"
            f"      {since_expiry['p50']:5.1f} / {since_expiry['p95']:5.1f} s"
        )
    lost = summary["lost_s"]
    copies = summary["copy_bytes_per_recorded_byte"]
    lines.append(f"  lost (room state) p50/p95 {lost['p50']:.1f} / {lost['p95']:.1f} s")
    lines.append(f"  part bytes the web nodes copied per recorded one: {copies['p50']:.2f}")
    moved, handover = summary["drain_moved_s"], summary["drain_handover_s"]
    speaker, gaps = summary["drain_speaker_s"], summary["drain_gaps"]
    failover_speaker = summary["speaker_s"]
    lines += [
        f"drain: {summary['rounds']} planned handovers of the hosting media node",
        f"  moved (lease on the other node, from the ask) p50/p95"
        f" {moved['p50']:.1f} / {moved['p95']:.1f} s",
        f"  handover (old room stopped → new room on air) p50/p95"
        f" {handover['p50']:.2f} / {handover['p95']:.2f} s",
        f"  speaker on the new node, from the ask p50/p95"
        f" {speaker['p50']:.1f} / {speaker['p95']:.1f} s"
        f" ({speaker['p50'] / failover_speaker['p50']:.2f}x a failover's, from the kill)",
        f"  gaps in the program: {gaps['p95']:.0f} (p95)",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    summary = measure(args.rounds)
    print(render(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
