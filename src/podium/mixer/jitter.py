"""A per-speaker jitter buffer: frames on the speaker's timeline in, one tick of PCM out.

A speaker's frames carry timestamps from the speaker's own clock (RTP timestamps: an
arbitrary origin, gaps where packets were lost) and arrive when the network delivers them:
late, early, reordered or in bunches. The mixer needs exactly one tick of audio for its
current position, every tick, whatever the network did. This module maps one onto the
other::

    mixer time = speaker pts + offset

The offset is fixed when the buffer *anchors* on a frame: that frame is scheduled to play
``target_delay`` samples after the mixer position at which it arrived, so arrival jitter up
to ``target_delay`` is absorbed without loss. After that the mapping stays put (so packet
timing never stretches the audio) until one of these resets it, each counted:

- **idle**: nothing queued and nothing received for ``idle_after`` samples (a muted speaker,
  Opus DTX, a stalled connection). The buffer forgets its anchor and re-anchors on the next
  frame, so a long silence costs no latency and clock drift is forgiven at every pause.
- **late streak**: ``late_reanchor`` frames in a row arrived after their slot had played
  while nothing was queued: the path delay has grown, and staying anchored would drop every
  frame from now on.
- **overflow**: more than ``max_delay`` samples queued ahead of the play position (a burst
  after a stall, a fast speaker clock, a jump in RTP timestamps). The oldest audio is dropped
  and the mapping shifted so the queue is back to ``target_delay``; latency stays bounded.
- **drain**: a queue that stayed deeper than ``target_delay`` by at least a tick for a whole
  ``drain_after`` window holds latency that no arrival in that window needed (after a burst,
  or from a speaker clock running fast). The oldest of that excess is dropped the same way,
  so latency returns to the target instead of staying wherever a burst left it.

Memory is bounded by ``max_frames`` entries spanning at most ``max_delay`` samples. Nothing
here reads a clock: the caller passes ``now``, the mixer position of the next tick to play.
"""

from __future__ import annotations

import bisect
from dataclasses import astuple, dataclass

import numpy as np
import numpy.typing as npt

from podium.errors import ConfigError
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES, PcmFrame


@dataclass(frozen=True, slots=True)
class JitterConfig:
    """Tuning of a :class:`JitterBuffer`; every duration is in samples at 48 kHz.

    ``target_delay`` (60 ms) is the playout delay set at each anchor: three 20 ms frames of
    arrival jitter absorbed. 40 ms measured 20 ms better speaker to speaker but let a
    loaded machine's scheduling hiccups through as audible 20 ms holes; a speaker's
    audio reaching the recording whole comes first.
    ``max_delay`` (500 ms) bounds the queue, hence the latency and the memory.
    ``idle_after`` (200 ms) is how long a speaker must be silent before the buffer forgets
    its anchor: longer than any jitter it should ride out, shorter than a pause in speech.
    ``late_reanchor`` (3 frames, 60 ms of audio) separates a path that got slower from a
    single straggler. ``drain_after`` (1 s) is the window over which a standing excess of
    queued audio must persist before it is dropped. ``max_frames`` bounds the entry count
    whatever the frame size.

    Raises :class:`~podium.errors.ConfigError` on values that cannot work.
    """

    target_delay: int = 3 * TICK_SAMPLES
    max_delay: int = SAMPLE_RATE // 2
    idle_after: int = SAMPLE_RATE // 5
    late_reanchor: int = 3
    drain_after: int = SAMPLE_RATE
    max_frames: int = 512

    def __post_init__(self) -> None:
        if self.target_delay < 0:
            raise ConfigError("jitter target_delay must not be negative")
        if self.max_delay <= self.target_delay:
            raise ConfigError("jitter max_delay must be larger than target_delay")
        if min(self.idle_after, self.late_reanchor, self.drain_after, self.max_frames) < 1:
            raise ConfigError(
                "jitter idle_after, late_reanchor, drain_after and max_frames must be positive"
            )


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Counters since the buffer was created; they only grow.

    ``frames_played``: frames of which at least one sample was played.
    ``samples_concealed``: samples of silence played while anchored (gaps from lost or late
    frames, a speaker behind its schedule, the tail before going idle); silence before the
    first frame is due and while idle is not counted.
    ``frames_dropped_late``: frames that arrived after their whole slot had been played.
    ``frames_dropped_overflow``: frames dropped to bound latency and memory (overflow, drain).
    ``frames_dropped_duplicate``: frames overlapping audio already queued (retransmissions).
    ``reanchors``: anchors after the first one (idle, late streak).
    """

    frames_played: int
    samples_concealed: int
    frames_dropped_late: int
    frames_dropped_overflow: int
    frames_dropped_duplicate: int
    reanchors: int

    def __add__(self, other: JitterStats) -> JitterStats:
        return JitterStats(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


NO_JITTER_STATS = JitterStats(0, 0, 0, 0, 0, 0)


@dataclass(slots=True)
class _Entry:
    pts: int  # speaker timeline
    samples: npt.NDArray[np.float32]
    played: bool = False

    @property
    def end(self) -> int:
        return self.pts + int(self.samples.shape[0])


def _entry_pts(entry: _Entry) -> int:
    return entry.pts


class JitterBuffer:
    """Reorders one speaker's frames and plays them out at a fixed delay, tick by tick.

    Call :meth:`push` for each frame as it arrives and :meth:`pull_into` (or :meth:`pull`)
    once per tick; both take ``now``, the mixer position (in samples) of the next tick to be
    pulled, which must never decrease.
    """

    __slots__ = (
        "_anchored_once",
        "_audible_from",
        "_concealed",
        "_config",
        "_dropped_duplicate",
        "_dropped_late",
        "_dropped_overflow",
        "_last_arrival",
        "_late_streak",
        "_min_depth",
        "_offset",
        "_played",
        "_queue",
        "_reanchors",
        "_window_start",
    )

    def __init__(self, config: JitterConfig | None = None) -> None:
        self._config = config if config is not None else JitterConfig()
        self._queue: list[_Entry] = []  # sorted by pts, never overlapping
        self._offset: int | None = None  # mixer time - speaker pts; None while idle
        self._anchored_once = False
        self._audible_from = 0  # mixer time from which silence counts as concealment
        self._last_arrival = 0
        self._late_streak = 0
        self._window_start = 0  # drain window: since when, and the least depth seen in it
        self._min_depth = 0
        self._played = 0
        self._concealed = 0
        self._dropped_late = 0
        self._dropped_overflow = 0
        self._dropped_duplicate = 0
        self._reanchors = 0

    @property
    def config(self) -> JitterConfig:
        return self._config

    @property
    def anchored(self) -> bool:
        """Whether the buffer has a mapping (``False`` before the first frame and when idle)."""
        return self._offset is not None

    @property
    def stats(self) -> JitterStats:
        return JitterStats(
            frames_played=self._played,
            samples_concealed=self._concealed,
            frames_dropped_late=self._dropped_late,
            frames_dropped_overflow=self._dropped_overflow,
            frames_dropped_duplicate=self._dropped_duplicate,
            reanchors=self._reanchors,
        )

    def depth(self, now: int) -> int:
        """Samples of audio (or gaps between audio) queued from ``now`` on; 0 if none."""
        if self._offset is None or not self._queue:
            return 0
        return max(0, self._queue[-1].end + self._offset - now)

    def to_mixer_time(self, pts: int) -> int | None:
        """Where speaker timestamp ``pts`` plays on the mixer timeline, ``None`` while idle."""
        return None if self._offset is None else pts + self._offset

    def push(self, frame: PcmFrame, now: int) -> None:
        """Queue ``frame``, which arrived while the mixer's next tick starts at ``now``.

        Frames entirely behind ``now`` are dropped as late (or re-anchor the buffer, see the
        module docstring); a frame partly behind is trimmed to its playable part. A frame
        overlapping audio already queued is dropped as a duplicate. Non-finite samples are
        replaced (NaN by 0, infinities by ±1) so one broken decoder cannot poison the mix.
        """
        samples = frame.samples
        if not np.isfinite(samples).all():
            samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
        pts = frame.pts
        self._last_arrival = now
        if self._offset is None:
            self._anchor(pts, now)
        offset = self._offset
        assert offset is not None  # set by _anchor
        if pts + samples.shape[0] + offset <= now:
            self._late_streak += 1
            if self._queue or self._late_streak < self._config.late_reanchor:
                self._dropped_late += 1
                return
            self._anchor(pts, now)
            offset = self._offset
            assert offset is not None
        else:
            self._late_streak = 0
        start = pts + offset
        if start < now:  # partly late: keep what can still be played
            samples = samples[now - start :]
            pts += now - start
            start = now
        if not self._insert(_Entry(pts, samples)):
            self._dropped_duplicate += 1
            return
        self._audible_from = min(self._audible_from, start)
        self._bound(now)

    def pull(self, now: int, samples: int = TICK_SAMPLES) -> npt.NDArray[np.float32]:
        """The audio for mixer samples ``[now, now + samples)``, silence where there is none."""
        out = np.empty(samples, dtype=np.float32)
        self.pull_into(now, out)
        return out

    def pull_into(self, now: int, out: npt.NDArray[np.float32]) -> bool:
        """Fill ``out`` with the audio for mixer samples ``[now, now + len(out))``.

        Writes every sample of ``out``: real audio where a frame covers it, zeros elsewhere.
        Returns whether any real audio was written. Advances the buffer: audio before
        ``now + len(out)`` is consumed, and a buffer idle for ``idle_after`` forgets its anchor.
        """
        n = int(out.shape[0])
        end = now + n
        out.fill(0.0)
        offset = self._offset
        if offset is None:
            return False
        queue = self._queue
        covered = 0
        while queue:
            entry = queue[0]
            start = entry.pts + offset
            if start >= end:
                break
            stop = start + int(entry.samples.shape[0])
            if stop <= now:  # only if the caller skipped ticks: it can never play now
                queue.pop(0)
                if not entry.played:
                    self._dropped_late += 1
                continue
            lo = max(start, now)
            hi = min(stop, end)
            out[lo - now : hi - now] = entry.samples[lo - start : hi - start]
            covered += hi - lo
            if not entry.played:
                entry.played = True
                self._played += 1
            if stop > end:
                break
            queue.pop(0)
        if end > self._audible_from:
            self._concealed += end - max(now, self._audible_from) - covered
        if not queue:
            self._min_depth = 0
            if end - self._last_arrival >= self._config.idle_after:
                self._offset = None
        else:
            self._min_depth = min(self._min_depth, queue[-1].end + offset - end)
            if end - self._window_start >= self._config.drain_after:
                if self._min_depth - self._config.target_delay >= TICK_SAMPLES:
                    self._shift(self._min_depth - self._config.target_delay, end)
                self._window_start = end
                self._min_depth = self.depth(end)
        return covered > 0

    def _anchor(self, pts: int, now: int) -> None:
        # Only ever called with an empty queue (first frame, idle, late streak), so no
        # queued audio needs remapping.
        if self._anchored_once:
            self._reanchors += 1
        self._anchored_once = True
        self._offset = now + self._config.target_delay - pts
        self._audible_from = now + self._config.target_delay
        self._late_streak = 0
        self._window_start = now
        self._min_depth = self._config.target_delay

    def _insert(self, entry: _Entry) -> bool:
        queue = self._queue
        i = bisect.bisect_left(queue, entry.pts, key=_entry_pts)
        if i > 0 and queue[i - 1].end > entry.pts:
            return False
        if i < len(queue) and queue[i].pts < entry.end:
            return False
        queue.insert(i, entry)
        return True

    def _bound(self, now: int) -> None:
        queue = self._queue
        assert self._offset is not None
        depth = queue[-1].end + self._offset - now
        if depth > self._config.max_delay:
            self._shift(depth - self._config.target_delay, now)
        while len(queue) > self._config.max_frames:
            if not queue.pop(0).played:
                self._dropped_overflow += 1

    def _shift(self, excess: int, now: int) -> None:
        # Drop the oldest ``excess`` samples by pulling the whole mapping earlier: what was
        # due ``excess`` from now plays now, and what would now be in the past is dropped.
        assert self._offset is not None
        self._offset -= excess
        queue = self._queue
        while queue and queue[0].end + self._offset <= now:
            if not queue[0].played:
                self._dropped_overflow += 1
            queue.pop(0)
        self._audible_from = min(self._audible_from, now)
