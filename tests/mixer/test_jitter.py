"""The jitter buffer, driven tick by tick with frames that arrive shuffled, late or not at all.

Every test feeds a noise signal (every sample distinct) so the output can be compared
sample-exactly with the input delayed by the buffer's target delay.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import numpy.typing as npt
import pytest

from podium.errors import ConfigError, InvalidInput
from podium.mixer.jitter import JitterBuffer, JitterConfig
from podium.pcm import TICK_SAMPLES, PcmFrame

N = TICK_SAMPLES
SPEAKER_ORIGIN = 3_735_928_559  # an RTP-like timestamp: the speaker's timeline is arbitrary
TARGET_TICKS = 3  # the default 60 ms target delay


def noise(frames: int, seed: int = 1, length: int = N) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, frames * length).astype(np.float32)


def frames_of(signal: npt.NDArray[np.float32], length: int = N) -> list[PcmFrame]:
    return [
        PcmFrame(SPEAKER_ORIGIN + i, signal[i : i + length]) for i in range(0, len(signal), length)
    ]


def run(
    buffer: JitterBuffer, arrivals: dict[int, list[PcmFrame]], ticks: int
) -> npt.NDArray[np.float32]:
    """Tick ``ticks`` times; before the pull of tick t, push the frames arriving at t."""
    out = []
    for tick in range(ticks):
        now = tick * N
        for frame in arrivals.get(tick, []):
            buffer.push(frame, now)
        out.append(buffer.pull(now))
    return np.concatenate(out)


def test_in_order_frames_play_exactly_after_the_target_delay() -> None:
    signal = noise(50)
    buffer = JitterBuffer()
    arrivals = {i: [f] for i, f in enumerate(frames_of(signal))}
    out = run(buffer, arrivals, 50 + TARGET_TICKS)
    delay = TARGET_TICKS * N
    assert not out[:delay].any()
    np.testing.assert_array_equal(out[delay:], signal)
    stats = buffer.stats
    assert stats.frames_played == 50
    assert stats.samples_concealed == 0
    assert stats.frames_dropped_late == stats.frames_dropped_overflow == 0
    assert stats.reanchors == 0


def test_shuffled_arrival_within_the_target_delay_is_lossless() -> None:
    rng = np.random.default_rng(7)
    signal = noise(200)
    frames = frames_of(signal)
    arrivals: dict[int, list[PcmFrame]] = defaultdict(list)
    arrivals[0].append(frames[0])  # the anchor frame arrives on time
    for i, frame in enumerate(frames[1:], start=1):
        arrivals[i + int(rng.integers(0, TARGET_TICKS + 1))].append(frame)
    for bunch in arrivals.values():
        rng.shuffle(bunch)
    buffer = JitterBuffer()
    out = run(buffer, arrivals, 200 + TARGET_TICKS)
    np.testing.assert_array_equal(out[TARGET_TICKS * N :], signal)
    assert buffer.stats.frames_played == 200
    assert buffer.stats.samples_concealed == 0
    assert buffer.stats.frames_dropped_late == 0


def test_lost_frames_become_silence_and_are_counted() -> None:
    signal = noise(100)
    frames = frames_of(signal)
    lost = {5, 6, 30, 31, 32, 77, 99}
    arrivals = {i: [f] for i, f in enumerate(frames) if i not in lost}
    buffer = JitterBuffer()
    out = run(buffer, arrivals, 100 + TARGET_TICKS)[TARGET_TICKS * N :]
    expected = signal.copy()
    for i in lost:
        expected[i * N : (i + 1) * N] = 0.0
    np.testing.assert_array_equal(out, expected)
    assert len(out) == len(signal)  # continuity: one tick out per tick, whatever came in
    assert buffer.stats.frames_played == 100 - len(lost)
    assert buffer.stats.samples_concealed == len(lost) * N


def test_a_frame_arriving_after_its_slot_is_dropped_as_late() -> None:
    signal = noise(40)
    frames = frames_of(signal)
    arrivals: dict[int, list[PcmFrame]] = defaultdict(list)
    for i, frame in enumerate(frames):
        arrivals[i + 5 if i == 10 else i].append(frame)  # slot is tick 13, arrives at 15
    buffer = JitterBuffer()
    out = run(buffer, arrivals, 40 + TARGET_TICKS)[TARGET_TICKS * N :]
    assert not out[10 * N : 11 * N].any()
    np.testing.assert_array_equal(out[: 10 * N], signal[: 10 * N])
    np.testing.assert_array_equal(out[11 * N :], signal[11 * N :])
    assert buffer.stats.frames_dropped_late == 1
    assert buffer.stats.samples_concealed == N
    assert buffer.stats.reanchors == 0


def test_frames_not_aligned_to_ticks_play_contiguously() -> None:
    # A non-WebRTC source sending 1024-sample frames: every tick straddles two frames.
    signal = noise(60, length=1024)
    frames = frames_of(signal, length=1024)
    arrivals: dict[int, list[PcmFrame]] = defaultdict(list)
    for i, frame in enumerate(frames):
        arrivals[(i * 1024) // N].append(frame)  # arrives when its start is due
    buffer = JitterBuffer()
    ticks = len(signal) // N + TARGET_TICKS
    out = run(buffer, arrivals, ticks)
    played = out[TARGET_TICKS * N :]
    np.testing.assert_array_equal(played, signal[: len(played)])
    assert buffer.stats.samples_concealed == 0


def played_frames(out: npt.NDArray[np.float32], signal: npt.NDArray[np.float32]) -> list[int]:
    """For each tick of ``out``, the index of the input frame it plays, or -1 for silence."""
    frames = signal.reshape(-1, N)
    index = {frame.tobytes(): i for i, frame in enumerate(frames)}
    result = []
    for tick in out.reshape(-1, N):
        result.append(-1 if not tick.any() else index[tick.tobytes()])
    return result


def test_a_burst_is_bounded_then_drained_back_to_the_target_delay() -> None:
    signal = noise(150)
    frames = frames_of(signal)
    arrivals: dict[int, list[PcmFrame]] = {i: [frames[i]] for i in range(10)}
    arrivals[10] = frames[10:50]  # 800 ms at once, past the 500 ms bound
    for i in range(50, 150):
        arrivals[i - 39] = [frames[i]]  # then on time again, one per tick
    buffer = JitterBuffer()
    outputs = []
    for tick in range(150 - 39 + TARGET_TICKS):
        now = tick * N
        for frame in arrivals.get(tick, []):
            buffer.push(frame, now)
            assert buffer.depth(now) <= buffer.config.max_delay  # latency bounded at once
        outputs.append(buffer.pull(now))
    order = played_frames(np.concatenate(outputs), signal)
    audio = [i for i in order if i >= 0]
    assert audio == sorted(audio)  # what plays is in order, each frame at most once
    assert len(set(audio)) == len(audio)
    assert -1 not in order[TARGET_TICKS:]  # no gap: dropping never leaves a hole
    # The burst overflowed the bound; the standing excess it left was drained within a
    # window, and the speaker's last frame (arrived at tick 110) plays at the target delay.
    stats = buffer.stats
    assert stats.frames_dropped_overflow > 0
    assert stats.frames_played + stats.frames_dropped_overflow == 150
    assert order[110 + TARGET_TICKS] == 149


def test_a_long_silence_re_anchors_at_the_target_delay() -> None:
    first = noise(20, seed=1)
    second = noise(20, seed=2)
    arrivals: dict[int, list[PcmFrame]] = {i: [f] for i, f in enumerate(frames_of(first))}
    # The speaker comes back after a second of nothing, its timestamps 10 s further on
    # (a muted track, DTX, a restarted sender: the old mapping means nothing any more).
    for i, frame in enumerate(frames_of(second)):
        arrivals[70 + i] = [PcmFrame(frame.pts + 480_000, frame.samples)]
    buffer = JitterBuffer()
    out = run(buffer, arrivals, 70 + 20 + TARGET_TICKS)
    t = TARGET_TICKS
    np.testing.assert_array_equal(out[t * N : (20 + t) * N], first)
    np.testing.assert_array_equal(out[(70 + t) * N :], second)
    assert not out[(20 + t) * N : (70 + t) * N].any()
    stats = buffer.stats
    assert stats.reanchors == 1
    assert stats.frames_played == 40
    # Silence is counted only until the buffer gives up waiting (idle), not for the
    # whole second: bounded by idle_after plus one tick.
    assert 0 < stats.samples_concealed <= buffer.config.idle_after + N


def test_a_path_that_got_slower_re_anchors_after_a_late_streak() -> None:
    signal = noise(60)
    frames = frames_of(signal)
    shift = 5  # from frame 20 on, every frame arrives 100 ms later than before
    arrivals = {i + (shift if i >= 20 else 0): [f] for i, f in enumerate(frames)}
    buffer = JitterBuffer()
    out = run(buffer, arrivals, 60 + shift + TARGET_TICKS)
    stats = buffer.stats
    assert stats.frames_dropped_late == 2  # frames 20 and 21; 22 re-anchors
    assert stats.reanchors == 1
    t = TARGET_TICKS
    np.testing.assert_array_equal(out[t * N : (20 + t) * N], signal[: 20 * N])
    # Frame 22 arrived at tick 27 and plays at the target delay after it.
    np.testing.assert_array_equal(out[(27 + t) * N :], signal[22 * N :])


def test_memory_stays_bounded_whatever_is_pushed() -> None:
    buffer = JitterBuffer()
    signal = noise(1000)
    for frame in frames_of(signal):
        buffer.push(frame, 0)  # 20 s of audio at once, never pulled
    assert buffer.depth(0) <= buffer.config.max_delay
    assert buffer.stats.frames_dropped_overflow >= 1000 - buffer.config.max_delay // N

    tiny = JitterBuffer(JitterConfig(max_frames=64))
    for i in range(5000):  # one-sample frames: the entry count is bounded too
        tiny.push(PcmFrame(i, np.full(1, 0.1, dtype=np.float32)), 0)
    assert tiny.depth(0) <= tiny.config.max_delay
    assert tiny.stats.frames_dropped_overflow == 5000 - 64


def test_duplicates_are_dropped_and_non_finite_samples_replaced() -> None:
    signal = noise(4)
    frames = frames_of(signal)
    bad = frames[1].samples.copy()
    bad[[3, 4, 5]] = [np.nan, np.inf, -np.inf]
    buffer = JitterBuffer()
    arrivals = {0: [frames[0], frames[0]], 1: [PcmFrame(frames[1].pts, bad)], 2: frames[2:]}
    out = run(buffer, arrivals, 4 + TARGET_TICKS)[TARGET_TICKS * N :]
    assert buffer.stats.frames_dropped_duplicate == 1
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[N + 3 : N + 6], [0.0, 1.0, -1.0])


def test_pcm_frames_and_configs_are_validated() -> None:
    with pytest.raises(InvalidInput):
        PcmFrame(0, np.zeros(960, dtype=np.float64))
    with pytest.raises(InvalidInput):
        PcmFrame(0, np.zeros((2, 960), dtype=np.float32))
    with pytest.raises(InvalidInput):
        PcmFrame(0, np.zeros(0, dtype=np.float32))
    with pytest.raises(ConfigError):
        JitterConfig(target_delay=24_000, max_delay=24_000)
