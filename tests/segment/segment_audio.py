"""Real AAC-LC access units for the segment tests, encoded with PyAV's native ``aac``.

A uniquely named module (not ``conftest``) so test files can import it unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from podium.segment import AccessUnit

RATE = 48000
FRAME = 1024
# A fixed, arbitrary program start (2026-01-02T03:04:05.5Z) so dates are reproducible.
PROGRAM_START = 1767323045.5


@dataclass(frozen=True)
class Encoded:
    asc: bytes
    units: tuple[AccessUnit, ...]
    signal: np.ndarray


def encode(signal: np.ndarray) -> Encoded:
    """Encode mono float32 PCM at 48 kHz, 64 kbit/s, as the encode stage will."""
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate = RATE
    encoder.layout = "mono"
    encoder.format = "fltp"
    encoder.bit_rate = 64000
    encoder.time_base = Fraction(1, RATE)
    encoder.open()
    packets = []
    for start in range(0, len(signal), FRAME):
        chunk = signal[start : start + FRAME].astype(np.float32)
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = RATE
        frame.pts = start
        frame.time_base = Fraction(1, RATE)
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    units = []
    for packet in packets:
        assert packet.pts is not None
        assert packet.duration is not None
        units.append(AccessUnit(pts=packet.pts, data=bytes(packet), duration=packet.duration))
    assert encoder.extradata is not None
    return Encoded(bytes(encoder.extradata), tuple(units), signal)


def tone(seconds: float, frequency: float = 1000.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def chirp(seconds: float, start: float = 200.0, stop: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    # Linear chirp: instantaneous frequency goes from start to stop over the duration.
    phase = 2 * np.pi * (start * t + (stop - start) * t**2 / (2 * seconds))
    return (0.5 * np.sin(phase)).astype(np.float32)
