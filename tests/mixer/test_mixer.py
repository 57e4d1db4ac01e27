"""The mixer, by its signal: program and mix-minus spectra, mute, levels, a silent speaker."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from podium.errors import Conflict, InvalidInput, NotFound
from podium.mixer.mixer import Mixer, MixResult
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES, PcmFrame

N = TICK_SAMPLES
DELAY_TICKS = 3  # the jitter buffer's default 60 ms


def tone(freq: float, ticks: int, amplitude: float = 0.25) -> npt.NDArray[np.float32]:
    t = np.arange(ticks * N) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def run(
    mixer: Mixer,
    signals: dict[str, npt.NDArray[np.float32]],
    ticks: int,
    stop_after: dict[str, int] | None = None,
) -> list[MixResult]:
    """Each tick, push every speaker's next frame (on its own RTP-like timeline), then tick."""
    origins = {speaker: 1000 + 77_777 * i for i, speaker in enumerate(signals)}
    results = []
    for tick in range(ticks):
        for speaker, signal in signals.items():
            if stop_after and tick >= stop_after.get(speaker, ticks):
                continue
            frame = signal[tick * N : (tick + 1) * N]
            if len(frame):
                mixer.push(speaker, PcmFrame(origins[speaker] + tick * N, frame))
        results.append(mixer.tick())
    return results


def spectrum_db(signal: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float64], float]:
    """Magnitude spectrum in dB relative to its own maximum (Hann window), and bin width."""
    window = np.hanning(len(signal))
    mag = np.abs(np.fft.rfft(signal * window))
    return 20 * np.log10(np.maximum(mag, 1e-12)), SAMPLE_RATE / len(signal)


def level_at(signal: npt.NDArray[np.float32], freq: float) -> float:
    """Peak magnitude (dB re a full-scale sine) within 3 bins of ``freq``."""
    window = np.hanning(len(signal))
    mag = np.abs(np.fft.rfft(signal * window)) / (window.sum() / 2)
    k = round(freq * len(signal) / SAMPLE_RATE)
    return float(20 * np.log10(max(mag[k - 3 : k + 4].max(), 1e-12)))


def joined(results: list[MixResult], pick: str | None = None) -> npt.NDArray[np.float32]:
    return np.concatenate([r.program if pick is None else r.minus[pick] for r in results])


def test_program_has_both_tones_and_each_mix_minus_lacks_its_own() -> None:
    mixer = Mixer()
    mixer.add_speaker("a")
    mixer.add_speaker("b")
    a, b = tone(440, 60), tone(1000, 60)
    steady = run(mixer, {"a": a, "b": b}, 60)[10:60]  # 1 s, well after the jitter delay
    program, minus_a, minus_b = joined(steady), joined(steady, "a"), joined(steady, "b")
    assert level_at(program, 440) == pytest.approx(-12.04, abs=0.2)  # 0.25 = -12 dBFS
    assert level_at(program, 1000) == pytest.approx(-12.04, abs=0.2)
    assert level_at(minus_a, 1000) == pytest.approx(-12.04, abs=0.2)
    assert level_at(minus_a, 440) < level_at(minus_a, 1000) - 40  # a does not hear a
    assert level_at(minus_b, 440) == pytest.approx(-12.04, abs=0.2)
    assert level_at(minus_b, 1000) < level_at(minus_b, 440) - 40
    # Below the knee the mixer is exact: the program is the sum, delayed by 60 ms.
    start = (10 - DELAY_TICKS) * N
    np.testing.assert_allclose(program, (a + b)[start : start + len(program)], atol=1e-6)


def test_pts_advance_by_one_tick_and_outputs_are_read_only() -> None:
    mixer = Mixer(start_pts=48_000 * 3600)
    mixer.add_speaker("a")
    results = run(mixer, {"a": tone(300, 5)}, 5)
    assert [r.pts for r in results] == [48_000 * 3600 + i * N for i in range(5)]
    assert mixer.pts == results[-1].pts + N
    for result in results:
        assert result.program.shape == (N,)
        assert result.program.dtype == np.float32
        assert not result.program.flags.writeable
        assert not result.minus["a"].flags.writeable


def test_every_mix_minus_of_thirteen_speakers_lacks_only_its_own_voice() -> None:
    mixer = Mixer()
    freqs = {f"s{i}": 300.0 + 150.0 * i for i in range(13)}
    for speaker in freqs:
        mixer.add_speaker(speaker)
    signals = {s: tone(f, 30, amplitude=0.04) for s, f in freqs.items()}  # sum under the knee
    steady = run(mixer, signals, 30)[10:30]
    for speaker, freq in freqs.items():
        minus = joined(steady, speaker)
        others = [level_at(minus, f) for s, f in freqs.items() if s != speaker]
        assert min(others) > -29.0  # 0.04 = -28 dBFS, every other voice is there
        assert level_at(minus, freq) < min(others) - 40


def test_thirteen_full_scale_speakers_stay_under_the_ceiling() -> None:
    mixer = Mixer()
    for i in range(13):
        mixer.add_speaker(f"s{i}")
    signals = {f"s{i}": tone(200 + 10 * i, 25, amplitude=1.0) for i in range(13)}
    for result in run(mixer, signals, 25):
        assert np.abs(result.program).max() <= mixer.ceiling
        for minus in result.minus.values():
            assert np.abs(minus).max() <= mixer.ceiling


def test_mute_removes_a_speaker_from_program_and_from_others() -> None:
    mixer = Mixer()
    mixer.add_speaker("a")
    mixer.add_speaker("b")
    mixer.set_muted("a", True)
    assert mixer.is_muted("a")
    steady = run(mixer, {"a": tone(440, 40), "b": tone(1000, 40)}, 40)[10:40]
    program = joined(steady)
    assert level_at(program, 1000) == pytest.approx(-12.04, abs=0.2)
    assert level_at(program, 440) < -100
    assert level_at(joined(steady, "b"), 440) < -100  # b hears nothing of muted a
    assert level_at(joined(steady, "a"), 1000) == pytest.approx(-12.04, abs=0.2)  # a hears b
    assert not any(r.levels["a"].talking for r in steady)
    mixer.set_muted("a", False)
    after = run(mixer, {"a": tone(440, 20), "b": tone(1000, 20)}, 20)[10:]
    assert level_at(joined(after), 440) == pytest.approx(-12.04, abs=0.2)


def test_levels_show_who_is_talking() -> None:
    mixer = Mixer()
    mixer.add_speaker("a")
    mixer.add_speaker("b")
    quiet = np.zeros(60 * N, dtype=np.float32)
    a = np.concatenate([tone(440, 30), quiet[: 30 * N]])
    b = np.concatenate([quiet[: 30 * N], tone(1000, 30)])
    results = run(mixer, {"a": a, "b": b}, 60)
    at = {tick: results[tick].levels for tick in (20, 58)}
    assert at[20]["a"].talking
    assert not at[20]["b"].talking
    assert at[20]["a"].rms_dbfs == pytest.approx(-15.05, abs=0.1)  # 0.25 sine
    assert not at[58]["a"].talking
    assert at[58]["b"].talking


def test_a_speaker_who_stops_sending_gives_silence_and_stalls_nobody() -> None:
    mixer = Mixer()
    mixer.add_speaker("a")
    mixer.add_speaker("b")
    a, b = tone(440, 100), tone(1000, 100)
    results = run(mixer, {"a": a, "b": b}, 100, stop_after={"a": 20})
    assert [r.pts for r in results] == [i * N for i in range(100)]
    late = results[40:]  # a's last frame played at tick 22
    program = joined(late)
    start = (40 - DELAY_TICKS) * N
    np.testing.assert_allclose(program, b[start : start + len(program)], atol=1e-6)
    assert not joined(late, "b").any()  # b hears silence, a still hears b
    assert not late[-1].levels["a"].talking
    stats = mixer.jitter_stats("a")
    assert stats.frames_played == 20
    assert stats.samples_concealed <= SAMPLE_RATE // 5 + N  # only until a goes idle


def test_membership_errors() -> None:
    mixer = Mixer()
    for i in range(13):
        mixer.add_speaker(f"s{i}")
    with pytest.raises(Conflict, match="at most 13 speakers"):
        mixer.add_speaker("fourteenth")
    with pytest.raises(Conflict):
        mixer.add_speaker("s0")
    mixer.remove_speaker("s3")
    mixer.add_speaker("fourteenth")  # room again
    assert mixer.speakers[-1] == "fourteenth"
    assert "s3" not in mixer.speakers
    with pytest.raises(NotFound):
        mixer.push("s3", PcmFrame(0, np.zeros(N, dtype=np.float32)))
    with pytest.raises(NotFound):
        mixer.remove_speaker("s3")
    with pytest.raises(NotFound):
        mixer.set_muted("nobody", True)
    with pytest.raises(InvalidInput):
        Mixer(max_speakers=0)


def test_a_new_speaker_in_a_reused_slot_starts_with_unity_gain() -> None:
    mixer = Mixer(max_speakers=2)
    mixer.add_speaker("loud")
    mixer.add_speaker("other")
    run(mixer, {"loud": tone(300, 10, 1.0), "other": tone(300, 10, 1.0)}, 10)
    mixer.remove_speaker("other")  # its mix-minus channel was limiting hard
    mixer.remove_speaker("loud")
    mixer.add_speaker("x")
    mixer.add_speaker("y")
    quiet = tone(500, 20, 0.1)
    results = run(mixer, {"x": quiet, "y": np.zeros(20 * N, dtype=np.float32)}, 20)
    start = (10 - DELAY_TICKS) * N
    np.testing.assert_array_equal(joined(results[10:], "y"), quiet[start : start + 10 * N])


def test_jitter_totals_add_up_every_speaker_including_those_who_left() -> None:
    mixer = Mixer()
    mixer.add_speaker("a")
    mixer.add_speaker("b")
    run(mixer, {"a": tone(440, 50), "b": tone(1000, 50)}, 50)
    mixer.push("a", PcmFrame(1000, tone(440, 1)[:N]))  # long past its slot: late
    played_a = mixer.jitter_stats("a").frames_played
    played_b = mixer.jitter_stats("b").frames_played
    mixer.remove_speaker("a")
    totals = mixer.jitter_totals()
    assert totals.frames_played == played_a + played_b
    assert totals.frames_dropped_late == 1
