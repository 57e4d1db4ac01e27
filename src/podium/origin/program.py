"""One space's program as the origin holds it: the playlist timeline, recent parts in
memory, older ones on disk, and a way to wait for what does not exist yet.

Live parts are served from memory, so the broadcast never depends on the disk (a failing
disk degrades the recording, not the stream). Parts that have left the memory window,
and whole replays after a restart, are read from the recording.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from podium import clock
from podium.record.manifest import GapLine
from podium.record.recorder import Recorded, Recorder
from podium.segment.cadence import Cadence
from podium.segment.playlist import MediaPlaylist, PartEntry
from podium.segment.segmenter import Part
from podium.segment.timeline import GapMarker, Timeline

# Parts kept in memory: 16 segments (about 33 s at the default cadence) covers every
# listener near the live edge, plus players that start a few segments back.
MEMORY_SEGMENTS = 16


@dataclass(frozen=True, slots=True)
class Interruption:
    at: float
    lost_s: float
    moved: bool


class Program:
    """Mutated only from the event loop that serves requests (no locks needed)."""

    def __init__(self, space_id: str, directory: Path, init: bytes, timeline: Timeline) -> None:
        self.space_id = space_id
        self.directory = directory
        self.init = init
        self.timeline = timeline
        self.recording = "ok"
        self.recording_reason = ""
        self.exported: bool | None = None  # None while not yet tried
        self.talking: tuple[str, ...] = ()
        self.speakers: tuple[str, ...] = ()
        # The last span the program lost (a restart, or its media moving to another
        # server): when it resumed (Unix time), the seconds lost, and whether it moved.
        self.interruption: Interruption | None = None
        self.moved = False  # set by a web node when another media node takes it over
        self._gap_at: Fraction | None = None
        self._memory: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._changed = asyncio.Event()
        self._rendered: dict[bool, tuple[MediaPlaylist, str]] = {}

    @classmethod
    def from_recording(cls, space_id: str, directory: Path) -> Program | None:
        """Rebuild a program from disk (after a restart), or ``None`` if nothing is there."""
        recovered = Recorder.recover(directory)
        if recovered.init is None:
            return None
        init = recovered.init
        cadence = Cadence(
            part_units=init.part_units,
            parts_per_segment=init.parts_per_segment,
            sample_rate=init.sample_rate,
        )
        timeline = Timeline(cadence)
        replay_into(timeline, recovered)
        program = cls(space_id, directory, recovered.init_data, timeline)
        if recovered.ended:
            timeline.end()
        return program

    # -- changes, from the media worker's feed -------------------------------------------

    def add_part(self, part: Part) -> None:
        if self._known(part.msn, part.index):
            return  # already read back from the recording when the program resumed
        self.timeline.add(part)
        if self._gap_at is not None:
            lost = float(part.program_date_time - self._gap_at)
            self.interruption = Interruption(clock.now(), round(max(0.0, lost), 1), self.moved)
            self._gap_at = None
            self.moved = False
        self._memory[(part.msn, part.index)] = part.data
        limit = MEMORY_SEGMENTS * self.timeline.cadence.parts_per_segment
        while len(self._memory) > limit:
            self._memory.popitem(last=False)
        self._notify()

    def add_gap(self, marker: GapMarker) -> None:
        if self._known(marker.msn, 0):
            return  # the resumed recording already holds this gap
        self.timeline.add_gap(marker)
        if self._gap_at is None:
            self._gap_at = marker.program_date_time
        self._notify()

    def end(self) -> None:
        self.timeline.end()
        self._notify()

    def _known(self, msn: int, index: int) -> bool:
        """Whether the timeline already has this part (or segment, for a gap)."""
        next_msn, next_index = self.playlist.next_part
        return (msn, index) < (next_msn, next_index)

    def _notify(self) -> None:
        self._rendered.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    # -- reads, for requests -------------------------------------------------------------

    @property
    def playlist(self) -> MediaPlaylist:
        return self.timeline.snapshot()

    def render(self, skip: bool) -> str:
        """The playlist text, rendered once per change (not once per request)."""
        snapshot = self.playlist
        cached = self._rendered.get(skip)
        if cached is None or cached[0] is not snapshot:
            cached = (snapshot, snapshot.render(skip=skip))
            self._rendered[skip] = cached
        return cached[1]

    async def changed(self, within: float) -> bool:
        """Wait until the program changes; False if ``within`` seconds pass first."""
        try:
            await asyncio.wait_for(self._changed.wait(), within)
        except TimeoutError:
            return False
        return True

    def part(self, msn: int, index: int) -> bytes | None:
        """A listed part's bytes, or ``None`` if it is not (or no longer) available."""
        if not any(entry.index == index for entry in self._parts_of(msn)):
            return None
        data = self._memory.get((msn, index))
        if data is not None:
            return data
        try:
            return Recorder.read_part(self.directory, msn, index)
        except OSError:
            return None

    def segment(self, msn: int) -> bytes | None:
        """A complete segment (its parts concatenated), or ``None``."""
        playlist = self.playlist
        offset = msn - playlist.media_sequence
        if not 0 <= offset < len(playlist.segments) or playlist.segments[offset].gap:
            return None
        chunks = [self.part(msn, entry.index) for entry in playlist.segments[offset].parts]
        if any(chunk is None for chunk in chunks):
            return None
        return b"".join(chunk for chunk in chunks if chunk is not None)

    def is_upcoming_part(self, msn: int, index: int) -> bool:
        """Whether the part is the next one to be made (the preload hint) or right after."""
        playlist = self.playlist
        if playlist.ended:
            return False
        next_msn, next_index = playlist.next_part
        parts_per_segment = self.timeline.cadence.parts_per_segment
        ahead = (msn - next_msn) * parts_per_segment + (index - next_index)
        return 0 <= ahead <= 1 and 0 <= index < parts_per_segment

    def _parts_of(self, msn: int) -> tuple[PartEntry, ...]:
        playlist = self.playlist
        offset = msn - playlist.media_sequence
        if 0 <= offset < len(playlist.segments):
            return playlist.segments[offset].parts
        if playlist.open is not None and playlist.open.msn == msn:
            return playlist.open.parts
        return ()


def replay_into(timeline: Timeline, recorded: Recorded) -> None:
    """Feed a recording read back from disk into a fresh timeline, in recorded order."""
    for entry in recorded.entries:
        if isinstance(entry, GapLine):
            timeline.add_gap(GapMarker(entry.msn, entry.duration, entry.pdt))
        else:
            timeline.add(
                Part(
                    msn=entry.msn,
                    index=entry.index,
                    pts=entry.pts,
                    duration=entry.duration,
                    data=b"",
                    program_date_time=entry.pdt,
                    closes_segment=entry.closes_segment,
                )
            )
