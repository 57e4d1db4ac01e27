"""The audio a speaker hears back: a small bounded buffer and the paced track that drains it.

The mixer pushes one 20 ms tick at a time with :meth:`OutboundBuffer.push`, which never
blocks: when the buffer is full the oldest tick is dropped and counted (a slow reader must
never stall the mixer, and old audio is worth less than new). aiortc pulls from
:class:`MixMinusTrack` on its own schedule; the track paces itself on the 20 ms grid and
sends silence when nothing is queued, so the outgoing RTP clock never stops.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from podium.ingest.pcm import s16_frame, silence
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES

DEFAULT_CAPACITY = 2
"""Ticks buffered per speaker: 40 ms. Enough to absorb scheduling jitter between the mixer
tick and aiortc's pull; small, because the mixer and the sender tick at the same rate, so
however full the queue gets (it fills while the connection is set up) it stays that full,
and every queued tick is latency (G.114 asks < 150 ms mouth-to-ear for the whole path)."""

TICK_SECONDS = TICK_SAMPLES / SAMPLE_RATE

# Past this lateness (an event-loop stall) the pacer re-anchors its grid instead of
# sending a burst of frames to catch up.
_MAX_LATE_SECONDS = 0.1


class OutboundBuffer:
    """A bounded FIFO of ticks; pure, no I/O, no clock.

    ``dropped`` counts ticks discarded because the buffer was full; ``underruns`` counts
    pops that found it empty; ``pushed``/``popped`` count the rest.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._ticks: deque[npt.NDArray[np.float32]] = deque()
        self.capacity = capacity
        self.pushed = 0
        self.popped = 0
        self.dropped = 0
        self.underruns = 0

    def __len__(self) -> int:
        return len(self._ticks)

    def push(self, samples: npt.NDArray[np.float32]) -> None:
        """Queue one tick of exactly :data:`TICK_SAMPLES` mono samples; never blocks.

        Raises ``ValueError`` for any other shape (a caller bug, not user input).
        """
        tick = np.asarray(samples, dtype=np.float32)
        if tick.shape != (TICK_SAMPLES,):
            raise ValueError(f"a tick is {TICK_SAMPLES} mono samples, got shape {tick.shape}")
        if len(self._ticks) >= self.capacity:
            self._ticks.popleft()
            self.dropped += 1
        self._ticks.append(tick)
        self.pushed += 1

    def pop(self) -> npt.NDArray[np.float32] | None:
        """The oldest tick, or ``None`` (and an underrun counted) if there is none."""
        if not self._ticks:
            self.underruns += 1
            return None
        self.popped += 1
        return self._ticks.popleft()


class MixMinusTrack(MediaStreamTrack):
    """An aiortc audio track that sends the ticks of ``buffer`` on a 20 ms grid.

    The first :meth:`recv` anchors the grid at ``clock()``; each later call sleeps until
    its slot. Output ``pts`` counts samples from 0 with no gaps: an underrun sends silence,
    it does not skip time. ``clock`` is the event loop's monotonic clock unless given.
    """

    kind = "audio"

    def __init__(self, buffer: OutboundBuffer, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.buffer = buffer
        self._clock = clock
        self._start: float | None = None
        self._ticks_sent = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        clock = self._clock or asyncio.get_running_loop().time
        now = clock()
        if self._start is None:
            self._start = now
        else:
            due = self._start + self._ticks_sent * TICK_SECONDS
            if due - now < -_MAX_LATE_SECONDS:
                self._start = now - self._ticks_sent * TICK_SECONDS
            elif due > now:
                await asyncio.sleep(due - now)
        tick = self.buffer.pop()
        frame = s16_frame(tick if tick is not None else silence(), self._ticks_sent * TICK_SAMPLES)
        self._ticks_sent += 1
        return frame
