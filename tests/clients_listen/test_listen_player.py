"""The pure decisions of the listener: where to start, what to fetch next, the player's
buffer (stalls, latency), and how long to wait before a retry. Times are exact binary
fractions so the arithmetic is exact."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime
from fractions import Fraction

import pytest
from listen_media import PROGRAM_START

from podium.clients.hls import parse_playlist
from podium.clients.listen import (
    Behind,
    Cursor,
    Done,
    FetchPart,
    FetchSegment,
    PlayerModel,
    RetryPolicy,
    SkipGap,
    Wait,
    advance,
    backoff,
    next_step,
    parse_retry_after,
    percentile,
    start_cursor,
)
from podium.segment import AccessUnit, GapMarker, Segmenter, Timeline


def live(parts: int, *, ended: bool = False, gap_segment: bool = False) -> Timeline:
    segmenter = Segmenter(program_start=PROGRAM_START)
    line = Timeline(segmenter.cadence)
    pts = made = 0
    while made < parts:
        for part in segmenter.push(AccessUnit(pts=pts, data=b"\x01")):
            line.add(part)
            made += 1
        pts += 1024
    if gap_segment:
        line.add_gap(GapMarker(line.next_msn, 98304, segmenter.program_date_time(pts)))
    if ended:
        line.end()
    return line


# -- where to start ------------------------------------------------------------------------


def test_live_start_is_part_hold_back_from_the_end() -> None:
    # Segments 0..2 complete, segment 3 has parts 0..4: PART-HOLD-BACK 0.768 s = 3 parts.
    playlist = parse_playlist(live(8 * 3 + 5).snapshot().render())
    assert start_cursor(playlist, from_start=False) == Cursor(3, 2, Fraction(512, 1000))


def test_live_start_reaches_back_into_the_previous_segment() -> None:
    playlist = parse_playlist(live(8 * 3 + 1).snapshot().render())
    assert start_cursor(playlist, from_start=False) == Cursor(2, 6, Fraction(1536, 1000))


def test_start_with_too_little_media_is_the_first_part_or_the_next() -> None:
    playlist = parse_playlist(live(2).snapshot().render())
    assert start_cursor(playlist, from_start=False) == Cursor(0, 0)
    empty = parse_playlist(live(0).snapshot().render())
    assert start_cursor(empty, from_start=False) == Cursor(0, 0)
    assert next_step(empty, Cursor(0, 0)) == Wait(0, 0)


def test_replays_and_from_start_begin_at_the_first_segment() -> None:
    ended = parse_playlist(live(8 * 3 + 5, ended=True).snapshot().render())
    assert start_cursor(ended, from_start=False) == Cursor(0)
    running = parse_playlist(live(8 * 3 + 5).snapshot().render())
    assert start_cursor(running, from_start=True) == Cursor(0)


def test_ordinary_hls_starts_three_target_durations_back() -> None:
    text = '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="i.mp4"\n' + "".join(
        f"#EXTINF:2.0,\ns{n}.m4s\n" for n in range(6)
    )
    playlist = parse_playlist(text)
    assert start_cursor(playlist, from_start=False) == Cursor(3)
    assert next_step(playlist, Cursor(6)) == Wait(6, None)


# -- what to do next -----------------------------------------------------------------------


def test_walk_a_live_playlist() -> None:
    playlist = parse_playlist(live(8 * 3 + 5).snapshot().render())
    # A complete segment reached at its start is fetched whole.
    step = next_step(playlist, Cursor(1))
    assert isinstance(step, FetchSegment)
    assert step.segment.msn == 1
    assert advance(step) == Cursor(2)
    # Inside a complete segment, parts go on one by one.
    step = next_step(playlist, Cursor(2, 7, Fraction(1792, 1000)))
    assert isinstance(step, FetchPart)
    assert (step.segment.msn, step.index) == (2, 7)
    # Past its last part, the next segment (in progress) is fetched by parts.
    step = next_step(playlist, advance(step))
    assert isinstance(step, FetchPart)
    assert (step.segment.msn, step.index) == (3, 0)
    assert advance(step) == Cursor(3, 1, Fraction(256, 1000))
    # Past the last listed part: a blocking reload for the next.
    assert next_step(playlist, Cursor(3, 5, Fraction(1280, 1000))) == Wait(3, 5)


def test_after_the_end_the_rest_of_a_segment_and_then_done() -> None:
    # The listener had parts 0..2 of segment 3 when the program ended: the ended playlist
    # lists segment 3 whole and without parts, so the rest of it comes as the segment.
    playlist = parse_playlist(live(8 * 3 + 5, ended=True).snapshot().render())
    step = next_step(playlist, Cursor(3, 3, Fraction(768, 1000)))
    assert isinstance(step, FetchSegment)
    assert step.segment.msn == 3
    assert next_step(playlist, Cursor(3, 5, Fraction(1280, 1000))) == Done()
    assert next_step(playlist, Cursor(4)) == Done()


def test_gaps_are_stepped_over() -> None:
    playlist = parse_playlist(live(8 * 2, gap_segment=True, ended=True).snapshot().render())
    step = next_step(playlist, Cursor(2))
    assert isinstance(step, SkipGap)
    assert step.duration == Fraction(2048, 1000)
    assert advance(step) == Cursor(3)


def test_fallen_out_of_the_window() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:5\n#EXTINF:2,\ns.m4s\n"
    assert next_step(parse_playlist(text), Cursor(3)) == Behind(5)


# -- the player's buffer -------------------------------------------------------------------


def test_player_starts_after_the_hold_back_and_drains_in_real_time() -> None:
    player = PlayerModel(startup=0.75)
    player.add(10.0, 0.25)
    player.add(10.0, 0.25)
    assert not player.playing
    player.add(10.125, 0.25)  # 0.75 s buffered: playback starts now
    assert player.started_at == 10.125
    assert player.level == 0.75
    player.add(10.375, 0.25)  # 0.25 s played, 0.25 s arrived
    assert player.level == 0.75
    assert player.level_at(10.875) == 0.25
    player.finish(11.0, ended=False)
    assert player.level == 0.125
    assert player.stalls == 0


def test_player_counts_each_dry_spell_once() -> None:
    player = PlayerModel(startup=0.5)
    player.add(0.0, 0.5)
    player.add(1.0, 0.25)  # dry from 0.5 to 1.0
    assert (player.stalls, player.stall_seconds, player.level) == (1, 0.5, 0.25)
    player.add(1.125, 0.25)
    assert player.stalls == 1
    player.finish(2.0, ended=False)  # dry again from 1.5 to 2.0: a second stall
    assert (player.stalls, player.stall_seconds) == (2, 1.0)


def test_running_dry_at_the_end_of_the_stream_is_no_stall() -> None:
    player = PlayerModel(startup=0.5)
    player.add(0.0, 0.5)
    player.finish(5.0, ended=True)
    assert player.stalls == 0


def test_percentile_is_nearest_rank() -> None:
    values = [0.5, 0.125, 0.25, 1.0]
    assert percentile(values, 0.5) == 0.25
    assert percentile(values, 0.95) == 1.0
    assert percentile([2.0], 0.5) == 2.0
    assert percentile([], 0.5) is None


# -- retries --------------------------------------------------------------------------------


def test_backoff_is_full_jitter_above_retry_after() -> None:
    policy = RetryPolicy(base=0.25, cap=2.0)
    rng = random.Random(7)
    for attempt in range(8):
        window = min(2.0, 0.25 * 2**attempt)
        waits = [backoff(attempt, None, policy, rng) for _ in range(200)]
        assert all(0 <= wait < window for wait in waits)
        # Full jitter spreads over the whole window, not around its end.
        assert min(waits) < window / 4
        assert max(waits) > 3 * window / 4
        honoured = [backoff(attempt, 3.0, policy, rng) for _ in range(50)]
        assert all(3.0 <= wait < 3.0 + window for wait in honoured)


def test_parse_retry_after() -> None:
    assert parse_retry_after("2", 0.0) == 2.0
    assert parse_retry_after(" 120 ", 0.0) == 120.0
    moment = datetime(2026, 1, 2, 3, 4, 35, tzinfo=UTC)
    header = format_datetime(moment, usegmt=True)
    assert parse_retry_after(header, moment.timestamp() - 30) == pytest.approx(30.0)
    assert parse_retry_after(header, moment.timestamp() + 30) == 0.0
    assert parse_retry_after("soon", 0.0) is None
    assert parse_retry_after("-1", 0.0) is None
    assert parse_retry_after(None, 0.0) is None
