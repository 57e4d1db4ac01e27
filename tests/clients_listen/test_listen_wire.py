"""The listener's wire formats (podium.clients.hls): playlists and CMAF, against what the
server side really renders and muxes, and against the m3u8 library's reading."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import m3u8
import pytest
from listen_media import PROGRAM_START, RATE, encode, tone

from podium.clients.hls import (
    Playlist,
    merge_delta,
    parse_init,
    parse_playlist,
    parse_samples,
)
from podium.segment import AccessUnit, Segmenter, Timeline
from podium.segment.fmp4 import fragment, init_segment


def timeline(parts: int, *, ended: bool = False) -> Timeline:
    """A timeline of ``parts`` parts of dummy units (the playlist never looks inside)."""
    segmenter = Segmenter(program_start=PROGRAM_START)
    line = Timeline(segmenter.cadence)
    pts = 0
    while len(line.snapshot().all_parts()) + 8 * line.snapshot().media_sequence < parts:
        for part in segmenter.push(AccessUnit(pts=pts, data=b"\x01")):
            line.add(part)
        pts += 1024
    if ended:
        line.end()
    return line


def test_parse_live_playlist_as_rendered() -> None:
    text = timeline(8 * 3 + 5).snapshot().render()
    playlist = parse_playlist(text)
    assert playlist.target_duration == 2
    assert playlist.part_target == Fraction(256, 1000)
    assert playlist.part_hold_back == Fraction(768, 1000)
    assert playlist.start_hold_back == Fraction(768, 1000)
    assert playlist.can_block_reload
    assert playlist.can_skip_until == 12
    assert not playlist.ended
    assert [s.msn for s in playlist.segments] == [0, 1, 2, 3]
    assert [s.complete for s in playlist.segments] == [True, True, True, False]
    assert playlist.segments[3].parts[4].uri == "part-3-4.m4s"
    assert playlist.segments[3].duration == Fraction(5 * 256, 1000)
    assert playlist.preload_hint == "part-3-5.m4s"
    assert all(s.map_uri == "init.mp4" for s in playlist.segments)
    # Dates are rendered to the millisecond; the parser reads them exactly.
    assert playlist.segments[0].program_date_time == PROGRAM_START
    assert playlist.segments[3].program_date_time == PROGRAM_START + Fraction(3 * 2048, 1000)
    assert playlist.segments[3].part_offset(2) == Fraction(512, 1000)

    # The m3u8 library reads the same segments, parts and durations.
    reference = m3u8.loads(text)
    assert [(s.uri, len(s.parts)) for s in reference.segments] == [
        (s.uri, len(s.parts)) for s in playlist.segments
    ]
    assert [float(s.duration) for s in playlist.segments[:3]] == [
        s.duration for s in reference.segments[:3]
    ]
    assert [p.uri for s in reference.segments for p in s.parts] == [
        p.uri for s in playlist.segments for p in s.parts
    ]
    assert reference.server_control.part_hold_back == float(playlist.start_hold_back)
    assert reference.preload_hint.uri == playlist.preload_hint


def test_parse_ended_playlist() -> None:
    playlist = parse_playlist(timeline(8 * 2 + 3, ended=True).snapshot().render())
    assert playlist.ended
    assert playlist.preload_hint is None
    assert [s.uri for s in playlist.segments] == ["seg-0.m4s", "seg-1.m4s", "seg-2.m4s"]
    assert all(not s.parts for s in playlist.segments)
    assert playlist.segments[2].duration == Fraction(3 * 256, 1000)


def test_gap_and_discontinuity_are_read() -> None:
    text = "\n".join(
        [
            "#EXTM3U",
            "#EXT-X-TARGETDURATION:2",
            '#EXT-X-MAP:URI="init.mp4"',
            "#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:05.500+01:00",
            "#EXTINF:2.048,",
            "seg-0.m4s",
            "#EXT-X-GAP",
            "#EXTINF:2.048,",
            "seg-1.m4s",
            "#EXT-X-DISCONTINUITY",
            '#EXT-X-MAP:URI="init-2.mp4"',
            "#EXTINF:2,",
            "seg-2.m4s",
        ]
    )
    playlist = parse_playlist(text)
    first, missing, after = playlist.segments
    assert first.program_date_time == PROGRAM_START - 3600
    # No date of its own: it continues from the previous segment...
    assert missing.gap
    assert missing.program_date_time == PROGRAM_START - 3600 + Fraction(2048, 1000)
    # ...unless a discontinuity separates them.
    assert after.discontinuity
    assert after.program_date_time is None
    assert after.map_uri == "init-2.mp4"
    assert playlist.start_hold_back == 6  # HOLD-BACK defaults to three Target Durations


def test_delta_update_merges_into_the_full_playlist() -> None:
    older = parse_playlist(timeline(8 * 8 + 2).snapshot().render())
    # The timeline grows by two more parts, as happens between two reloads.
    grown = timeline(8 * 8 + 4)
    delta = parse_playlist(grown.snapshot().render(skip=True))
    assert delta.skipped > 0
    assert delta.version == 9
    merged = merge_delta(older, delta)
    # Identical to the full playlist but for the version a delta needs (8216bis 8).
    assert dataclasses.replace(merged, version=6) == parse_playlist(grown.snapshot().render())
    assert merge_delta(older, older) is older  # not a delta: unchanged

    # A delta that skips what the client never had needs a full reload.
    too_short = parse_playlist(timeline(4).snapshot().render())
    with pytest.raises(ValueError, match="skips segment 0"):
        merge_delta(too_short, delta)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: not an HLS playlist"),
        ("<html><body>Details not available</body></html>", "line 1: not an HLS playlist"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\nseg-0.m4s\n", "line 3: segment URI"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:two,\nseg-0.m4s\n", "line 3: 'two'"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n", "last #EXTINF has no segment"),
        ("#EXTM3U\n#EXTINF:2,\nseg-0.m4s\n", "no #EXT-X-TARGETDURATION"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:-2\n", "line 2: #EXT-X-TARGETDURATION needs"),
        (
            '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.2"\nlow/live.m3u8\n',
            "line 2: #EXT-X-STREAM-INF: this is a multivariant playlist",
        ),
        (
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=0.256,URI=part.m4s\n",
            "line 3: URI must be a quoted string",
        ),
        (
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=0.256\n",
            "line 3: #EXT-X-PART lacks its URI",
        ),
        (
            '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n',
            "line 3: encrypted media",
        ),
        (
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:yesterday\n",
            "line 3: #EXT-X-PROGRAM-DATE-TIME 'yesterday'",
        ),
    ],
)
def test_malformed_playlists_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_playlist(text)


def test_unknown_tags_and_comments_are_ignored() -> None:
    playlist = parse_playlist(
        "#EXTM3U\n# a comment\n#EXT-X-TARGETDURATION:2\n#EXT-X-FUTURE-TAG:X=1\n\n"
        "#EXTINF:2.0,title\nseg-0.m4s\n#EXT-X-ENDLIST\n"
    )
    assert isinstance(playlist, Playlist)
    assert [s.uri for s in playlist.segments] == ["seg-0.m4s"]
    assert playlist.part_target is None
    assert playlist.start_hold_back == 6


# -- CMAF ---------------------------------------------------------------------------------


def test_init_segment_gives_the_track() -> None:
    encoded = encode(tone(0.1))
    track = parse_init(encoded.init)
    assert track.track_id == 1
    assert track.timescale == RATE
    assert track.sample_rate == RATE
    assert track.channels == 1
    assert track.config == encoded.asc


def test_fragments_give_back_the_units() -> None:
    encoded = encode(tone(1.0))
    track = parse_init(encoded.init)
    units = encoded.units
    first = fragment(1, 0, units[:12])
    second = fragment(2, 12 * 1024, units[12:24], with_styp=True)
    samples = parse_samples(first + second, track)
    assert [s.data for s in samples] == [u.data for u in units[:24]]
    assert [s.duration for s in samples] == [u.duration for u in units[:24]]
    assert [s.decode_time for s in samples] == [1024 * k for k in range(24)]


@pytest.mark.parametrize("cut", [4, 20, -1])
def test_truncated_fragments_are_refused(cut: int) -> None:
    encoded = encode(tone(0.3))
    track = parse_init(encoded.init)
    chunk = fragment(1, 0, encoded.units[:12])
    with pytest.raises(ValueError, match=r"box|sample data"):
        parse_samples(chunk[:cut], track)


def test_init_without_aac_is_refused() -> None:
    init = init_segment(b"\x11\x88", RATE, 1)
    broken = init.replace(b"esds", b"xxxx")
    with pytest.raises(ValueError, match="no esds box"):
        parse_init(broken)
    with pytest.raises(ValueError, match="moov"):
        parse_init(b"\x00\x00\x00\x08free")
