"""The verifiable archive: a replay checked with ``podium verify`` against the signed
hash chain its server sealed when the space ended. The untouched replay verifies, as
the M4A, as HLS and from the space's page; each way of editing it is caught and located;
an archive altered to match, or signed with a key the server does not publish, is
refused; a recording with a gap verifies with the gap named."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetnodes import eventually
from harness import PODIUM, Server, make_account
from podium.clients.speak import ToneSource, speak
from podium.record import archive
from podium.record.export import export_m4a
from podium.record.manifest import GapLine, parse, render
from podium.record.recorder import MANIFEST_FILE


def _ended_space(server: Server, token: str, hz: float, seconds: float) -> str:
    with server.client(token) as api:
        space = api.post("/api/v1/spaces", json={"title": f"Archive {hz:.0f} Hz"}).json()
        assert api.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
    asyncio.run(speak(space["whip_url"], token, ToneSource(hz, 0.4), seconds=seconds))
    with server.client(token) as api:
        assert api.post(f"/api/v1/spaces/{space['id']}/end").status_code == 200
    archive_url = f"{server.url}/hls/{space['id']}/archive.json"
    eventually(lambda: httpx.get(archive_url, timeout=30).status_code == 200, within=30)
    return str(space["id"])


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PODIUM, "verify", *args], capture_output=True, text=True, timeout=120, check=False
    )


def _packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as source:
        return [p for p in source.demux(source.streams.audio[0]) if p.size]


def _write(original: Path, out: Path, payloads: list[bytes]) -> Path:
    """An M4A of the given audio frames, in the original's stream format."""
    with av.open(str(original)) as source:
        template = source.streams.audio[0]
        with av.open(str(out), "w", format="ipod") as sink:
            stream = sink.add_stream_from_template(template)
            for n, payload in enumerate(payloads):
                packet = av.Packet(payload)
                packet.pts = packet.dts = n * 1024
                packet.duration = 1024
                packet.time_base = Fraction(1, 48_000)
                packet.stream = stream
                sink.mux(packet)
    return out


def _parts(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in document["entries"] if e["kind"] == "part"]


def _spans(document: dict[str, Any]) -> list[tuple[int, int]]:
    """Each part's frames: (first, end) indices into the replay's packets."""
    spans, at = [], 0
    for entry in _parts(document):
        spans.append((at, at + int(entry["frames"])))
        at += int(entry["frames"])
    return spans


def test_an_unedited_replay_verifies_and_every_edit_is_caught(
    server: Server, tmp_path: Path
) -> None:
    host = make_account(server, "archivist")
    space_id = _ended_space(server, host.token, 600.0, 6.0)
    other_id = _ended_space(server, host.token, 900.0, 2.0)
    base = f"{server.url}/hls/{space_id}"
    document = httpx.get(f"{base}/archive.json", timeout=30).json()
    keys = httpx.get(f"{server.url}/.well-known/podium-archive-keys.json", timeout=30).json()
    assert keys["keys"][0]["public_key"] == document["public_key"]
    assert document["space"] == space_id
    assert document["gaps"] == 0

    # Untouched: as the M4A, as HLS, from the space's page.
    for url in (f"{base}/replay.m4a", f"{base}/index.m3u8", f"{server.url}/s/{space_id}"):
        checked = _verify(url)
        assert checked.returncode == 0, (url, checked.stdout, checked.stderr)
        assert checked.stdout.startswith("UNEDITED"), checked.stdout
        assert "The recording has no gap." in checked.stdout
        assert f"Signed by {server.url}" in checked.stdout
    assert "byte for byte" in _verify(f"{base}/replay.m4a").stdout
    findings = json.loads(_verify(f"{base}/replay.m4a", "--json").stdout)
    assert findings["unedited"] is True
    assert findings["signer_trusted"] is True

    original = tmp_path / "replay.m4a"
    original.write_bytes(httpx.get(f"{base}/replay.m4a", timeout=30).content)
    saved = tmp_path / "archive.json"
    saved.write_bytes(httpx.get(f"{base}/archive.json", timeout=30).content)
    frames = [bytes(p) for p in _packets(original)]
    spans = _spans(document)
    assert len(frames) == spans[-1][1]
    k = len(spans) // 2  # the part every edit touches
    name = f"part {_parts(document)[k]['msn']}.{_parts(document)[k]['index']}"
    other = tmp_path / "other.m4a"
    other.write_bytes(httpx.get(f"{server.url}/hls/{other_id}/replay.m4a", timeout=30).content)
    stranger = [bytes(p) for p in _packets(other)]
    middle = len(stranger) // 2  # in its tone, where no frame is like any of this space's

    def cut(*pieces: tuple[int, int]) -> list[bytes]:
        return [frame for start, end in pieces for frame in frames[start:end]]

    first, end = spans[k]
    altered = bytearray(frames[first])
    altered[len(altered) // 2] ^= 0x40
    edits = {
        "altered": ([*frames[:first], bytes(altered), *frames[first + 1 :]], name, "not any part"),
        "dropped": (cut((0, first), (end, len(frames))), name, "moved or repeated"),
        "repeated": (cut((0, end), (first, len(frames))), _next(document, k), "moved or repeated"),
        "moved": (
            cut((0, first), spans[k + 1], (first, end), (spans[k + 1][1], len(frames))),
            name,
            "moved or repeated",
        ),
        "from another space": (
            [*frames[:first], *stranger[middle : middle + end - first], *frames[end:]],
            name,
            "not any part",
        ),
    }
    for what, (payloads, where, why) in edits.items():
        edited = _write(original, tmp_path / f"{what}.m4a", payloads)
        checked = _verify(str(edited), "--archive", f"{base}/archive.json")
        assert checked.returncode == 1, (what, checked.stdout, checked.stderr)
        assert checked.stdout.startswith("NOT THE RECORDING"), (what, checked.stdout)
        assert "differs from the recording at" in checked.stdout, (what, checked.stdout)
        assert where in checked.stdout, (what, where, checked.stdout)
        assert why in checked.stdout, (what, checked.stdout)

    # Cut at the end: it says where the file stops.
    short = _write(original, tmp_path / "short.m4a", frames[: spans[-2][0]])
    checked = _verify(
        str(short),
        "--archive",
        str(saved),
        "--keys",
        f"{server.url}/.well-known/podium-archive-keys.json",
    )
    assert checked.returncode == 1
    assert "the file ends early" in checked.stdout, checked.stdout
    # The same audio in another file (remuxed): its audio is the recording's.
    remuxed = _write(original, tmp_path / "remuxed.m4a", frames)
    checked = _verify(str(remuxed), "--archive", str(saved))
    assert checked.returncode == 0, checked.stdout
    assert "its audio is the recording's, frame for frame" in checked.stdout
    assert "compare the key" in checked.stdout  # a local archive, no server's keys asked

    # An archive altered to match an edit: its chain or signature gives it away.
    forged = json.loads(saved.read_text())
    forged["entries"][k]["audio_sha256"] = "0" * 64
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    checked = _verify(f"{base}/replay.m4a", "--archive", str(tmp_path / "forged.json"))
    assert checked.returncode == 1
    assert "the archive's entries were altered" in checked.stdout, checked.stdout
    forged["head"] = "f" * 64
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    checked = _verify(f"{base}/replay.m4a", "--archive", str(tmp_path / "forged.json"))
    assert "signature does not match" in checked.stdout, checked.stdout
    # Signed anew with a key of one's own: not the server's.
    copy = tmp_path / "resealed"
    shutil.copytree(server.data_dir / "recordings" / space_id, copy)
    archive.seal(copy, space_id, Ed25519PrivateKey.generate(), server.url, 0.0)
    checked = _verify(f"{base}/replay.m4a", "--archive", str(copy / "archive.json"))
    assert checked.returncode == 1
    assert "a key the server does not publish" in checked.stdout, checked.stdout

    # Not checkable: clear words, status 2.
    unreadable = _verify(str(tmp_path / "nothing.m4a"), "--archive", str(saved))
    assert unreadable.returncode == 2
    assert "cannot check" in unreadable.stderr
    assert _verify(str(original)).returncode == 2  # a file needs --archive
    live_id = _live_space(server, host.token)
    assert "has not ended" in httpx.get(f"{server.url}/hls/{live_id}/archive.json").text
    with server.client(host.token) as api:
        assert api.post(f"/api/v1/spaces/{live_id}/end").status_code == 200


def _next(document: dict[str, Any], k: int) -> str:
    entry = _parts(document)[k + 1]
    return f"part {entry['msn']}.{entry['index']}"


def _live_space(server: Server, token: str) -> str:
    with server.client(token) as api:
        space = api.post("/api/v1/spaces", json={"title": "Still on"}).json()
        assert api.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
    return str(space["id"])


def test_a_recording_with_a_gap_verifies_with_the_gap_named(server: Server, tmp_path: Path) -> None:
    host = make_account(server, "gapped")
    space_id = _ended_space(server, host.token, 700.0, 5.0)
    # The recording as a crash leaves it: segment 1 never written, a gap in its place,
    # the parts after it from the encoder that ran after the restart.
    directory = tmp_path / space_id
    shutil.copytree(server.data_dir / "recordings" / space_id, directory)
    (directory / "archive.json").unlink()
    (directory / "replay.m4a").unlink()
    lines = [parse(raw + b"\n") for raw in (directory / MANIFEST_FILE).read_bytes().splitlines()]
    lost = [line for line in lines if getattr(line, "msn", None) == 1]
    assert lost
    gap = GapLine(1, sum(int(line.duration) for line in lost), lost[0].pdt)
    kept = []
    for line in lines:
        if line in lost:
            if line is lost[0]:
                kept.append(gap)
            continue
        assert line is not None
        kept.append(line)
    (directory / MANIFEST_FILE).write_bytes(b"".join(render(line) for line in kept))
    export_m4a(directory)
    key = Ed25519PrivateKey.generate()
    document = archive.seal(directory, space_id, key, server.url, 0.0)
    assert document["gaps"] == 1
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps({"keys": [{"public_key": archive.b64(archive.public_bytes(key.public_key()))}]})
    )
    checked = _verify(
        str(directory / "replay.m4a"),
        "--archive",
        str(directory / "archive.json"),
        "--keys",
        str(keys),
    )
    assert checked.returncode == 0, checked.stdout
    assert "The recording itself has 1 gap(s):" in checked.stdout
    assert "for 2.0 s: the recording was interrupted here" in checked.stdout
    assert "into the space" in checked.stdout.split("gap(s):")[1]


@pytest.mark.parametrize("raw", [b"", b"{}", b"[1]", b'{"format": "podium-archive/1"}'])
def test_a_malformed_archive_is_refused_in_words(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "archive.json"
    path.write_bytes(raw)
    replay = tmp_path / "replay.m4a"
    replay.write_bytes(b"\0" * 64)
    checked = _verify(str(replay), "--archive", str(path))
    assert checked.returncode == 2
    assert "cannot check" in checked.stderr
    assert "Traceback" not in checked.stderr
