"""Fixtures for the segment tests: encoded tones and chirps, shared across a session."""

from __future__ import annotations

import pytest
from segment_audio import Encoded, chirp, encode, tone


@pytest.fixture(scope="session")
def tone_8s() -> Encoded:
    """8 s of a 1 kHz tone: three full segments, most of a fourth, a short last part."""
    return encode(tone(8.0))


@pytest.fixture(scope="session")
def chirp_3s() -> Encoded:
    return encode(chirp(3.0))
