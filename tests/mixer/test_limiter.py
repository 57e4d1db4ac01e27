"""The limiter, by its signal: the ceiling holds, quiet audio is untouched, gain is smooth."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest

from podium.errors import ConfigError, InvalidInput
from podium.mixer.limiter import Limiter
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES

CEILING = 10 ** (-1 / 20)  # -1 dBFS


def tone(
    freq: float, seconds: float, amplitude: float, phase: float = 0.0
) -> npt.NDArray[np.float32]:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def in_ticks(limiter: Limiter, signal: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    blocks = [
        limiter.process(signal[..., i : i + TICK_SAMPLES])
        for i in range(0, signal.shape[-1], TICK_SAMPLES)
    ]
    return np.concatenate(blocks, axis=-1)


def test_thirteen_full_scale_speakers_never_exceed_the_ceiling() -> None:
    rng = np.random.default_rng(3)
    voices = [tone(100 + 97 * i, 2.0, 1.0, phase=rng.uniform(0, 6.3)) for i in range(12)]
    voices.append(rng.uniform(-1, 1, 2 * SAMPLE_RATE).astype(np.float32))  # and one noise
    total: npt.NDArray[np.float32] = np.sum(np.stack(voices), axis=0, dtype=np.float32)
    assert np.abs(total).max() > 5  # the raw sum is far over full scale
    out = in_ticks(Limiter(), total)
    assert np.abs(out).max() <= CEILING
    assert np.abs(out).max() > 0.8 * CEILING  # limited, not muted
    # In phase, the worst case: 13 identical full-scale tones.
    worst = in_ticks(Limiter(), 13 * tone(1000, 0.5, 1.0))
    assert np.abs(worst).max() <= CEILING


def test_a_quiet_speaker_passes_bit_identical() -> None:
    speech_like = tone(220, 1.0, 0.3) + tone(1700, 1.0, 0.2)  # peaks 0.5, below the knee
    np.testing.assert_array_equal(in_ticks(Limiter(), speech_like), speech_like)


def test_gain_recovers_with_the_release_time_constant_then_is_exactly_one() -> None:
    limiter = Limiter(release_ms=100.0)
    in_ticks(limiter, tone(1000, 0.2, 4.0))  # hard limiting
    reduction = 1.0 - float(limiter.gain[0])
    assert reduction > 0.7
    in_ticks(limiter, np.zeros(SAMPLE_RATE // 10, dtype=np.float32))  # 100 ms of silence
    assert 1.0 - float(limiter.gain[0]) == pytest.approx(reduction * math.exp(-1), rel=1e-3)
    in_ticks(limiter, np.zeros(2 * SAMPLE_RATE, dtype=np.float32))
    assert float(limiter.gain[0]) == 1.0  # recovered completely: no lingering attenuation
    quiet = tone(440, 0.1, 0.4)
    np.testing.assert_array_equal(in_ticks(limiter, quiet), quiet)


def test_gain_only_falls_at_once_and_rises_smoothly() -> None:
    # A quiet tone, then 12 dB louder, then quiet again: the gain must not jump up.
    signal = np.concatenate([tone(500, 0.2, 0.3), tone(500, 0.3, 1.2), tone(500, 0.5, 0.3)])
    out = in_ticks(Limiter(release_ms=100.0), signal)
    assert np.abs(out).max() <= CEILING
    valid = np.abs(signal) > 0.05
    gain = out[valid] / signal[valid]
    step_up = np.diff(gain).max()
    # Between two samples kept (at most ~1 ms apart at 500 Hz) the gain may rise by at most
    # the release slope: 1 - exp(-1 ms / 100 ms) = 1 %.
    assert step_up < 0.011
    assert gain.min() < 0.8  # and it did limit: 1.2 comes out at 0.885


def test_blocks_of_any_size_give_the_same_signal() -> None:
    rng = np.random.default_rng(5)
    signal = (rng.standard_normal(SAMPLE_RATE) * 0.8).astype(np.float32)
    whole = Limiter().process(signal)
    limiter = Limiter()
    cuts = [0, 1, 17, 960, 3000, 3001, 20000, SAMPLE_RATE]
    pieces = [limiter.process(signal[a:b]) for a, b in itertools.pairwise(cuts)]
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6)


def test_channels_are_independent_and_can_be_processed_by_subset() -> None:
    limiter = Limiter(channels=3)
    loud = tone(300, 0.1, 3.0)
    quiet = tone(300, 0.1, 0.2)
    out = limiter.process(np.stack([loud, quiet, loud]))
    np.testing.assert_array_equal(out[1], quiet)
    assert float(limiter.gain[0]) < 1.0
    assert float(limiter.gain[1]) == 1.0
    gain_before = limiter.gain.copy()
    limiter.process(np.stack([quiet]), np.array([1], dtype=np.intp))
    np.testing.assert_array_equal(limiter.gain[[0, 2]], gain_before[[0, 2]])
    limiter.reset(0)
    assert float(limiter.gain[0]) == 1.0


def test_limiter_validates_its_input_and_config() -> None:
    with pytest.raises(InvalidInput):
        Limiter(channels=2).process(np.zeros(960, dtype=np.float32))
    with pytest.raises(ConfigError):
        Limiter(ceiling_dbfs=1.0)
    with pytest.raises(ConfigError):
        Limiter(release_ms=0.0)
