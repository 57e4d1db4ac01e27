"""A media node drained during a live space (``podium fleet drain NODE``), as an operator
does before an upgrade: the space moves to the other media node on the program's own
clock, with no gap in the program, the playlist or the recording; the speaker publishes
again by itself; then the drained node is stopped and the space goes on."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect, sync_playwright

from fleetnodes import (
    Fleet,
    eventually,
    lease,
    live_space_with_guest,
    manifest_parts,
    power_cut,
    speakers_on,
    start_space,
)
from harness import Server, make_account
from media_signal import RATE, decode, has_tones, loud_spans, tone_wav
from services import Redis
from webapp.webapp_browser import WAIT_MS, host_on_stage, launch, watch_publishing

PODIUM = [sys.executable, "-m", "podium"]
TONE_HZ = 440.0  # podium speak's
PAGE_TONE_HZ = 1000.0  # the host's, from the console page in Chromium


def _node(fleet: Fleet, name: str) -> Server:
    return fleet.media_nodes[int(name.removeprefix("media-")) - 1]


def _longest_absence(audio: np.ndarray, hz: float, block_s: float = 0.1) -> float:
    """Seconds of the longest run of blocks without the tone, between its first and last."""
    size = int(RATE * block_s)
    present = [has_tones(audio[i : i + size], (hz,)) for i in range(0, len(audio) - size, size)]
    first, last = present.index(True), len(present) - 1 - present[::-1].index(True)
    longest = run = 0
    for here in present[first : last + 1]:
        run = 0 if here else run + 1
        longest = max(longest, run)
    return longest * block_s


def _podium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PODIUM, *args], capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.mark.timeout(400)
def test_draining_a_media_node_moves_its_live_space_with_no_gap(
    fleet: Fleet, redis_server: Redis, tmp_path: Path
) -> None:
    host = make_account(fleet.web[0], "drain_host")
    guest = make_account(fleet.web[0], "drain_guest")
    space_id = live_space_with_guest(fleet, host.token, guest.token, "Drained")
    drained_name = lease(redis_server.url, space_id)["node"]
    drained = _node(fleet, drained_name)
    other_name = "media-1" if drained_name == "media-2" else "media-2"
    other = _node(fleet, other_name)
    owner_token = tmp_path / "owner.token"
    owner_token.write_text(fleet.owner)
    admin = ("--server", fleet.web[0].url, "--token-file", str(owner_token))

    speaker = subprocess.Popen(
        [
            *PODIUM,
            *("speak", f"{fleet.web[1].url}/api/v1/spaces/{space_id}/whip"),
            *("--token", guest.token, "--tone", str(TONE_HZ)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    heard_raw = tmp_path / "listener.raw"
    listener: subprocess.Popen[str] | None = None
    recording = drained.data_dir / "recordings" / space_id / "manifest.jsonl"
    playwright = sync_playwright().start()
    browser = launch(playwright, tone_wav(tmp_path / "host.wav", PAGE_TONE_HZ))
    try:
        console, errors = host_on_stage(
            browser, fleet.web[0].url, host.handle, host.password, space_id
        )
        publishing_notes = watch_publishing(console)
        eventually(lambda: len(speakers_on(fleet, drained, space_id)) == 2, within=30)
        base = len(manifest_parts(recording))
        eventually(lambda: len(manifest_parts(recording)) >= base + 16, within=30)
        # A listener on a web node, following the live playlist until its end.
        listener = subprocess.Popen(
            [
                *("ffmpeg", "-v", "error", "-i", f"{fleet.web[0].url}/hls/{space_id}/live.m3u8"),
                *("-f", "s16le", "-ac", "1", "-ar", str(RATE), str(heard_raw)),
            ],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(4)

        asked = time.monotonic()
        drain = _podium("fleet", "drain", drained_name, *admin)
        drained_in = time.monotonic() - asked
        assert drain.returncode == 0, drain.stderr
        assert f"moved {space_id} to {other_name}" in drain.stdout, drain.stdout
        assert f"{drained_name} holds no space now" in drain.stdout, drain.stdout
        assert lease(redis_server.url, space_id)["node"] == other_name
        # Both speakers publish again by themselves, and land on the other node.
        eventually(lambda: len(speakers_on(fleet, other, space_id)) == 2, within=15)
        back = time.monotonic() - asked
        expect(console.locator("#speaker-conn")).to_have_text("Connected", timeout=WAIT_MS)

        # The operator sees the node draining; a space that goes live now goes elsewhere.
        status = _podium("fleet", "status", "--json", *admin)
        assert status.returncode == 0, status.stderr
        nodes = {node["id"]: node for node in json.loads(status.stdout)["nodes"]}
        assert nodes[drained_name]["draining"] is True
        assert nodes[drained_name]["spaces"] == []
        assert nodes[other_name]["spaces"] == [space_id]
        with fleet.web[1].client(host.token) as api:
            later = api.post("/api/v1/spaces", json={"title": "Later"}).json()["id"]
            assert api.post(f"/api/v1/spaces/{later}/start").status_code == 200
        assert lease(redis_server.url, later)["node"] == other_name

        # The drained node is stopped (for its upgrade); the space goes on without it.
        drained.stop()
        time.sleep(5)
        # What a drain refuses, in words: the last media node (its spaces could go
        # nowhere), a web node, a node that is not there; and anyone but an administrator.
        refused = _podium("fleet", "drain", other_name, *admin)
        assert refused.returncode != 0
        assert f"no other media node could take the spaces of {other_name}" in refused.stderr
        refused = _podium("fleet", "drain", "web-1", *admin)
        assert "only media nodes hold spaces" in refused.stderr, refused.stderr
        refused = _podium("fleet", "drain", "media-9", *admin)
        assert "no node named 'media-9'" in refused.stderr, refused.stderr
        with fleet.web[0].client(host.token) as api:
            path = f"/api/v1/admin/fleet/nodes/{drained_name}/drain"
            assert api.post(path).status_code == 403
        cancelled = _podium("fleet", "drain", drained_name, "--cancel", *admin)
        assert cancelled.stdout.strip() == f"{drained_name} takes spaces again", cancelled
        with fleet.web[0].client(host.token) as api:
            state = api.get(f"/api/v1/spaces/{space_id}/state").json()
            assert state["recording"] == "ok", state
            assert state["interruption"] is None, state  # nothing was lost
            assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
            assert api.post(f"/api/v1/spaces/{later}/end").status_code == 200
        listener_err = listener.communicate(timeout=60)[1]  # it stops at the ENDLIST
        assert not errors, errors
        publishing = publishing_notes()
    finally:
        browser.close()
        playwright.stop()
        speaker.send_signal(signal.SIGINT)
        _, speaker_err = speaker.communicate(timeout=30)
        if listener is not None:
            listener.kill()
    print(f"drain command took {drained_in:.1f} s; both speakers were back after {back:.1f} s")
    print("the page's speaker:", "; ".join(publishing))

    # The recording, on the node that went on: one program, part after part, sample after
    # sample, no gap; every part the drained node made is in it, byte for byte.
    moved = other.data_dir / "recordings" / space_id / "manifest.jsonl"
    kinds = [json.loads(line)["kind"] for line in moved.read_text().splitlines()]
    assert "gap" not in kinds, "nothing lost: no gap"
    parts = manifest_parts(moved)
    for before, after in itertools.pairwise(parts):
        assert int(str(after["pts"])) == int(str(before["pts"])) + int(str(before["duration"]))
        expected_pdt = Fraction(str(before["pdt"])) + Fraction(int(str(before["duration"])), RATE)
        assert Fraction(str(after["pdt"])) == expected_pdt
    made_there = {(p["msn"], p["index"], p["sha256"]) for p in manifest_parts(recording)}
    assert made_there <= {(p["msn"], p["index"], p["sha256"]) for p in parts}
    assert len(parts) > len(made_there)
    # What listeners are served: the same one program, no gap, no discontinuity.
    for web in fleet.web:
        playlist = httpx.get(f"{web.url}/hls/{space_id}/live.m3u8", timeout=10).text
        assert "#EXT-X-ENDLIST" in playlist
        assert "#EXT-X-GAP" not in playlist
        assert "#EXT-X-DISCONTINUITY" not in playlist

    # By the signal, in the replay and in what the listener played: both speakers before
    # the handover and after it; the only silence is the speakers' way to the new node.
    replay = f"{fleet.web[1].url}/hls/{space_id}/replay.m4a"
    eventually(lambda: httpx.get(replay, timeout=30).status_code == 200, within=30)
    assert listener.returncode == 0, listener_err
    played = np.frombuffer(heard_raw.read_bytes(), dtype="<i2").astype(np.float64) / 32768
    recorded = decode(replay)
    # Where the handover is in the replay: the first part the other node made.
    handed = next(p for p in parts if (p["msn"], p["index"], p["sha256"]) not in made_there)
    at = int(str(handed["pts"])) - int(str(parts[0]["pts"]))
    both = (TONE_HZ, PAGE_TONE_HZ)
    assert has_tones(recorded[at - 3 * RATE : at - RATE], both), "on the air before it"
    assert has_tones(recorded[at + 2 * RATE : at + 4 * RATE], both), "and after it"
    for audio in (recorded, played):
        spans = loud_spans(audio)
        silences = [(spans[i + 1][0] - spans[i][1]) / RATE for i in range(len(spans) - 1)]
        absent = {hz: _longest_absence(audio, hz) for hz in both}
        print(f"longest silence {max(silences):.2f} s; each speaker's longest absence {absent}")
        assert max(silences) < 2.0, spans
        # Each speaker was off the air only while publishing again, at the handover.
        # (0.2-1.2 s measured; a failover takes them 10 s.)
        assert all(seconds < 2.5 for seconds in absent.values()), (absent, publishing)
        assert has_tones(audio[spans[-1][1] - 2 * RATE : spans[-1][1] - RATE], both)
    assert "speak_reconnecting" in speaker_err, speaker_err[-2000:]
    for line in [*drained.stderr_lines, *other.stderr_lines]:
        if "handed_over" in line or "taken_on" in line:
            print(line)
    # The other node had copied the recording while the room still ran: at the handover
    # it fetched only the parts made since (under a segment's and a half's worth).
    taken_on = next(json.loads(line) for line in other.stderr_lines if "space_taken_on" in line)
    assert taken_on["fetched_at_handover"] <= 12 < taken_on["parts"], taken_on
    for node in [other, *fleet.web]:
        assert not any("Traceback" in line for line in node.stderr_lines), node.stderr_lines


@pytest.mark.timeout(300)
def test_a_drain_whose_other_node_dies_leaves_the_space_on_air_with_no_gap(
    fleet: Fleet, redis_server: Redis
) -> None:
    host = make_account(fleet.web[0], "drain_fault_host")
    placed = start_space(fleet, redis_server.url, host.token, "Drain fault")
    space_id, holder = placed.space_id, placed.holder
    holder_name = lease(redis_server.url, space_id)["node"]
    own = holder.data_dir / "recordings" / space_id / "manifest.jsonl"
    eventually(lambda: len(manifest_parts(own)) >= 16, within=30)
    # The only node the space could go to dies just as the drain is asked.
    power_cut(placed.other)
    with fleet.web[0].client(fleet.owner) as api:
        asked = api.post(f"/api/v1/admin/fleet/nodes/{holder_name}/drain")
        assert asked.status_code == 202, asked.text
    # The node stops its room at the segment's end, hands the lease over, hears nothing
    # back, takes the lease back and goes on, on the program's clock; or, if it sees
    # first that the other node stopped beating, stops nothing at all.
    events = ("drain_handover_failed", "drain_target_gone", "drain_no_other_node")
    eventually(lambda: any(e in line for line in holder.stderr_lines for e in events), 30)
    eventually(lambda: lease(redis_server.url, space_id).get("node") == holder_name, 15)
    made = len(manifest_parts(own))
    eventually(lambda: len(manifest_parts(own)) >= made + 16, within=30)
    print([line for line in holder.stderr_lines if any(e in line for e in events)][:1])

    lines = [json.loads(line) for line in own.read_text().splitlines()]
    assert "gap" not in [line["kind"] for line in lines], "nothing lost: no gap"
    parts = manifest_parts(own)
    for before, after in itertools.pairwise(parts):
        assert int(str(after["pts"])) == int(str(before["pts"])) + int(str(before["duration"]))
    for web in fleet.web:
        playlist = httpx.get(f"{web.url}/hls/{space_id}/live.m3u8", timeout=10).text
        assert "#EXT-X-GAP" not in playlist
        assert "#EXT-X-DISCONTINUITY" not in playlist
    with fleet.web[0].client(host.token) as api:
        state = api.get(f"/api/v1/spaces/{space_id}/state").json()
        assert state["recording"] == "ok", state
        assert state["interruption"] is None, state
        assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
