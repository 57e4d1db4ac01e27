"""The multivariant playlist ``index.m3u8``: every space's entry point.

A bare media playlist leaves a player to guess what its ``.m4s`` parts hold; some guess
video, then fail when the first part is audio. The multivariant playlist says it: one
audio-only variant (``CODECS`` names AAC-LC and nothing else, which 8216bis 4.4.6.2 allows
for a stream without video) whose URI is the media playlist ``live.m3u8``, which stays
where it was for players that take it directly.

``BANDWIDTH`` is the peak segment bit rate and ``AVERAGE-BANDWIDTH`` the average, with
fMP4 framing included (8216bis 4.4.6.2): bounds for the program's 64 kbit/s AAC, checked
against the segments of a real live space by ``tests/media/test_multivariant.py``
(speech measured 77 kbit/s peak and 74 kbit/s average per segment).
"""

from __future__ import annotations

from podium.segment.names import PLAYLIST_NAME

MULTIVARIANT_NAME = "index.m3u8"
# The program's AAC-LC bit rate, mono at 48 kHz (the encoder's target).
PROGRAM_BITRATE = 64_000
CODECS = "mp4a.40.2"
# The encoder's rate control lets a segment run above the target now and then, and each
# part carries a moof and an mdat header: headroom for both.
PEAK_BANDWIDTH = 96_000
AVERAGE_BANDWIDTH = 80_000


def render_multivariant() -> str:
    """The multivariant playlist text; the same for every space (its URIs are relative)."""
    return (
        "#EXTM3U\n"
        "#EXT-X-VERSION:6\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        f"#EXT-X-STREAM-INF:BANDWIDTH={PEAK_BANDWIDTH},AVERAGE-BANDWIDTH={AVERAGE_BANDWIDTH},"
        f'CODECS="{CODECS}"\n'
        f"{PLAYLIST_NAME}\n"
    )
