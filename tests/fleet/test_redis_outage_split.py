"""Redis killed under a live space on web nodes and a media node, then brought back:
each web node admits at its share of the capacity (the media node takes no joins, so it
is not counted in the share), listening goes on through every web node, and once Redis
is back the fleet's numbers include everyone let in meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetnodes import Fleet, eventually, start_fleet
from harness import make_account
from services import Postgres, Redis

CAPACITY = 10


@pytest.fixture
def fleet(postgres: Postgres, redis_server: Redis, tmp_path: Path) -> Iterator[Fleet]:
    started = start_fleet(postgres, redis_server, tmp_path, web=2, max_listeners=str(CAPACITY))
    yield started
    started.stop()


def _joins(url: str, space_id: str, count: int) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(count):
            answer = client.post(f"/api/v1/spaces/{space_id}/join")
            assert answer.status_code in (200, 202), answer.text
            status = answer.json()["status"]
            outcomes[status] = outcomes.get(status, 0) + 1
    return outcomes


def test_web_nodes_admit_their_share_without_redis_and_recover(
    fleet: Fleet, redis_server: Redis
) -> None:
    host = make_account(fleet.web[0], "outage_host")
    with fleet.web[0].client(host.token) as api:
        space = api.post("/api/v1/spaces", json={"title": "Outage"}).json()
        assert api.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
    space_id = space["id"]
    for node in fleet.web:  # each has seen both web nodes (and not counted the media node)
        eventually(
            lambda node=node: (
                f'podium_fleet_nodes{{node="{node.env["PODIUM_NODE_NAME"]}"}} 2.0'
                in httpx.get(f"{node.url}/metrics", timeout=10).text
            )
        )

    def parts(url: str) -> int:
        playlist = httpx.get(f"{url}/hls/{space_id}/live.m3u8", timeout=10)
        assert playlist.status_code == 200
        return playlist.text.count("#EXT-X-PART:")

    for node in fleet.web:
        eventually(lambda node=node: parts(node.url) >= 4)
    before = {node.url: parts(node.url) for node in fleet.web}

    redis_server.kill()
    for node in fleet.web:
        outcomes = _joins(node.url, space_id, CAPACITY)
        assert outcomes == {"admitted": CAPACITY // 2, "queued": CAPACITY // 2}, outcomes
        ready = httpx.get(f"{node.url}/readyz", timeout=10)
        assert ready.status_code == 200
        assert "(1/2)" in ready.json()["redis"]
        # Listening goes on: the media node's feed does not pass through Redis.
        eventually(lambda node=node: parts(node.url) > before[node.url] + 4)

    redis_server.start()  # empty, as a restarted cache is
    for node in fleet.web:
        eventually(lambda node=node: "redis" not in httpx.get(f"{node.url}/readyz").json())

    # What each node heard meanwhile reaches the fleet's sketches: the audience is the
    # ten let in during the outage, on every node, and the fleet's one capacity is full.
    def listeners(url: str) -> int:
        state = httpx.get(f"{url}/api/v1/spaces/{space_id}/state", timeout=10).json()
        return int(state["audience"]["concurrent"])

    for node in fleet.web:
        eventually(lambda node=node: listeners(node.url) == CAPACITY)
    for node in fleet.web:
        assert _joins(node.url, space_id, 3) == {"queued": 3}
    for node in [fleet.media, *fleet.web]:
        assert not any("Traceback" in line for line in node.stderr_lines), node.stderr_lines
