"""The single-file replay as podcast apps and browsers fetch it: byte ranges (``Range``,
``206``, ``Accept-Ranges``, ``If-Range``), checked with curl, a client nobody here wrote;
a download cut off and resumed is the whole file, byte for byte."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx

from fleetnodes import eventually
from harness import Server
from podium.clients.speak import ToneSource, speak


def _curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=60, check=False)


def _status_and_headers(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers


def test_the_replay_answers_byte_ranges_and_resumes(server: Server, tmp_path: Path) -> None:
    token = server.owner_token
    with server.client(token) as api:
        space = api.post("/api/v1/spaces", json={"title": "Ranges"}).json()
        assert api.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
    asyncio.run(speak(space["whip_url"], token, ToneSource(700.0, 0.4), seconds=4.0))
    with server.client(token) as api:
        assert api.post(f"/api/v1/spaces/{space['id']}/end").status_code == 200
    url = f"{server.url}/hls/{space['id']}/replay.m4a"
    eventually(lambda: httpx.get(url, timeout=30).status_code == 200, within=30)
    whole = httpx.get(url, timeout=30)
    size = len(whole.content)
    assert whole.headers["accept-ranges"] == "bytes"
    assert size > 10_000

    heads = tmp_path / "head.txt"
    for asked, first, last in (
        ("0-99", 0, 99),  # the start (a player probing the file)
        (f"{size // 2}-{size // 2 + 999}", size // 2, size // 2 + 999),  # the middle (a seek)
        (f"{size - 500}-", size - 500, size - 1),  # an open end
    ):
        body = _curl("-r", asked, "-D", str(heads), url)
        status, headers = _status_and_headers(heads.read_bytes())
        assert status == 206, (asked, headers)
        assert headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert body.stdout == whole.content[first : last + 1]

    # A range past the end: 416, with the size, so the client knows what there is.
    _curl("-r", f"{size + 10}-{size + 20}", "-D", str(heads), "-o", "/dev/null", url)
    status, headers = _status_and_headers(heads.read_bytes())
    assert status == 416
    assert headers["content-range"] == f"bytes */{size}"

    # If-Range with the file's validator: the range; with another: the whole file.
    etag = whole.headers["etag"]
    ranged = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}, timeout=30)
    assert ranged.status_code == 206
    stale = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'}, timeout=30)
    assert stale.status_code == 200
    assert stale.content == whole.content

    # A download cut off part way, then resumed by curl (-C -): identical to a whole one.
    partial = tmp_path / "replay.m4a"
    partial.write_bytes(whole.content[: size // 3])
    resumed = _curl("-C", "-", "-o", str(partial), url)
    assert resumed.returncode == 0, resumed.stderr
    assert partial.read_bytes() == whole.content
