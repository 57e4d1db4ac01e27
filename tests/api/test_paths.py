"""Ids taken from request paths stay ids: whatever a WHIP resource id holds ("/", dot
segments, control characters), it names one resource of one space on the media worker and
nothing else there; and nothing under /hls names a file outside a space's program."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import pytest

from harness import Account, Server, assert_problem


def _parts(server: Server, space_id: str) -> int:
    playlist = httpx.get(f"{server.url}/hls/{space_id}/live.m3u8", timeout=10)
    assert playlist.status_code == 200, playlist.text
    assert "#EXT-X-ENDLIST" not in playlist.text
    return playlist.text.count("#EXT-X-PART:")


def _wait_for_parts(server: Server, space_id: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = httpx.get(f"{server.url}/hls/{space_id}/live.m3u8", timeout=10)
        if response.status_code == 200 and "#EXT-X-PART:" in response.text:
            return
        time.sleep(0.2)
    pytest.fail("the live space never published a part")


@pytest.mark.parametrize(
    "resource_id",
    ["..", ".", "../../rooms/{space}", "a/b", "\x1a\x00", "%2e%2e", " "],
    ids=["dot-dot", "dot", "escape-to-room", "slash", "control", "encoded-dots", "space"],
)
def test_hostile_whip_resource_ids_name_nothing_else(
    server: Server, account: Account, resource_id: str
) -> None:
    with server.client(account.token) as host:
        space = host.post("/api/v1/spaces", json={"title": "Paths"}).json()
        assert host.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
        _wait_for_parts(server, space["id"])
        # The id goes in the request path as one segment: "/" and "." sent escaped.
        segment = quote(resource_id.format(space=space["id"]), safe="").replace(".", "%2E")
        url = f"/api/v1/spaces/{space['id']}/whip/{segment}"
        assert_problem(host.delete(url), 404)
        patched = host.patch(
            url,
            content="a=candidate:1 1 udp 1 192.0.2.1 9 typ host\r\n",
            headers={"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*"},
        )
        assert_problem(patched, 404)
        # The room the escaped id pointed at still broadcasts.
        before = _parts(server, space["id"])
        deadline = time.monotonic() + 20
        while _parts(server, space["id"]) <= before:
            assert time.monotonic() < deadline, "the program stopped"
            time.sleep(0.2)
        assert host.post(f"/api/v1/spaces/{space['id']}/end").status_code == 200


HLS_TRICKS = [
    "/hls/{space}/..%2f..%2fsecret.key",
    "/hls/{space}/%2e%2e%2f%2e%2e%2fpodium.sqlite3",
    "/hls/{space}/..%5c..%5csecret.key",
    "/hls/..%2f..%2f/live.m3u8",
    "/hls/%2e%2e/secret.key",
    "/hls/{space}/init.mp4%00.m3u8",
    "/hls/{space}/%2fetc%2fpasswd",
    "/hls/{space}/program.m3u8",
    "/hls/{space}/seg-0.m4s%2f..%2f..%2f..%2fsecret.key",
]


def test_path_tricks_under_hls_find_nothing(server: Server, account: Account) -> None:
    with server.client(account.token) as host:
        space = host.post("/api/v1/spaces", json={"title": "HLS paths"}).json()
        assert host.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
        _wait_for_parts(server, space["id"])
        key = (server.data_dir / "secret.key").read_text().strip()
        try:
            for trick in HLS_TRICKS:
                # Sent as written: the client must not resolve the dots itself.
                url = httpx.URL(server.url + trick.format(space=space["id"]))
                answer = httpx.get(url, timeout=10)
                assert answer.status_code in (400, 404), (trick, answer.status_code)
                assert key not in answer.text, trick
                assert "root:" not in answer.text, trick
                assert "SQLite format" not in answer.text, trick
        finally:
            assert host.post(f"/api/v1/spaces/{space['id']}/end").status_code == 200
