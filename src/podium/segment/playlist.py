"""The LL-HLS media playlist of a space, as a value, and its rendering.

:class:`MediaPlaylist` is a snapshot of what exists: complete (or gap) segments, the parts
of the segment in progress, and whether the program has ended. :meth:`MediaPlaylist.render`
turns it into the text served as ``live.m3u8``, following draft-pantos-hls-rfc8216bis
("8216bis" below; section numbers from draft -16 onwards).

Layout of a live playlist, default cadence::

    #EXTM3U
    #EXT-X-VERSION:6
    #EXT-X-TARGETDURATION:2
    #EXT-X-PLAYLIST-TYPE:EVENT
    #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.768,CAN-SKIP-UNTIL=12.0
    #EXT-X-PART-INF:PART-TARGET=0.256
    #EXT-X-MEDIA-SEQUENCE:0
    #EXT-X-INDEPENDENT-SEGMENTS
    #EXT-X-MAP:URI="init.mp4"
    #EXT-X-PROGRAM-DATE-TIME:2026-11-28T19:00:00.000Z
    #EXT-X-PART:DURATION=0.256,URI="part-0-0.m4s",INDEPENDENT=YES    (recent segments only)
    ...
    #EXTINF:2.048,
    seg-0.m4s
    ...
    #EXT-X-PROGRAM-DATE-TIME:...                                     (segment in progress)
    #EXT-X-PART:DURATION=0.256,URI="part-7-0.m4s",INDEPENDENT=YES
    #EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-7-1.m4s"

Once ended, parts and the preload hint go and ``#EXT-X-ENDLIST`` is appended: the same
URL is then a complete replay. Players that predate LL-HLS skip its tags (RFC 8216 6.3.1:
"To support forward compatibility, when parsing Playlists, Clients MUST: ignore any
unrecognized tags"), and every complete segment has an ``EXTINF`` and a URI, so any HLS
player can play the playlist as ordinary HLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from podium.segment import names
from podium.segment.cadence import Cadence, round_half_up

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# 8216bis 6.2.2: "EXT-X-PART tags SHOULD be removed from the Playlist after they are greater
# than three Target Durations from the end of the Playlist."
_PART_WINDOW_TARGET_DURATIONS = 3
# 8216bis 4.4.3.8: the Skip Boundary "MUST be at least six times the Target Duration".
_SKIP_BOUNDARY_TARGET_DURATIONS = 6
# 8216bis 4.4.3.8: PART-HOLD-BACK "MUST be at least twice the Part Target Duration" and
# "SHOULD be at least three times"; Podium holds itself to the SHOULD.
_PART_HOLD_BACK_PARTS = 3


@dataclass(frozen=True, slots=True)
class PartEntry:
    """A listed partial segment: ``#EXT-X-PART``. ``duration`` is in samples."""

    msn: int
    index: int
    duration: int
    independent: bool = True

    @property
    def uri(self) -> str:
        return names.part_name(self.msn, self.index)


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    """A complete media segment, or a gap standing in for one that was lost.

    Attributes:
        msn: its Media Sequence Number.
        duration: samples it covers (a gap: the time it stands for).
        program_date_time: Unix time of its first sample.
        parts: its parts, in order; empty for a gap.
        gap: ``#EXT-X-GAP``: the segment's media is missing (lost in a crash).
        discontinuity: ``#EXT-X-DISCONTINUITY`` before it: a new encoder run starts here.
    """

    msn: int
    duration: int
    program_date_time: Fraction
    parts: tuple[PartEntry, ...] = ()
    gap: bool = False
    discontinuity: bool = False

    @property
    def uri(self) -> str:
        return names.segment_name(self.msn)


@dataclass(frozen=True, slots=True)
class OpenSegment:
    """The segment in progress: its parts so far (at least one)."""

    msn: int
    program_date_time: Fraction
    parts: tuple[PartEntry, ...]
    discontinuity: bool = False

    @property
    def duration(self) -> int:
        return sum(part.duration for part in self.parts)


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    """A snapshot of a space's media playlist.

    Attributes:
        cadence: part and segment sizes; fixes PART-TARGET and TARGETDURATION.
        media_sequence: Media Sequence Number of the first listed segment (or of the open
            segment, or of the next one, when none is listed).
        segments: complete and gap segments, consecutive from ``media_sequence``.
        open: the segment in progress, right after the last complete one; ``None`` when
            between segments or ended.
        ended: the program is over: render ``#EXT-X-ENDLIST``.
        event: render ``#EXT-X-PLAYLIST-TYPE:EVENT``: segments are only ever appended,
            so players may seek back to the start of the space.
        delta_updates: advertise ``CAN-SKIP-UNTIL`` and honour ``skip`` in :meth:`render`.
        part_hold_back: ``PART-HOLD-BACK`` in seconds; ``None`` for three part targets.
        discontinuity_sequence: ``#EXT-X-DISCONTINUITY-SEQUENCE``, for windows that have
            dropped discontinuities from their head.

    Raises:
        ValueError: if the fields contradict each other or the 8216bis bounds.
    """

    cadence: Cadence
    media_sequence: int
    segments: tuple[SegmentEntry, ...] = ()
    open: OpenSegment | None = None
    ended: bool = False
    event: bool = True
    delta_updates: bool = True
    part_hold_back: Fraction | None = None
    discontinuity_sequence: int = 0

    def __post_init__(self) -> None:
        if self.media_sequence < 0 or self.discontinuity_sequence < 0:
            raise ValueError("sequence numbers must not be negative")
        for offset, segment in enumerate(self.segments):
            if segment.msn != self.media_sequence + offset:
                raise ValueError(f"segment {segment.msn} out of sequence")
            if segment.duration <= 0:
                raise ValueError(f"segment {segment.msn} has no duration")
            if segment.gap and segment.parts:
                raise ValueError(f"gap segment {segment.msn} cannot have parts")
        if self.open is not None:
            if self.ended:
                raise ValueError("an ended playlist has no segment in progress")
            if self.open.msn != self.next_msn:
                raise ValueError(f"open segment {self.open.msn} != next msn {self.next_msn}")
            if not self.open.parts:
                raise ValueError("an open segment has at least one part")
        target = self.cadence.part_target
        for part in self.all_parts():
            if not 0 < part.duration <= target:
                # 8216bis 4.4.4.9: "The duration of a Partial Segment MUST be less than or
                # equal to the Part Target Duration."
                raise ValueError(f"part {part.uri} lasts {part.duration}, target {target}")
        if self.hold_back_seconds < _PART_HOLD_BACK_PARTS * self.cadence.part_target_seconds:
            raise ValueError("PART-HOLD-BACK must be at least three Part Target Durations")

    @property
    def next_msn(self) -> int:
        """Media Sequence Number of the segment in progress, or of the next one to start."""
        return self.media_sequence + len(self.segments)

    @property
    def last_segment_msn(self) -> int:
        """Media Sequence Number of the last complete segment (``media_sequence - 1`` if none)."""
        return self.next_msn - 1

    @property
    def next_part(self) -> tuple[int, int]:
        """``(msn, index)`` of the part that will be added next (the preload hint)."""
        if self.open is None:
            return self.next_msn, 0
        return self.open.msn, len(self.open.parts)

    @property
    def target_duration(self) -> int:
        """``EXT-X-TARGETDURATION``: the cadence's, or more if a listed segment needs it.

        8216bis 4.4.3.1: "The EXTINF duration of each Media Segment in a Playlist file,
        when rounded to the nearest integer, MUST be less than or equal to the Target
        Duration".
        """
        rate = self.cadence.sample_rate
        longest = max(
            (round_half_up(Fraction(segment.duration, rate)) for segment in self.segments),
            default=0,
        )
        return max(self.cadence.target_duration, longest)

    @property
    def hold_back_seconds(self) -> Fraction:
        if self.part_hold_back is not None:
            return self.part_hold_back
        return _PART_HOLD_BACK_PARTS * self.cadence.part_target_seconds

    @property
    def skip_boundary(self) -> int:
        """``CAN-SKIP-UNTIL`` in seconds: six Target Durations, the least 8216bis allows."""
        return _SKIP_BOUNDARY_TARGET_DURATIONS * self.target_duration

    def all_parts(self) -> list[PartEntry]:
        """Every known part, complete segments first, in order."""
        parts = [part for segment in self.segments for part in segment.parts]
        if self.open is not None:
            parts.extend(self.open.parts)
        return parts

    def render(self, *, skip: bool = False) -> str:
        """The playlist text, lines ending in ``\\n``.

        Args:
            skip: the request carried ``_HLS_skip=YES`` (or ``v2``): render a Playlist
                Delta Update, replacing segments older than the Skip Boundary with one
                ``#EXT-X-SKIP``. Ignored unless :attr:`delta_updates` and live
                (8216bis 6.2.5.1: "A Server MUST ignore the _HLS_skip directive if the
                Playlist does not contain the CAN-SKIP-UNTIL attribute, or if it contains
                an EXT-X-ENDLIST tag.").
        """
        rate = self.cadence.sample_rate
        skipped = self._skippable() if skip and self.delta_updates and not self.ended else 0
        # 8216bis 8: "A Playlist MUST indicate an EXT-X-VERSION of 9 or higher if it
        # contains: The EXT-X-SKIP tag", and "of 6 or higher if it contains: The EXT-X-MAP
        # tag in a Media Playlist that does not contain EXT-X-I-FRAMES-ONLY". The LL-HLS
        # tags themselves name no version, so a full playlist stays at 6 for old players.
        lines = ["#EXTM3U", f"#EXT-X-VERSION:{9 if skipped else 6}"]
        lines.append(f"#EXT-X-TARGETDURATION:{self.target_duration}")
        if self.event:
            lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
        control = f"CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={_decimal(self.hold_back_seconds)}"
        if self.delta_updates:
            control += f",CAN-SKIP-UNTIL={self.skip_boundary}.0"
        # EXT-X-SERVER-CONTROL and EXT-X-PART-INF stay after the end: an EVENT playlist
        # may only lose EXT-X-PART and Media Metadata tags (8216bis 6.2.1), and
        # "PART-HOLD-BACK is REQUIRED if the Playlist contains the EXT-X-PART-INF tag".
        lines.append(f"#EXT-X-SERVER-CONTROL:{control}")
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={_decimal(self.cadence.part_target_seconds)}")
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}")
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        # Every AAC-LC frame decodes on its own, so every segment starts independently.
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        lines.append(f'#EXT-X-MAP:URI="{names.INIT_NAME}"')
        if skipped:
            # 8216bis 4.4.5.2: "the EXT-X-SKIP tag replaces the segment URI lines and all
            # Media Segment Tags that are applied to those segments."
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")

        part_horizon = self._part_horizon()
        elapsed = sum(segment.duration for segment in self.segments[:skipped])
        for segment in self.segments[skipped:]:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            # Every segment carries its date, so a player can join, seek, or skip a gap
            # by wall-clock time, and so clock drift never accumulates across segments.
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(segment.program_date_time)}")
            if not self.ended and elapsed + segment.duration > part_horizon:
                lines.extend(_part_line(part, rate) for part in segment.parts)
            if segment.gap:
                lines.append("#EXT-X-GAP")
            lines.append(f"#EXTINF:{_decimal(Fraction(segment.duration, rate))},")
            lines.append(segment.uri)
            elapsed += segment.duration
        if self.open is not None:
            if self.open.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            # 8216bis 4.4.4.9: tags applied to a Parent Segment "MUST appear before the
            # first EXT-X-PART tag of that Parent Segment".
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(self.open.program_date_time)}")
            lines.extend(_part_line(part, rate) for part in self.open.parts)
        if self.ended:
            # 8216bis 4.4.5.3: "A Playlist containing an EXT-X-ENDLIST tag MUST NOT contain
            # an EXT-X-PRELOAD-HINT tag."
            lines.append("#EXT-X-ENDLIST")
        else:
            msn, index = self.next_part
            hint = names.part_name(msn, index)
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"')
        return "\n".join(lines) + "\n"

    def _end(self) -> int:
        """Samples from the first listed segment to the end of the last listed media."""
        total = sum(segment.duration for segment in self.segments)
        return total + (self.open.duration if self.open is not None else 0)

    def _part_horizon(self) -> int:
        """Offset (samples) past which segments still list their parts (8216bis 6.2.2)."""
        window = _PART_WINDOW_TARGET_DURATIONS * self.target_duration * self.cadence.sample_rate
        return self._end() - window

    def _skippable(self) -> int:
        """How many leading segments a delta update replaces with ``EXT-X-SKIP``.

        8216bis 6.2.5.1: the delta update replaces "Media Segments that are further from
        the end of the last (Parent) Media Segment in the Playlist than the Skip Boundary".
        A segment counts as further only if it ends before the boundary, which never
        skips a segment the client may not have. The end is that of the last complete
        segment: parts of the open one do not move the boundary.
        """
        end = sum(segment.duration for segment in self.segments)
        boundary = end - self.skip_boundary * self.cadence.sample_rate
        skipped = 0
        elapsed = 0
        for segment in self.segments:
            elapsed += segment.duration
            if elapsed > boundary:
                break
            skipped += 1
        return skipped


def _part_line(part: PartEntry, rate: int) -> str:
    line = f'#EXT-X-PART:DURATION={_decimal(Fraction(part.duration, rate))},URI="{part.uri}"'
    return line + (",INDEPENDENT=YES" if part.independent else "")


def _decimal(seconds: Fraction) -> str:
    """A decimal-floating-point for durations: up to 5 decimals (10 µs), no trailing zeros.

    Rounding is to nearest, so a part no longer than the Part Target Duration never renders
    longer than it.
    """
    scaled = round_half_up(seconds * 100_000)
    whole, fraction = divmod(scaled, 100_000)
    if not fraction:
        return f"{whole}.0"
    return f"{whole}.{fraction:05d}".rstrip("0")


def _date_time(unix: Fraction) -> str:
    """ISO 8601 date-time with milliseconds and ``Z``, as 8216bis 4.4.4.6 wants for PDT.

    Computed from whole milliseconds so the printed dates of consecutive segments differ
    by exactly their rounded durations, with no float drift.
    """
    millis = round_half_up(unix * 1000)
    moment = _EPOCH + timedelta(milliseconds=millis)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"
