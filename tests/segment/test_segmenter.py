"""The segmenter's cut, and its output decoded by FFmpeg as one fMP4 file."""

from __future__ import annotations

import itertools
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from segment_audio import FRAME, PROGRAM_START, RATE, Encoded

from podium.segment import AccessUnit, Part, Segmenter, init_segment


def segment_all(encoded: Encoded, **options: int) -> tuple[Segmenter, list[Part]]:
    segmenter = Segmenter(program_start=PROGRAM_START, **options)
    parts: list[Part] = []
    for unit in encoded.units:
        completed = segmenter.push(unit)
        assert len(completed) <= 1
        parts.extend(completed)
    parts.extend(segmenter.flush())
    return segmenter, parts


def decode(path: Path) -> np.ndarray:
    """FFmpeg's decoding of ``path`` as mono float32 samples at 48 kHz."""
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(pcm, dtype="<f4")


def packet_times(path: Path) -> list[int]:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=time_base,sample_rate,channels,codec_name,profile:packet=pts",
         "-of", "json", str(path)],
        capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    info = json.loads(probe)
    stream = info["streams"][0]
    assert (stream["codec_name"], stream["profile"]) == ("aac", "LC")
    assert (stream["sample_rate"], stream["channels"], stream["time_base"]) == (
        "48000",
        1,
        "1/48000",
    )
    return [int(packet["pts"]) for packet in info["packets"]]


def peak_frequency(samples: np.ndarray) -> float:
    window = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(window))
    return float(np.argmax(spectrum) * RATE / len(samples))


def test_cadence_of_parts_and_segments(tone_8s: Encoded) -> None:
    segmenter, parts = segment_all(tone_8s)
    total = sum(unit.duration for unit in tone_8s.units)
    # 8 s is 375 frames, plus the priming frame: 31 full parts of 12 and a last one of 4.
    assert len(tone_8s.units) == 376
    assert [part.duration for part in parts[:-1]] == [12 * FRAME] * 31
    assert parts[-1].duration == total - 31 * 12 * FRAME
    assert [(part.msn, part.index) for part in parts] == [(i // 8, i % 8) for i in range(32)]
    assert [part.closes_segment for part in parts] == [i % 8 == 7 for i in range(31)] + [True]
    assert all(part.independent for part in parts)
    # Parts tile program time exactly, from the priming frame's pts.
    assert parts[0].pts == tone_8s.units[0].pts == -FRAME
    for before, after in itertools.pairwise(parts):
        assert after.pts == before.end
    assert parts[5].program_date_time == Fraction(PROGRAM_START) + Fraction(parts[5].pts, RATE)
    assert parts[3].name == "part-0-3.m4s"
    assert segmenter.next_part == (4, 0)
    assert segmenter.flush() == []


def test_same_units_give_same_bytes(chirp_3s: Encoded) -> None:
    _, first = segment_all(chirp_3s)
    _, second = segment_all(chirp_3s)
    assert [part.data for part in first] == [part.data for part in second]


def test_custom_cadence_and_first_msn(chirp_3s: Encoded) -> None:
    _, parts = segment_all(chirp_3s, part_units=5, parts_per_segment=4, first_msn=10)
    assert parts[0].msn == 10
    assert {part.duration for part in parts[:-1]} == {5 * FRAME}
    assert [part.msn for part in parts[:8]] == [10] * 4 + [11] * 4


def test_rejects_holes_overlaps_and_pushes_after_flush() -> None:
    segmenter = Segmenter(program_start=PROGRAM_START)
    segmenter.push(AccessUnit(pts=0, data=b"\x01"))
    with pytest.raises(ValueError, match="expected 1024"):
        segmenter.push(AccessUnit(pts=2048, data=b"\x01"))
    with pytest.raises(ValueError, match="expected 1024"):
        segmenter.push(AccessUnit(pts=512, data=b"\x01"))
    with pytest.raises(ValueError, match="duration"):
        segmenter.push(AccessUnit(pts=1024, data=b"\x01", duration=2048))
    [last] = segmenter.flush()
    assert (last.msn, last.index, last.duration, last.closes_segment) == (0, 0, 1024, True)
    with pytest.raises(ValueError, match="ended"):
        segmenter.push(AccessUnit(pts=1024, data=b"\x01"))


@pytest.mark.parametrize("fixture", ["tone_8s", "chirp_3s"])
def test_init_plus_parts_decode_continuously(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    encoded: Encoded = request.getfixturevalue(fixture)
    _, parts = segment_all(encoded)
    path = tmp_path / "program.mp4"
    path.write_bytes(init_segment(encoded.asc, RATE, 1) + b"".join(part.data for part in parts))

    # Packet timestamps: one per access unit, back to back, from the fMP4 timeline's 0.
    times = packet_times(path)
    assert times == [FRAME * i for i in range(len(encoded.units))]

    samples = decode(path)
    # FFmpeg decodes whole frames; the priming frame comes first.
    assert len(samples) == FRAME * len(encoded.units)
    program = samples[FRAME : FRAME + len(encoded.signal)]
    if fixture == "tone_8s":
        assert peak_frequency(program[RATE : 7 * RATE]) == pytest.approx(1000, abs=2)
        rms = float(np.sqrt(np.mean(program[RATE : 7 * RATE] ** 2)))
        assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    if fixture == "tone_8s":
        return
    # The decoded chirp lines up with the input at lag 0 once the priming is removed (a
    # chirp, unlike a tone, has a single correlation peak).
    reference = encoded.signal[RATE // 2 : -RATE // 2]
    lags = range(-64, 65)
    scores = [
        float(np.dot(program[RATE // 2 + lag : RATE // 2 + lag + len(reference)], reference))
        for lag in lags
    ]
    assert lags[int(np.argmax(scores))] == 0
    correlation = max(scores) / float(
        np.linalg.norm(reference) * np.linalg.norm(program[RATE // 2 : RATE // 2 + len(reference)])
    )
    assert correlation > 0.95


def test_decode_origin_continues_the_track_timeline() -> None:
    segmenter = Segmenter(program_start=PROGRAM_START, part_units=1, decode_origin=-FRAME)
    [part] = segmenter.push(AccessUnit(pts=10 * FRAME, data=b"\x01"))
    tfdt_at = part.data.index(b"tfdt") + 8  # after type and version/flags
    assert int.from_bytes(part.data[tfdt_at : tfdt_at + 8], "big") == 11 * FRAME
    late = Segmenter(program_start=PROGRAM_START, decode_origin=0)
    with pytest.raises(ValueError, match="precedes decode origin"):
        late.push(AccessUnit(pts=-FRAME, data=b"\x01"))
