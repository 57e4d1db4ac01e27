"""AAC-LC encoding round trips: decode the access units with a real decoder and check the
signal lands exactly where the timestamps say, with a reasonable SNR."""

from __future__ import annotations

import itertools

import av
import numpy as np
import numpy.typing as npt
import pytest

from podium.encode.aac import FRAME_SAMPLES, PRIMING, AacEncoder
from podium.encode.units import AccessUnit
from podium.errors import ConfigError, Conflict, InvalidInput

RATE = 48_000
ORIGIN = RATE * 7  # the program need not start at 0


def tone_and_chirp(seconds: float = 1.0) -> npt.NDArray[np.float32]:
    """A 1 kHz tone, then a 100 Hz -> 12 kHz chirp: periodic and aperiodic material."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.4 * np.sin(2 * np.pi * 1000 * t)
    sweep = 0.4 * np.sin(2 * np.pi * (100 * t + (12_000 - 100) / (2 * seconds) * t * t))
    return np.concatenate([tone, sweep]).astype(np.float32)


def encode_in_blocks(
    encoder: AacEncoder, signal: npt.NDArray[np.float32], sizes: list[int], origin: int = ORIGIN
) -> list[AccessUnit]:
    units: list[AccessUnit] = []
    pos = 0
    i = 0
    while pos < len(signal):
        size = sizes[i % len(sizes)]
        units += encoder.encode(signal[pos : pos + size], origin + pos)
        pos += size
        i += 1
    return units + encoder.flush()


def decode(units: list[AccessUnit], asc: bytes) -> npt.NDArray[np.float32]:
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = asc
    out = []
    for unit in units:
        for frame in decoder.decode(av.Packet(unit.data)):
            out.append(frame.to_ndarray()[0])
    return np.concatenate(out).astype(np.float32)


def best_lag(reference: npt.NDArray[np.float32], signal: npt.NDArray[np.float32]) -> int:
    """The lag L maximising the cross-correlation of signal[L + n] with reference[n]."""
    size = 1 << (len(reference) + len(signal)).bit_length()
    spectrum = np.fft.rfft(signal, size) * np.conj(np.fft.rfft(reference, size))
    correlation = np.fft.irfft(spectrum, size)[: len(signal)]
    return int(np.argmax(correlation))


def snr_db(reference: npt.NDArray[np.float32], signal: npt.NDArray[np.float32]) -> float:
    error = signal.astype(np.float64) - reference
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum(error**2)))


def test_round_trip_lands_where_the_timestamps_say() -> None:
    signal = tone_and_chirp()
    encoder = AacEncoder()
    units = encode_in_blocks(encoder, signal, [960])  # mixer ticks
    # Contiguous timestamps, priming unit first, durations ending at the last sample.
    assert units[0].pts == ORIGIN - PRIMING
    assert all(b.pts == a.pts + FRAME_SAMPLES for a, b in itertools.pairwise(units))
    assert all(u.duration == FRAME_SAMPLES for u in units[:-1])
    assert units[-1].pts + units[-1].duration == ORIGIN + len(signal)
    assert sum(u.duration for u in units) == PRIMING + len(signal)

    decoded = decode(units, encoder.audio_specific_config)
    assert len(decoded) == FRAME_SAMPLES * len(units)
    # The timestamps claim: decoded sample i is program sample units[0].pts + i, so the
    # input (program sample ORIGIN + n) is at decoded index ORIGIN - units[0].pts + n.
    claimed = ORIGIN - units[0].pts
    chirp = signal[RATE:]
    assert best_lag(chirp, decoded) - RATE == claimed
    aligned = decoded[claimed : claimed + len(signal)]
    # Away from the abrupt switch-on and switch-over (pre-echo is the codec's right there):
    steady = slice(4096, RATE - 4096)
    assert snr_db(signal[steady], aligned[steady]) > 28  # the tone
    sweep = slice(RATE + 4096, 2 * RATE - 4096)
    assert snr_db(signal[sweep], aligned[sweep]) > 22  # the chirp, up to 12 kHz
    assert snr_db(signal, aligned) > 18  # and overall
    # The priming unit holds no program: only the pre-echo of the tone's abrupt start,
    # some 35 dB below it.
    assert np.sqrt(np.mean(decoded[:claimed] ** 2)) < 0.01


def test_any_block_size_gives_the_same_bitstream() -> None:
    signal = tone_and_chirp(0.5)
    reference = encode_in_blocks(AacEncoder(), signal, [960])
    for sizes in ([1024], [7, 1500, 333, 4096], [len(signal)], [0, 960]):
        units = encode_in_blocks(AacEncoder(), signal, sizes)
        assert units == reference


@pytest.mark.parametrize("length", [1024 * 20, 1024 * 20 + 1, 1024 * 20 - 1, 5])
def test_flush_ends_exactly_at_the_last_sample(length: int) -> None:
    signal = tone_and_chirp(0.5)[:length]
    encoder = AacEncoder()
    units = encode_in_blocks(encoder, signal, [960], origin=0)
    assert units[0].pts == -PRIMING
    assert all(b.pts == a.pts + FRAME_SAMPLES for a, b in itertools.pairwise(units))
    assert all(0 < u.duration <= FRAME_SAMPLES for u in units)
    assert units[-1].pts + units[-1].duration == length
    decoded = decode(units, encoder.audio_specific_config)
    assert len(decoded) >= PRIMING + length  # every program sample is decodable


def test_audio_specific_config_says_aac_lc() -> None:
    asc = AacEncoder().audio_specific_config
    object_type = asc[0] >> 3
    frequency_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7)
    channel_config = (asc[1] >> 3) & 0x0F
    assert (object_type, frequency_index, channel_config) == (2, 3, 1)  # LC, 48 kHz, mono
    stereo = AacEncoder(channels=2).audio_specific_config
    assert (stereo[1] >> 3) & 0x0F == 2


def test_stereo_takes_channels_first_blocks() -> None:
    t = np.arange(RATE // 2) / RATE
    block = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 880 * t)]).astype(np.float32)
    encoder = AacEncoder(channels=2, bitrate=128_000)
    units = encoder.encode(block, 0) + encoder.flush()
    assert sum(u.duration for u in units) == PRIMING + block.shape[1]


def test_misuse_is_refused() -> None:
    encoder = AacEncoder()
    encoder.encode(np.zeros(960, dtype=np.float32), 0)
    with pytest.raises(InvalidInput, match="contiguous"):
        encoder.encode(np.zeros(960, dtype=np.float32), 961)
    with pytest.raises(InvalidInput):
        encoder.encode(np.zeros((2, 960), dtype=np.float32), 960)
    encoder.flush()
    with pytest.raises(Conflict):
        encoder.encode(np.zeros(960, dtype=np.float32), 960)
    with pytest.raises(Conflict):
        encoder.flush()
    with pytest.raises(ConfigError):
        AacEncoder(channels=3)
    with pytest.raises(ConfigError):
        AacEncoder(sample_rate=47_000)
