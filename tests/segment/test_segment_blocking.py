"""Blocking Playlist Reload decisions (draft-pantos-hls-rfc8216bis 6.2.5.2)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from podium.segment import Action, BlockingRequest, Cadence, GapMarker, Part, Timeline, decide
from podium.segment.blocking import decide_query

PART = 12 * 1024


def timeline(parts: int, *, first_msn: int = 0) -> Timeline:
    """A live timeline with ``parts`` parts at the default cadence (8 parts a segment)."""
    line = Timeline(Cadence(), first_msn=first_msn)
    for n in range(parts):
        msn, index = first_msn + n // 8, n % 8
        date = Fraction(n * PART, 48000)
        line.add(Part(msn, index, n * PART, PART, b"", date, closes_segment=index == 7))
    return line


def action(line: Timeline, msn: int | None, part: int | None = None) -> Action:
    return decide(line.snapshot(), BlockingRequest(msn, part)).action


# 19 parts: segments 0 and 1 complete, segment 2 has parts 0..2; the next part is 2/3.
@pytest.mark.parametrize(
    ("msn", "part", "expected"),
    [
        (None, None, Action.READY),  # a plain request
        (0, None, Action.READY),
        (1, None, Action.READY),
        (2, None, Action.WAIT),  # in progress: a Media Segment is complete when listed
        (3, None, Action.WAIT),  # last complete (1) + 2
        (4, None, Action.REJECT),  # last complete + 3
        (2, 2, Action.READY),
        (2, 3, Action.WAIT),  # the preload-hinted part
        (1, 7, Action.READY),
        (1, 8, Action.READY),  # past the last part of 1: part 0 of 2, which exists
        (1, 500, Action.READY),
        (0, 9, Action.READY),  # rolls over to 1/0
        (2, 13, Action.WAIT),  # 11 parts ahead of the last: within 3 / 0.256 = 11.7
        (2, 14, Action.REJECT),  # 12 parts ahead: beyond the Advance Part Limit
        (3, 5, Action.WAIT),  # 3/5 is 11 parts ahead too
        (3, 6, Action.REJECT),
        (3, 0, Action.WAIT),
        (None, 0, Action.REJECT),  # _HLS_part without _HLS_msn
    ],
)
def test_decisions_mid_segment(msn: int | None, part: int | None, expected: Action) -> None:
    assert action(timeline(19), msn, part) is expected


def test_wait_carries_three_target_durations_and_turns_ready() -> None:
    line = timeline(19)
    decision = decide(line.snapshot(), BlockingRequest(2, 3))
    assert decision.action is Action.WAIT
    assert decision.timeout == 6  # 3 x TARGETDURATION 2
    assert decision.status == 503  # what to answer if the wait times out
    line.add(Part(2, 3, 19 * PART, PART, b"", Fraction(0)))
    decision = decide(line.snapshot(), BlockingRequest(2, 3))
    assert (decision.action, decision.status, decision.timeout) == (Action.READY, 200, None)


def test_reject_answers_400() -> None:
    decision = decide(timeline(19).snapshot(), BlockingRequest(None, 0))
    assert (decision.action, decision.status) == (Action.REJECT, 400)
    assert "without _HLS_msn" in decision.reason


def test_before_any_media_and_at_a_segment_boundary() -> None:
    empty = timeline(0)
    assert action(empty, 0, 0) is Action.WAIT
    assert action(empty, 0) is Action.WAIT
    assert action(empty, 1) is Action.WAIT  # -1 + 2
    assert action(empty, 2) is Action.REJECT
    assert action(empty, 0, 10) is Action.WAIT  # 11 parts ahead of none
    assert action(empty, 0, 11) is Action.REJECT
    boundary = timeline(16)  # segments 0 and 1 complete, nothing of 2 yet
    assert action(boundary, 1, 8) is Action.WAIT  # = 2/0, the hinted part
    assert action(boundary, 2, 0) is Action.WAIT
    assert action(boundary, 1) is Action.READY


def test_old_and_evicted_segments_are_ready() -> None:
    line = timeline(19, first_msn=10)
    assert action(line, 3) is Action.READY  # no longer (or never) in the playlist
    assert action(line, 3, 5) is Action.READY
    assert action(line, 10, 0) is Action.READY


def test_gap_segments_have_no_parts() -> None:
    line = timeline(8)
    line.add_gap(GapMarker(1, 8 * PART, Fraction(0)))
    assert action(line, 1) is Action.READY
    assert action(line, 1, 0) is Action.WAIT  # no part in the gap: means part 0 of 2


def test_ended_playlist_ignores_directives() -> None:
    line = timeline(19)
    line.end()
    snapshot = line.snapshot()
    assert decide(snapshot, BlockingRequest(99, 5)).action is Action.READY
    assert decide(snapshot, BlockingRequest(None, 5)).action is Action.READY
    assert decide_query(snapshot, "nonsense", None).action is Action.READY


@pytest.mark.parametrize(
    ("msn", "part", "skip", "parsed"),
    [
        (None, None, None, BlockingRequest()),
        ("12", "3", None, BlockingRequest(12, 3)),
        ("007", None, "YES", BlockingRequest(7, None, skip=True)),  # decimal-integer allows 0s
        ("1", None, "v2", BlockingRequest(1, None, skip=True)),
        ("1", None, "yes", BlockingRequest(1, None, skip=False)),
        ("18446744073709551615", None, None, BlockingRequest(2**64 - 1)),
        ("18446744073709551616", None, None, None),  # past 2**64 - 1
        ("-1", None, None, None),
        ("+1", None, None, None),
        ("1.0", None, None, None),
        ("", None, None, None),
        (" 1", None, None, None),
        ("\u0663", None, None, None),  # ARABIC-INDIC DIGIT THREE
        ("1", "x", None, None),
    ],
)
def test_parse_directives(
    msn: str | None, part: str | None, skip: str | None, parsed: BlockingRequest | None
) -> None:
    assert BlockingRequest.parse(msn, part, skip) == parsed


def test_decide_query_rejects_malformed_values_and_far_futures() -> None:
    snapshot = timeline(19).snapshot()
    assert decide_query(snapshot, "x", None).action is Action.REJECT
    assert decide_query(snapshot, "2", "3").action is Action.WAIT
    assert decide_query(snapshot, "18446744073709551615", None).action is Action.REJECT
    assert decide_query(snapshot, None, None, "YES").action is Action.READY
