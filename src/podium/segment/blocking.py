"""Blocking Playlist Reload: what to do with a playlist request's delivery directives.

8216bis 6.2.5.2 lets a client ask for a playlist that does not exist yet
(``live.m3u8?_HLS_msn=M&_HLS_part=N``); the server holds the request until it does. This
module only decides; the origin's asyncio shell does the holding:

* :attr:`Action.READY`: render the current snapshot and answer 200 now.
* :attr:`Action.WAIT`: hold the request; decide again on every new snapshot; answer when
  it says READY, or with 503 once ``timeout`` seconds have passed (8216bis: "A Server that
  cannot provide the requested Playlist after blocking for more than three Target
  Durations SHOULD return Service Unavailable, such as HTTP 503.").
* :attr:`Action.REJECT`: answer 400 now.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from fractions import Fraction

from podium.segment.playlist import MediaPlaylist

# 8216bis 4.2: a decimal-integer is "in the range from 0 to 2^64-1 ... from 1 to 20
# characters long". [0-9], not \d, which admits non-ASCII digits.
_DECIMAL_INTEGER = re.compile(r"[0-9]{1,20}", re.ASCII)
_DECIMAL_INTEGER_MAX = 2**64 - 1

# The server SHOULD give up after "more than three Target Durations" (6.2.5.2).
_TIMEOUT_TARGET_DURATIONS = 3


class Action(enum.Enum):
    READY = "ready"
    WAIT = "wait"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a playlist request.

    Attributes:
        action: see the module docstring.
        reason: one line for logs and problem details.
        timeout: for WAIT, how long to hold the request, in seconds.
    """

    action: Action
    reason: str
    timeout: Fraction | None = None

    @property
    def status(self) -> int:
        """The HTTP status: 200 for READY, 400 for REJECT, 503 for a WAIT that times out."""
        return {Action.READY: 200, Action.REJECT: 400, Action.WAIT: 503}[self.action]


@dataclass(frozen=True, slots=True)
class BlockingRequest:
    """The delivery directives of a playlist request.

    Attributes:
        msn: ``_HLS_msn``, or ``None`` if absent.
        part: ``_HLS_part``, or ``None`` if absent.
        skip: ``_HLS_skip`` was ``YES`` or ``v2``: the client wants a delta update.
    """

    msn: int | None = None
    part: int | None = None
    skip: bool = False

    @classmethod
    def parse(
        cls, msn: str | None, part: str | None, skip: str | None = None
    ) -> BlockingRequest | None:
        """Directives from raw query values (``None`` = absent); ``None`` if malformed.

        A malformed directive (not a decimal-integer) deserves 400; an ``_HLS_skip`` value
        other than ``YES`` or ``v2`` is not a request for a delta update.
        """
        msn_value = _decimal_integer(msn) if msn is not None else None
        part_value = _decimal_integer(part) if part is not None else None
        if (msn is not None and msn_value is None) or (part is not None and part_value is None):
            return None
        return cls(msn_value, part_value, skip in ("YES", "v2"))


def decide(playlist: MediaPlaylist, request: BlockingRequest) -> Decision:
    """Whether ``request`` can be answered from ``playlist`` now, later, or never.

    Pure: call it again with each new snapshot while waiting.
    """
    if playlist.ended:
        # "A Server MUST ignore _HLS_msn and _HLS_part if the Playlist contains an
        # EXT-X-ENDLIST tag."
        return Decision(Action.READY, "the playlist has ended")
    if request.msn is None:
        if request.part is not None:
            # "If the Playlist URI contains an _HLS_part directive but no _HLS_msn
            # directive, the Server MUST return Bad Request, such as HTTP 400."
            return Decision(Action.REJECT, "_HLS_part without _HLS_msn")
        return Decision(Action.READY, "no delivery directive")
    if _available(playlist, request.msn, request.part):
        return Decision(Action.READY, "the requested media is in the playlist")
    # "If the _HLS_msn is greater than the Media Sequence Number of the last Media Segment
    # in the current Playlist plus two, or if the _HLS_part exceeds the last Partial
    # Segment in the current Playlist by the Advance Part Limit, then the server SHOULD
    # immediately return Bad Request, such as HTTP 400. The Advance Part Limit is three
    # divided by the Part Target Duration if the Part Target Duration is less than one
    # second, or three otherwise."
    if request.msn > playlist.last_segment_msn + 2:
        return Decision(Action.REJECT, f"_HLS_msn={request.msn} is too far ahead")
    if request.part is not None:
        part_target = playlist.cadence.part_target_seconds
        limit = 3 / part_target if part_target < 1 else Fraction(3)
        if _parts_ahead(playlist, request.msn, request.part) > limit:
            return Decision(Action.REJECT, f"_HLS_part={request.part} is too far ahead")
    timeout = Fraction(_TIMEOUT_TARGET_DURATIONS * playlist.target_duration)
    return Decision(Action.WAIT, "the requested media is not there yet", timeout)


def decide_query(
    playlist: MediaPlaylist, msn: str | None, part: str | None, skip: str | None = None
) -> Decision:
    """:func:`decide` on raw ``_HLS_msn`` / ``_HLS_part`` query values (``None`` = absent)."""
    request = BlockingRequest.parse(msn, part, skip)
    if request is None:
        if playlist.ended:
            return Decision(Action.READY, "the playlist has ended")
        return Decision(Action.REJECT, "_HLS_msn and _HLS_part must be decimal integers")
    return decide(playlist, request)


def _available(playlist: MediaPlaylist, msn: int, part: int | None) -> bool:
    """Whether the playlist already holds segment ``msn`` (or part ``part`` of it) or later.

    6.2.5.2: with ``_HLS_msn`` alone the server waits "until the Playlist contains a Media
    Segment with a Media Sequence Number of M or later"; with ``_HLS_part`` too, "until the
    Playlist contains the Partial Segment with Part Index N and with a Media Sequence
    Number of M or later".
    """
    if msn < playlist.media_sequence:
        # "The Server MUST deliver the entire Playlist, even if the requested Media Segment
        # is not the last one in the Playlist, and even if it is no longer in the Playlist."
        return True
    if part is None:
        return msn <= playlist.last_segment_msn
    while msn <= playlist.last_segment_msn:
        parts = playlist.segments[msn - playlist.media_sequence].parts
        if part < len(parts):
            return True
        # "If the Client requests a Part Index greater than that of the final Partial
        # Segment of the Parent Segment, the Server MUST treat the request as one for Part
        # Index 0 of the following Parent Segment." A gap segment has no parts at all.
        msn, part = msn + 1, 0
    open_segment = playlist.open
    return open_segment is not None and msn == open_segment.msn and part < len(open_segment.parts)


def _parts_ahead(playlist: MediaPlaylist, msn: int, part: int) -> int:
    """How many parts past the last published one the requested part is (1 = the next).

    Future segments are counted at the cadence's nominal parts per segment.
    """
    next_msn, next_index = playlist.next_part
    per_segment = playlist.cadence.parts_per_segment
    return (msn - next_msn) * per_segment + part - next_index + 1


def _decimal_integer(text: str) -> int | None:
    if not _DECIMAL_INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if value <= _DECIMAL_INTEGER_MAX else None
