"""Two nodes sharing one PostgreSQL and one Redis: a registry that lists them both, rate
limits that hold for the fleet rather than per node, and a Redis killed and brought back:
each node falls back to its share of the limits, says so, and recovers by itself."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetnodes import eventually, fleet_env
from harness import PODIUM, Server, make_account, start_server
from services import Postgres, Redis

# One address's joins: a burst of 10 for the whole fleet, refilled far slower than the
# test runs, so every admission is counted against the one budget.
JOIN_BURST = 10


def _start_fleet(
    postgres: Postgres, redis_server: Redis, data: Path, **settings: str
) -> list[Server]:
    """Two nodes (each web and media) on one PostgreSQL and one Redis, with one key."""
    env = fleet_env(postgres, redis_server, **settings)
    started: list[Server] = []
    try:
        for name in ("node-a", "node-b"):
            started.append(start_server(data / name, env={**env, "PODIUM_NODE_NAME": name}))
    except BaseException:
        for node in started:
            node.stop()
        raise
    return started


@pytest.fixture
def nodes(postgres: Postgres, redis_server: Redis, tmp_path: Path) -> Iterator[list[Server]]:
    started = _start_fleet(
        postgres, redis_server, tmp_path, join_burst=str(JOIN_BURST), join_per_second="0.01"
    )
    yield started
    for node in started:
        node.stop()


@pytest.fixture
def audience_nodes(
    postgres: Postgres, redis_server: Redis, tmp_path: Path
) -> Iterator[list[Server]]:
    started = _start_fleet(postgres, redis_server, tmp_path, exact_audience="false")
    yield started
    for node in started:
        node.stop()


def _fleet(node: Server, token: str) -> dict[str, object]:
    with node.client(token) as admin:
        answer = admin.get("/api/v1/admin/fleet")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def _names(node: Server, token: str) -> list[str]:
    listed = _fleet(node, token)["nodes"]
    assert isinstance(listed, list)
    return [entry["id"] for entry in listed]


def _join_storm(nodes: list[Server], space_id: str, joins: int) -> dict[str, int]:
    """``joins`` anonymous joins from one address, alternating between the nodes."""
    outcomes: dict[str, int] = {}
    clients = [httpx.Client(base_url=node.url, timeout=10) for node in nodes]
    try:
        for n in range(joins):
            answer = clients[n % len(clients)].post(f"/api/v1/spaces/{space_id}/join")
            if answer.status_code == 200:
                key = answer.json()["status"]
            else:
                assert answer.status_code == 429, answer.text
                assert answer.json()["scope"] == "address"
                key = "rate_limited"
            outcomes[key] = outcomes.get(key, 0) + 1
    finally:
        for client in clients:
            client.close()
    return outcomes


def _metric(node: Server, name: str) -> float:
    """A sample of this node's: every one carries the node's name."""
    text = httpx.get(f"{node.url}/metrics", timeout=10).text
    own = f'{name}{{node="{node.env["PODIUM_NODE_NAME"]}"}} '
    for line in text.splitlines():
        if line.startswith(own):
            return float(line.split()[1])
    raise AssertionError(f"{own} is not in /metrics")


def test_two_nodes_share_a_registry_and_their_limits_and_outlive_redis(
    nodes: list[Server], redis_server: Redis
) -> None:
    first, second = nodes
    owner = first.owner_token  # the first node made the owner; the second shares the database
    eventually(lambda: _names(second, owner) == ["node-a", "node-b"])
    status = subprocess.run(
        [
            *PODIUM,
            "fleet",
            "status",
            "--server",
            second.url,
            "--token-file",
            str(first.data_dir / "owner.token"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("2 node(s); Redis: ok")
    assert "node-a  all  " in status.stdout
    assert "node-b  all  " in status.stdout
    eventually(lambda: _metric(first, "podium_fleet_nodes") == 2)  # at its next heartbeat
    assert _metric(second, "podium_redis_up") == 1
    assert (
        'podium_node_info{node="node-b",role="all"} 1.0' in httpx.get(f"{second.url}/metrics").text
    )

    host = make_account(first, "fleet_host")
    with first.client(host.token) as api:
        space = api.post("/api/v1/spaces", json={"title": "Fleet"}).json()
        assert api.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200

    # One address, both nodes: the burst is the fleet's, not each node's.
    shared = _join_storm(nodes, space["id"], 2 * JOIN_BURST + 4)
    assert shared == {"admitted": JOIN_BURST, "rate_limited": JOIN_BURST + 4}

    redis_server.kill()
    # Each node on its own share (1/2 of the burst), from a full local bucket: together
    # still the fleet's burst, and every node still ready (listening and joining go on).
    alone = _join_storm(nodes, space["id"], 2 * JOIN_BURST + 4)
    assert alone == {"admitted": JOIN_BURST, "rate_limited": JOIN_BURST + 4}
    for node in nodes:
        ready = httpx.get(f"{node.url}/readyz", timeout=10)
        assert ready.status_code == 200
        assert "limits are this node's share of the fleet's (1/2)" in ready.json()["redis"]
        assert _metric(node, "podium_redis_up") == 0
    with first.client(owner) as admin:
        unread = admin.get("/api/v1/admin/fleet")
        assert unread.status_code == 503
        assert "registry cannot be read" in unread.json()["detail"]

    redis_server.start()  # empty, as a restarted cache is
    for node in nodes:
        eventually(lambda node=node: "redis" not in httpx.get(f"{node.url}/readyz").json())
    eventually(lambda: _names(first, owner) == ["node-a", "node-b"])
    again = _join_storm(nodes, space["id"], 2 * JOIN_BURST + 4)
    assert again == {"admitted": JOIN_BURST, "rate_limited": JOIN_BURST + 4}
    for node in nodes:
        assert not any("Traceback" in line for line in node.stderr_lines), node.stderr_lines


LISTENERS = 150


def test_a_listener_counted_on_one_node_is_not_counted_again_on_another(
    audience_nodes: list[Server],
) -> None:
    first, second = audience_nodes
    host = make_account(first, "audience_host")
    with first.client(host.token) as api:
        space = api.post("/api/v1/spaces", json={"title": "Counted once"}).json()
        assert api.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
    space_id = space["id"]
    with (
        httpx.Client(base_url=first.url, timeout=10) as a,
        httpx.Client(base_url=second.url, timeout=10) as b,
    ):
        tickets = []
        for n in range(LISTENERS):
            joined = (a if n % 2 else b).post(f"/api/v1/spaces/{space_id}/join")
            assert joined.status_code == 200, joined.text
            tickets.append(joined.json()["ticket"])
        for ticket in tickets:  # every listener beacons to both nodes
            for node in (a, b):
                beacon = node.post(f"/api/v1/spaces/{space_id}/beacon", json={"ticket": ticket})
                assert beacon.status_code == 204, beacon.text

        def both_count_everyone() -> bool:
            figures = [
                node.get(f"/api/v1/spaces/{space_id}/state").json()["audience"] for node in (a, b)
            ]
            return all(
                abs(f["concurrent"] - LISTENERS) <= 1 and abs(f["unique"] - LISTENERS) <= 1
                for f in figures
            )

        eventually(both_count_everyone)
    with first.client(host.token) as api:
        assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200


def _media_rooms(node: Server, token: str, name: str) -> list[str] | None:
    listed = _fleet(node, token)["nodes"]
    assert isinstance(listed, list)
    for entry in listed:
        if entry["id"] == name:
            rooms: list[str] | None = entry["load"]["media_rooms"]
            return rooms
    return None


def test_a_room_runs_on_one_node_and_ends_wherever_its_space_is_ended(
    nodes: list[Server], tmp_path: Path
) -> None:
    first, second = nodes
    owner = first.owner_token
    host = make_account(first, "media_host")
    with first.client(host.token) as api:
        space = api.post("/api/v1/spaces", json={"title": "On node a"}).json()
        assert api.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
    space_id = space["id"]
    eventually(lambda: _media_rooms(second, owner, "node-a") == [space_id])
    # The other node, restarted while the space is live, does not run a second room
    # (and a second recording) for it: the room is node a's.
    second.stop()
    restarted = start_server(second.data_dir, env=second.env)
    try:
        eventually(lambda: _media_rooms(first, owner, "node-b") == [])
        assert _media_rooms(first, owner, "node-a") == [space_id]
        # Its origin is node a's alone (a media role feeding every node is not built).
        assert httpx.get(f"{first.url}/hls/{space_id}/live.m3u8").status_code == 200
        assert httpx.get(f"{restarted.url}/hls/{space_id}/live.m3u8").status_code == 404
        # Ended through node b: node a's room ends too, and its playlist says so.
        with restarted.client(host.token) as api:
            ended = api.post(f"/api/v1/spaces/{space_id}/end")
            assert ended.status_code == 200, ended.text
        eventually(lambda: _media_rooms(first, owner, "node-a") == [])
        playlist = httpx.get(f"{first.url}/hls/{space_id}/live.m3u8", timeout=10)
        assert "#EXT-X-ENDLIST" in playlist.text
    finally:
        restarted.stop()
