"""Per-speaker level meters: RMS and peak in dBFS each tick, and a steady "talking" flag.

dBFS here is relative to a full-scale *square* wave: a full-scale sine reads -3.01 dBFS RMS
and 0 dBFS peak. Digital silence reads :data:`FLOOR_DBFS` rather than minus infinity, so a
level is always a finite number that JSON and Prometheus can carry.

The talking flag is what a listener's UI lights up, so it must not flicker with every
syllable or breath. It turns on after the RMS has stayed at or above ``on_dbfs`` for
``attack`` samples (a click or a cough is not talk), stays on while the RMS is at or above
the lower ``off_dbfs`` (hysteresis), and turns off only after ``hold`` samples continuously
below it (the gaps between words do not count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from podium.errors import ConfigError
from podium.pcm import SAMPLE_RATE

FLOOR_DBFS = -120.0
"""The level reported for silence; below the noise floor of any real microphone chain."""

_FLOOR_POWER = 10.0 ** (FLOOR_DBFS / 10.0)


@dataclass(frozen=True, slots=True)
class Level:
    """One speaker's level over one tick."""

    rms_dbfs: float
    peak_dbfs: float
    talking: bool


def measure_dbfs(
    block: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """RMS and peak level in dBFS along the last axis of ``block``, floored at FLOOR_DBFS.

    Works on one signal ``(n,)`` (0-d results) or many ``(rows, n)`` at once (the mixer
    measures every speaker of a tick in one call).
    """
    x = np.asarray(block, dtype=np.float32)
    power = np.einsum("...i,...i->...", x, x, dtype=np.float64) / max(1, x.shape[-1])
    peak = np.abs(x).max(axis=-1).astype(np.float64) if x.shape[-1] else np.zeros(x.shape[:-1])
    rms_db = 10.0 * np.log10(np.maximum(power, _FLOOR_POWER))
    peak_db = 20.0 * np.log10(np.maximum(peak, 10.0 ** (FLOOR_DBFS / 20.0)))
    return rms_db, peak_db


class LevelMeter:
    """Turns per-tick RMS/peak into :class:`Level` values with a hysteretic talking flag.

    Defaults: on at -40 dBFS RMS held for 40 ms, off below -50 dBFS for 400 ms. Conversational
    speech into a WebRTC microphone (AGC on) sits around -20 to -30 dBFS RMS and room noise
    below -55, so -40/-50 separates them with margin on both sides; 400 ms bridges the pauses
    between words but not between turns.

    Raises :class:`~podium.errors.ConfigError` if ``off_dbfs > on_dbfs`` or a time is negative.
    """

    __slots__ = ("_above", "_attack", "_below", "_hold", "_off", "_on", "_talking")

    def __init__(
        self,
        *,
        on_dbfs: float = -40.0,
        off_dbfs: float = -50.0,
        attack: int = SAMPLE_RATE // 25,
        hold: int = SAMPLE_RATE * 2 // 5,
    ) -> None:
        if off_dbfs > on_dbfs:
            raise ConfigError("the talking off threshold must not be above the on threshold")
        if attack < 0 or hold < 0:
            raise ConfigError("talking attack and hold must not be negative")
        self._on = on_dbfs
        self._off = off_dbfs
        self._attack = attack
        self._hold = hold
        self._talking = False
        self._above = 0  # samples continuously at or above the on threshold
        self._below = 0  # samples continuously below the off threshold

    @property
    def talking(self) -> bool:
        return self._talking

    def reset(self) -> None:
        """Back to not talking with no history (a speaker muted or removed)."""
        self._talking = False
        self._above = 0
        self._below = 0

    def update(self, rms_dbfs: float, peak_dbfs: float, samples: int) -> Level:
        """Account one block of ``samples`` samples measured at ``rms_dbfs``/``peak_dbfs``."""
        self._above = self._above + samples if rms_dbfs >= self._on else 0
        self._below = self._below + samples if rms_dbfs < self._off else 0
        if self._talking:
            if self._below >= self._hold and self._below > 0:
                self._talking = False
        elif self._above >= self._attack and self._above > 0:
            self._talking = True
        return Level(rms_dbfs=rms_dbfs, peak_dbfs=peak_dbfs, talking=self._talking)

    def measure(self, block: npt.NDArray[np.float32]) -> Level:
        """Measure a 1-D block and account it; the convenience form of :meth:`update`."""
        rms_db, peak_db = measure_dbfs(block)
        return self.update(float(rms_db), float(peak_db), int(block.shape[-1]))
