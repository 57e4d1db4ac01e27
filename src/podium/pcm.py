"""The PCM value that flows into the mixer, and the sample clock every stage shares.

Media time in Podium is counted in samples at :data:`SAMPLE_RATE`; a timestamp is an
``int`` and never a float of seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from podium.errors import InvalidInput

SAMPLE_RATE = 48_000
"""Samples per second on every media timeline (Opus and the program both run at 48 kHz)."""

TICK_SAMPLES = 960
"""Samples per mixer tick: 20 ms at 48 kHz, the usual Opus/WebRTC frame duration."""


@dataclass(frozen=True, slots=True)
class PcmFrame:
    """A run of mono PCM from one speaker.

    ``pts`` is the timestamp of ``samples[0]`` in samples at 48 kHz on the *speaker's own*
    timeline (e.g. the RTP timestamp): its origin is arbitrary and only differences between
    frames of the same speaker mean anything. ``samples`` is a 1-D float32 array, nominally in
    [-1, 1]; WebRTC frames are usually 960 samples long but any length of at least one
    sample is accepted.

    Raises :class:`~podium.errors.InvalidInput` if ``samples`` is not a non-empty 1-D
    float32 array.
    """

    pts: int
    samples: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        samples = self.samples
        if not isinstance(samples, np.ndarray) or samples.dtype != np.float32:
            raise InvalidInput("PCM frame samples must be a float32 numpy array")
        if samples.ndim != 1 or samples.shape[0] == 0:
            raise InvalidInput(
                f"PCM frame samples must be mono and non-empty, got shape {samples.shape}"
            )

    @property
    def end(self) -> int:
        """The timestamp just after the last sample: ``pts + len(samples)``."""
        return self.pts + int(self.samples.shape[0])
