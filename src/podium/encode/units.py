"""What the segmenter consumes: encoded AAC-LC access units."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One raw AAC-LC frame (no ADTS header) with its program timestamp.

    ``pts`` is in samples at the stream's sample rate, counted from the program's sample 0;
    it may be negative for the encoder's priming frame (FFmpeg's ``aac`` encoder emits its
    first packet at ``pts == -1024``). ``duration`` is in samples: 1024 for every AAC-LC
    frame except possibly the last, which an encoder may shorten to trim its padding.
    Consecutive units of one program satisfy ``next.pts == prev.pts + prev.duration``.
    """

    pts: int
    data: bytes
    duration: int = 1024
