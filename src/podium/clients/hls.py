"""What an HLS listener reads off the wire, as values: media playlists and CMAF audio.

Two formats, both parsed without I/O, strictly enough that a broken or hostile server
produces a :class:`ValueError` naming the problem rather than nonsense downstream:

* the multivariant playlist, a space's entry point: :func:`parse_multivariant` gives its
  :class:`Variant` streams and :func:`audio_variant` the one a listener plays;
* the media playlist (draft-pantos-hls-rfc8216bis, "8216bis" below), including the
  Low-Latency HLS tags: :func:`parse_playlist` gives a :class:`Playlist`;
  :func:`merge_delta` applies a Playlist Delta Update (``EXT-X-SKIP``) to the playlist
  it updates;
* CMAF / fragmented MP4 for one audio track (ISO/IEC 14496-12, "-12" below):
  :func:`parse_init` reads ``init.mp4`` into an :class:`AudioTrack`,
  :func:`parse_samples` cuts ``moof`` + ``mdat`` chunks (parts or whole segments) into
  timed :class:`Sample` values ready for a decoder.

Only what a listener needs is modelled; unknown tags are skipped, as 8216bis 6.3.1 asks
("Clients MUST: ignore any unrecognized tags"). Features a listener cannot honour
(encryption, byte ranges, a media playlist where a multivariant one is parsed and the
other way round) are refused with a clear message.
Nothing here imports the server side: this is how any third-party player sees Podium.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

# -- media playlists ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartRef:
    """One ``#EXT-X-PART``: a partial segment. ``duration`` in seconds, exact."""

    uri: str
    duration: Fraction
    independent: bool = False
    gap: bool = False


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A media segment as the playlist lists it.

    Attributes:
        msn: its Media Sequence Number.
        uri: the segment's URI, or ``None`` for the segment in progress, of which only the
            parts listed after the last segment URI are known.
        duration: ``EXTINF`` seconds, or the sum of the parts of a segment in progress.
        parts: its listed parts, in order (old segments are listed without parts).
        program_date_time: Unix time of its first sample, exact, from
            ``EXT-X-PROGRAM-DATE-TIME`` or derived from the previous segment's; ``None``
            when the playlist gives no date.
        map_uri: the ``EXT-X-MAP`` URI in effect for it, if any.
        discontinuity: ``EXT-X-DISCONTINUITY`` precedes it.
        gap: ``EXT-X-GAP``: its media is missing; a client must not load it.
    """

    msn: int
    uri: str | None
    duration: Fraction
    parts: tuple[PartRef, ...] = ()
    program_date_time: Fraction | None = None
    map_uri: str | None = None
    discontinuity: bool = False
    gap: bool = False

    @property
    def complete(self) -> bool:
        return self.uri is not None

    def part_offset(self, index: int) -> Fraction:
        """Seconds from the segment's start to the start of part ``index``."""
        return sum((part.duration for part in self.parts[:index]), Fraction(0))


@dataclass(frozen=True, slots=True)
class Playlist:
    """A parsed media playlist.

    Attributes:
        target_duration: ``EXT-X-TARGETDURATION``, whole seconds.
        media_sequence: ``EXT-X-MEDIA-SEQUENCE``: the msn of the first segment, skipped
            ones included.
        segments: listed segments in order, consecutive msns from
            ``media_sequence + skipped``; the last may be in progress (``uri is None``).
        part_target: ``EXT-X-PART-INF`` ``PART-TARGET`` seconds; ``None`` for ordinary HLS.
        can_block_reload: ``CAN-BLOCK-RELOAD=YES``: ``_HLS_msn``/``_HLS_part`` work.
        part_hold_back, hold_back: from ``EXT-X-SERVER-CONTROL``, seconds, if given.
        can_skip_until: ``CAN-SKIP-UNTIL`` seconds: delta updates are offered.
        skipped: ``EXT-X-SKIP`` ``SKIPPED-SEGMENTS``: this is a delta update.
        preload_hint: the URI of ``EXT-X-PRELOAD-HINT`` with ``TYPE=PART``.
        ended: ``EXT-X-ENDLIST``.
        playlist_type: ``EVENT``, ``VOD`` or ``None``.
    """

    version: int
    target_duration: int
    media_sequence: int
    segments: tuple[SegmentRef, ...]
    discontinuity_sequence: int = 0
    part_target: Fraction | None = None
    can_block_reload: bool = False
    part_hold_back: Fraction | None = None
    hold_back: Fraction | None = None
    can_skip_until: Fraction | None = None
    skipped: int = 0
    preload_hint: str | None = None
    ended: bool = False
    playlist_type: str | None = None

    @property
    def first_msn(self) -> int:
        """msn of the first listed (not skipped) segment."""
        return self.media_sequence + self.skipped

    @property
    def next_msn(self) -> int:
        """msn just past the listed segments."""
        return self.first_msn + len(self.segments)

    def segment(self, msn: int) -> SegmentRef | None:
        """The listed segment with this msn, or ``None``."""
        offset = msn - self.first_msn
        return self.segments[offset] if 0 <= offset < len(self.segments) else None

    @property
    def start_hold_back(self) -> Fraction:
        """How far from the end a player should start, in seconds.

        8216bis 4.4.3.8: with parts, ``PART-HOLD-BACK`` ("at least twice the Part Target
        Duration"); otherwise ``HOLD-BACK``, whose default is "three times the Target
        Duration".
        """
        if self.part_target is not None:
            return self.part_hold_back or 3 * self.part_target
        return self.hold_back or Fraction(3 * self.target_duration)


_TAG = re.compile(r"#(EXT[A-Z0-9-]*)(?::(.*))?", re.ASCII)
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^",\s]*)', re.ASCII)
_INTEGER = re.compile(r"[0-9]{1,20}", re.ASCII)
_FLOAT = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)
_DATE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(Z|z|[+-][0-9]{2}:?[0-9]{2})",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MULTIVARIANT = {"EXT-X-STREAM-INF", "EXT-X-MEDIA", "EXT-X-I-FRAME-STREAM-INF"}


@dataclass(frozen=True, slots=True)
class Variant:
    """One ``#EXT-X-STREAM-INF`` of a multivariant playlist (8216bis 4.4.6.2)."""

    uri: str
    bandwidth: int
    average_bandwidth: int | None
    codecs: tuple[str, ...]


def is_multivariant(text: str) -> bool:
    """Whether ``text`` is a multivariant playlist (it lists variant streams)."""
    return "#EXT-X-STREAM-INF" in text


def parse_multivariant(text: str) -> tuple[Variant, ...]:
    """The variant streams of a multivariant playlist, in the order listed.

    Raises:
        ValueError: with the line number, for text that is not one: no ``#EXTM3U``, a
            media playlist's tag, an ``#EXT-X-STREAM-INF`` without ``BANDWIDTH`` or
            without a URI after it, or no variant at all.
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        raise ValueError("line 1: not an HLS playlist (it does not start with #EXTM3U)")
    variants: list[Variant] = []
    pending: dict[str, str] | None = None
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        try:
            if not line:
                continue
            if not line.startswith("#"):
                if pending is None:
                    raise ValueError(f"a URI without #EXT-X-STREAM-INF before it: {line[:80]!r}")
                variants.append(_variant(line, pending))
                pending = None
                continue
            match = _TAG.fullmatch(line)
            if match is None:
                continue
            name, value = match[1], match[2]
            if name in _MEDIA_ONLY:
                raise ValueError(f"#{name}: this is a media playlist, not a multivariant one")
            if name == "EXT-X-STREAM-INF":
                pending = _attributes(value, name)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    if pending is not None:
        raise ValueError(f"line {len(lines)}: #EXT-X-STREAM-INF without a URI after it")
    if not variants:
        raise ValueError(f"line {len(lines)}: no #EXT-X-STREAM-INF: no variant to play")
    return tuple(variants)


def audio_variant(variants: tuple[Variant, ...]) -> Variant:
    """The variant a listener plays: of those whose codecs are all AAC (or undeclared),
    the one with the highest ``BANDWIDTH``.

    Raises:
        ValueError: no variant is AAC audio.
    """
    playable = [v for v in variants if all(c.startswith("mp4a.40.") for c in v.codecs)]
    if not playable:
        listed = ", ".join(",".join(v.codecs) or "?" for v in variants)
        raise ValueError(f"no variant is AAC audio (codecs: {listed})")
    return max(playable, key=lambda v: v.bandwidth)


def _variant(uri: str, attributes: dict[str, str]) -> Variant:
    bandwidth = _integer(_required(attributes, "BANDWIDTH", "EXT-X-STREAM-INF"), "BANDWIDTH")
    average = attributes.get("AVERAGE-BANDWIDTH")
    codecs = attributes.get("CODECS")
    listed = _quoted(codecs, "CODECS") if codecs is not None else ""
    return Variant(
        uri=uri,
        bandwidth=bandwidth,
        average_bandwidth=None if average is None else _integer(average, "AVERAGE-BANDWIDTH"),
        codecs=tuple(c.strip() for c in listed.split(",") if c.strip()),
    )


_MEDIA_ONLY = {"EXTINF", "EXT-X-TARGETDURATION", "EXT-X-PART", "EXT-X-MEDIA-SEQUENCE"}


def parse_playlist(text: str) -> Playlist:
    """Parse a media playlist.

    Segment dates follow 8216bis 4.4.4.6: a segment without its own
    ``EXT-X-PROGRAM-DATE-TIME`` continues from the previous one, unless a discontinuity
    separates them.

    Raises:
        ValueError: with the line number, for text that is not an HLS media playlist, a
            malformed tag or attribute, a URI without ``#EXTINF``, a missing
            ``#EXT-X-TARGETDURATION``, or a feature a listener cannot play (encryption,
            byte ranges, a multivariant playlist).
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        # 8216bis 4.4.1.1: "It MUST be the first line of every Media Playlist".
        raise ValueError("line 1: not an HLS playlist (it does not start with #EXTM3U)")
    builder = _Builder()
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        try:
            builder.line(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    try:
        return builder.finish()
    except ValueError as exc:
        raise ValueError(f"line {len(lines)}: {exc}") from None


class _Builder:
    """Accumulates a playlist line by line; :meth:`finish` makes the value."""

    def __init__(self) -> None:
        self.version = 1
        self.target_duration: int | None = None
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.part_target: Fraction | None = None
        self.control: dict[str, str] = {}
        self.skipped = 0
        self.preload_hint: str | None = None
        self.ended = False
        self.playlist_type: str | None = None
        self.segments: list[SegmentRef] = []
        # State of the segment being described (tags seen since the last URI).
        self.map_uri: str | None = None
        self.parts: list[PartRef] = []
        self.extinf: Fraction | None = None
        self.date: Fraction | None = None
        self.discontinuity = False
        self.gap = False

    def line(self, line: str) -> None:
        if not line:
            return
        if not line.startswith("#"):
            self._uri(line)
            return
        match = _TAG.fullmatch(line)
        if match is None:
            return  # a comment: 8216bis 4.1 "Lines that start with '#' are either comments or tags"
        self._tag(match[1], match[2])

    def _tag(self, name: str, value: str | None) -> None:
        if name in _MULTIVARIANT:
            raise ValueError(
                f"#{name}: this is a multivariant playlist; pass the URL of a media playlist"
            )
        if name == "EXT-X-VERSION":
            self.version = _integer(value, name)
        elif name == "EXT-X-TARGETDURATION":
            self.target_duration = _integer(value, name)
        elif name == "EXT-X-MEDIA-SEQUENCE":
            self.media_sequence = _integer(value, name)
        elif name == "EXT-X-DISCONTINUITY-SEQUENCE":
            self.discontinuity_sequence = _integer(value, name)
        elif name == "EXT-X-PLAYLIST-TYPE":
            if value not in ("EVENT", "VOD"):
                raise ValueError(f"#EXT-X-PLAYLIST-TYPE must be EVENT or VOD, not {value!r}")
            self.playlist_type = value
        elif name == "EXT-X-ENDLIST":
            self.ended = True
        elif name == "EXT-X-SERVER-CONTROL":
            self.control = _attributes(value, name)
        elif name == "EXT-X-PART-INF":
            self.part_target = _float(_required(_attributes(value, name), "PART-TARGET", name))
        elif name == "EXT-X-MAP":
            attributes = _attributes(value, name)
            if "BYTERANGE" in attributes:
                raise ValueError("#EXT-X-MAP with BYTERANGE is not supported")
            self.map_uri = _quoted(_required(attributes, "URI", name), "URI")
        elif name == "EXT-X-KEY":
            method = _attributes(value, name).get("METHOD")
            if method != "NONE":
                raise ValueError(f"encrypted media (#EXT-X-KEY METHOD={method}) is not supported")
        elif name == "EXT-X-BYTERANGE":
            raise ValueError("#EXT-X-BYTERANGE is not supported")
        elif name == "EXT-X-SKIP":
            if self.segments or self.parts or self.extinf is not None:
                raise ValueError("#EXT-X-SKIP must come before the first segment")
            attributes = _attributes(value, name)
            self.skipped = _integer(_required(attributes, "SKIPPED-SEGMENTS", name), name)
        elif name == "EXT-X-PROGRAM-DATE-TIME":
            self.date = _date(value)
        elif name == "EXT-X-DISCONTINUITY":
            self.discontinuity = True
        elif name == "EXT-X-GAP":
            self.gap = True
        elif name == "EXTINF":
            if self.extinf is not None:
                raise ValueError("#EXTINF follows another #EXTINF without a URI between them")
            self.extinf = _float((value or "").split(",", 1)[0])
        elif name == "EXT-X-PART":
            self._part(_attributes(value, name))
        elif name == "EXT-X-PRELOAD-HINT":
            attributes = _attributes(value, name)
            if attributes.get("TYPE") == "PART":
                self.preload_hint = _quoted(_required(attributes, "URI", name), "URI")
        # Every other tag is ignored (8216bis 6.3.1).

    def _part(self, attributes: dict[str, str]) -> None:
        if "BYTERANGE" in attributes:
            raise ValueError("#EXT-X-PART with BYTERANGE is not supported")
        self.parts.append(
            PartRef(
                uri=_quoted(_required(attributes, "URI", "EXT-X-PART"), "URI"),
                duration=_float(_required(attributes, "DURATION", "EXT-X-PART")),
                independent=attributes.get("INDEPENDENT") == "YES",
                gap=attributes.get("GAP") == "YES",
            )
        )

    def _uri(self, uri: str) -> None:
        if self.extinf is None:
            raise ValueError(f"segment URI {uri!r} without a preceding #EXTINF")
        self.segments.append(self._segment(uri, self.extinf))
        self.extinf = None

    def _segment(self, uri: str | None, duration: Fraction) -> SegmentRef:
        msn = self.media_sequence + self.skipped + len(self.segments)
        date = self.date
        if date is None and self.segments and not self.discontinuity:
            previous = self.segments[-1]
            if previous.program_date_time is not None:
                date = previous.program_date_time + previous.duration
        segment = SegmentRef(
            msn=msn,
            uri=uri,
            duration=duration,
            parts=tuple(self.parts),
            program_date_time=date,
            map_uri=self.map_uri,
            discontinuity=self.discontinuity,
            gap=self.gap,
        )
        self.parts, self.date, self.discontinuity, self.gap = [], None, False, False
        return segment

    def finish(self) -> Playlist:
        if self.extinf is not None:
            raise ValueError("the last #EXTINF has no segment URI")
        if self.target_duration is None:
            # 8216bis 4.4.3.1: "The EXT-X-TARGETDURATION tag is REQUIRED."
            raise ValueError("no #EXT-X-TARGETDURATION: not a media playlist")
        if self.parts:
            # Parts after the last segment URI belong to the segment in progress.
            self.segments.append(
                self._segment(None, sum((part.duration for part in self.parts), Fraction(0)))
            )
        control = self.control
        return Playlist(
            version=self.version,
            target_duration=self.target_duration,
            media_sequence=self.media_sequence,
            segments=tuple(self.segments),
            discontinuity_sequence=self.discontinuity_sequence,
            part_target=self.part_target,
            can_block_reload=control.get("CAN-BLOCK-RELOAD") == "YES",
            part_hold_back=_optional_float(control.get("PART-HOLD-BACK")),
            hold_back=_optional_float(control.get("HOLD-BACK")),
            can_skip_until=_optional_float(control.get("CAN-SKIP-UNTIL")),
            skipped=self.skipped,
            preload_hint=self.preload_hint,
            ended=self.ended,
            playlist_type=self.playlist_type,
        )


def merge_delta(previous: Playlist, delta: Playlist) -> Playlist:
    """The full playlist that a Playlist Delta Update stands for.

    8216bis 6.2.5.1: the ``EXT-X-SKIP`` tag "replaces the segment URI lines and all Media
    Segment Tags that are applied to those segments"; the client takes those segments from
    the playlist it already has. A delta without ``EXT-X-SKIP`` is returned as it is.

    Raises:
        ValueError: if ``previous`` does not hold every skipped segment, complete (the
            client then needs a full reload).
    """
    if delta.skipped == 0:
        return delta
    kept: list[SegmentRef] = []
    for msn in range(delta.media_sequence, delta.first_msn):
        segment = previous.segment(msn)
        if segment is None or not segment.complete:
            raise ValueError(f"the delta update skips segment {msn}, which is not known")
        kept.append(segment)
    segments = kept + list(delta.segments)
    # A delta's first segment may rely on the skipped one for its date (8216bis 4.4.4.6).
    for position in range(len(kept), len(segments)):
        segment, before = segments[position], segments[position - 1]
        if (
            segment.program_date_time is None
            and not segment.discontinuity
            and before.program_date_time is not None
        ):
            date = before.program_date_time + before.duration
            segments[position] = dataclasses.replace(segment, program_date_time=date)
    return dataclasses.replace(delta, segments=tuple(segments), skipped=0)


def _attributes(value: str | None, tag: str) -> dict[str, str]:
    """An attribute-list (8216bis 4.2): ``NAME=value`` pairs separated by commas."""
    text = value or ""
    attributes: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _ATTRIBUTE.match(text, position)
        if match is None:
            raise ValueError(f"#{tag}: malformed attribute list {text!r}")
        attributes[match[1]] = match[2]
        position = match.end()
        if position < len(text):
            if text[position] != ",":
                raise ValueError(f"#{tag}: malformed attribute list {text!r}")
            position += 1
    return attributes


def _required(attributes: dict[str, str], name: str, tag: str) -> str:
    if name not in attributes:
        raise ValueError(f"#{tag} lacks its {name} attribute")
    return attributes[name]


def _quoted(value: str, name: str) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        raise ValueError(f"{name} must be a quoted string, not {value}")
    return value[1:-1]


def _integer(value: str | None, tag: str) -> int:
    if value is None or not _INTEGER.fullmatch(value):
        raise ValueError(f"#{tag} needs a decimal integer, not {value!r}")
    return int(value)


def _float(value: str) -> Fraction:
    """A non-negative decimal-floating-point, exactly (``0.256`` is 32/125, not a float)."""
    if not _FLOAT.fullmatch(value):
        raise ValueError(f"{value!r} is not a decimal number")
    return Fraction(value)


def _optional_float(value: str | None) -> Fraction | None:
    return None if value is None else _float(value)


def _date(value: str | None) -> Fraction:
    """An ISO 8601 date-time with a time zone (8216bis 4.4.4.6) as exact Unix seconds."""
    match = _DATE.fullmatch(value or "")
    if match is None:
        raise ValueError(f"#EXT-X-PROGRAM-DATE-TIME {value!r} is not an ISO 8601 date-time")
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"#EXT-X-PROGRAM-DATE-TIME {value!r}: {exc}") from None
    zone = match[8]
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    whole = (moment - _EPOCH) // timedelta(seconds=1)
    fraction = Fraction(match[7][1:]) / 10 ** (len(match[7]) - 1) if match[7] else Fraction(0)
    return whole + fraction


# -- CMAF / fragmented MP4 ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioTrack:
    """The audio track an init segment describes.

    Attributes:
        track_id: ``tkhd`` track ID; fragments name it in ``tfhd``.
        timescale: ``mdhd`` units per second of decode times and durations.
        sample_rate, channels: from the ``mp4a`` sample entry.
        config: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) from ``esds``: the
            decoder's extradata.
        default_duration, default_size: ``trex`` defaults for fragments that omit them.
    """

    track_id: int
    timescale: int
    sample_rate: int
    channels: int
    config: bytes
    default_duration: int = 0
    default_size: int = 0


@dataclass(frozen=True, slots=True)
class Sample:
    """One access unit from a fragment: ``decode_time`` and ``duration`` in the timescale."""

    decode_time: int
    duration: int
    data: bytes


_Box = tuple[bytes, int, int]  # type, payload start, payload end (offsets into the buffer)

# tfhd flags (-12 8.8.7.1) and trun flags (-12 8.8.8.1).
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_COMPOSITION = 0x000800
# objectTypeIndication 0x40: "Audio ISO/IEC 14496-3" (ISO/IEC 14496-1 Table 5).
_MPEG4_AUDIO = 0x40


def _boxes(data: bytes, start: int, end: int) -> Iterator[_Box]:
    """The boxes between ``start`` and ``end`` (-12 4.2: size, type, [largesize])."""
    position = start
    while position < end:
        if end - position < 8:
            raise ValueError(f"truncated box header at byte {position}")
        size, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if size == 1:
            if end - position < 16:
                raise ValueError(f"truncated box header at byte {position}")
            (size,) = struct.unpack_from(">Q", data, position + 8)
            header = 16
        elif size == 0:
            size = end - position  # "box extends to end of file"
        if size < header or position + size > end:
            raise ValueError(f"{kind!r} box at byte {position} claims {size} bytes")
        yield kind, position + header, position + size
        position += size


def _child(data: bytes, parent: _Box, kind: bytes, offset: int = 0) -> _Box:
    """The first ``kind`` box inside ``parent``, whose children start ``offset`` in."""
    for box in _boxes(data, parent[1] + offset, parent[2]):
        if box[0] == kind:
            return box
    raise ValueError(f"no {kind.decode()} box in {parent[0].decode()}")


def _version(data: bytes, box: _Box) -> int:
    _need(box, 4)
    return data[box[1]]


def _need(box: _Box, size: int) -> None:
    if box[2] - box[1] < size:
        raise ValueError(f"{box[0].decode()} box too short")


def parse_init(data: bytes) -> AudioTrack:
    """The first sound track of a CMAF header (``ftyp`` + ``moov``), which must be AAC.

    Raises:
        ValueError: for a malformed or truncated box structure, no sound track, or a
            sample entry other than MPEG-4 audio (``mp4a`` with an ``esds``).
    """
    root: _Box = (b"file", 0, len(data))
    moov = _child(data, root, b"moov")
    for trak in _boxes(data, moov[1], moov[2]):
        if trak[0] != b"trak":
            continue
        mdia = _child(data, trak, b"mdia")
        hdlr = _child(data, mdia, b"hdlr")
        _need(hdlr, 12)
        if data[hdlr[1] + 8 : hdlr[1] + 12] != b"soun":
            continue
        return _audio_track(data, moov, trak, mdia)
    raise ValueError("the init segment has no sound track")


def _audio_track(data: bytes, moov: _Box, trak: _Box, mdia: _Box) -> AudioTrack:
    tkhd = _child(data, trak, b"tkhd")
    # tkhd (-12 8.3.2): version 1 has 64-bit creation and modification times.
    id_at = tkhd[1] + (20 if _version(data, tkhd) == 1 else 12)
    _need(tkhd, id_at - tkhd[1] + 4)
    (track_id,) = struct.unpack_from(">I", data, id_at)
    mdhd = _child(data, mdia, b"mdhd")
    scale_at = mdhd[1] + (20 if _version(data, mdhd) == 1 else 12)
    _need(mdhd, scale_at - mdhd[1] + 4)
    (timescale,) = struct.unpack_from(">I", data, scale_at)
    if timescale == 0:
        raise ValueError("the audio track has a timescale of 0")
    stbl = _child(data, _child(data, mdia, b"minf"), b"stbl")
    # stsd (-12 8.5.2): full box header and entry_count, then the sample entries.
    stsd = _child(data, stbl, b"stsd")
    entry = next(_boxes(data, stsd[1] + 8, stsd[2]), None)
    if entry is None or entry[0] != b"mp4a":
        kind = entry[0].decode(errors="replace") if entry else "none"
        raise ValueError(f"unsupported audio sample entry {kind!r}; only AAC (mp4a) is")
    # AudioSampleEntry (-12 12.2.3): SampleEntry's 8 bytes, reserved u32[2], channelcount,
    # samplesize, pre_defined, reserved, samplerate 16.16; child boxes after 28 bytes.
    _need(entry, 28)
    channels, _, _, _, rate = struct.unpack_from(">HHHHI", data, entry[1] + 16)
    config = _audio_specific_config(data, _child(data, entry, b"esds", 28))
    default_duration = default_size = 0
    for mvex in _boxes(data, moov[1], moov[2]):
        if mvex[0] != b"mvex":
            continue
        for trex in _boxes(data, mvex[1], mvex[2]):
            if trex[0] == b"trex":
                _need(trex, 24)
                values = struct.unpack_from(">IIII", data, trex[1] + 4)
                if values[0] == track_id:
                    default_duration, default_size = values[2], values[3]
    return AudioTrack(
        track_id, timescale, rate >> 16, channels, config, default_duration, default_size
    )


def _audio_specific_config(data: bytes, esds: _Box) -> bytes:
    """The DecoderSpecificInfo inside ``esds`` (ISO/IEC 14496-1 7.2.6)."""
    payload = data[esds[1] + 4 : esds[2]]  # skip the full box header
    tag, body = _descriptor(payload, 0)
    if tag != 0x03:
        raise ValueError("esds does not hold an ES_Descriptor")
    # ES_Descriptor: ES_ID u16, flags u8, then optional fields the flags announce.
    if len(body) < 3:
        raise ValueError("ES_Descriptor too short")
    flags = body[2]
    position = 3
    if flags & 0x80:  # streamDependenceFlag: dependsOn_ES_ID u16
        position += 2
    if flags & 0x40:  # URL_Flag: URLlength u8, URLstring
        if position >= len(body):
            raise ValueError("ES_Descriptor too short")
        position += 1 + body[position]
    if flags & 0x20:  # OCRstreamFlag: OCR_ES_Id u16
        position += 2
    tag, config = _descriptor(body, position)
    if tag != 0x04 or len(config) < 13:
        raise ValueError("esds lacks a DecoderConfigDescriptor")
    if config[0] != _MPEG4_AUDIO:
        raise ValueError(f"unsupported audio object type 0x{config[0]:02x}; only AAC is")
    # objectTypeIndication, streamType, bufferSizeDB u24, maxBitrate, avgBitrate: 13 bytes.
    tag, specific = _descriptor(config, 13)
    if tag != 0x05 or not specific:
        raise ValueError("esds lacks the AudioSpecificConfig")
    return specific


def _descriptor(data: bytes, position: int) -> tuple[int, bytes]:
    """A descriptor's tag and body (ISO/IEC 14496-1 8.3.3: size in 7-bit groups)."""
    if position >= len(data):
        raise ValueError("truncated descriptor")
    tag = data[position]
    position += 1
    size = 0
    for _ in range(4):
        if position >= len(data):
            raise ValueError("truncated descriptor")
        byte = data[position]
        position += 1
        size = (size << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    if position + size > len(data):
        raise ValueError("descriptor runs past its container")
    return tag, data[position : position + size]


def parse_samples(data: bytes, track: AudioTrack) -> list[Sample]:
    """The track's samples in one or more CMAF chunks (``[styp] moof mdat ...``), in order.

    Sample data is located as -12 8.8.7 and 8.8.8 define it: from the ``tfhd`` base data
    offset if given, else from the start of the ``moof`` (CMAF requires
    ``default-base-is-moof``), plus the ``trun`` data offset.

    Raises:
        ValueError: for a malformed box structure, a ``traf`` of this track without
            ``tfdt`` (CMAF 7.3.2.3 requires it), or sample data outside ``data``.
    """
    samples: list[Sample] = []
    root: _Box = (b"file", 0, len(data))
    for moof in _boxes(data, 0, len(data)):
        if moof[0] != b"moof":
            continue
        for traf in _boxes(data, moof[1], moof[2]):
            if traf[0] == b"traf":
                samples.extend(_traf_samples(data, root, moof, traf, track))
    return samples


def _traf_samples(
    data: bytes, root: _Box, moof: _Box, traf: _Box, track: AudioTrack
) -> list[Sample]:
    tfhd = _child(data, traf, b"tfhd")
    _need(tfhd, 8)
    (flags_word, track_id) = struct.unpack_from(">II", data, tfhd[1])
    if track_id != track.track_id:
        return []
    flags = flags_word & 0xFFFFFF
    position = tfhd[1] + 8
    moof_start = moof[1] - 8
    base = moof_start
    default_duration, default_size = track.default_duration, track.default_size
    if flags & _TFHD_BASE_DATA_OFFSET:
        _need(tfhd, position - tfhd[1] + 8)
        (base,) = struct.unpack_from(">Q", data, position)
        position += 8
    if flags & _TFHD_SAMPLE_DESCRIPTION:
        position += 4
    if flags & _TFHD_DEFAULT_DURATION:
        _need(tfhd, position - tfhd[1] + 4)
        (default_duration,) = struct.unpack_from(">I", data, position)
        position += 4
    if flags & _TFHD_DEFAULT_SIZE:
        _need(tfhd, position - tfhd[1] + 4)
        (default_size,) = struct.unpack_from(">I", data, position)
        position += 4
    tfdt = next((box for box in _boxes(data, traf[1], traf[2]) if box[0] == b"tfdt"), None)
    if tfdt is None:
        raise ValueError("a track fragment has no tfdt (base media decode time)")
    if _version(data, tfdt) == 1:
        _need(tfdt, 12)
        (decode_time,) = struct.unpack_from(">Q", data, tfdt[1] + 4)
    else:
        _need(tfdt, 8)
        (decode_time,) = struct.unpack_from(">I", data, tfdt[1] + 4)
    samples: list[Sample] = []
    cursor = base  # where the next trun's data starts if it gives no data offset
    for trun in _boxes(data, traf[1], traf[2]):
        if trun[0] != b"trun":
            continue
        _need(trun, 8)
        trun_flags, count = struct.unpack_from(">II", data, trun[1])
        trun_flags &= 0xFFFFFF
        at = trun[1] + 8
        if trun_flags & _TRUN_DATA_OFFSET:
            _need(trun, at - trun[1] + 4)
            (offset,) = struct.unpack_from(">i", data, at)
            cursor = base + offset
            at += 4
        if trun_flags & _TRUN_FIRST_FLAGS:
            at += 4
        fields = [
            flag
            for flag in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_COMPOSITION)
            if trun_flags & flag
        ]
        _need(trun, at - trun[1] + 4 * len(fields) * count)
        for _ in range(count):
            duration, size = default_duration, default_size
            for flag in fields:
                (value,) = struct.unpack_from(">I", data, at)
                at += 4
                if flag == _TRUN_DURATION:
                    duration = value
                elif flag == _TRUN_SIZE:
                    size = value
            if cursor < 0 or cursor + size > root[2] or size == 0:
                raise ValueError(f"sample data at byte {cursor} ({size} bytes) is not there")
            samples.append(Sample(decode_time, duration, data[cursor : cursor + size]))
            cursor += size
            decode_time += duration
    return samples
