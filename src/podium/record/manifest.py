"""The recording manifest: one JSON object per line, appended and fsynced as parts land.

The manifest is the source of truth for what was recorded. A part counts only once its file
is durable *and* its line is in the manifest, so a crash at any moment leaves either a part
fully accounted for or one that recovery ignores. A torn last line is ignored too.

Lines::

    {"kind": "init", "sample_rate": 48000, "channels": 1, "part_units": 12,
     "parts_per_segment": 8, "program_start": "1764355200.5", "sha256": "…"}
    {"kind": "part", "msn": 0, "index": 0, "pts": 0, "duration": 12288,
     "pdt": "1764355200.5", "closes_segment": false, "size": 2113, "sha256": "…"}
    {"kind": "gap", "msn": 7, "duration": 98304, "pdt": "…"}   (lost in a crash; the
                                                               parts after it come from
                                                               a new encoder run)
    {"kind": "end"}

Times are exact: ``pdt`` and ``program_start`` are decimal strings of ``Fraction`` values.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from podium.segment.cadence import Cadence


@dataclass(frozen=True, slots=True)
class InitLine:
    sample_rate: int
    channels: int
    part_units: int
    parts_per_segment: int
    program_start: Fraction
    sha256: str
    kind: Literal["init"] = "init"


def init_line(init: bytes, cadence: Cadence, channels: int, program_start: Fraction) -> InitLine:
    """The first line of a recording of a program whose init segment is ``init``."""
    return InitLine(
        sample_rate=cadence.sample_rate,
        channels=channels,
        part_units=cadence.part_units,
        parts_per_segment=cadence.parts_per_segment,
        program_start=program_start,
        sha256=hashlib.sha256(init).hexdigest(),
    )


@dataclass(frozen=True, slots=True)
class PartLine:
    msn: int
    index: int
    pts: int
    duration: int
    pdt: Fraction
    closes_segment: bool
    size: int
    sha256: str
    kind: Literal["part"] = "part"


@dataclass(frozen=True, slots=True)
class GapLine:
    msn: int
    duration: int
    pdt: Fraction
    kind: Literal["gap"] = "gap"


@dataclass(frozen=True, slots=True)
class EndLine:
    kind: Literal["end"] = "end"


Line = InitLine | PartLine | GapLine | EndLine


def _fraction(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}" if value.denominator != 1 else str(value)


def render(line: Line) -> bytes:
    """One manifest line, newline-terminated."""
    document: dict[str, Any] = {"kind": line.kind}
    for name in line.__dataclass_fields__:
        if name == "kind":
            continue
        value = getattr(line, name)
        document[name] = _fraction(value) if isinstance(value, Fraction) else value
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def parse(raw: bytes) -> Line | None:
    """The line's value, or ``None`` for anything that is not a whole, valid line."""
    if not raw.endswith(b"\n"):
        return None  # torn by a crash mid-append
    try:
        document = json.loads(raw)
        kind = document.pop("kind")
        if kind == "init":
            document["program_start"] = Fraction(document["program_start"])
            return InitLine(**document)
        if kind == "part":
            document["pdt"] = Fraction(document["pdt"])
            return PartLine(**document)
        if kind == "gap":
            document["pdt"] = Fraction(document["pdt"])
            return GapLine(**document)
        if kind == "end":
            return EndLine()
    except (ValueError, TypeError, KeyError, AttributeError, ZeroDivisionError):
        return None
    return None
