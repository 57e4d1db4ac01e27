"""Cut a continuous run of AAC access units into LL-HLS parts (CMAF chunks).

The segmenter is a pure state machine: :meth:`Segmenter.push` takes one access unit and
returns the parts it completed, :meth:`Segmenter.flush` closes the program. It never reads
a clock; a part is complete when it holds enough media, not when time has passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from podium.encode.units import AccessUnit
from podium.segment import fmp4, names
from podium.segment.cadence import Cadence


@dataclass(frozen=True, slots=True)
class Part:
    """One LL-HLS partial segment: a CMAF chunk and where it sits in the program.

    Attributes:
        msn: Media Sequence Number of the segment the part belongs to.
        index: Part Index within that segment, from 0.
        pts: program time of its first sample, in samples (see :class:`AccessUnit`).
        duration: samples it covers; at most the cadence's part target.
        data: ``moof`` + ``mdat`` bytes, served as ``part-{msn}-{index}.m4s``. The segment
            ``seg-{msn}.m4s`` is the concatenation of its parts' ``data`` in index order.
        program_date_time: Unix time (seconds, exact) of its first sample.
        independent: it can be decoded without earlier parts; always true for AAC-LC,
            where every frame is a sync sample.
        closes_segment: it is the last part of its segment. A segment also ends when the
            program ends; :meth:`Segmenter.flush` cannot mark a part already returned.
    """

    msn: int
    index: int
    pts: int
    duration: int
    data: bytes = field(repr=False)
    program_date_time: Fraction
    independent: bool = True
    closes_segment: bool = False

    @property
    def name(self) -> str:
        """Its URI in the playlist, ``part-{msn}-{index}.m4s``."""
        return names.part_name(self.msn, self.index)

    @property
    def end(self) -> int:
        """Program time just after its last sample."""
        return self.pts + self.duration


class Segmenter:
    """Groups access units into parts and parts into segments, at a fixed cadence.

    A part is ``part_units`` access units (12 AAC frames = 256 ms at 48 kHz by default); a
    segment is ``parts_per_segment`` parts (8 = 2.048 s). :class:`Cadence` explains these
    numbers. Part boundaries depend only on the count of units, so the cut is
    deterministic: the same units always give the same bytes.

    The fMP4 decode time (``tfdt``) of a unit is ``pts - decode_origin``; by default the
    origin is the first unit's pts, so the track starts at 0 (``tfdt`` is unsigned, and an
    AAC encoder's priming frame has negative ``pts``). A run resumed after a crash passes
    the first run's origin, so the track's timeline jumps forward over the gap instead of
    starting again at 0: players that ignore discontinuities then still see monotonic
    timestamps. ``mfhd`` sequence numbers are derived from the position
    (``msn * parts_per_segment + index + 1``) so they increase across restarts too.

    Args:
        program_start: Unix time of program sample 0, the origin of every part's
            ``program_date_time`` (``EXT-X-PROGRAM-DATE-TIME``).
        part_units, parts_per_segment, sample_rate: the cadence.
        first_msn: Media Sequence Number of the first segment; a pipeline that resumes
            after a crash starts past the segments already recorded and the gap.
        decode_origin: the program pts at decode time 0 (see above); no unit may precede it.
        track_id: the init segment's track ID.
    """

    def __init__(
        self,
        *,
        program_start: float | Fraction,
        part_units: int = 12,
        parts_per_segment: int = 8,
        sample_rate: int = 48000,
        first_msn: int = 0,
        decode_origin: int | None = None,
        track_id: int = 1,
    ) -> None:
        if first_msn < 0:
            raise ValueError("first_msn must not be negative")
        self.cadence = Cadence(part_units, parts_per_segment, sample_rate)
        self._program_start = Fraction(program_start)
        self._track_id = track_id
        self._msn = first_msn
        self._index = 0
        self._pending: list[AccessUnit] = []
        self._next_pts: int | None = None
        self._origin_pts = decode_origin
        self._flushed = False

    @property
    def next_part(self) -> tuple[int, int]:
        """``(msn, index)`` of the part being filled: the one to hint as preload."""
        return self._msn, self._index

    def program_date_time(self, pts: int) -> Fraction:
        """Unix time, exactly, of program sample ``pts``."""
        return self._program_start + Fraction(pts, self.cadence.sample_rate)

    def push(self, unit: AccessUnit) -> list[Part]:
        """Add the next access unit; return the parts it completed (none or one).

        Raises:
            ValueError: if the unit does not follow the previous one exactly
                (``pts != previous.pts + previous.duration``), if its duration is not
                positive or exceeds one frame, or after :meth:`flush`.
        """
        if self._flushed:
            raise ValueError("the program has ended; start a new Segmenter")
        if not 0 < unit.duration <= self.cadence.unit_samples:
            raise ValueError(f"unit at pts {unit.pts} has duration {unit.duration}")
        if self._next_pts is None:
            if self._origin_pts is None:
                self._origin_pts = unit.pts
            elif unit.pts < self._origin_pts:
                raise ValueError(f"unit at pts {unit.pts} precedes decode origin")
        elif unit.pts != self._next_pts:
            # A hole or overlap would make the part's duration lie about its content; the
            # encoder produces frames back to back, so this is a bug upstream.
            raise ValueError(f"unit at pts {unit.pts}, expected {self._next_pts}")
        self._next_pts = unit.pts + unit.duration
        self._pending.append(unit)
        if len(self._pending) < self.cadence.part_units:
            return []
        return [self._cut(closes_segment=self._index == self.cadence.parts_per_segment - 1)]

    def flush(self) -> list[Part]:
        """End the program: return the short part still being filled, if any.

        That part closes its segment. If no unit was pending, the segment in progress
        (if it has parts) simply ends with its last part already returned. Calling it
        again returns nothing.
        """
        self._flushed = True
        if not self._pending:
            return []
        return [self._cut(closes_segment=True)]

    def _cut(self, *, closes_segment: bool) -> Part:
        units, self._pending = self._pending, []
        assert self._origin_pts is not None  # set with the first unit
        pts = units[0].pts
        sequence_number = self._msn * self.cadence.parts_per_segment + self._index + 1
        part = Part(
            msn=self._msn,
            index=self._index,
            pts=pts,
            duration=sum(unit.duration for unit in units),
            data=fmp4.fragment(
                sequence_number, pts - self._origin_pts, units, track_id=self._track_id
            ),
            program_date_time=self.program_date_time(pts),
            closes_segment=closes_segment,
        )
        if closes_segment:
            self._msn += 1
            self._index = 0
        else:
            self._index += 1
        return part
