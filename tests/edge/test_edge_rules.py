"""The cache rules, the same behind a real Varnish and a real nginx, each configured by
`podium edge-config`: what every listener fetches is shared and cached as long as the
origin allows; writes, personal answers and errors are never cached; a short origin
outage does not stop what is cached from being served.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

import httpx
import pytest
from edges import Edge, end_space, live_hint, live_space, start_nginx, start_varnish

from harness import Server, start_server
from media_signal import RATE, decode

STALE_WAIT_S = 20


@pytest.fixture(scope="module")
def shared_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One origin for the tests that leave it running (each has a space of its own)."""
    running = start_server(
        tmp_path_factory.mktemp("edge-rules") / "data", env={"PODIUM_LOG_LEVEL": "warning"}
    )
    yield running
    running.stop()


@pytest.fixture(params=["varnish", "nginx"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _start(kind: str, origin: Server) -> Edge:
    return (start_varnish if kind == "varnish" else start_nginx)(origin.url)


@pytest.fixture
def edge(kind: str, shared_origin: Server) -> Iterator[Edge]:
    running = _start(kind, shared_origin)
    yield running
    running.stop()


@pytest.fixture
def space(shared_origin: Server) -> Iterator[dict[str, str]]:
    created = live_space(shared_origin)
    yield created
    end_space(shared_origin, created)


def _hit(response: httpx.Response) -> bool:
    return response.headers.get("x-cache") == "HIT"


def test_immutable_objects_come_from_the_cache(edge: Edge, space: dict[str, str]) -> None:
    init = f"{edge.url}/hls/{space['id']}/init.mp4"
    first = httpx.get(init)
    assert first.status_code == 200
    assert not _hit(first)
    again = httpx.get(init)
    assert _hit(again)
    assert again.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert again.content == first.content


def test_the_entry_point_comes_from_the_cache_and_plays(edge: Edge, space: dict[str, str]) -> None:
    """The multivariant playlist is shared like the init segment (it names the same media
    playlist all along), and ffmpeg plays the live space from it through the edge."""
    # ffmpeg needs a complete segment in the live playlist to start from.
    while live_hint(f"{edge.url}/hls/{space['id']}/live.m3u8")[0] < 1:
        time.sleep(0.2)
    entry = f"{edge.url}/hls/{space['id']}/index.m3u8"
    first = httpx.get(entry)
    assert first.status_code == 200, first.text
    assert 'CODECS="mp4a.40.2"' in first.text
    again = httpx.get(entry)
    assert _hit(again)
    assert again.text == first.text
    assert again.headers["cache-control"] == "public, max-age=60"
    played = decode(entry, "-t", "3")
    assert len(played) >= 2.5 * RATE, len(played) / RATE


def test_writes_and_personal_answers_pass_through(
    shared_origin: Server, edge: Edge, space: dict[str, str]
) -> None:
    joins = [httpx.post(f"{edge.url}/api/v1/spaces/{space['id']}/join") for _ in range(2)]
    assert [join.status_code for join in joins] == [200, 200]
    assert not any(_hit(join) for join in joins)
    assert joins[0].json()["ticket"] != joins[1].json()["ticket"]
    beacon = httpx.post(
        f"{edge.url}/api/v1/spaces/{space['id']}/beacon",
        json={"ticket": joins[0].json()["ticket"]},
    )
    assert beacon.status_code == 204
    me = f"{edge.url}/api/v1/me"
    token = shared_origin.owner_token
    owner = httpx.get(me, headers={"Authorization": f"Bearer {token}"})
    assert owner.json()["handle"] == "owner"
    # The owner's answer was not kept for the next person.
    assert httpx.get(me).status_code == 401


def test_a_part_asked_for_too_early_is_not_remembered_as_missing(
    edge: Edge, space: dict[str, str]
) -> None:
    msn, index = live_hint(f"{edge.url}/hls/{space['id']}/live.m3u8")
    # The part after the hinted one: the origin answers 404 at once (it holds only the
    # hinted part), and the edge must ask again once it exists.
    later = f"{edge.url}/hls/{space['id']}/part-{msn}-{index + 1}.m4s"
    early = httpx.get(later)
    if early.status_code == 404:
        assert early.headers["cache-control"] == "no-store"
    deadline = time.monotonic() + 10
    while (response := httpx.get(later)).status_code != 200:
        assert response.status_code == 404
        assert time.monotonic() < deadline, "the part never came through the edge"
        time.sleep(0.1)
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_blocking_reloads_and_room_state_are_cached_per_query(
    edge: Edge, space: dict[str, str]
) -> None:
    playlist = f"{edge.url}/hls/{space['id']}/live.m3u8"
    msn, index = live_hint(playlist)
    # Blocks at the origin until the hinted part exists, then is shared.
    reload = {"_HLS_msn": msn, "_HLS_part": index}
    first = httpx.get(playlist, params=reload, timeout=20)
    assert first.status_code == 200
    assert f'URI="part-{msn}-{index}.m4s"' in first.text
    again = httpx.get(playlist, params=reload)
    assert _hit(again)
    assert again.text == first.text
    other = httpx.get(playlist, params={"_HLS_msn": msn, "_HLS_part": index, "_HLS_skip": "YES"})
    assert not _hit(other)  # a delta update is another object
    state = f"{edge.url}/api/v1/spaces/{space['id']}/state"
    version = httpx.get(state).json()["version"]
    held = httpx.get(state, params={"after": version - 1})
    assert held.status_code == 200
    assert _hit(httpx.get(state, params={"after": version - 1}))


def test_made_up_origins_share_one_copy(edge: Edge, space: dict[str, str]) -> None:
    init = f"{edge.url}/hls/{space['id']}/init.mp4"
    first = httpx.get(init, headers={"Origin": "https://a.example"})
    assert first.headers["access-control-allow-origin"] == "*"
    other = httpx.get(init, headers={"Origin": "https://b.example"})
    assert _hit(other)
    assert other.headers["access-control-allow-origin"] == "*"


def test_playlists_are_compressed(edge: Edge, space: dict[str, str]) -> None:
    playlist = f"{edge.url}/hls/{space['id']}/live.m3u8"
    live_hint(playlist)
    with httpx.stream("GET", playlist, headers={"Accept-Encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        raw = b"".join(response.iter_raw())
    assert gzip.decompress(raw).startswith(b"#EXTM3U")
    plain = httpx.get(playlist, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.text.startswith("#EXTM3U")


def test_the_edge_serves_what_it_has_while_the_origin_is_down(kind: str, origin: Server) -> None:
    edge = _start(kind, origin)
    try:
        _serves_stale(origin, edge, live_space(origin))
    finally:
        edge.stop()


def _serves_stale(origin: Server, edge: Edge, space: dict[str, str]) -> None:
    base = f"{edge.url}/hls/{space['id']}"
    live_hint(f"{base}/live.m3u8")
    state = f"{edge.url}/api/v1/spaces/{space['id']}/state"
    playlist = httpx.get(f"{base}/live.m3u8")
    init = httpx.get(f"{base}/init.mp4")
    room = httpx.get(state)
    assert [r.status_code for r in (playlist, init, room)] == [200, 200, 200]
    origin.stop()
    # Past the playlist's and the state's one-second lifetime, the last good copies are
    # served (Varnish once its health probe has seen the origin fail).
    deadline = time.monotonic() + STALE_WAIT_S
    while (stale := httpx.get(f"{base}/live.m3u8")).status_code != 200:
        assert time.monotonic() < deadline, f"no stale playlist: {stale.status_code}"
        time.sleep(0.5)
    assert stale.text == playlist.text
    stale_room = httpx.get(state)
    assert stale_room.status_code == 200
    assert stale_room.json() == room.json()
    cached = httpx.get(f"{base}/init.mp4")
    assert cached.content == init.content
