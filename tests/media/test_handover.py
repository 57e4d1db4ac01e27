"""A room hands its program over at the end of a segment, and another goes on with it on
the program's own clock: the next segment follows with no gap, no lost sample, and the
clock catches up the moments the handover took."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from podium import clock
from podium.errors import NotFound
from podium.media.room import MAX_CATCH_UP_SECONDS, Room
from podium.origin import feed
from podium.pcm import SAMPLE_RATE
from podium.record import assemble
from podium.record.manifest import GapLine, PartLine
from podium.record.recorder import MANIFEST_FILE, PARTS_DIR, Recorder
from podium.segment.names import part_name


def _parts(events: list[feed.Event]) -> list[feed.PartReady]:
    return [e for e in events if isinstance(e, feed.PartReady)]


def test_a_program_handed_over_goes_on_with_no_gap(tmp_path: Path) -> None:
    first: list[feed.Event] = []
    second: list[feed.Event] = []
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"

    async def scenario() -> tuple[float, float]:
        room = Room("s1", old_dir, first.append)
        running = asyncio.create_task(room.run())
        await asyncio.sleep(1.0)
        asked_at = clock.now()
        room.hand_over()
        # A speaker publishing now is sent on to where the space goes, not taken on here
        # for the moment the room has left.
        with pytest.raises(NotFound, match="moving to another server"):
            await room.publish("late-speaker", "v=0\r\n")
        assert "late-speaker" not in room.mixer.speakers
        await asyncio.wait_for(running, 5.0)
        assert room.handed_over_at == _parts(first)[-1].part.msn + 1
        # The other node copies the recording (here: a copy of the directory), a moment
        # later, and goes on.
        await asyncio.sleep(0.3)
        shutil.copytree(old_dir, new_dir)
        started_at = clock.now()
        room2 = Room("s1", new_dir, second.append, seamless=True)
        running2 = asyncio.create_task(room2.run())
        await asyncio.sleep(2.5)
        room2.end()
        await asyncio.wait_for(running2, 10.0)
        return asked_at, started_at

    asked_at, started_at = asyncio.run(scenario())

    old_parts = _parts(first)
    assert old_parts[-1].part.closes_segment, "the handover waits for the segment's end"
    stopped_pdt = old_parts[-1].part.program_date_time
    assert float(stopped_pdt) - asked_at < 2.1 + 0.3  # within a segment of the ask

    began = [e for e in second if isinstance(e, feed.Began)]
    assert began
    assert began[0].resumed
    assert began[0].seamless
    assert not [e for e in second if isinstance(e, feed.Gap)], "nothing lost: no gap"
    new_parts = _parts(second)
    head, last = new_parts[0].part, old_parts[-1].part
    assert (head.msn, head.index) == (last.msn + 1, 0)
    assert head.pts == last.pts + last.duration, "the timeline goes on, sample for sample"
    assert head.program_date_time == last.program_date_time + Fraction(last.duration, SAMPLE_RATE)
    for before, after in itertools.pairwise(new_parts):
        assert after.part.pts == before.part.pts + before.part.duration
    # On the program's clock: the parts due while the room was being set up came at once,
    # and the last ones as they fell due (each one made once its span is over).
    assert float(head.program_date_time) < started_at
    tail = new_parts[-2].part
    assert float(tail.program_date_time) + tail.duration / SAMPLE_RATE < clock.now()

    recorded = Recorder.recover(new_dir)
    assert recorded.ended
    assert not [e for e in recorded.entries if isinstance(e, GapLine)]
    msns = [(e.msn, e.index) for e in recorded.entries if isinstance(e, PartLine)]
    assert msns == sorted(msns)
    assert len(set(msns)) == len(msns)
    assert (new_dir / "replay.m4a").stat().st_size > 0  # exported as the room ended


def test_a_program_handed_over_too_late_marks_the_span_lost(tmp_path: Path) -> None:
    events: list[feed.Event] = []

    async def scenario() -> None:
        room = Room("s2", tmp_path / "old", events.append)
        running = asyncio.create_task(room.run())
        await asyncio.sleep(0.5)
        room.hand_over()
        await asyncio.wait_for(running, 5.0)
        await asyncio.sleep(MAX_CATCH_UP_SECONDS + 0.5)  # the next node was slow
        late = Room("s2", tmp_path / "old", events.append, seamless=True)
        running = asyncio.create_task(late.run())
        await asyncio.sleep(0.5)
        late.end()
        await asyncio.wait_for(running, 10.0)

    asyncio.run(scenario())
    began = [e for e in events if isinstance(e, feed.Began)]
    assert [b.seamless for b in began] == [False, False]
    gaps = [e for e in events if isinstance(e, feed.Gap)]
    assert len(gaps) == 1, "the span lost is marked, not filled with silence"
    recorded = Recorder.recover(tmp_path / "old")
    assert [e for e in recorded.entries if isinstance(e, GapLine)]


def test_a_copy_made_beforehand_is_brought_up_to_the_recording(tmp_path: Path) -> None:
    """What the next node copied while the room still ran is extended with the parts made
    since, each checked; a copy of anything else, or a damaged part, is refused."""
    live, staged = tmp_path / "live", tmp_path / "staged"

    async def scenario() -> None:
        room = Room("s3", live, [].append)
        running = asyncio.create_task(room.run())
        await asyncio.sleep(1.0)
        await asyncio.to_thread(shutil.copytree, live, staged)  # while it records
        room.hand_over()
        await asyncio.wait_for(running, 5.0)

    asyncio.run(scenario())
    copy = assemble.read_manifest("live", (live / MANIFEST_FILE).read_bytes())
    assert copy is not None
    before = len(Recorder.recover(staged).parts)

    def fetch(entry: PartLine) -> bytes:
        return (live / PARTS_DIR / part_name(entry.msn, entry.index)).read_bytes()

    damaged = tmp_path / "damaged"
    shutil.copytree(staged, damaged)
    with pytest.raises(assemble.CopyDamaged):
        assemble.extend(damaged, copy, lambda entry: fetch(entry)[:-1] + b"x")

    added = assemble.extend(staged, copy, fetch)
    assert added == copy.parts - before > 0
    assert (staged / MANIFEST_FILE).read_bytes() == (live / MANIFEST_FILE).read_bytes()
    assert Recorder.recover(staged).entries == Recorder.recover(live).entries

    other = tmp_path / "other"
    asyncio.run(_record_briefly(other))
    with pytest.raises(assemble.CopyDamaged):
        assemble.extend(other, copy, fetch)


async def _record_briefly(directory: Path) -> None:
    room = Room("s4", directory, [].append)
    running = asyncio.create_task(room.run())
    await asyncio.sleep(0.6)
    room.abandon()
    await asyncio.wait_for(running, 5.0)
