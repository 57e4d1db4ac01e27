"""Decoded WebRTC audio to :class:`~podium.pcm.PcmFrame`, and PCM back to frames.

aiortc's Opus decoder hands out packed ``s16`` stereo at 48 kHz, 960 samples a frame, with
``pts`` the RTP timestamp already unwrapped and rebased to 0 (its ``TimestampMapper``), in
a ``1/48000`` time base. :class:`FrameConverter` turns any decoded frame into mono float32
at 48 kHz: the common layouts (``s16``/``s16p``/``flt``/``fltp`` at 48 kHz) with numpy and
no delay, anything else through PyAV's resampler.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

from podium.errors import InvalidInput
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES, PcmFrame

_S16_SCALE = np.float32(1.0 / 32768.0)
TIME_BASE = Fraction(1, SAMPLE_RATE)


def mono_float32(frame: av.AudioFrame) -> npt.NDArray[np.float32]:
    """Samples of a 48 kHz ``s16``/``s16p``/``flt``/``fltp`` frame, channels averaged.

    Raises :class:`~podium.errors.InvalidInput` for another rate or sample format (use
    :class:`FrameConverter`, which resamples those).
    """
    if frame.sample_rate != SAMPLE_RATE:
        raise InvalidInput(f"expected {SAMPLE_RATE} Hz audio, got {frame.sample_rate} Hz")
    fmt = frame.format.name
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    if fmt in ("s16", "flt"):
        # Packed: one plane, channels interleaved.
        data = data.reshape(-1, channels).T
    elif fmt not in ("s16p", "fltp"):
        raise InvalidInput(f"unsupported sample format {fmt}")
    samples = data.astype(np.float32)
    if fmt.startswith("s16"):
        samples *= _S16_SCALE
    mono = samples.mean(axis=0, dtype=np.float32) if channels > 1 else samples[0]
    return np.ascontiguousarray(mono, dtype=np.float32)


class FrameConverter:
    """Turns one track's decoded frames into PCM frames on that track's own timeline.

    ``pts`` of the output is the input's ``pts`` converted to samples at 48 kHz (frames with
    no ``pts`` continue from the previous one). Frames at another rate or in another format
    go through a PyAV resampler, whose output ``pts`` is already in samples at 48 kHz.
    Not thread-safe; one per track.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._next_pts = 0

    def convert(self, frame: av.AudioFrame) -> list[PcmFrame]:
        """PCM frames for ``frame`` (usually one; none while a resampler fills up)."""
        if frame.sample_rate == SAMPLE_RATE and frame.format.name in ("s16", "s16p", "flt", "fltp"):
            return [self._emit(self._pts_of(frame), mono_float32(frame))]
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE)
        out: list[PcmFrame] = []
        for resampled in self._resampler.resample(frame):
            pts = resampled.pts if resampled.pts is not None else self._next_pts
            out.append(self._emit(int(pts), mono_float32(resampled)))
        return out

    def _pts_of(self, frame: av.AudioFrame) -> int:
        if frame.pts is None:
            return self._next_pts
        base = frame.time_base if frame.time_base is not None else Fraction(1, frame.sample_rate)
        return int(Fraction(frame.pts) * Fraction(base.numerator, base.denominator) * SAMPLE_RATE)

    def _emit(self, pts: int, samples: npt.NDArray[np.float32]) -> PcmFrame:
        self._next_pts = pts + samples.shape[0]
        return PcmFrame(pts=pts, samples=samples)


def s16_frame(samples: npt.NDArray[np.float32], pts: int) -> av.AudioFrame:
    """A mono ``s16`` 48 kHz frame of ``samples`` (clipped to [-1, 1]) at ``pts`` samples.

    ``s16`` because aiortc's Opus encoder accepts nothing else.
    """
    pcm = np.clip(samples, -1.0, 1.0) * 32767.0
    data = np.round(pcm).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


def silence(count: int = TICK_SAMPLES) -> npt.NDArray[np.float32]:
    """``count`` samples of digital silence."""
    return np.zeros(count, dtype=np.float32)
