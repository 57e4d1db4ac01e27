"""The room state across web nodes: one document and one version sequence for the fleet,
a change made through one node wakes long polls on the others within a second, and
reactions sent to different nodes add up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetnodes import Fleet, start_fleet
from harness import make_account
from services import Postgres, Redis

WAKE_WITHIN_S = 1.0


@pytest.fixture
def fleet(postgres: Postgres, redis_server: Redis, tmp_path: Path) -> Iterator[Fleet]:
    # One public address for every node, as behind a load balancer: the document's links
    # are the same whichever node built it.
    started = start_fleet(
        postgres,
        redis_server,
        tmp_path,
        web=2,
        public_url="http://podium.invalid",
        long_poll_s="5",
    )
    yield started
    started.stop()


def _state(url: str, space_id: str, **params: Any) -> httpx.Response:
    answer = httpx.get(f"{url}/api/v1/spaces/{space_id}/state", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer


def _settled(nodes: list[str], space_id: str) -> dict[str, Any]:
    """The document once every node serves the same version of it."""
    deadline = time.monotonic() + 10
    while True:
        answers = [_state(url, space_id) for url in nodes]
        if len({a.headers["ETag"] for a in answers}) == 1:
            documents = [a.json() for a in answers]
            assert all(d == documents[0] for d in documents)
            return documents[0]
        assert time.monotonic() < deadline, [a.headers["ETag"] for a in answers]
        time.sleep(0.2)


def _live_space(fleet: Fleet, title: str) -> str:
    host = make_account(fleet.web[0], "room_host")
    with httpx.Client(base_url=fleet.web[0].url, timeout=10) as api:
        headers = {"Authorization": f"Bearer {host.token}"}
        space = api.post("/api/v1/spaces", json={"title": title}, headers=headers).json()
        assert api.post(f"/api/v1/spaces/{space['id']}/start", headers=headers).is_success
    return str(space["id"])


def test_a_change_on_one_node_wakes_long_polls_on_the_others(fleet: Fleet) -> None:
    first, second = (node.url for node in fleet.web)
    space_id = _live_space(fleet, "Shared")
    joined = httpx.post(f"{second}/api/v1/spaces/{space_id}/join", timeout=10).json()
    ticket = joined["ticket"]

    before = _settled([first, second], space_id)
    assert before["hands"]["count"] == 0
    time.sleep(2.0)  # the listener's join is in the audience figures by now

    # A listener of the second node long-polls, again and again, as the page does.
    seen: list[tuple[float, float, dict[str, Any]]] = []  # (asked, answered, document)
    stop = threading.Event()

    def follow_second() -> None:
        version = before["version"]
        while not stop.is_set():
            asked = time.monotonic()
            document = _state(second, space_id, after=version).json()
            seen.append((asked, time.monotonic(), document))
            version = document["version"]

    with ThreadPoolExecutor(1) as pool:
        following = pool.submit(follow_second)
        time.sleep(1.5)
        raised = httpx.post(
            f"{first}/api/v1/spaces/{space_id}/hand",
            json={"ticket": ticket, "name": "Listener"},
            timeout=10,
        )
        assert raised.is_success, raised.text
        changed_at = time.monotonic()
        deadline = changed_at + 10
        while not any(d["hands"]["count"] == 1 for _, _, d in seen):
            assert time.monotonic() < deadline, "the second node never showed the hand"
            time.sleep(0.05)
        stop.set()
        following.result(timeout=30)
    asked, answered, document = next(e for e in seen if e[2]["hands"]["count"] == 1)
    # The long poll was held on the second node before the change and woken by it.
    assert asked < changed_at
    assert answered - changed_at < WAKE_WITHIN_S
    assert document["version"] > before["version"]
    # The same version means the same document on every node.
    after = _settled([first, second], space_id)
    assert after["hands"]["count"] == 1
    assert after["version"] >= document["version"]


def test_reactions_sent_to_different_nodes_add_up(fleet: Fleet) -> None:
    first, second = (node.url for node in fleet.web)
    space_id = _live_space(fleet, "Claps")
    for n in range(6):
        node = (first, second)[n % 2]
        ticket = httpx.post(f"{node}/api/v1/spaces/{space_id}/join", timeout=10).json()["ticket"]
        sent = httpx.post(
            f"{node}/api/v1/spaces/{space_id}/reactions",
            json={"ticket": ticket, "emoji": "👏"},
            timeout=10,
        )
        assert sent.status_code == 202, sent.text
    deadline = time.monotonic() + 10
    while True:
        document = _settled([first, second], space_id)
        if document["reactions"]["totals"]["👏"] == 6:
            break
        assert time.monotonic() < deadline, document["reactions"]
        time.sleep(0.3)
    assert document["reactions"]["total"] == 6
    assert document["audience"]["concurrent"] == 6
