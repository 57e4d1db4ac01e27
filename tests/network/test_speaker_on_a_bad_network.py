"""A speaker on a bad network: packets lost on the way, and a link cut for seconds.

The speaker is ``podium speak`` in a network namespace behind a NAT router
(:mod:`netlab`), where iptables loses a share of its UDP packets at random (this kernel
may have no netem), or cuts the link altogether. Speech goes in; the program (the
replay) is measured against the same recording, a second at a time: how well it still
correlates (printed, beside the same speech sent clean), and that nothing is missing for
long. A cut speaker comes back by itself, and the recording marks nothing.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from harness import Server, make_account, start_server
from media_signal import FIXTURES, RATE, Signal, best_alignment, envelope, load_wav
from netlab import SERVER_IP, NatNetwork, end_and_replay

PODIUM = [sys.executable, "-m", "podium"]
SPEECH = FIXTURES / "speech-01.wav"
FRAME = RATE // 50  # 20 ms, one Opus packet
CHUNK = RATE  # speech compared a second at a time
SEARCH = RATE // 2  # each second looked for this far either side of where it was due


@pytest.fixture(scope="module")
def server(network: NatNetwork, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server(
        tmp_path_factory.mktemp("bad-network") / "data",
        *("--host", SERVER_IP),
        env={"PODIUM_LOG_LEVEL": "warning", "PODIUM_SIGNIN_BURST": "1000"},
    )
    try:
        yield started
    finally:
        started.stop()


def _live_space(server: Server, title: str) -> tuple[str, str]:
    host = make_account(server, "lossy")
    with server.client(host.token) as api:
        space_id = str(api.post("/api/v1/spaces", json={"title": title}).json()["id"])
        assert api.post(f"/api/v1/spaces/{space_id}/start").status_code == 200
    return space_id, host.token


def _speak(network: NatNetwork, server: Server, space_id: str, token: str, *source: str) -> None:
    whip = f"{server.url}/api/v1/spaces/{space_id}/whip"
    spoken = subprocess.run(
        network.command(*PODIUM, "speak", whip, "--token", token, *source),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert spoken.returncode == 0, spoken.stderr[-3000:]


def _longest_dropout(program: Signal, speech: Signal) -> float:
    """The longest run (seconds) of 20 ms frames where the speech is loud and the
    program, aligned to it, has next to nothing of it."""
    said, heard = envelope(speech, FRAME), envelope(program, FRAME)
    loud = said > 0.1 * said.max()
    missing = loud & (heard < 0.1 * said)
    longest = run = 0
    for frame_missing in missing:
        run = run + 1 if frame_missing else 0
        longest = max(longest, run)
    return longest * FRAME / RATE


def _measure(program: Signal, speech: Signal) -> tuple[float, float]:
    """How much of ``speech`` the program carries: the correlation of each second of it
    with where it is in the program (each second found on its own, since a jitter buffer
    that grows for a bad line moves the rest later), weighted by the second's energy; and
    the longest dropout within any of them."""
    offset, _ = best_alignment(program, speech[: 2 * RATE])
    weighted = weights = 0.0
    longest = 0.0
    for start in range(0, len(speech) - CHUNK + 1, CHUNK):
        said = speech[start : start + CHUNK]
        energy = float(np.dot(said, said))
        if energy < 1e-3 * CHUNK * float(np.mean(speech**2)):
            continue  # a pause: nothing to compare
        expected = offset + start
        window = program[max(0, expected - SEARCH) : expected + CHUNK + SEARCH]
        if len(window) < CHUNK:
            break
        at, correlation = best_alignment(window, said)
        offset = max(0, expected - SEARCH) + at - start  # later seconds follow it
        heard = window[at : at + CHUNK]
        weighted += energy * correlation
        weights += energy
        longest = max(longest, _longest_dropout(heard, said))
    return weighted / weights, longest


@pytest.mark.timeout(300)
def test_speech_survives_lost_packets(network: NatNetwork, server: Server) -> None:
    speech = load_wav(SPEECH)
    measured: dict[float, tuple[float, float]] = {}
    for loss in (0.0, 0.05, 0.10, 0.20):
        network.lose(loss)
        try:
            space_id, token = _live_space(server, f"Loss {loss:.0%}")
            _speak(network, server, space_id, token, "--file", str(SPEECH), "--no-reconnect")
        finally:
            network.lose(0)
        time.sleep(1.5)  # what the room's jitter buffer still holds goes on the air
        program = end_and_replay(server, space_id, token)
        measured[loss] = _measure(program, speech)
    print({f"{loss:.0%}": f"r={r:.3f}, dropout {d:.2f} s" for loss, (r, d) in measured.items()})
    clean, _ = measured[0.0]
    assert clean >= 0.9, measured
    # The speaker is never dropped, however bad the line: speech is missing only where
    # packets were lost, never for long (a speaker cut off for good, or a receive path
    # that gave up on a stream with holes in it, would be missing for seconds).
    for loss, (_, dropout) in measured.items():
        assert dropout <= 0.5, (loss, measured)


def _tone_runs(program: Signal, hz: float) -> list[tuple[float, float]]:
    """Where (seconds) the tone ``hz`` is on the air, in 100 ms blocks."""
    block = RATE // 10
    t = np.arange(block) / RATE
    probe = np.exp(-2j * np.pi * hz * t)
    runs: list[tuple[float, float]] = []
    for i in range(len(program) // block):
        chunk = program[i * block : (i + 1) * block]
        on = abs(np.dot(chunk, probe)) / block > 0.05
        start = i / 10
        if on and runs and abs(runs[-1][1] - start) < 1e-9:
            runs[-1] = (runs[-1][0], start + 0.1)
        elif on:
            runs.append((start, start + 0.1))
    return runs


@pytest.mark.timeout(300)
def test_a_speaker_whose_link_is_cut_comes_back_by_itself(
    network: NatNetwork, server: Server
) -> None:
    space_id, token = _live_space(server, "Cut")
    whip = f"{server.url}/api/v1/spaces/{space_id}/whip"
    speaker = subprocess.Popen(
        network.command(*PODIUM, "speak", whip, "--token", token, "--tone", "440"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    cut = False
    try:
        time.sleep(6)
        network.cut(True)
        cut = True
        time.sleep(5)
        network.cut(False)
        cut = False
        time.sleep(12)
    finally:
        if cut:
            network.cut(False)
        speaker.terminate()
        _, speaker_err = speaker.communicate(timeout=30)
    program = end_and_replay(server, space_id, token)
    runs = _tone_runs(program, 440.0)
    assert len(runs) >= 2, runs
    longest_off = max(b[0] - a[1] for a, b in itertools.pairwise(runs))
    print(f"on the air {runs}; off at most {longest_off:.1f} s")
    # Off for the cut (5 s) and back within 5 s of its end; on the air to the end.
    assert longest_off <= 10.0, (runs, speaker_err[-2000:])
    assert runs[-1][1] - runs[-1][0] >= 12 - 5 - 1, runs
    assert "speak_reconnecting" in speaker_err, speaker_err[-2000:]
    # What listeners were told stays true: a speaker away is no recording lost.
    manifest = server.data_dir / "recordings" / space_id / "manifest.jsonl"
    kinds = [json.loads(line)["kind"] for line in manifest.read_text().splitlines()]
    assert "gap" not in kinds
