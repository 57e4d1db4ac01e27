"""The mixer: up to 13 speakers in, a program and a mix-minus per speaker out, per tick.

The caller owns the clock: it calls :meth:`Mixer.tick` once per 20 ms of real time and
pushes frames as ingest decodes them. Each tick pulls one tick of audio from every
speaker's jitter buffer, so a speaker who stops sending, or sends late, contributes silence
and never holds the others back. The mixer itself reads no clock and does no I/O.

Mix-minus: speaker *i* hears ``program_sum - x_i``, everyone but themself, so nobody hears
their own voice coming back (which they would perceive as echo). The program and every
mix-minus go through their own limiter channel, because each is a different sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from podium.errors import Conflict, InvalidInput, NotFound
from podium.mixer.jitter import NO_JITTER_STATS, JitterBuffer, JitterConfig, JitterStats
from podium.mixer.levels import Level, LevelMeter, measure_dbfs
from podium.mixer.limiter import Limiter
from podium.pcm import TICK_SAMPLES, PcmFrame

MAX_SPEAKERS = 13
"""A host and a dozen speakers: the stage of a live audio space."""


@dataclass(frozen=True, slots=True)
class MixResult:
    """One tick of mixer output.

    ``pts`` is the mixer-timeline timestamp of the first sample (it advances by exactly
    :data:`~podium.pcm.TICK_SAMPLES` per tick). ``program`` is the limited mix of
    every unmuted speaker, 960 float32 samples with ``|x| <= ceiling``. ``minus`` maps every
    speaker to the limited mix of everyone except themself, and ``levels`` maps every speaker
    to their level this tick (a muted speaker reads silent and not talking). The arrays are
    read-only views of one block allocated for this tick: hold on to them as long as needed.
    """

    pts: int
    program: npt.NDArray[np.float32]
    minus: Mapping[str, npt.NDArray[np.float32]]
    levels: Mapping[str, Level]


@dataclass(slots=True)
class _Speaker:
    slot: int  # limiter channel of this speaker's mix-minus (program is channel 0)
    buffer: JitterBuffer
    meter: LevelMeter
    muted: bool = False


class Mixer:
    """Mixes up to ``max_speakers`` speakers on a timeline starting at ``start_pts``.

    ``jitter`` tunes every speaker's :class:`~podium.mixer.jitter.JitterBuffer`;
    ``ceiling_dbfs`` and ``release_ms`` tune the limiters (see
    :class:`~podium.mixer.limiter.Limiter`).
    """

    __slots__ = (
        "_channels",
        "_departed",
        "_free",
        "_jitter",
        "_limiter",
        "_max",
        "_order",
        "_pts",
        "_speakers",
    )

    def __init__(
        self,
        max_speakers: int = MAX_SPEAKERS,
        *,
        start_pts: int = 0,
        jitter: JitterConfig | None = None,
        ceiling_dbfs: float = -1.0,
        release_ms: float = 100.0,
    ) -> None:
        if max_speakers < 1:
            raise InvalidInput("a mixer needs room for at least one speaker")
        self._max = max_speakers
        self._pts = start_pts
        self._jitter = jitter if jitter is not None else JitterConfig()
        self._limiter = Limiter(max_speakers + 1, ceiling_dbfs=ceiling_dbfs, release_ms=release_ms)
        self._speakers: dict[str, _Speaker] = {}
        self._free = list(range(max_speakers, 0, -1))  # limiter channels 1..max, pop() -> 1
        self._order: tuple[str, ...] = ()
        self._channels = np.zeros(1, dtype=np.intp)  # program, then each speaker's slot
        self._departed = NO_JITTER_STATS  # the counters of speakers no longer mixed

    @property
    def pts(self) -> int:
        """The mixer timestamp of the next tick's first sample."""
        return self._pts

    @property
    def max_speakers(self) -> int:
        return self._max

    @property
    def speakers(self) -> tuple[str, ...]:
        """The speakers being mixed, in the order they were added."""
        return self._order

    @property
    def ceiling(self) -> float:
        """The linear bound on every output sample."""
        return self._limiter.ceiling

    def add_speaker(self, speaker_id: str) -> None:
        """Start mixing ``speaker_id`` (silent until their first frame has waited out the
        jitter delay).

        Raises :class:`~podium.errors.Conflict` if the speaker is already mixed or the mixer
        already holds ``max_speakers``.
        """
        if speaker_id in self._speakers:
            raise Conflict(f"speaker {speaker_id!r} is already in the mix")
        if not self._free:
            raise Conflict(
                f"the stage is full: at most {self._max} speakers can be mixed at once; "
                f"remove a speaker before adding {speaker_id!r}"
            )
        slot = self._free.pop()
        self._limiter.reset(slot)
        self._speakers[speaker_id] = _Speaker(slot, JitterBuffer(self._jitter), LevelMeter())
        self._reindex()

    def remove_speaker(self, speaker_id: str) -> None:
        """Stop mixing ``speaker_id``; their queued audio is discarded.

        Raises :class:`~podium.errors.NotFound` if the speaker is not mixed.
        """
        speaker = self._get(speaker_id)
        self._departed += speaker.buffer.stats
        del self._speakers[speaker_id]
        self._free.append(speaker.slot)
        self._reindex()

    def push(self, speaker_id: str, frame: PcmFrame) -> None:
        """Hand the mixer a frame from ``speaker_id`` as it arrives (any time between ticks).

        Raises :class:`~podium.errors.NotFound` if the speaker is not mixed.
        """
        self._get(speaker_id).buffer.push(frame, self._pts)

    def set_muted(self, speaker_id: str, muted: bool) -> None:
        """Mute or unmute a speaker. A muted speaker is still received (their jitter buffer
        keeps running) but contributes nothing to the program nor to anyone's mix-minus, and
        reads as not talking at once. They keep hearing everyone else.

        Raises :class:`~podium.errors.NotFound` if the speaker is not mixed.
        """
        speaker = self._get(speaker_id)
        speaker.muted = muted
        if muted:
            speaker.meter.reset()

    def is_muted(self, speaker_id: str) -> bool:
        """Raises :class:`~podium.errors.NotFound` if the speaker is not mixed."""
        return self._get(speaker_id).muted

    def jitter_stats(self, speaker_id: str) -> JitterStats:
        """The counters of a speaker's jitter buffer (for metrics and tests).

        Raises :class:`~podium.errors.NotFound` if the speaker is not mixed.
        """
        return self._get(speaker_id).buffer.stats

    def jitter_totals(self) -> JitterStats:
        """The counters of every speaker's jitter buffer since the mixer started, added up
        (speakers no longer mixed included)."""
        return sum((s.buffer.stats for s in self._speakers.values()), self._departed)

    def tick(self) -> MixResult:
        """Produce the next 960 samples of program, mix-minus and levels, and advance."""
        pts = self._pts
        order = self._order
        count = len(order)
        inputs = np.empty((count, TICK_SAMPLES), dtype=np.float32)
        for row, speaker_id in enumerate(order):
            speaker = self._speakers[speaker_id]
            # Pull even when muted: the buffer must keep draining on schedule.
            speaker.buffer.pull_into(pts, inputs[row])
            if speaker.muted:
                inputs[row].fill(0.0)
        mix = np.empty((count + 1, TICK_SAMPLES), dtype=np.float32)
        np.sum(inputs, axis=0, out=mix[0])
        np.subtract(mix[0], inputs, out=mix[1:])
        out = self._limiter.process(mix, self._channels)
        out.flags.writeable = False
        rms, peak = measure_dbfs(inputs)
        levels: dict[str, Level] = {}
        minus: dict[str, npt.NDArray[np.float32]] = {}
        for row, speaker_id in enumerate(order):
            meter = self._speakers[speaker_id].meter
            levels[speaker_id] = meter.update(float(rms[row]), float(peak[row]), TICK_SAMPLES)
            minus[speaker_id] = out[row + 1]
        self._pts = pts + TICK_SAMPLES
        return MixResult(pts=pts, program=out[0], minus=minus, levels=levels)

    def _get(self, speaker_id: str) -> _Speaker:
        try:
            return self._speakers[speaker_id]
        except KeyError:
            raise NotFound(f"speaker {speaker_id!r} is not in the mix") from None

    def _reindex(self) -> None:
        self._order = tuple(self._speakers)
        slots = [self._speakers[speaker_id].slot for speaker_id in self._order]
        self._channels = np.array([0, *slots], dtype=np.intp)
