"""Web nodes and a media node as separate processes: a speaker publishes through one web
node, listeners hear the program from every web node (each an origin, fed by the media
node over TCP), a web node started mid-space catches up, and the replay is served by any
of them. The media node's internal API answers only to the fleet's secret."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fleetnodes import Fleet, eventually, start_fleet
from harness import make_account
from media_signal import RATE, decode, peak_hz
from podium.clients.speak import ToneSource, speak
from services import Postgres, Redis

TONE = 660.0
SPEAK_S = 14.0


@pytest.fixture
def fleet(postgres: Postgres, redis_server: Redis, tmp_path: Path) -> Iterator[Fleet]:
    started = start_fleet(postgres, redis_server, tmp_path, web=2)
    yield started
    started.stop()


def _playlist(url: str) -> str:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.text


def _parts(playlist: str) -> list[str]:
    return [
        line.split('URI="')[1].split('"')[0]
        for line in playlist.splitlines()
        if line.startswith("#EXT-X-PART:")
    ]


def test_every_web_node_is_an_origin_for_the_media_nodes_space(fleet: Fleet) -> None:
    first, second = fleet.web
    host = make_account(first, "fleet_speaker")
    with first.client(host.token) as api:
        space = api.post("/api/v1/spaces", json={"title": "Split"}).json()
        started = api.post(f"/api/v1/spaces/{space['id']}/start")
        assert started.status_code == 200, started.text
    space_id = space["id"]

    async def talk() -> None:
        # Through the other web node: the WHIP endpoint is the space's, on any node.
        await speak(
            f"{second.url}/api/v1/spaces/{space_id}/whip",
            host.token,
            ToneSource(TONE, 0.3),
            seconds=SPEAK_S,
        )

    async def scenario() -> np.ndarray:
        speaking = asyncio.create_task(talk())
        await asyncio.sleep(SPEAK_S / 3)
        # A third web node, started mid-space, catches up from the media node's feed;
        # ffmpeg listens through it while the speaker still talks.
        late = await asyncio.to_thread(fleet.add_web, "web-late")
        heard = await asyncio.to_thread(decode, f"{late.url}/hls/{space_id}/live.m3u8", "-t", "3")
        await speaking
        return heard

    program = asyncio.run(scenario())
    late = fleet.extra[0]
    nodes = [first, second, late]
    # Every web node serves the live playlist from its own origin, with the media node's
    # numbering: the same recent parts, byte for byte.
    recent = None
    for node in nodes:
        parts = _parts(_playlist(f"{node.url}/hls/{space_id}/live.m3u8"))
        assert len(parts) >= 8, node.url
        recent = parts[-8:-4] if recent is None else recent
        for name in recent:
            here = httpx.get(f"{node.url}/hls/{space_id}/{name}", timeout=10)
            there = httpx.get(f"{fleet.media.url}/hls/{space_id}/{name}", timeout=10)
            assert here.status_code == 200, (node.url, name, here.text)
            assert here.content == there.content
    # What a listener of the late node heard is the tone.
    assert len(program) > RATE * 2
    block = program[RATE // 2 : RATE * 5 // 2]
    assert abs(peak_hz(block) - TONE) < 10
    assert float(np.sqrt(np.mean(block**2))) > 0.05

    with first.client(host.token) as api:
        assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
    # The replay, from any web node: the media node has the recording, the web nodes
    # pass it on.
    eventually(
        lambda: httpx.get(f"{second.url}/hls/{space_id}/replay.m4a", timeout=10).status_code == 200
    )
    replay = httpx.get(f"{second.url}/hls/{space_id}/replay.m4a", timeout=30)
    original = httpx.get(f"{fleet.media.url}/hls/{space_id}/replay.m4a", timeout=30)
    assert replay.content == original.content
    # A podcast app's seek goes through the web node to the media node and back.
    ranged = httpx.get(
        f"{second.url}/hls/{space_id}/replay.m4a", headers={"Range": "bytes=100-199"}, timeout=30
    )
    assert ranged.status_code == 206
    assert ranged.content == original.content[100:200]
    assert ranged.headers["content-range"].startswith("bytes 100-199/")
    ended = _playlist(f"{late.url}/hls/{space_id}/live.m3u8")
    assert "#EXT-X-ENDLIST" in ended
    heard = decode(f"{first.url}/hls/{space_id}/replay.m4a")
    loud = np.flatnonzero(np.abs(heard) > 0.05)
    assert (loud[-1] - loud[0]) / RATE > SPEAK_S - 4

    for node in [fleet.media, *nodes]:
        assert not any("Traceback" in line for line in node.stderr_lines), node.stderr_lines


def test_the_media_nodes_internal_api_wants_the_secret(fleet: Fleet) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-secret"}):
        for path in ("/internal/media/feed", "/internal/media/status"):
            answer = httpx.get(f"{fleet.media.url}{path}", headers=headers, timeout=10)
            assert answer.status_code == 401, answer.text
    secret = fleet.env["PODIUM_MEDIA_SECRET"]
    answer = httpx.get(
        f"{fleet.media.url}/internal/media/status",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
    assert answer.status_code == 200
    assert "rooms" in answer.json()
    # A web node has no internal API of its own.
    web = httpx.get(f"{fleet.web[0].url}/internal/media/status", timeout=10)
    assert web.status_code == 404


def test_every_sample_of_a_fleet_node_carries_its_name(fleet: Fleet) -> None:
    for node, name in ((fleet.web[0], "web-1"), (fleet.media, "media-1")):
        text = httpx.get(f"{node.url}/metrics", timeout=10).text
        samples = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert len(samples) > 10
        for line in samples:
            assert '{node="' in line or ',node="' in line, line
        assert f'podium_node_info{{node="{name}",' in text
    # A web node says whether its media node answers (once it follows it: a web node
    # starts serving without waiting for it), not the media node's rooms.
    eventually(
        lambda: (
            'podium_media_worker_up{node="web-1"} 1.0'
            in httpx.get(f"{fleet.web[0].url}/metrics", timeout=10).text
        )
    )
