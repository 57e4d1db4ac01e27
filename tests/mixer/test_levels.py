"""Level meters: dBFS readings of known signals, and a talking flag that does not flicker."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from podium.errors import ConfigError
from podium.mixer.levels import FLOOR_DBFS, LevelMeter, measure_dbfs
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES


def sine(amplitude: float, samples: int = TICK_SAMPLES) -> npt.NDArray[np.float32]:
    t = np.arange(samples) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def test_dbfs_of_known_signals() -> None:
    rms, peak = measure_dbfs(sine(1.0))
    assert float(rms) == pytest.approx(-3.0103, abs=0.01)
    assert float(peak) == pytest.approx(0.0, abs=0.01)
    rms, peak = measure_dbfs(sine(0.1))
    assert float(rms) == pytest.approx(-23.0103, abs=0.01)
    rms, peak = measure_dbfs(np.zeros(TICK_SAMPLES, dtype=np.float32))
    assert float(rms) == FLOOR_DBFS
    assert float(peak) == FLOOR_DBFS
    rows = np.stack([sine(1.0), sine(0.01), np.zeros(TICK_SAMPLES, dtype=np.float32)])
    rms, _ = measure_dbfs(rows)
    np.testing.assert_allclose(rms, [-3.0103, -43.0103, FLOOR_DBFS], atol=0.01)


def feed(meter: LevelMeter, pattern: list[tuple[float, int]]) -> list[bool]:
    """Feed ``ticks`` ticks of each amplitude; return the talking flag after every tick."""
    flags = []
    for amplitude, ticks in pattern:
        for _ in range(ticks):
            flags.append(meter.measure(sine(amplitude)).talking)
    return flags


def test_talking_needs_attack_and_rides_through_pauses() -> None:
    loud, between, silent = 0.1, 10 ** (-45 / 20) * np.sqrt(2), 0.0  # -23, -45, floor
    meter = LevelMeter()  # on -40, off -50, attack 40 ms (2 ticks), hold 400 ms (20 ticks)
    assert feed(meter, [(loud, 1), (silent, 5)]) == [False] * 6  # a click is not talk
    assert feed(meter, [(loud, 2)]) == [False, True]
    assert all(feed(meter, [(silent, 15), (loud, 3)]))  # a 300 ms pause between words
    assert all(feed(meter, [(between, 50)]))  # quieter, but above the off threshold
    flags = feed(meter, [(silent, 25)])
    assert flags == [True] * 19 + [False] * 6  # off after 400 ms below -50 dBFS
    assert not any(feed(meter, [(between, 50)]))  # -45 does not turn it on (hysteresis)


def test_reset_and_config() -> None:
    meter = LevelMeter()
    feed(meter, [(0.1, 5)])
    assert meter.talking
    meter.reset()
    assert not meter.talking
    with pytest.raises(ConfigError):
        LevelMeter(on_dbfs=-50.0, off_dbfs=-40.0)
