"""The URI names of a space's media objects: fixed, relative and strictly parseable.

=================  ============================  ============================
object             name                          cacheable
=================  ============================  ============================
init segment       ``init.mp4``                  immutable
part               ``part-{msn}-{index}.m4s``    immutable once it exists
segment            ``seg-{msn}.m4s``             immutable once it exists
media playlist     ``live.m3u8``                 changes while live
=================  ============================  ============================

Numbers are canonical decimal: no sign, no leading zeros, ASCII digits only, at most
:data:`MAX_MSN` and :data:`MAX_PART_INDEX`. :func:`parse_name` accepts exactly the names
:func:`part_name` and friends produce, so one object has one name (one cache key) and a
request path can never name a file outside this set.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

INIT_NAME = "init.mp4"
PLAYLIST_NAME = "live.m3u8"

# 2**32 segments of 2 s last 270 years; the bound keeps parsed numbers small and makes
# absurd requests fail fast rather than reach storage.
MAX_MSN = 2**32 - 1
# Far above any sensible parts-per-segment (a 2 s segment of 20 ms parts has 100).
MAX_PART_INDEX = 999

# [0-9] rather than \d: \d also matches non-ASCII digits such as "٣".
_NUMBER = r"(0|[1-9][0-9]{0,9})"
_PART = re.compile(rf"part-{_NUMBER}-(0|[1-9][0-9]{{0,2}})\.m4s", re.ASCII)
_SEGMENT = re.compile(rf"seg-{_NUMBER}\.m4s", re.ASCII)


class Kind(enum.Enum):
    INIT = "init"
    PART = "part"
    SEGMENT = "segment"
    PLAYLIST = "playlist"


@dataclass(frozen=True, slots=True)
class ObjectName:
    """A parsed media object name. ``msn`` is set for parts and segments, ``index`` for parts."""

    kind: Kind
    msn: int | None = None
    index: int | None = None

    def render(self) -> str:
        """The name again; ``parse_name(n.render()) == n``."""
        if self.kind is Kind.INIT:
            return INIT_NAME
        if self.kind is Kind.PLAYLIST:
            return PLAYLIST_NAME
        assert self.msn is not None
        if self.kind is Kind.SEGMENT:
            return segment_name(self.msn)
        assert self.index is not None
        return part_name(self.msn, self.index)


def part_name(msn: int, index: int) -> str:
    """``part-{msn}-{index}.m4s``. Raises ValueError outside the parseable range."""
    _check(msn, MAX_MSN, "msn")
    _check(index, MAX_PART_INDEX, "part index")
    return f"part-{msn}-{index}.m4s"


def segment_name(msn: int) -> str:
    """``seg-{msn}.m4s``. Raises ValueError outside the parseable range."""
    _check(msn, MAX_MSN, "msn")
    return f"seg-{msn}.m4s"


def parse_name(name: str) -> ObjectName | None:
    """The object a request's last path component names, or ``None`` for anything else.

    Only the exact forms above are accepted: no directories, dots, query strings,
    percent-escapes, signs, leading zeros, whitespace or numbers past the maxima.
    """
    if name == INIT_NAME:
        return ObjectName(Kind.INIT)
    if name == PLAYLIST_NAME:
        return ObjectName(Kind.PLAYLIST)
    # fullmatch, not match with "$": "$" also matches before a trailing newline.
    if match := _PART.fullmatch(name):
        msn, index = int(match[1]), int(match[2])
        if msn > MAX_MSN or index > MAX_PART_INDEX:
            return None
        return ObjectName(Kind.PART, msn, index)
    if match := _SEGMENT.fullmatch(name):
        msn = int(match[1])
        return ObjectName(Kind.SEGMENT, msn) if msn <= MAX_MSN else None
    return None


def _check(value: int, maximum: int, what: str) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} {value} outside 0..{maximum}")
