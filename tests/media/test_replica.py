"""A web node's copies of the programs it serves, and a recording put together again from
several such copies: each part durable before it is served, every part kept once, holes
filled from the other copies or marked as gaps, damage refused."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import shutil
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from podium.media import replica
from podium.media.replica import MAX_WAIT_S, Replicas, whole
from podium.origin import feed
from podium.origin.origin import Origin
from podium.record import assemble
from podium.record.manifest import GapLine
from podium.record.recorder import MANIFEST_FILE, Recorder
from podium.segment.cadence import Cadence
from podium.segment.segmenter import Part
from podium.segment.timeline import GapMarker

SPACE = "abcdefgh"
INIT = b"ftyp-moov of the program"
PART = 12_288
START = Fraction(1_800_000_000)


def _part(msn: int, index: int) -> Part:
    n = msn * 8 + index
    return Part(
        msn,
        index,
        n * PART,
        PART,
        f"part {msn}.{index}".encode() * 20,
        START + Fraction(n * PART, 48_000),
        closes_segment=index == 7,
    )


def _segment(msn: int) -> list[feed.Event]:
    return [feed.PartReady(SPACE, _part(msn, i)) for i in range(8)]


def _began(resumed: bool = False, first_msn: int = 0) -> feed.Began:
    return feed.Began(SPACE, INIT, Cadence(), first_msn, resumed=resumed)


def _keep_all(replicas: Replicas, events: list[feed.Event]) -> list[tuple[feed.Event, int]]:
    """Feed ``events``; for each, the parts its copy's manifest held when it was handed on."""
    handed: list[tuple[feed.Event, int]] = []
    manifest = replicas.path(SPACE) / MANIFEST_FILE

    async def run() -> None:
        done = asyncio.Event()
        for event in events:

            def then(event: feed.Event = event) -> None:
                try:
                    text = manifest.read_text()
                except FileNotFoundError:  # not begun yet, or an ended copy put aside
                    text = ""
                handed.append((event, text.count('"part"')))
                if len(handed) == len(events):
                    done.set()

            replicas.keep(event, then)
        await asyncio.wait_for(done.wait(), 120)  # a disk as slow as a busy CI machine's

    asyncio.run(run())
    return handed


def test_each_part_is_durable_in_the_copy_before_it_is_handed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # However slow this machine's fsync: an event waits for its write here (serving one
    # early, past MAX_WAIT_S, is the stalled-disk test's).
    monkeypatch.setattr(replica, "MAX_WAIT_S", 60.0)
    replicas = Replicas(tmp_path)
    events = [_began(), *_segment(0), *_segment(1)]
    handed = _keep_all(replicas, events)
    assert [event for event, _ in handed] == events  # in feed order
    for n, (_, parts_then) in enumerate(handed[1:], 1):
        assert parts_then == n  # this part, and every one before it, already written
    replicas.close()
    recovered = Recorder.recover(replicas.path(SPACE))
    assert recovered.init_data == INIT
    assert [(p.msn, p.index) for p in recovered.parts] == [(m, i) for m in (0, 1) for i in range(8)]


def test_a_copy_followed_again_goes_on_and_keeps_a_gap(tmp_path: Path) -> None:
    replicas = Replicas(tmp_path)
    _keep_all(replicas, [_began(), *_segment(0), *_segment(1)])
    # The feed is lost and followed again: its catch-up repeats segment 1; then the
    # program resumes after a gap (its media node restarted, or another took it over).
    gap = GapMarker(2, 98_304, START + Fraction(2 * 8 * PART, 48_000))
    again = [_began(first_msn=1), *_segment(1), _began(resumed=True)]
    _keep_all(replicas, [*again, feed.Gap(SPACE, gap), *_segment(3), feed.Ended(SPACE)])
    replicas.close()
    # Ended, and whole; these parts are no audio, so its export fails and it is put aside.
    recovered = Recorder.recover(tmp_path / "_partial" / SPACE)
    assert recovered.ended
    assert [(e.msn, getattr(e, "index", None)) for e in recovered.entries] == [
        *[(m, i) for m in (0, 1) for i in range(8)],
        (2, None),
        *[(3, i) for i in range(8)],
    ]


def _copy_of(tmp_path: Path, name: str, segments: list[int]) -> Path:
    replicas = Replicas(tmp_path / name)
    events: list[feed.Event] = [_began(first_msn=segments[0])]
    for msn in segments:
        events.extend(_segment(msn))
    _keep_all(replicas, events)
    replicas.close()
    return replicas.path(SPACE)


def _read(directory: Path) -> assemble.Copy:
    copy = assemble.read_manifest(str(directory), (directory / MANIFEST_FILE).read_bytes())
    assert copy is not None
    return copy


def _fetch(entry: object, source: str) -> bytes:
    msn, index = getattr(entry, "msn"), getattr(entry, "index")  # noqa: B009
    return (Path(source) / "parts" / f"part-{msn}-{index}.m4s").read_bytes()


def test_copies_with_holes_merge_into_one_recording(tmp_path: Path) -> None:
    early = _copy_of(tmp_path, "web-1", [0, 1, 2])  # stopped following after segment 2
    late = _copy_of(tmp_path, "web-2", [2, 3, 5])  # joined at segment 2; missed 4
    merged = assemble.merge([_read(early), _read(late)])
    assert merged is not None
    out = tmp_path / "recording"
    assemble.write(out, merged, INIT, _fetch)
    recovered = Recorder.recover(out)
    assert recovered.dropped == 0
    kinds = [(e.msn, type(e).__name__) for e in recovered.entries]
    # Segments 0-3 and 5 from whichever copy had them, each part once; 4, held by
    # nobody, marked as a gap where it would have been.
    assert [msn for msn, kind in kinds if kind == "GapLine"] == [4]
    parts = [(p.msn, p.index) for p in recovered.parts]
    assert parts == [(m, i) for m in (0, 1, 2, 3, 5) for i in range(8)]
    gap = next(e for e in recovered.entries if isinstance(e, GapLine))
    assert gap.pdt == START + Fraction(4 * 8 * PART, 48_000)
    for part in recovered.parts:
        assert Recorder.read_part(out, part.msn, part.index) == _part(part.msn, part.index).data


def test_a_damaged_copy_is_refused_and_leaves_no_recording(tmp_path: Path) -> None:
    copy = _copy_of(tmp_path, "web-1", [0, 1])
    (copy / "parts" / "part-1-3.m4s").write_bytes(b"altered")
    merged = assemble.merge([_read(copy)])
    assert merged is not None
    out = tmp_path / "recording"
    with pytest.raises(assemble.CopyDamaged, match="part-1-3"):
        assemble.write(out, merged, INIT, _fetch)
    assert Recorder.recover(out).init is None  # no manifest: nothing to resume from
    with pytest.raises(assemble.CopyDamaged, match="init"):
        assemble.write(out, merged, b"another init", _fetch)
    shutil.rmtree(out, ignore_errors=True)
    assert hashlib.sha256(INIT).hexdigest() == merged.init.sha256


def test_a_stalled_disk_delays_the_broadcast_by_at_most_the_wait(tmp_path: Path) -> None:
    replicas = Replicas(tmp_path)
    events = [_began(), *_segment(0)]
    stalled = threading.Event()
    # The writer thread stuck, as on a disk that stopped answering.
    replicas._writer.submit(stalled.wait, 30)
    handed: list[tuple[feed.Event, float]] = []

    async def run() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        all_handed = asyncio.Event()

        def hand(event: feed.Event) -> None:
            handed.append((event, loop.time()))
            if len(handed) == len(events):
                all_handed.set()

        for event in events:
            replicas.keep(event, lambda event=event: hand(event))
        await asyncio.wait_for(all_handed.wait(), 10)
        return began

    began = asyncio.run(run())
    assert [event for event, _ in handed] == events  # still in order
    assert max(at for _, at in handed) - began < MAX_WAIT_S + 1.0
    assert replicas.served_early == len(events)
    stalled.set()
    replicas.close()  # the writes catch up: the copy is whole all the same
    assert len(Recorder.recover(replicas.path(SPACE)).parts) == 8


def test_only_a_whole_ended_copy_is_a_replay_a_web_node_serves(tmp_path: Path) -> None:
    # From the start, with a span lost mid-way (a restart where it was made): whole.
    replicas = Replicas(tmp_path / "web-1")
    gap = GapMarker(2, 98_304, START + Fraction(2 * 8 * PART, 48_000))
    short = [feed.PartReady(SPACE, _part(1, i)) for i in range(3)]  # cut off mid-segment
    resumed = [_began(resumed=True), feed.Gap(SPACE, gap), *_segment(3), feed.Ended(SPACE)]
    _keep_all(replicas, [_began(), *_segment(0), *short, *resumed])
    replicas.close()  # the export runs (and fails: these parts are not audio)
    recovered = Recorder.recover(tmp_path / "web-1" / "_partial" / SPACE)
    assert whole(recovered)
    # Joined mid-space (its catch-up began at segment 2): not whole, put aside at the end.
    late = Replicas(tmp_path / "web-2")
    _keep_all(late, [_began(first_msn=2), *_segment(2), *_segment(3), feed.Ended(SPACE)])
    late.close()
    assert not (tmp_path / "web-2" / SPACE).exists()
    assert not whole(Recorder.recover(tmp_path / "web-2" / "_partial" / SPACE))
    # A segment missing in the middle: not whole either.
    holes = Recorder.recover(_copy_of(tmp_path, "web-3", [0, 1, 3]))
    assert not whole(dataclasses.replace(holes, ended=True))


def test_a_web_node_reads_only_ended_programs_from_its_copies(tmp_path: Path) -> None:
    live = _copy_of(tmp_path, "web", [0, 1])  # never ended: a live program's, or stale
    origin = Origin(live.parent, live_from_disk=False)
    assert origin.program(SPACE) is None
    with (live / MANIFEST_FILE).open("ab") as manifest:
        manifest.write(b'{"kind": "end"}\n')
    program = origin.program(SPACE)
    assert program is not None
    assert program.playlist.ended
