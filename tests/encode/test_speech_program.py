"""Real speech through mixer and encoder, decoded by the ffmpeg command-line tool.

The access units are wrapped in ADTS headers (ISO/IEC 14496-3 §1.A.2) so an independent
decoder — the ffmpeg binary, not PyAV — can read them. The decoded audio must line up with
the input exactly where the mixer's and the encoder's timestamps say it does.
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from podium.demo import DIRECTORY
from podium.encode.aac import AacEncoder
from podium.encode.units import AccessUnit
from podium.mixer.jitter import JitterConfig
from podium.mixer.mixer import Mixer
from podium.pcm import TICK_SAMPLES, PcmFrame

SPEECH = DIRECTORY / "speech-01.wav"
N = TICK_SAMPLES
JITTER_DELAY = JitterConfig().target_delay  # the jitter buffer's default


def read_wav(path: Path) -> npt.NDArray[np.float32]:
    with wave.open(str(path)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (48_000, 1, 2)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return (pcm / 32768.0).astype(np.float32)


def adts(units: list[AccessUnit], asc: bytes) -> bytes:
    """Raw AAC access units as an ADTS stream (7-byte headers, no CRC)."""
    profile = (asc[0] >> 3) - 1  # ADTS stores the object type minus one
    frequency = ((asc[0] & 0x07) << 1) | (asc[1] >> 7)
    channels = (asc[1] >> 3) & 0x0F
    out = bytearray()
    for unit in units:
        length = 7 + len(unit.data)
        out += bytes(
            [
                0xFF,
                0xF1,  # syncword, MPEG-4, layer 0, no CRC
                (profile << 6) | (frequency << 2) | (channels >> 2),
                ((channels & 0x03) << 6) | (length >> 11),
                (length >> 3) & 0xFF,
                ((length & 0x07) << 5) | 0x1F,
                0xFC,  # buffer fullness 0x7FF (VBR), one raw data block
            ]
        )
        out += unit.data
    return bytes(out)


def ffmpeg_decode(stream: bytes) -> npt.NDArray[np.float32]:
    result = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "aac",
            "-i",
            "pipe:0",
            "-f",
            "f32le",
            "-ac",
            "1",
            "-ar",
            "48000",
            "pipe:1",
        ],
        input=stream,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)


def rms_db(x: npt.NDArray[np.float32]) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2)))


def test_speech_through_mixer_and_encoder_decodes_in_place() -> None:
    speech = read_wav(SPEECH)
    ticks = len(speech) // N + 8
    mixer = Mixer()
    mixer.add_speaker("host")
    mixer.add_speaker("guest")  # on stage, silent: the program is the host alone
    encoder = AacEncoder()
    units: list[AccessUnit] = []
    program = []
    rtp = 123_456_789
    for tick in range(ticks):
        frame = speech[tick * N : (tick + 1) * N]
        if len(frame):
            mixer.push("host", PcmFrame(rtp + tick * N, frame))
        mixed = mixer.tick()
        program.append(mixed.program)
        units += encoder.encode(mixed.program, mixed.pts)
    units += encoder.flush()
    program_pcm = np.concatenate(program)

    # The mixer: the host's speech, 60 ms later, limited only on its few peaks over -4 dBFS.
    mixed_speech = program_pcm[JITTER_DELAY : JITTER_DELAY + len(speech)]
    assert abs(rms_db(mixed_speech) - rms_db(speech)) < 0.1
    assert np.corrcoef(mixed_speech, speech)[0, 1] > 0.999

    decoded = ffmpeg_decode(adts(units, encoder.audio_specific_config))
    assert len(decoded) == 1024 * len(units)
    # Decoded sample i is program sample units[0].pts + i; program sample p is input
    # sample p - JITTER_DELAY. So the speech starts at decoded index:
    claimed = JITTER_DELAY - units[0].pts
    window = speech[48_000:96_000]  # a second of talk to search for
    found = int(np.argmax(np.correlate(decoded[48_000 : 96_000 + 8192], window, mode="valid")))
    assert found == claimed
    after = decoded[claimed : claimed + len(speech)]
    assert abs(rms_db(after) - rms_db(speech)) < 0.5
    assert np.corrcoef(after, speech)[0, 1] > 0.97
    assert np.corrcoef(after, mixed_speech)[0, 1] > 0.97
