"""Signal helpers for end-to-end media tests: decode with ffmpeg, find tones and speech."""

from __future__ import annotations

import json
import subprocess
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from podium.demo import DIRECTORY
from podium.pcm import PcmFrame

RATE = 48_000
FIXTURES = DIRECTORY

Signal = npt.NDArray[np.float64]


@dataclass
class Heard:
    """What a speaker heard back over WebRTC (``podium speak``'s ``on_heard``), in order."""

    frames: list[Signal] = field(default_factory=list)

    def __call__(self, frame: PcmFrame) -> None:
        self.frames.append(frame.samples.astype(np.float64))

    def audio(self) -> Signal:
        return np.concatenate(self.frames) if self.frames else np.zeros(0)


def decode(url_or_path: str, *extra: str) -> Signal:
    """Decode any input ffmpeg reads to 48 kHz mono float samples."""
    result = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            *extra,
            "-i",
            url_or_path,
            "-f",
            "s16le",
            "-ac",
            "1",
            "-ar",
            str(RATE),
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return np.frombuffer(result.stdout, dtype=np.int16).astype(np.float64) / 32768.0


def packet_times(url_or_path: str) -> list[float]:
    """The pts, in seconds, of every audio packet as ffprobe reads them."""
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "json",
            url_or_path,
        ],
        capture_output=True,
        check=True,
        timeout=120,
        text=True,
    )
    return [float(p["pts_time"]) for p in json.loads(result.stdout)["packets"]]


def assert_continuous(times: list[float], step: float = 1024 / RATE) -> None:
    """Every packet follows the previous one by exactly one AAC frame: no holes, no
    overlaps, no jumps back."""
    steps = np.diff(np.asarray(times))
    bad = np.flatnonzero(np.abs(steps - step) > 1e-3)
    assert not len(bad), f"timestamp jumps at packets {bad[:5]}: {steps[bad[:5]]}"


def duration(url_or_path: str) -> float:
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            url_or_path,
        ],
        capture_output=True,
        check=True,
        timeout=60,
        text=True,
    )
    return float(result.stdout.strip())


def peak_hz(block: Signal) -> float:
    window = np.hanning(len(block))
    spectrum = np.abs(np.fft.rfft(block * window))
    return float(np.argmax(spectrum) * RATE / len(block))


def rms(block: Signal) -> float:
    return float(np.sqrt(np.mean(block**2))) if len(block) else 0.0


def loud_spans(signal: Signal, threshold: float = 0.02, hop: int = 960) -> list[tuple[int, int]]:
    """(start, end) sample ranges where the 20 ms RMS stays above ``threshold``."""
    frames = len(signal) // hop
    levels = np.sqrt(np.mean(signal[: frames * hop].reshape(frames, hop) ** 2, axis=1))
    spans: list[tuple[int, int]] = []
    start = None
    for i, loud in enumerate(levels > threshold):
        if loud and start is None:
            start = i
        elif not loud and start is not None:
            spans.append((start * hop, i * hop))
            start = None
    if start is not None:
        spans.append((start * hop, frames * hop))
    return spans


def best_alignment(haystack: Signal, needle: Signal) -> tuple[int, float]:
    """Offset of ``needle`` in ``haystack`` and the normalised correlation there."""
    assert len(needle) <= len(haystack), "the needle is longer than the haystack"
    size = 1 << int(np.ceil(np.log2(len(haystack) + len(needle))))
    spectrum = np.fft.rfft(haystack, size) * np.conj(np.fft.rfft(needle, size))
    correlation = np.fft.irfft(spectrum, size)[: len(haystack) - len(needle) + 1]
    offset = int(np.argmax(correlation))
    segment = haystack[offset : offset + len(needle)]
    norm = np.linalg.norm(segment) * np.linalg.norm(needle)
    return offset, float(correlation[offset] / norm) if norm else 0.0


def load_wav(path: Path) -> Signal:
    return decode(str(path))


def envelope(signal: Signal, hop: int = 960) -> Signal:
    """RMS of each 20 ms frame: the loudness contour of speech."""
    frames = len(signal) // hop
    return np.sqrt(np.mean(signal[: frames * hop].reshape(frames, hop) ** 2, axis=1))


def assert_contains_in_order(
    program: Signal, reference: Signal, chunk_seconds: float = 2.0, minimum: float = 0.85
) -> None:
    """Every ``chunk_seconds`` of ``reference`` is in ``program``, in order.

    Chunks are aligned one by one, so a speaker's jitter buffer re-anchoring mid-way (a
    shift of a few ticks, which a loaded test machine can cause) does not hide the rest.
    """
    size = int(chunk_seconds * RATE)
    offsets = []
    for start in range(0, len(reference) - size + 1, size):
        offset, correlation = best_alignment(program, reference[start : start + size])
        assert correlation > minimum, (
            f"reference {start / RATE:.1f}-{(start + size) / RATE:.1f} s is not in the "
            f"program (correlation {correlation:.2f})"
        )
        offsets.append(offset - start)
    drift = np.diff(np.asarray(offsets))
    assert np.all(np.abs(drift) < 0.25 * RATE), f"chunks out of place: {drift / RATE} s"


def tone_wav(path: Path, hz: float) -> Path:
    """A tone as a WAV file, for Chromium's fake microphone (it plays it on a loop)."""
    t = np.arange(RATE * 10) / RATE
    samples = (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())
    return path


def has_tones(block: np.ndarray, tones: tuple[float, ...]) -> bool:
    """Each tone stands 20 dB over the block's median spectrum."""
    spectrum = np.abs(np.fft.rfft(block * np.hanning(len(block))))
    floor = float(np.median(spectrum))
    hz = RATE / len(block)
    return all(
        spectrum[round(tone / hz) - 2 : round(tone / hz) + 3].max() > 10 * floor for tone in tones
    )
