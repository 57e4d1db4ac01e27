"""A shared PostgreSQL stopped for ten seconds under a live space: writes answer 503 with
``Retry-After`` (never a traceback), while listening, joining, beacons and the room state
go on; once it is back, writes work again without restarting anything."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import m3u8
import pytest

from harness import Server, assert_problem, make_account, start_shared_server
from services import Postgres

OUTAGE_S = 10.0


@pytest.fixture
def cluster() -> Iterator[Postgres]:
    """A PostgreSQL of this test's own: it is going to be stopped."""
    own = Postgres()
    yield own
    own.close()


@pytest.fixture
def node(cluster: Postgres, tmp_path: Path) -> Iterator[Server]:
    running = start_shared_server(tmp_path / "data", cluster.create_database("outage"))
    yield running
    running.stop()


def _media_sequence(client: httpx.Client, space_id: str) -> int:
    answer = client.get(f"/hls/{space_id}/live.m3u8")
    assert answer.status_code == 200, answer.text
    playlist = m3u8.loads(answer.text)
    return int(playlist.media_sequence or 0) + len(playlist.segments)


def test_writes_wait_and_listening_goes_on_while_postgresql_is_down(
    cluster: Postgres, node: Server
) -> None:
    host = make_account(node, "outage_host")
    with node.client(host.token) as api:
        space = api.post("/api/v1/spaces", json={"title": "Through the outage"}).json()
        assert api.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
    space_id = space["id"]
    with node.client() as listener:
        first = listener.post(f"/api/v1/spaces/{space_id}/join").json()
        assert first["status"] == "admitted"
        assert listener.get(f"/api/v1/spaces/{space_id}/state").status_code == 200
        deadline = time.monotonic() + 20
        while _media_sequence(listener, space_id) < 1:  # the first segment is out
            assert time.monotonic() < deadline
            time.sleep(0.2)
        heard_before = _media_sequence(listener, space_id)

    cluster.stop()
    stopped = time.monotonic()
    refused = joined = 0
    with node.client(host.token) as api, node.client() as listener:
        while time.monotonic() - stopped < OUTAGE_S:
            write = api.post("/api/v1/spaces", json={"title": "Not now"})
            problem = assert_problem(write, 503, "storage-unavailable")
            assert int(write.headers["Retry-After"]) >= 1
            assert "unreachable" in str(problem["detail"])
            refused += 1
            join = listener.post(f"/api/v1/spaces/{space_id}/join")
            assert join.status_code == 200, join.text
            assert join.json()["status"] == "admitted"
            beacon = listener.post(
                f"/api/v1/spaces/{space_id}/beacon", json={"ticket": join.json()["ticket"]}
            )
            assert beacon.status_code == 204, beacon.text
            joined += 1
            assert listener.get(f"/api/v1/spaces/{space_id}/state").status_code == 200
            ready = listener.get("/readyz")
            assert ready.status_code == 200, ready.text  # the load balancer keeps the node
            assert ready.json()["database"].startswith("unavailable")
            time.sleep(0.5)
        heard_during = _media_sequence(listener, space_id)
        metrics = listener.get("/metrics").text
    assert refused >= 5
    assert joined >= 5
    assert heard_during >= heard_before + 3  # about a segment every two seconds
    assert "podium_database_up 0.0" in metrics

    cluster.start()
    with node.client(host.token) as api:
        deadline = time.monotonic() + 15
        while True:
            again = api.post("/api/v1/spaces", json={"title": "After the outage"})
            if again.status_code == 201 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert again.status_code == 201, again.text
        assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
    with node.client() as anon:
        assert anon.get("/readyz").json() == {"status": "ready"}
    assert not any("Traceback" in line for line in node.stderr_lines), node.stderr_lines[-20:]
