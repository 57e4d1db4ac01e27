"""AAC-LC encoding of the program, with exact timestamps, over FFmpeg's native encoder.

Why mono, 48 kHz, 64 kbit/s AAC-LC by default:

- **AAC-LC decodes everywhere.** It is the baseline audio codec of HLS (Apple's HLS
  authoring specification requires it), decoded natively by Safari/iOS, by every MSE
  browser through hls.js, by ffmpeg, VLC, Android's media stack and podcast apps. HE-AAC
  would save bits but FFmpeg's native encoder does not make SBR, and Opus-in-CMAF is not
  playable everywhere yet.
- **Mono**: every speaker is a mono microphone and the mixer does no panning; a stereo
  program would spend bits on two identical channels.
- **48 kHz**: the rate of the whole pipeline (WebRTC/Opus, the mixer), so nothing resamples.
- **64 kbit/s mono** (the per-channel rate of 128 kbit/s stereo) is transparent for speech
  with FFmpeg's native encoder and acceptable for music played into a space, while costing
  8 kB/s: about 29 MB an hour, comfortable on a weak mobile connection, and parts of a few
  kilobytes that edges cache cheaply.

Timestamps. The encoder consumes 1024-sample frames; this class buffers any block sizes
into them. FFmpeg's ``aac`` encoder has a priming delay of :data:`PRIMING` = 1024 samples
(``initial_padding`` in libavcodec, which PyAV does not expose): it emits one extra access
unit first, and every decoded sample comes out 1024 samples late. The units therefore carry
the timestamp of the program sample their decoded output represents::

    unit k (k = 0, 1, ...) has pts = origin - 1024 + 1024 * k, duration 1024

where ``origin`` is the ``pts`` given with the first samples. Decoding the units in order
from unit 0 and counting decoded samples from that unit's pts gives the program timeline
exactly: decoded sample ``j`` of the unit stamped ``P`` is program sample ``P + j``. Unit 0
(pts ``origin - 1024``) is the priming unit: it decodes to near-silence and must be kept,
since the decoder needs it to reconstruct unit 1. In ISO BMFF terms it sits before
presentation time ``origin``; an edit list with ``media_time`` = 1024 (ISO/IEC 14496-12
§8.6.6) hides it, as FFmpeg's own MP4 muxer does. After :meth:`AacEncoder.flush` the last
unit's ``duration`` is shortened to end exactly at the last program sample, so the sum of
durations is ``1024 + total samples``.
"""

from __future__ import annotations

from fractions import Fraction

import av
import av.error
import numpy as np
import numpy.typing as npt

from podium.encode.units import AccessUnit
from podium.errors import ConfigError, Conflict, InvalidInput, PodiumError

FRAME_SAMPLES = 1024
"""Samples per AAC-LC access unit."""

PRIMING = 1024
"""Encoder delay of FFmpeg's ``aac`` encoder, in samples (``avctx->initial_padding``)."""

_LAYOUTS = {1: "mono", 2: "stereo"}


class AacEncoder:
    """Encodes one continuous program into raw AAC-LC access units (no ADTS headers).

    ``sample_rate`` must be an AAC sampling rate (48000 by default), ``channels`` 1 or 2,
    ``bitrate`` in bit/s. Raises :class:`~podium.errors.ConfigError` if the encoder cannot
    be opened with them.
    """

    __slots__ = (
        "_channels",
        "_ctx",
        "_fed",
        "_finished",
        "_layout",
        "_next",
        "_origin",
        "_pending",
        "_sample_rate",
        "_time_base",
        "_units",
    )

    def __init__(self, sample_rate: int = 48_000, channels: int = 1, bitrate: int = 64_000) -> None:
        layout = _LAYOUTS.get(channels)
        if layout is None:
            raise ConfigError(f"AAC encoder supports 1 or 2 channels, not {channels}")
        if bitrate <= 0:
            raise ConfigError(f"AAC bitrate must be positive, not {bitrate}")
        self._time_base = Fraction(1, sample_rate)
        try:
            ctx = av.CodecContext.create("aac", "w")
            ctx.sample_rate = sample_rate
            ctx.layout = layout
            ctx.format = "fltp"
            ctx.bit_rate = bitrate
            ctx.time_base = self._time_base
            ctx.open()
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(
                f"cannot open the AAC encoder at {sample_rate} Hz, {channels} channel(s), "
                f"{bitrate} bit/s: {exc}"
            ) from exc
        self._ctx = ctx
        self._sample_rate = sample_rate
        self._channels = channels
        self._layout = layout
        self._pending = np.empty((channels, 0), dtype=np.float32)
        self._origin: int | None = None
        self._next = 0  # pts expected for the next input sample
        self._fed = 0  # samples handed to the codec
        self._units = 0  # access units returned
        self._finished = False

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def audio_specific_config(self) -> bytes:
        """The AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) for the ``esds`` box.

        FFmpeg writes five bytes for 48 kHz mono: ``11 88`` (object type 2 = AAC-LC,
        frequency index 3 = 48000 Hz, channel configuration 1) followed by ``56 e5 00``, a
        sync extension that says explicitly "no SBR" (backward-compatible signalling).
        """
        return bytes(self._ctx.extradata or b"")

    def encode(self, samples: npt.NDArray[np.float32], pts: int) -> list[AccessUnit]:
        """Add ``samples`` starting at program timestamp ``pts``; return the units now ready.

        ``samples`` is 1-D for mono or ``(channels, n)``, any ``n`` (including 0). The first
        call sets the origin; every later call must continue exactly where the previous one
        ended (``pts`` = previous ``pts`` + previous length), since the program has no gaps.
        The returned units are contiguous with those returned before (see the module
        docstring for their timestamps).

        Raises :class:`~podium.errors.InvalidInput` for a wrong shape or a discontinuous
        ``pts``, :class:`~podium.errors.Conflict` after :meth:`flush`.
        """
        if self._finished:
            raise Conflict("the AAC encoder was flushed; start a new one for a new program")
        block = np.asarray(samples, dtype=np.float32)
        if block.ndim == 1 and self._channels == 1:
            block = block[np.newaxis, :]
        if block.ndim != 2 or block.shape[0] != self._channels:
            raise InvalidInput(
                f"expected {self._channels} channel(s) of samples, got shape {block.shape}"
            )
        if self._origin is None:
            self._origin = self._next = pts
        elif pts != self._next:
            raise InvalidInput(
                f"program samples must be contiguous: expected pts {self._next}, got {pts}"
            )
        self._next += block.shape[1]
        buffered = np.concatenate((self._pending, block), axis=1) if self._pending.size else block
        whole = buffered.shape[1] - buffered.shape[1] % FRAME_SAMPLES
        units: list[AccessUnit] = []
        for start in range(0, whole, FRAME_SAMPLES):
            units += self._encode_frame(buffered[:, start : start + FRAME_SAMPLES])
        self._pending = buffered[:, whole:].copy()
        return units

    def flush(self) -> list[AccessUnit]:
        """Encode what is buffered, drain the codec and return the final units.

        The last unit's duration ends at the last program sample. The encoder is finished
        afterwards. Raises :class:`~podium.errors.Conflict` if it was already flushed.
        """
        if self._finished:
            raise Conflict("the AAC encoder was already flushed")
        units: list[AccessUnit] = []
        if self._pending.shape[1]:
            # The aac encoder accepts a short last frame and pads it itself.
            units += self._encode_frame(self._pending)
            self._pending = self._pending[:, :0]
        units += self._packets(None)
        self._finished = True
        return units

    def _encode_frame(self, chunk: npt.NDArray[np.float32]) -> list[AccessUnit]:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(chunk), format="fltp", layout=self._layout
        )
        frame.sample_rate = self._sample_rate
        frame.time_base = self._time_base
        assert self._origin is not None
        frame.pts = self._origin + self._fed
        self._fed += chunk.shape[1]
        return self._packets(frame)

    def _packets(self, frame: av.AudioFrame | None) -> list[AccessUnit]:
        try:
            packets = self._ctx.encode(frame)
        except av.error.FFmpegError as exc:
            raise PodiumError(f"the AAC encoder failed: {exc}") from exc
        assert self._origin is not None or not packets
        units: list[AccessUnit] = []
        for packet in packets:
            assert self._origin is not None
            pts = self._origin - PRIMING + FRAME_SAMPLES * self._units
            # Only the drain can produce a unit reaching past the input; trim it to the
            # program's end, and drop a unit that would carry nothing of the program.
            duration = min(FRAME_SAMPLES, self._origin + self._fed - pts)
            if duration <= 0:
                continue
            units.append(AccessUnit(pts=pts, data=bytes(packet), duration=duration))
            self._units += 1
        return units
