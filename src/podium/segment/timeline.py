"""Build :class:`MediaPlaylist` snapshots from the parts a segmenter makes.

:class:`Timeline` is the bookkeeping between :class:`~podium.segment.segmenter.Segmenter`
and the playlist: it learns of each part as it is published, of segments lost in a crash
(:class:`GapMarker`), and of the end of the program, and hands out immutable snapshots to
render or to decide blocking requests against. Pure: no clock, no I/O.

After a crash, recovery replays the recorded parts into a fresh ``Timeline`` (``add``),
marks what was lost (``add_gap``), and the restarted segmenter continues past the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from podium.segment.cadence import Cadence
from podium.segment.playlist import MediaPlaylist, OpenSegment, PartEntry, SegmentEntry
from podium.segment.segmenter import Part


@dataclass(frozen=True, slots=True)
class GapMarker:
    """A segment whose media was lost (``#EXT-X-GAP``).

    Attributes:
        msn: the Media Sequence Number it takes; the next one after what is recorded.
        duration: samples of program time it stands for, at most one nominal segment
            (a longer outage takes several markers).
        program_date_time: Unix time its (missing) media would have started at.
    """

    msn: int
    duration: int
    program_date_time: Fraction


class Timeline:
    """The growing list of segments and parts of one program.

    Args:
        cadence: the segmenter's cadence.
        first_msn: Media Sequence Number of the first segment.
        event, delta_updates, part_hold_back: passed to every :class:`MediaPlaylist`.
    """

    def __init__(
        self,
        cadence: Cadence,
        *,
        first_msn: int = 0,
        event: bool = True,
        delta_updates: bool = True,
        part_hold_back: Fraction | None = None,
    ) -> None:
        self.cadence = cadence
        self._first_msn = first_msn
        self._event = event
        self._delta_updates = delta_updates
        self._part_hold_back = part_hold_back
        self._segments: list[SegmentEntry] = []
        self._open: list[Part] = []
        self._discontinuity = False
        self._ended = False
        self._snapshot: MediaPlaylist | None = None

    @property
    def next_msn(self) -> int:
        """Media Sequence Number of the segment in progress, or of the next one."""
        return self._first_msn + len(self._segments)

    @property
    def ended(self) -> bool:
        return self._ended

    def add(self, part: Part) -> None:
        """Record a published part; if it ``closes_segment``, its segment is complete.

        Raises:
            ValueError: if the part is not the next one (``msn``/``index`` out of order) or
                the program has ended.
        """
        self._check_live()
        expected = (self.next_msn, len(self._open))
        if (part.msn, part.index) != expected:
            raise ValueError(f"part {part.msn}/{part.index} is not the next, {expected}")
        self._open.append(part)
        if part.closes_segment:
            self._close_open()
        self._snapshot = None

    def add_gap(self, marker: GapMarker) -> None:
        """Record a lost segment; the segment after it starts with a discontinuity.

        A segment still in progress is closed first, short, with the parts it has: they
        were recorded, so they stay playable. The gap then takes the next msn.

        Raises:
            ValueError: if ``marker.msn`` is not the next msn once any open segment is
                closed, its duration is not in ``1..segment_target``, or after the end.
        """
        self._check_live()
        self._close_open()
        if marker.msn != self.next_msn:
            raise ValueError(f"gap at msn {marker.msn}, expected {self.next_msn}")
        if not 0 < marker.duration <= self.cadence.segment_target:
            raise ValueError(f"gap of {marker.duration} samples; one segment at most")
        self._segments.append(
            SegmentEntry(
                msn=marker.msn,
                duration=marker.duration,
                program_date_time=marker.program_date_time,
                gap=True,
                discontinuity=self._take_discontinuity(),
            )
        )
        # 8216bis 4.4.4.3: EXT-X-DISCONTINUITY is required on a change of "timestamp
        # sequence" or "encoding parameters"; the media after a crash comes from a new
        # encoder run (fresh priming, timestamps that jump over the gap), so it always
        # starts a discontinuity.
        self._discontinuity = True
        self._snapshot = None

    def discontinuity(self) -> None:
        """Mark that the next segment comes from a new encoder run (restart without loss).

        Closes a segment in progress, as :meth:`add_gap` does.
        """
        self._check_live()
        self._close_open()
        self._discontinuity = True
        self._snapshot = None

    def end(self) -> None:
        """The program is over: close the segment in progress. Idempotent."""
        if not self._ended:
            self._close_open()
            self._ended = True
            self._snapshot = None

    def snapshot(self) -> MediaPlaylist:
        """The playlist as it stands; the same object until something changes."""
        if self._snapshot is None:
            open_segment = None
            if self._open:
                first = self._open[0]
                open_segment = OpenSegment(
                    msn=first.msn,
                    program_date_time=first.program_date_time,
                    parts=tuple(_entry(part) for part in self._open),
                    discontinuity=self._discontinuity,
                )
            self._snapshot = MediaPlaylist(
                cadence=self.cadence,
                media_sequence=self._first_msn,
                segments=tuple(self._segments),
                open=open_segment,
                ended=self._ended,
                event=self._event,
                delta_updates=self._delta_updates,
                part_hold_back=self._part_hold_back,
            )
        return self._snapshot

    def _check_live(self) -> None:
        if self._ended:
            raise ValueError("the program has ended")

    def _take_discontinuity(self) -> bool:
        flag, self._discontinuity = self._discontinuity, False
        return flag

    def _close_open(self) -> None:
        if not self._open:
            return
        parts, self._open = self._open, []
        self._segments.append(
            SegmentEntry(
                msn=parts[0].msn,
                duration=sum(part.duration for part in parts),
                program_date_time=parts[0].program_date_time,
                parts=tuple(_entry(part) for part in parts),
                discontinuity=self._take_discontinuity(),
            )
        )


def _entry(part: Part) -> PartEntry:
    return PartEntry(part.msn, part.index, part.duration, part.independent)
