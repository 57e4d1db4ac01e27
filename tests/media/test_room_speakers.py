"""Two speakers on one stage, over real WebRTC: each hears the other and not themself, the
program and the recording carry both, and one leaving leaves no hole in the other.

The media worker's own app runs in this process (uvicorn on a loopback port), with a tiny
WHIP route in front of it standing in for the web process's authenticated one; the
speakers are the real ``podium speak`` client (aiortc). Audio is checked by its signal.
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from media_signal import RATE, Heard, Signal, assert_continuous, decode, loud_spans, packet_times
from podium.clients.speak import SpeakReport, ToneSource, speak
from podium.media.worker import Worker, create_app
from podium.origin import feed

SPACE = "duet"
TONE_A, TONE_B = 440.0, 1000.0
# 0.3 each: the two together (0.6 peak) stay under the limiter's knee (-4 dBFS = 0.63), so
# the program is a plain sum and its spectrum has no limiter intermodulation in it.
AMPLITUDE = 0.3
SECONDS_A, SECONDS_B = 5.0, 3.0  # B leaves two seconds before A does
WINDOW = RATE // 4  # 250 ms analysis windows: 4 Hz bins, far finer than 440 vs 1000 Hz


class _RecordingWorker(Worker):
    """The media worker, also noting its feed events so the test can wait on them."""

    def __init__(self, recordings: Path) -> None:
        super().__init__(recordings)
        self.events: list[feed.Event] = []
        self.exported = asyncio.Event()

    def publish(self, event: feed.Event) -> None:
        self.events.append(event)
        if isinstance(event, feed.Exported):
            self.exported.set()
        super().publish(event)


def _app(worker: Worker) -> Starlette:
    """The worker's routes, plus the WHIP resource the web process would offer (RFC 9725:
    ``201 Created``, ``Location``, ``application/sdp``; ``DELETE`` on the session)."""

    async def whip(request: Request) -> Response:
        room = worker.rooms[SPACE]
        sdp = (await request.body()).decode()
        speaker = request.path_params["speaker"]
        publication = await room.publish(speaker, sdp)
        return Response(
            publication.answer_sdp,
            status_code=201,
            media_type="application/sdp",
            headers={"Location": f"/whip/session/{speaker}/{publication.resource_id}"},
        )

    async def leave(request: Request) -> Response:
        await worker.rooms[SPACE].unpublish(
            request.path_params["resource"], request.path_params["speaker"]
        )
        return Response(status_code=200)

    return Starlette(
        routes=[
            Route("/whip/session/{speaker}/{resource}", leave, methods=["DELETE"]),
            Route("/whip/{speaker}", whip, methods=["POST"]),
            Mount("/", create_app(worker)),
        ]
    )


@dataclass
class Speakers:
    heard_a: Heard
    heard_b: Heard
    report_a: SpeakReport
    report_b: SpeakReport
    speakers_after_b: list[str]
    speakers_after_a: list[str]


async def _speakers(base: str) -> Speakers:
    """A and B speak at once; B leaves first. Asks the worker who is on stage after each."""
    heard_a, heard_b = Heard(), Heard()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        a = asyncio.create_task(
            speak(
                f"{base}/whip/a",
                "any",
                ToneSource(TONE_A, AMPLITUDE),
                seconds=SECONDS_A,
                on_heard=heard_a,
            )
        )
        report_b = await speak(
            f"{base}/whip/b",
            "any",
            ToneSource(TONE_B, AMPLITUDE),
            seconds=SECONDS_B,
            on_heard=heard_b,
        )
        # speak() has DELETEd its session by the time it returns.
        after_b = (await http.get("/status")).json()["rooms"][SPACE]["speakers"]
        report_a = await a
        after_a = (await http.get("/status")).json()["rooms"][SPACE]["speakers"]
    return Speakers(heard_a, heard_b, report_a, report_b, after_b, after_a)


async def _duet(recordings: Path) -> tuple[Speakers, Path]:
    """Run the worker here and the two speakers in a thread with its own event loop.

    The speakers stand for other machines: on the worker's loop their Opus encoding and
    teardown would stall the room's clock, a hole no real deployment has.
    """
    worker = _RecordingWorker(recordings)
    server = uvicorn.Server(
        uvicorn.Config(_app(worker), host="127.0.0.1", port=0, log_config=None, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers only a flag
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            assert (await http.post(f"/rooms/{SPACE}")).status_code == 204
            speakers = await asyncio.to_thread(asyncio.run, _speakers(base))
            assert (await http.delete(f"/rooms/{SPACE}")).status_code == 204
        await asyncio.wait_for(worker.exported.wait(), 30)
    finally:
        server.should_exit = True
        await serving
    exported = [e for e in worker.events if isinstance(e, feed.Exported)]
    assert exported == [feed.Exported(SPACE, ok=True)]
    return speakers, recordings / SPACE


def _level_db(block: Signal, hz: float) -> float:
    """The level of ``hz`` in ``block``: the strongest Hann-windowed FFT bin within ±3 Hz
    of it, in dB (relative; only differences are meaningful)."""
    spectrum = np.abs(np.fft.rfft(block * np.hanning(len(block))))
    freqs = np.fft.rfftfreq(len(block), 1 / RATE)
    near = np.abs(freqs - hz) <= 3
    return float(20 * np.log10(spectrum[near].max() + 1e-12))


def _windows(signal: Signal) -> list[Signal]:
    return [signal[i : i + WINDOW] for i in range(0, len(signal) - WINDOW + 1, WINDOW)]


@pytest.fixture(scope="module")
def duet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Speakers, Path]:
    # This process stands in for three machines (the worker and two speakers, one GIL): a
    # full collection of the whole test run's heap would pause all three at once, late in
    # a suite. Freeze what is alive now, so that collections walk only what the duet makes.
    gc.collect()
    gc.freeze()
    try:
        return asyncio.run(_duet(tmp_path_factory.mktemp("recordings")))
    finally:
        gc.unfreeze()


def _assert_hears_only(heard: Signal, other: float, own: float) -> None:
    """Every loud stretch of ``heard`` is ``other``'s tone, ``own`` ≥ 30 dB below it."""
    spans = loud_spans(heard, threshold=0.05)
    assert spans, "heard nothing"
    audible = np.concatenate([heard[s:e] for s, e in spans])
    assert len(audible) >= 2 * RATE, f"heard only {len(audible) / RATE:.2f} s"
    for block in _windows(audible):
        other_db, own_db = _level_db(block, other), _level_db(block, own)
        assert other_db - own_db >= 30, (
            f"own {own:g} Hz only {other_db - own_db:.1f} dB under {other:g} Hz"
        )


def test_each_speaker_hears_the_other_and_not_themself(duet: tuple[Speakers, Path]) -> None:
    speakers = duet[0]
    assert speakers.report_a.connected
    assert speakers.report_b.connected
    assert speakers.report_a.frames_heard > 0
    assert speakers.report_b.frames_heard > 0
    _assert_hears_only(speakers.heard_a.audio(), other=TONE_B, own=TONE_A)
    _assert_hears_only(speakers.heard_b.audio(), other=TONE_A, own=TONE_B)


def test_a_speaker_who_leaves_is_removed(duet: tuple[Speakers, Path]) -> None:
    speakers = duet[0]
    assert speakers.speakers_after_b == ["a"]
    assert speakers.speakers_after_a == []


def test_the_recording_has_both_and_no_hole_when_one_leaves(duet: tuple[Speakers, Path]) -> None:
    directory = duet[1]
    replay = str(directory / "replay.m4a")
    assert (directory / "init.mp4").is_file()
    assert (directory / "manifest.jsonl").is_file()
    assert any((directory / "parts").iterdir())
    assert_continuous(packet_times(replay))
    program = decode(replay)

    # A's tone runs from start to end; B's lies inside it.
    spans = loud_spans(program, threshold=0.1)
    start, end = spans[0][0], spans[-1][1]
    assert (end - start) / RATE == pytest.approx(SECONDS_A, abs=0.3)

    # No hole where B leaves: every 20 ms tick from 100 ms before B's last one to 500 ms
    # after it is loud. B's departure cannot reach further back than the jitter delay
    # (60 ms) before its last tick played. Elsewhere a CPU-starved test machine may
    # conceal a late tick or two: the speakers' senders run in this same process, so a
    # pause of the process silences them at the source, and the jitter buffer conceals
    # what never came; that is not a departure leaving a hole.
    tick = RATE // 50
    b_level = np.array(
        [_level_db(program[i : i + tick], TONE_B) for i in range(0, len(program) - tick, tick)]
    )
    b_ticks = np.flatnonzero(b_level > b_level.max() - 20)
    b_end = (int(b_ticks[-1]) + 1) * tick
    assert start < b_end < end - RATE
    around = program[b_end - RATE // 10 : b_end + RATE // 2]
    spans = loud_spans(around, threshold=0.1, hop=tick)
    silent = len(around) - sum(stop - begin for begin, stop in spans)
    # This process runs both speakers' WebRTC stacks and the worker: when B's teardown
    # starves A's sender for a moment, one tick may be concealed. More is a real hole.
    assert silent <= tick, f"a hole where B left: {spans} ({b_end / RATE:.2f} s)"

    both = only_a = 0
    b_gone = False
    for block in _windows(program[start:end]):
        a_db, b_db = _level_db(block, TONE_A), _level_db(block, TONE_B)
        peak = max(a_db, b_db)
        # Both tones enter at the same amplitude: in the overlap they are within a few dB.
        if abs(a_db - b_db) < 3:
            assert not b_gone, "B is back in the program after leaving"
            both += 1
        elif a_db - b_db >= 30 and a_db == peak:
            b_gone = True
            only_a += 1
    # Windows straddling an entry or exit fall in neither class; the rest must be counted.
    assert both * WINDOW / RATE >= SECONDS_B - 1.0, f"overlap only {both * WINDOW / RATE} s"
    assert only_a * WINDOW / RATE >= SECONDS_A - SECONDS_B - 0.75, "A did not go on alone"
