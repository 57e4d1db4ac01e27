"""Segment stage: AAC-LC access units in, LL-HLS CMAF objects and playlists out.

Consumes :class:`~podium.encode.units.AccessUnit` values (raw AAC-LC frames with
``pts`` in samples, from ``podium.encode``) and the encoder's AudioSpecificConfig.

Produces, as values and without I/O:

* ``init.mp4``: the CMAF header (:func:`~podium.segment.fmp4.init_segment`);
* parts: :class:`~podium.segment.segmenter.Part`, one CMAF chunk (``moof`` + ``mdat``) of
  256 ms each, published as ``part-{msn}-{index}.m4s``; a segment ``seg-{msn}.m4s`` is the
  concatenation of its eight parts (:class:`~podium.segment.segmenter.Segmenter`);
* the media playlist ``live.m3u8``: :class:`~podium.segment.timeline.Timeline` builds
  :class:`~podium.segment.playlist.MediaPlaylist` snapshots, which render themselves;
* decisions for Blocking Playlist Reload requests
  (:func:`~podium.segment.blocking.decide`).

The names of all these objects, and the strict parser for request paths, are in
:mod:`podium.segment.names`. Downstream, ``podium.record`` stores the parts and
``podium.origin`` serves them; neither is imported here.
"""

from podium.encode.units import AccessUnit
from podium.segment.blocking import Action, BlockingRequest, Decision, decide, decide_query
from podium.segment.cadence import Cadence
from podium.segment.fmp4 import fragment, init_segment
from podium.segment.names import Kind, ObjectName, parse_name
from podium.segment.playlist import MediaPlaylist, OpenSegment, PartEntry, SegmentEntry
from podium.segment.segmenter import Part, Segmenter
from podium.segment.timeline import GapMarker, Timeline

__all__ = [
    "AccessUnit",
    "Action",
    "BlockingRequest",
    "Cadence",
    "Decision",
    "GapMarker",
    "Kind",
    "MediaPlaylist",
    "ObjectName",
    "OpenSegment",
    "Part",
    "PartEntry",
    "SegmentEntry",
    "Segmenter",
    "Timeline",
    "decide",
    "decide_query",
    "fragment",
    "init_segment",
    "parse_name",
]
