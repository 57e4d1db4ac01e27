"""The LL-HLS media playlist: its rules (checked with the m3u8 library) and FFmpeg playback."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import m3u8
import numpy as np
import pytest
from segment_audio import FRAME, PROGRAM_START, RATE, Encoded, encode, tone

from podium.segment import (
    AccessUnit,
    Cadence,
    GapMarker,
    MediaPlaylist,
    Part,
    Segmenter,
    Timeline,
    init_segment,
)
from podium.segment.playlist import PartEntry, SegmentEntry

PART = 12 * FRAME
SEGMENT = 8 * PART


def publish(encoded: Encoded, directory: Path) -> list[Part]:
    """Segment ``encoded`` and write init, parts and segments as an origin would."""
    segmenter = Segmenter(program_start=PROGRAM_START)
    parts: list[Part] = []
    for unit in encoded.units:
        parts.extend(segmenter.push(unit))
    parts.extend(segmenter.flush())
    (directory / "init.mp4").write_bytes(init_segment(encoded.asc, RATE, 1))
    for part in parts:
        (directory / part.name).write_bytes(part.data)
    for msn in {part.msn for part in parts}:
        data = b"".join(part.data for part in parts if part.msn == msn)
        (directory / f"seg-{msn}.m4s").write_bytes(data)
    return parts


def timeline_of(parts: list[Part], **options: object) -> Timeline:
    timeline = Timeline(Cadence(), **options)  # type: ignore[arg-type]
    for part in parts:
        timeline.add(part)
    return timeline


def fake_parts(count: int, *, first_msn: int = 0, pts: int = 0) -> list[Part]:
    """Parts with the default cadence and no media, for playlist-only tests."""
    parts = []
    for n in range(count):
        msn, index = first_msn + n // 8, n % 8
        start = pts + n * PART
        date = Fraction(PROGRAM_START) + Fraction(start, RATE)
        parts.append(Part(msn, index, start, PART, b"", date, closes_segment=index == 7))
    return parts


def expected_date(pts: int) -> datetime:
    millis = round((Fraction(PROGRAM_START) + Fraction(pts, RATE)) * 1000)
    return datetime.fromtimestamp(millis / 1000, UTC)


def test_live_playlist_follows_ll_hls_rules(tone_8s: Encoded, tmp_path: Path) -> None:
    parts = publish(tone_8s, tmp_path)
    live = timeline_of(parts[:27]).snapshot()  # 3 segments and 3 parts of the fourth
    text = live.render()
    (tmp_path / "live.m3u8").write_text(text)
    playlist = m3u8.load(str(tmp_path / "live.m3u8"))

    assert playlist.version == 6
    assert playlist.media_sequence == 0
    assert playlist.target_duration == 2
    assert playlist.playlist_type == "event"
    assert not playlist.is_endlist
    part_target = playlist.part_inf.part_target
    assert part_target == 0.256
    assert playlist.server_control.can_block_reload == "YES"
    assert playlist.server_control.part_hold_back >= 3 * part_target
    assert playlist.server_control.can_skip_until >= 6 * playlist.target_duration
    assert playlist.segment_map[0].uri == "init.mp4"

    complete, in_progress = playlist.segments[:-1], playlist.segments[-1]
    assert [segment.uri for segment in complete] == ["seg-0.m4s", "seg-1.m4s", "seg-2.m4s"]
    assert in_progress.uri is None
    assert [part.uri for part in in_progress.parts] == [f"part-3-{i}.m4s" for i in range(3)]
    listed = [part for segment in playlist.segments for part in segment.parts]
    assert listed, "recent segments list their parts"
    for part in listed:
        assert part.duration <= part_target
        assert part.independent == "YES"
        assert (tmp_path / part.uri).is_file()
    for segment in complete:
        assert round(segment.duration) <= playlist.target_duration
        assert (tmp_path / segment.uri).is_file()
    # Every segment is dated from program_start and its pts.
    for msn, segment in enumerate(complete):
        assert segment.program_date_time == expected_date(-FRAME + msn * SEGMENT)
    # The one in progress too, before its first part (the m3u8 library does not keep it).
    lines = text.splitlines()
    first_open_part = lines.index('#EXT-X-PART:DURATION=0.256,URI="part-3-0.m4s",INDEPENDENT=YES')
    open_date = lines[first_open_part - 1].removeprefix("#EXT-X-PROGRAM-DATE-TIME:")
    assert datetime.fromisoformat(open_date) == expected_date(-FRAME + 3 * SEGMENT)
    assert playlist.preload_hint.hint_type == "PART"
    assert playlist.preload_hint.uri == "part-3-3.m4s"
    # Segments that end more than three target durations before the end list no parts.
    early = timeline_of(fake_parts(8 * 6 + 2)).snapshot().render()
    assert "part-0-0.m4s" not in early
    assert "part-2-7.m4s" not in early
    assert "part-3-0.m4s" in early
    assert "part-6-1.m4s" in early


def test_between_segments_the_hint_names_the_next_segment(tone_8s: Encoded) -> None:
    playlist = m3u8.loads(timeline_of(fake_parts(16)).snapshot().render())
    assert playlist.segments[-1].uri == "seg-1.m4s"
    assert playlist.preload_hint.uri == "part-2-0.m4s"


def test_ended_playlist_is_a_vod_ffmpeg_plays(tone_8s: Encoded, tmp_path: Path) -> None:
    parts = publish(tone_8s, tmp_path)
    timeline = timeline_of(parts)
    timeline.end()
    text = timeline.snapshot().render()
    (tmp_path / "live.m3u8").write_text(text)
    playlist = m3u8.load(str(tmp_path / "live.m3u8"))
    assert playlist.is_endlist
    assert playlist.preload_hint is None
    assert all(not segment.parts for segment in playlist.segments)
    assert [segment.uri for segment in playlist.segments] == [f"seg-{i}.m4s" for i in range(4)]
    total = sum(unit.duration for unit in tone_8s.units)
    assert sum(segment.duration for segment in playlist.segments) == pytest.approx(total / RATE)

    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(tmp_path / "live.m3u8"),
         "-f", "f32le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    samples = np.frombuffer(pcm, dtype="<f4")
    assert len(samples) == FRAME * len(tone_8s.units)
    # Each segment boundary is seamless: the 1 kHz tone is clean across the whole replay.
    body = samples[FRAME + RATE // 4 : FRAME + len(tone_8s.signal) - RATE // 4]
    spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
    assert np.argmax(spectrum) * RATE / len(body) == pytest.approx(1000, abs=1)
    residual = body - tone_8s.signal[RATE // 4 : len(tone_8s.signal) - RATE // 4]
    assert float(np.sqrt(np.mean(residual**2))) < 0.05


def test_gap_after_a_crash_renders_gap_and_discontinuity() -> None:
    timeline = Timeline(Cadence())
    for part in fake_parts(11):  # segment 0 complete, segment 1 lost after 3 parts
        timeline.add(part)
    lost_at = 11 * PART
    timeline.add_gap(
        GapMarker(2, SEGMENT - 3 * PART, Fraction(PROGRAM_START) + Fraction(lost_at, RATE))
    )
    resumed = fake_parts(10, first_msn=3, pts=SEGMENT * 3)
    for part in resumed:
        timeline.add(part)
    text = timeline.snapshot().render()
    playlist = m3u8.loads(text)
    assert [segment.uri for segment in playlist.segments[:4]] == [
        "seg-0.m4s", "seg-1.m4s", "seg-2.m4s", "seg-3.m4s",
    ]  # fmt: skip
    short, gap, after = playlist.segments[1:4]
    assert short.duration == pytest.approx(3 * 0.256)  # the recorded parts stay playable
    assert gap.gap_tag
    assert not gap.parts
    assert gap.duration == pytest.approx(5 * 0.256)
    assert not gap.discontinuity
    assert after.discontinuity
    assert after.program_date_time == expected_date(SEGMENT * 3)
    # The line order the RFC wants: DISCONTINUITY, then PDT, before the segment's parts.
    lines = text.splitlines()
    at = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[at + 1].startswith("#EXT-X-PROGRAM-DATE-TIME:")
    assert lines[at + 2].startswith('#EXT-X-PART:DURATION=0.256,URI="part-3-0.m4s"')
    assert lines[lines.index("seg-1.m4s") + 1 : lines.index("seg-1.m4s") + 4] == [
        lines[lines.index("seg-1.m4s") + 1],
        "#EXT-X-GAP",
        "#EXTINF:1.28,",
    ]
    with pytest.raises(ValueError, match="gap at msn"):
        timeline.add_gap(GapMarker(9, SEGMENT, Fraction(0)))


def test_delta_update_skips_old_segments() -> None:
    timeline = timeline_of(fake_parts(8 * 10 + 3))  # 10 segments = 20.48 s, then 3 parts
    snapshot = timeline.snapshot()
    full = m3u8.loads(snapshot.render())
    delta = m3u8.loads(snapshot.render(skip=True))
    assert not full.skip
    assert full.version == 6
    assert delta.version == 9
    # Skip Boundary 12 s: segments ending at least 12 s before the end of segment 9 go.
    assert delta.skip.skipped_segments == 4
    assert delta.media_sequence == full.media_sequence == 0
    assert [s.uri for s in delta.segments] == [s.uri for s in full.segments[4:]]
    assert delta.preload_hint.uri == full.preload_hint.uri == "part-10-3.m4s"
    timeline.end()
    assert "#EXT-X-SKIP" not in timeline.snapshot().render(skip=True)
    without = timeline_of(fake_parts(8 * 10), delta_updates=False).snapshot()
    assert "CAN-SKIP-UNTIL" not in without.render()
    assert "#EXT-X-SKIP" not in without.render(skip=True)


def test_media_sequence_and_timeline_contract() -> None:
    timeline = Timeline(Cadence(), first_msn=5)
    for part in fake_parts(9, first_msn=5):
        timeline.add(part)
    snapshot = timeline.snapshot()
    assert snapshot is timeline.snapshot()  # cached until something changes
    assert m3u8.loads(snapshot.render()).media_sequence == 5
    assert (snapshot.next_msn, snapshot.next_part, snapshot.last_segment_msn) == (6, (6, 1), 5)
    with pytest.raises(ValueError, match="not the next"):
        timeline.add(fake_parts(3, first_msn=6)[2])
    timeline.end()
    with pytest.raises(ValueError, match="ended"):
        timeline.add(fake_parts(2, first_msn=6)[1])
    ended = timeline.snapshot()
    assert ended.open is None
    assert [s.duration for s in ended.segments] == [SEGMENT, PART]


def test_model_rejects_contradictions() -> None:
    segment = SegmentEntry(0, SEGMENT, Fraction(0), (PartEntry(0, 0, PART),))
    with pytest.raises(ValueError, match="out of sequence"):
        MediaPlaylist(Cadence(), media_sequence=1, segments=(segment,))
    with pytest.raises(ValueError, match="target"):
        MediaPlaylist(
            Cadence(), 0, (SegmentEntry(0, SEGMENT, Fraction(0), (PartEntry(0, 0, PART + 1),)),)
        )
    with pytest.raises(ValueError, match="PART-HOLD-BACK"):
        MediaPlaylist(Cadence(), 0, part_hold_back=Fraction(1, 2))
    relaxed = MediaPlaylist(Cadence(), 0, (segment,), part_hold_back=Fraction(1))
    assert "PART-HOLD-BACK=1.0," in relaxed.render()


def test_replay_with_a_lost_segment_plays_in_ffmpeg(tmp_path: Path) -> None:
    """A crash loses segment 2; a new encoder run resumes at segment 3, after a gap."""
    first, second = encode(tone(3.0)), encode(tone(3.0, 500.0))
    before = Segmenter(program_start=PROGRAM_START)
    recorded = [part for unit in first.units for part in before.push(unit)][:11]
    timeline = Timeline(before.cadence)
    for part in recorded:
        timeline.add(part)
    lost_at = recorded[-1].end
    timeline.add_gap(GapMarker(2, SEGMENT - 3 * PART, before.program_date_time(lost_at)))
    # The new run's program time continues past the gap, and so does its fMP4 timeline.
    after = Segmenter(program_start=PROGRAM_START, first_msn=3, decode_origin=-FRAME)
    shift = 3 * SEGMENT + FRAME
    resumed = [
        part
        for unit in second.units
        for part in after.push(AccessUnit(unit.pts + shift, unit.data, unit.duration))
    ] + after.flush()
    for part in resumed:
        timeline.add(part)
    timeline.end()
    (tmp_path / "init.mp4").write_bytes(init_segment(first.asc, RATE, 1))
    for msn in {part.msn for part in recorded + resumed}:
        data = b"".join(part.data for part in recorded + resumed if part.msn == msn)
        (tmp_path / f"seg-{msn}.m4s").write_bytes(data)
    (tmp_path / "live.m3u8").write_text(timeline.snapshot().render())

    # FFmpeg does not know EXT-X-GAP: it fails to open seg-2.m4s, says so, and goes on.
    pcm = subprocess.run(
        ["ffmpeg", "-v", "fatal", "-i", str(tmp_path / "live.m3u8"),
         "-f", "f32le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    samples = np.frombuffer(pcm, dtype="<f4")
    recorded_samples = sum(part.duration for part in recorded)
    assert len(samples) == recorded_samples + FRAME * len(second.units)
    head = samples[FRAME : recorded_samples - FRAME]
    tail = samples[recorded_samples + 2 * FRAME : recorded_samples + 2 * RATE]
    for body, frequency in ((head, 1000), (tail, 500)):
        spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
        assert np.argmax(spectrum) * RATE / len(body) == pytest.approx(frequency, abs=3)
