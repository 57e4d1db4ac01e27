"""Bundled speech recordings: what the demo space plays, and the test and benchmark input.

Each ``speech-NN.wav`` (48 kHz mono) has its transcript in ``speech-NN.txt``.
"""

from __future__ import annotations

from pathlib import Path

DIRECTORY = Path(__file__).parent
SPEECH = (DIRECTORY / "speech-01.wav", DIRECTORY / "speech-02.wav")


def transcript(recording: Path) -> str:
    return recording.with_suffix(".txt").read_text().strip()
