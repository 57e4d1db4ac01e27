"""The part and segment cadence shared by the segmenter, the playlist and blocking reload."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class Cadence:
    """How many access units make a part and how many parts make a segment.

    The defaults, 12 AAC frames per part and 8 parts per segment at 48 kHz, give parts of
    12 288 samples = 256 ms and segments of 98 304 samples = 2.048 s. The numbers weigh
    latency against request rate:

    * A listener's delay behind the live edge is about ``PART-HOLD-BACK`` plus one part in
      flight. RFC 8216bis says ``PART-HOLD-BACK`` "MUST be at least twice the Part Target
      Duration" and "SHOULD be at least three times"; Podium keeps the SHOULD, so 256 ms
      parts give 0.768 s hold-back, leaving room under the 1.5 s p95 mouth-to-ear target
      for encoding, edge and player buffering. 200 ms parts would not divide into whole
      1024-sample frames at 48 kHz (9.375 frames).
    * Each part is one request per listener (to the edge) and one per edge (to the
      origin): about 4 requests per second per listener at 256 ms, a rate CDNs and
      Varnish coalesce comfortably; 128 ms parts would double it for 0.4 s less latency.
    * AAC-LC frames are all independent, so any part boundary is a valid start point.
    * Eight parts make 2.048 s segments: a ``TARGETDURATION`` of 2 s for players that
      ignore the low-latency tags, and small enough that one segment lost in a crash costs
      at most 2 s of recording.

    The segment length rounds to a whole ``TARGETDURATION`` (RFC 8216bis 4.4.3.1: "The
    EXTINF duration of each Media Segment in a Playlist file, when rounded to the nearest
    integer, MUST be less than or equal to the Target Duration").
    """

    part_units: int = 12
    parts_per_segment: int = 8
    sample_rate: int = 48000
    unit_samples: int = 1024

    def __post_init__(self) -> None:
        if self.part_units < 1 or self.parts_per_segment < 1:
            raise ValueError("a part needs at least one unit and a segment at least one part")
        if not 8000 <= self.sample_rate < 65536:
            # The AudioSampleEntry stores the rate as 16.16 fixed point (ISO/IEC 14496-12).
            raise ValueError(f"sample rate {self.sample_rate} not representable in mp4a")
        if self.unit_samples < 1:
            raise ValueError("unit_samples must be positive")

    @property
    def part_target(self) -> int:
        """Part Target Duration in samples: the longest a part can be."""
        return self.part_units * self.unit_samples

    @property
    def segment_target(self) -> int:
        """Nominal (and longest) segment duration in samples."""
        return self.part_target * self.parts_per_segment

    @property
    def part_target_seconds(self) -> Fraction:
        return Fraction(self.part_target, self.sample_rate)

    @property
    def target_duration(self) -> int:
        """``EXT-X-TARGETDURATION`` in whole seconds: the segment length rounded half up."""
        return max(1, round_half_up(Fraction(self.segment_target, self.sample_rate)))


def round_half_up(value: Fraction) -> int:
    """Nearest integer, halves rounded up (so 2.5 s segments need a 3 s target duration)."""
    return int((value + Fraction(1, 2)) // 1)
