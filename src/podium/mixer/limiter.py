"""A soft-knee peak limiter without look-ahead, for a live sum of up to 13 voices.

Guarantee: every output sample satisfies ``|y| <= ceiling``, whatever the input (13
full-scale speakers in phase sum to +22 dBFS). Signals whose peaks stay below the knee pass
through bit-identical once the gain has recovered.

How: a static soft-knee curve says how loud each input peak may come out::

    out(p) = p                                          p <= knee
    out(p) = knee + (ceiling - knee) * tanh((p - knee) / (ceiling - knee))   p > knee

which has slope 1 at the knee (no corner to hear) and approaches the ceiling without ever
reaching it. The gain each sample *needs* is ``out(|x|) / |x|``; the gain *applied* takes
any reduction at once (attack 0 — without look-ahead that is the only way to guarantee the
ceiling) and lets it decay exponentially with the ``release`` time constant, so the gain
never jumps up and loud passages are not torn by a gain that follows every waveform peak.

In terms of the gain reduction ``r = 1 - gain`` that is the recursion::

    r[n] = max(r_needed[n], a * r[n - 1]),   a = exp(-1 / (release * sample_rate))

and because ``a`` is constant it unrolls to a running maximum, which numpy computes for a
whole block (and every channel) at once::

    r[n] = a**n * max(a * r[-1], max_{k <= n} r_needed[k] * a**-k)

The ceiling of -1 dBFS leaves 1 dB for the overshoot of lossy coding and of reconstruction
between samples (EBU R 128 asks for -1 dBTP for the same reason).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from podium.errors import ConfigError, InvalidInput
from podium.pcm import SAMPLE_RATE

# Below this the remaining gain reduction is inaudible and under float32 resolution: snap
# it to zero so a signal below the knee comes out bit-identical after a limiting episode.
_SNAP = 1e-7
# a**-k must stay finite in float32 (max 3e38); blocks are split to keep it under this.
_MAX_GROWTH = 1e30


def db_to_linear(db: float) -> float:
    """Amplitude ratio for a level in dB: ``10 ** (db / 20)``."""
    return float(10.0 ** (db / 20.0))


class Limiter:
    """Limits ``channels`` independent signals, carrying each one's gain across blocks.

    ``ceiling_dbfs`` (-1 dBFS = 0.891) bounds every output sample. ``knee_db`` (3 dB) is
    where the soft curve starts below the ceiling (-4 dBFS = 0.631): normally levelled
    speech passes untouched. ``release_ms`` (100 ms) is the time constant of gain recovery:
    long enough not to modulate a voice's pitch periods, short enough not to duck the next
    word audibly.

    Raises :class:`~podium.errors.ConfigError` on parameters that cannot work.
    """

    __slots__ = (
        "_a",
        "_ceiling",
        "_channels",
        "_chunk",
        "_knee",
        "_powers",
        "_reduction",
        "_span",
    )

    def __init__(
        self,
        channels: int = 1,
        *,
        ceiling_dbfs: float = -1.0,
        knee_db: float = 3.0,
        release_ms: float = 100.0,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if channels < 1:
            raise ConfigError("a limiter needs at least one channel")
        if not ceiling_dbfs <= 0.0 or not knee_db > 0.0:
            raise ConfigError("limiter ceiling must be <= 0 dBFS and knee > 0 dB")
        if not release_ms > 0.0 or sample_rate <= 0:
            raise ConfigError("limiter release and sample rate must be positive")
        self._channels = channels
        self._ceiling = db_to_linear(ceiling_dbfs)
        self._knee = db_to_linear(ceiling_dbfs - knee_db)
        self._span = self._ceiling - self._knee
        self._a = math.exp(-1000.0 / (release_ms * sample_rate))
        self._chunk = max(1, int(math.log(_MAX_GROWTH) / -math.log(self._a)))
        self._reduction = np.zeros(channels, dtype=np.float32)
        self._powers: dict[int, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = {}

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def ceiling(self) -> float:
        """The linear ceiling no output sample exceeds."""
        return self._ceiling

    @property
    def gain(self) -> npt.NDArray[np.float32]:
        """The current gain of each channel, 1.0 when not limiting (a copy)."""
        return 1.0 - self._reduction

    def reset(self, channel: int | None = None) -> None:
        """Forget the gain history of one channel (or all): it starts again at gain 1."""
        if channel is None:
            self._reduction[:] = 0.0
        else:
            self._reduction[channel] = 0.0

    def process(
        self,
        block: npt.NDArray[np.float32],
        channels: npt.NDArray[np.intp] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Limit the next block and return it as a new float32 array of the same shape.

        ``block`` is ``(channels, n)``, or ``(n,)`` for a one-channel limiter. ``channels``
        optionally names which channel each row of ``block`` belongs to (distinct indices),
        so a caller can limit only the signals that exist this tick; channels not named keep
        their state untouched. Consecutive calls are one continuous signal per channel, so
        splitting a signal into blocks does not change the result beyond float rounding.

        Raises :class:`~podium.errors.InvalidInput` if the shape does not match.
        """
        x = np.asarray(block, dtype=np.float32)
        flat = x.ndim == 1
        rows = x[np.newaxis, :] if flat else x
        count = self._channels if channels is None else len(channels)
        if rows.ndim != 2 or rows.shape[0] != count:
            raise InvalidInput(f"limiter expects {count} row(s), got block shape {x.shape}")
        magnitude = np.abs(rows)
        over = magnitude > self._knee
        state = self._reduction if channels is None else self._reduction[channels]
        if not over.any() and not state.any():
            return x.copy()
        # Dense float32 arithmetic in place, no boolean masks: below the knee the excess is
        # 0, so the shaped peak is exactly the knee and the reduction needed exactly 0.
        knee = np.float32(self._knee)
        span = np.float32(self._span)
        needed: npt.NDArray[np.float32] = np.empty(rows.shape, dtype=np.float32)
        np.subtract(magnitude, knee, out=needed)
        np.maximum(needed, np.float32(0.0), out=needed)
        np.divide(needed, span, out=needed)
        np.tanh(needed, out=needed)
        np.multiply(needed, span, out=needed)
        np.add(needed, knee, out=needed)  # out(|x|), the shaped peak
        np.divide(needed, np.maximum(magnitude, knee), out=needed)
        np.subtract(np.float32(1.0), needed, out=needed)
        reduction: npt.NDArray[np.float32] = np.empty(rows.shape, dtype=np.float32)
        n = rows.shape[1]
        for lo in range(0, n, self._chunk):
            hi = min(n, lo + self._chunk)
            reduction[:, lo:hi], state = self._release(needed[:, lo:hi], state)
        if channels is None:
            self._reduction = state
        else:
            self._reduction[channels] = state
        np.subtract(np.float32(1.0), reduction, out=reduction)
        np.multiply(reduction, rows, out=reduction)
        # The gain already keeps |y| below the ceiling; the clip only absorbs float32
        # rounding, a few ulps at most.
        y = np.clip(reduction, -self._ceiling, self._ceiling, out=reduction)
        return y.reshape(y.shape[-1]) if flat else y

    def _release(
        self, needed: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Gain reduction for one chunk from the reduction needed and the state before it."""
        grow, decay = self._pows(needed.shape[1])
        held = np.maximum.accumulate(needed * grow, axis=1)
        np.maximum(held, (state * self._a)[:, np.newaxis], out=held)
        reduction: npt.NDArray[np.float32] = held * decay
        last = reduction[:, -1]
        return reduction, np.where(last < _SNAP, 0.0, last)

    def _pows(self, n: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        cached = self._powers.get(n)
        if cached is None:
            k = np.arange(n, dtype=np.float64)
            cached = ((self._a**-k).astype(np.float32), (self._a**k).astype(np.float32))
            if len(self._powers) < 8:  # block sizes are few (960, 1024); don't grow unbounded
                self._powers[n] = cached
        return cached
