"""The feed from the media worker to the origin: one JSON object per line.

The media worker runs in its own process (so that listener traffic cannot delay it); it
tells the web process about each program's init segment, every part, lost spans, the end
and the recording's health through this feed. Media bytes travel base64-encoded: parts
are a few kilobytes, four a second per space.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from podium.segment.cadence import Cadence
from podium.segment.segmenter import Part
from podium.segment.timeline import GapMarker


@dataclass(frozen=True, slots=True)
class Began:
    """A program starts (or resumes after a restart, ``resumed`` true). A
    ``seamless`` one was handed over by another node on the same timeline: it goes on
    from the next segment, with nothing lost and no gap."""

    space_id: str
    init: bytes
    cadence: Cadence
    first_msn: int
    resumed: bool
    seamless: bool = False
    kind: Literal["began"] = "began"


@dataclass(frozen=True, slots=True)
class PartReady:
    space_id: str
    part: Part
    kind: Literal["part"] = "part"


@dataclass(frozen=True, slots=True)
class Gap:
    space_id: str
    marker: GapMarker
    kind: Literal["gap"] = "gap"


@dataclass(frozen=True, slots=True)
class Ended:
    space_id: str
    kind: Literal["ended"] = "ended"


@dataclass(frozen=True, slots=True)
class Exported:
    """The single-file replay is written (``ok``), or could not be (``reason``)."""

    space_id: str
    ok: bool
    reason: str = ""
    kind: Literal["exported"] = "exported"


@dataclass(frozen=True, slots=True)
class Health:
    """The recording's state and who is talking, sent when they change."""

    space_id: str
    recording: Literal["ok", "degraded", "off"]
    reason: str = ""
    speakers: tuple[str, ...] = ()
    talking: tuple[str, ...] = ()
    kind: Literal["health"] = "health"


Event = Began | PartReady | Gap | Ended | Exported | Health


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _frac(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def render(event: Event) -> bytes:
    """One line of the feed."""
    document: dict[str, Any] = {"kind": event.kind, "space_id": event.space_id}
    if isinstance(event, Began):
        document.update(
            init=_b64(event.init),
            part_units=event.cadence.part_units,
            parts_per_segment=event.cadence.parts_per_segment,
            sample_rate=event.cadence.sample_rate,
            first_msn=event.first_msn,
            resumed=event.resumed,
            seamless=event.seamless,
        )
    elif isinstance(event, PartReady):
        part = event.part
        document.update(
            msn=part.msn,
            index=part.index,
            pts=part.pts,
            duration=part.duration,
            pdt=_frac(part.program_date_time),
            closes_segment=part.closes_segment,
            data=_b64(part.data),
        )
    elif isinstance(event, Gap):
        marker = event.marker
        document.update(
            msn=marker.msn, duration=marker.duration, pdt=_frac(marker.program_date_time)
        )
    elif isinstance(event, Exported):
        document.update(ok=event.ok, reason=event.reason)
    elif isinstance(event, Health):
        document.update(
            recording=event.recording,
            reason=event.reason,
            speakers=list(event.speakers),
            talking=list(event.talking),
        )
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def parse(line: bytes) -> Event:
    """The event on ``line``. Raises ValueError for anything else (a worker bug)."""
    document = json.loads(line)
    kind, space_id = document["kind"], document["space_id"]
    if kind == "began":
        cadence = Cadence(
            part_units=document["part_units"],
            parts_per_segment=document["parts_per_segment"],
            sample_rate=document["sample_rate"],
        )
        return Began(
            space_id,
            base64.b64decode(document["init"]),
            cadence,
            document["first_msn"],
            document["resumed"],
            bool(document.get("seamless", False)),
        )
    if kind == "part":
        part = Part(
            msn=document["msn"],
            index=document["index"],
            pts=document["pts"],
            duration=document["duration"],
            data=base64.b64decode(document["data"]),
            program_date_time=Fraction(document["pdt"]),
            closes_segment=document["closes_segment"],
        )
        return PartReady(space_id, part)
    if kind == "gap":
        marker = GapMarker(document["msn"], document["duration"], Fraction(document["pdt"]))
        return Gap(space_id, marker)
    if kind == "ended":
        return Ended(space_id)
    if kind == "exported":
        return Exported(space_id, document["ok"], document["reason"])
    if kind == "health":
        return Health(
            space_id,
            document["recording"],
            document["reason"],
            tuple(document["speakers"]),
            tuple(document["talking"]),
        )
    raise ValueError(f"unknown feed event {kind!r}")
