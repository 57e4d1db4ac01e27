"""Several media nodes behind the web tier: spaces are placed on them by load, each one's
speakers and listeners use the space's URLs on any web node, and a media node that loses
a space's lease stops writing it at once (fenced), taking it back only once it is free."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from fleetnodes import Fleet, eventually, lease, start_fleet, start_space
from harness import PODIUM, Server, make_account
from media_signal import RATE, decode, peak_hz
from podium.clients.speak import ToneSource, speak
from services import Postgres, Redis

SPACES = 10
SPEAK_S = 10.0


@pytest.fixture
def fleet(postgres: Postgres, redis_server: Redis, tmp_path: Path) -> Iterator[Fleet]:
    # media-1 offers one core to rooms, media-2 three: media-2 should take about three
    # rooms for each of media-1's.
    started = start_fleet(
        postgres,
        redis_server,
        tmp_path,
        web=3,
        media=2,
        media_env=[{"PODIUM_MEDIA_CORES": "1"}, {"PODIUM_MEDIA_CORES": "3"}],
    )
    yield started
    started.stop()


def _internal(fleet: Fleet, node: Server, method: str, path: str) -> httpx.Response:
    secret = fleet.env["PODIUM_MEDIA_SECRET"]
    return httpx.request(
        method,
        f"{node.url}/internal/media{path}",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )


def _rooms(fleet: Fleet) -> dict[str, set[str]]:
    """The rooms each media node's worker runs, by node name."""
    return {
        f"media-{n}": set(_internal(fleet, node, "GET", "/status").json()["rooms"])
        for n, node in enumerate(fleet.media_nodes, 1)
    }


def _follow_both(fleet: Fleet) -> bool:
    with fleet.web[0].client(fleet.owner) as api:
        nodes = api.get("/api/v1/admin/fleet").json()["nodes"]
    follows = [n["load"].get("follows") for n in nodes if n["role"] == "web"]
    return len(follows) == 3 and all(f == ["media-1", "media-2"] for f in follows)


def test_spaces_are_placed_by_load_and_heard_through_any_web_node(
    fleet: Fleet, redis_server: Redis
) -> None:
    eventually(lambda: _follow_both(fleet), within=30)
    host = make_account(fleet.web[0], "placed_host")
    ids = []
    for n in range(SPACES):
        with fleet.web[n % 3].client(host.token) as api:
            space = api.post("/api/v1/spaces", json={"title": f"Room {n}"}).json()
            started = api.post(f"/api/v1/spaces/{space['id']}/start")
            assert started.status_code == 200, started.text
            ids.append(space["id"])
    rooms = _rooms(fleet)
    assert rooms["media-1"] | rooms["media-2"] == set(ids)
    assert not rooms["media-1"] & rooms["media-2"]
    # Shares follow what each node offers: a quarter and three quarters, give or take
    # one room for the load measured while they were placed.
    assert 2 <= len(rooms["media-1"]) <= 4, rooms
    assert len(rooms["media-2"]) >= 6, rooms
    # Each space's lease names the node that runs it.
    for node, spaces in rooms.items():
        for space_id in spaces:
            assert lease(redis_server.url, space_id)["node"] == node

    # One space on each node, a tone into each through different web nodes; a listener
    # of a third web node hears each space's own tone.
    tones = {sorted(rooms["media-1"])[0]: 440.0, sorted(rooms["media-2"])[0]: 660.0}

    async def scenario() -> dict[str, np.ndarray]:
        speakers = [
            asyncio.create_task(
                speak(
                    f"{fleet.web[1 + i].url}/api/v1/spaces/{space_id}/whip",
                    host.token,
                    ToneSource(tone, 0.3),
                    seconds=SPEAK_S,
                )
            )
            for i, (space_id, tone) in enumerate(tones.items())
        ]
        await asyncio.sleep(SPEAK_S / 3)
        heard = {
            space_id: await asyncio.to_thread(
                decode, f"{fleet.web[0].url}/hls/{space_id}/live.m3u8", "-t", "3"
            )
            for space_id in tones
        }
        await asyncio.gather(*speakers)
        return heard

    heard = asyncio.run(scenario())
    for space_id, tone in tones.items():
        block = heard[space_id][RATE // 2 : RATE * 5 // 2]
        assert len(block) == RATE * 2, space_id
        assert abs(peak_hz(block) - tone) < 10, space_id

    # Ended through a web node, each replay comes from the node that recorded it.
    for space_id in tones:
        with fleet.web[2].client(host.token) as api:
            assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
    for n, space_id in enumerate(tones, 1):
        recorded_by = fleet.media_nodes[n - 1]
        url = f"{fleet.web[0].url}/hls/{space_id}/replay.m4a"
        eventually(lambda url=url: httpx.get(url, timeout=10).status_code == 200)
        original = httpx.get(f"{recorded_by.url}/hls/{space_id}/replay.m4a", timeout=30)
        served = httpx.get(url, timeout=30).content
        assert served == original.content, _copies_differ(fleet, recorded_by, space_id)
        # Sealed where it was recorded; checked through a web node, by its page's address.
        checked = subprocess.run(
            [*PODIUM, "verify", f"{fleet.web[1].url}/s/{space_id}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert checked.returncode == 0, (checked.stdout, checked.stderr)
        assert "byte for byte" in checked.stdout
        # Its episode, in the host's feed on any web node, gives the replay's true size.
        feed = f"{fleet.web[2].url}/hosts/{host.handle}/feed.xml"
        enclosure = f'url="{fleet.web[2].url}/hls/{space_id}/replay.m4a" length="{len(served)}"'
        eventually(lambda feed=feed, enclosure=enclosure: enclosure in httpx.get(feed).text)
        assert lease(redis_server.url, space_id) == {}  # given up with the room
    for node in [*fleet.media_nodes, *fleet.web]:
        assert not any("Traceback" in line for line in node.stderr_lines), node.stderr_lines


def _copies_differ(fleet: Fleet, recorded_by: Server, space_id: str) -> str:
    """Why a web node's replay is not the recording node's: their manifests side by side."""
    lines = []
    for name, manifest in [
        (recorded_by.url, recorded_by.data_dir / "recordings" / space_id / "manifest.jsonl"),
        *((web.url, web.data_dir / "replicas" / space_id / "manifest.jsonl") for web in fleet.web),
    ]:
        if manifest.exists():
            kinds = Counter(json.loads(line)["kind"] for line in manifest.read_text().splitlines())
            lines.append(f"{name}: {dict(kinds)}")
        else:
            lines.append(f"{name}: no manifest")
    degraded = [line for line in recorded_by.stderr_lines if "recording_degraded" in line]
    return "\n".join([*lines, *degraded[:3]])


def _manifest_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def test_a_media_node_that_loses_a_lease_stops_writing_and_takes_it_back_when_free(
    fleet: Fleet, redis_server: Redis
) -> None:
    eventually(lambda: _follow_both(fleet), within=30)
    host = make_account(fleet.web[0], "fenced_host")
    placed = start_space(fleet, redis_server.url, host.token, "Fenced")
    space_id, holder, other, other_name = (
        placed.space_id,
        placed.holder,
        placed.other,
        placed.other_name,
    )
    node = "media-1" if other_name == "media-2" else "media-2"
    manifest = holder.data_dir / "recordings" / space_id / "manifest.jsonl"
    # A segment recorded, and on every web node.
    eventually(lambda: manifest.exists() and manifest.read_text().count('"part"') >= 8)
    # Another node is made the holder (as a standby taking over would): a lease that
    # outlasts the test.
    with redis.Redis.from_url(redis_server.url) as client:
        client.hset(f"podium:lease:{space_id}", mapping={"node": "media-9", "token": 10**6})
        client.pexpire(f"podium:lease:{space_id}", 60_000)
    eventually(lambda: space_id not in _rooms(fleet)[node], within=10)
    stopped = _manifest_size(manifest)
    time.sleep(3)
    assert _manifest_size(manifest) == stopped  # not one more part written
    # No node starts a room for a space whose lease another holds.
    refused = _internal(fleet, other, "POST", f"/rooms/{space_id}")
    assert refused.status_code == 409, refused.text
    assert "media-9" in refused.json()["detail"]
    assert space_id not in _rooms(fleet)[other_name]
    # Once the lease is free again, the node that recorded the space takes it back and
    # resumes its recording after a marked gap.
    with redis.Redis.from_url(redis_server.url) as client:
        client.delete(f"podium:lease:{space_id}")
    eventually(lambda: space_id in _rooms(fleet)[node], within=10)
    eventually(lambda: _manifest_size(manifest) > stopped)
    assert lease(redis_server.url, space_id)["node"] == node
    url = f"{fleet.web[1].url}/hls/{space_id}/live.m3u8"
    # The lost span is marked, and the program goes on after it, on every web node.
    eventually(lambda: "#EXT-X-DISCONTINUITY" in httpx.get(url, timeout=10).text)
    playlist = httpx.get(url, timeout=10).text
    assert "#EXT-X-GAP" in playlist
    eventually(
        lambda: (
            httpx.get(url, timeout=10).text.split("#EXT-X-DISCONTINUITY")[1].count("#EXT-X-PART:")
            >= 4
        )
    )
    with fleet.web[0].client(host.token) as api:
        assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
    assert '"end"' in manifest.read_text().splitlines()[-1]
