"""Decoded frames to PCM frames, the outbound buffer and its paced track, and the speak
client's audio sources — all with real PyAV frames and files, checked by their signal."""

from __future__ import annotations

import asyncio
import itertools
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from podium.clients.speak import ToneSource, WavSource
from podium.errors import ClientError
from podium.ingest.outbound import MixMinusTrack, OutboundBuffer
from podium.ingest.pcm import FrameConverter, s16_frame
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES


def sine(frequency: float, count: int, rate: int = SAMPLE_RATE) -> npt.NDArray[np.float64]:
    return 0.5 * np.sin(2 * np.pi * frequency * np.arange(count) / rate)


def peak_hz(samples: npt.NDArray[np.float32], rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.shape[0])))
    return float(np.argmax(spectrum)) * rate / int(samples.shape[0])


def frame_of(data: npt.NDArray[Any], fmt: str, layout: str, rate: int, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


def test_aiortc_layout_s16_stereo_interleaved_becomes_mono_float() -> None:
    left, right = sine(1000, TICK_SAMPLES), sine(1000, TICK_SAMPLES) * 0.5
    interleaved = np.empty(2 * TICK_SAMPLES, dtype=np.int16)
    interleaved[0::2] = np.round(left * 32767)
    interleaved[1::2] = np.round(right * 32767)
    frame = frame_of(interleaved.reshape(1, -1), "s16", "stereo", SAMPLE_RATE, 96000)
    [pcm] = FrameConverter().convert(frame)
    assert pcm.pts == 96000
    assert pcm.samples.dtype == np.float32
    assert pcm.samples.shape == (TICK_SAMPLES,)
    np.testing.assert_allclose(pcm.samples, (left + right) / 2, atol=1e-4)


@pytest.mark.parametrize(
    ("fmt", "dtype", "scale"), [("fltp", np.float32, 1.0), ("s16p", np.int16, 32767)]
)
def test_planar_layouts(fmt: str, dtype: type, scale: float) -> None:
    planes = np.stack([sine(440, TICK_SAMPLES), sine(440, TICK_SAMPLES)]) * scale
    frame = frame_of(planes.astype(dtype), fmt, "stereo", SAMPLE_RATE, 960)
    [pcm] = FrameConverter().convert(frame)
    np.testing.assert_allclose(pcm.samples, sine(440, TICK_SAMPLES), atol=1e-4)
    assert pcm.pts == 960


def test_other_rates_are_resampled_with_continuous_pts() -> None:
    converter = FrameConverter()
    rate, size = 44100, 882
    signal = sine(1000, rate, rate).astype(np.float32)
    out = []
    for i in range(0, rate, size):
        out += converter.convert(
            frame_of(signal[i : i + size].reshape(1, -1), "flt", "mono", rate, i)
        )
    samples = np.concatenate([p.samples for p in out])
    assert abs(samples.shape[0] - SAMPLE_RATE) < 100  # one second, minus resampler delay
    assert abs(peak_hz(samples) - 1000) < 2
    for a, b in itertools.pairwise(out):
        assert b.pts == a.pts + a.samples.shape[0]


def test_s16_frame_clips_and_keeps_time() -> None:
    frame = s16_frame(np.array([0.0, 0.5, 2.0, -2.0], dtype=np.float32), 1920)
    assert frame.format.name == "s16"
    assert frame.sample_rate == SAMPLE_RATE
    assert frame.pts == 1920
    assert frame.to_ndarray().tolist() == [[0, 16384, 32767, -32767]]


def test_outbound_buffer_drops_oldest_and_counts() -> None:
    buffer = OutboundBuffer(capacity=2)
    ticks = [np.full(TICK_SAMPLES, i / 10, dtype=np.float32) for i in range(3)]
    for tick in ticks:
        buffer.push(tick)
    assert buffer.dropped == 1
    assert len(buffer) == 2
    first, second = buffer.pop(), buffer.pop()
    assert first is not None
    assert float(first[0]) == pytest.approx(0.1)
    assert second is not None
    assert float(second[0]) == pytest.approx(0.2)
    assert buffer.pop() is None
    assert buffer.underruns == 1
    with pytest.raises(ValueError, match="960"):
        buffer.push(np.zeros(100, dtype=np.float32))


def test_mix_minus_track_sends_queued_ticks_then_silence_on_a_gapless_grid() -> None:
    async def scenario() -> None:
        now = [0.0]

        def clock() -> float:  # a fake media clock: 20 ms later at every read
            now[0] += TICK_SAMPLES / SAMPLE_RATE
            return now[0]

        buffer = OutboundBuffer(capacity=4)
        track = MixMinusTrack(buffer, clock=clock)
        buffer.push(sine(440, TICK_SAMPLES).astype(np.float32))
        frames = [await track.recv() for _ in range(3)]
        assert [f.pts for f in frames] == [0, 960, 1920]
        assert np.abs(frames[0].to_ndarray()).max() > 16000
        assert not frames[1].to_ndarray().any()
        assert buffer.underruns == 2
        track.stop()

    asyncio.run(scenario())


def test_tone_source_is_phase_continuous() -> None:
    source = ToneSource(1000)
    ticks = [source.read() for _ in range(50)]
    joined = np.concatenate(ticks)
    np.testing.assert_allclose(joined, sine(1000, joined.shape[0]), atol=1e-6)
    with pytest.raises(ClientError):
        ToneSource(30000)


def write_wav(path: Path, rate: int, channels: int, seconds: float, frequency: float) -> None:
    count = int(rate * seconds)
    data = np.repeat(sine(frequency, count, rate)[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((data * 32767).astype("<i2").tobytes())


def test_wav_source_resamples_to_48k_mono(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    write_wav(path, 22050, 2, 0.5, 700)
    source = WavSource(path)
    ticks = []
    while (tick := source.read()) is not None:
        ticks.append(tick)
    source.close()
    assert all(t.shape == (TICK_SAMPLES,) and t.dtype == np.float32 for t in ticks)
    # 0.5 s at 48 kHz is 24000 samples: 25 ticks, the last padded with silence.
    assert len(ticks) == 25
    assert abs(peak_hz(np.concatenate(ticks)) - 700) < 3


def test_wav_source_loops(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    write_wav(path, 48000, 1, 0.1, 1000)
    source = WavSource(path, loop=True)
    ticks = [source.read() for _ in range(30)]  # 0.6 s from a 0.1 s file
    source.close()
    assert all(t is not None for t in ticks)


def test_wav_source_reports_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="cannot read audio file"):
        WavSource(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really")
    with pytest.raises(ClientError):
        WavSource(junk)
