"""One live space's pipeline, driven by a 20 ms clock.

Every tick: the mixer takes 960 samples from each speaker's jitter buffer (silence for a
late or absent one), sends each speaker the mix of everyone else, and hands the program to
the AAC encoder; the segmenter cuts parts, which go to the feed (for listeners) at once and
to the recorder (for the replay) through a writer thread, so a slow disk never delays the
broadcast.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

from podium import clock
from podium.encode.aac import PRIMING, AacEncoder
from podium.errors import NotFound
from podium.ingest.whip import Publication, SessionEnded, Stage
from podium.mixer.mixer import Mixer
from podium.origin import feed
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES, PcmFrame
from podium.record.export import export_m4a
from podium.record.manifest import GapLine, init_line
from podium.record.recorder import Recorded, Recorder
from podium.segment.cadence import Cadence
from podium.segment.fmp4 import init_segment
from podium.segment.multivariant import PROGRAM_BITRATE
from podium.segment.segmenter import Part, Segmenter
from podium.segment.timeline import GapMarker

log = logging.getLogger("podium.media")

TICK_SECONDS = TICK_SAMPLES / SAMPLE_RATE
CHANNELS = 1
BITRATE = PROGRAM_BITRATE
# Parts waiting for the disk before the recording is declared degraded (8 s of audio).
MAX_PENDING_WRITES = 32
# A tick more than this late means the process was stalled; the catch-up is counted.
LATE_TICK_SECONDS = 0.1
# Behind schedule by more than a tick, the clock pauses this long before each of its first
# catch-up ticks: the audio those ticks need is most likely waiting in the sockets (it
# arrived while the process was stalled) and needs the event loop and aiortc's decoder
# thread to reach the jitter buffers. Ticking back to back would play silence for it, then
# drop it as late: a 20 ms hole per tick caught up beyond the jitter delay. The pauses are
# bounded per catch-up, so that a worker whose ticks run close to 20 ms still catches up.
CATCH_UP_PAUSE_SECONDS = 0.005
CATCH_UP_PAUSES = 8
# A program handed over goes on seamlessly if the new room starts within this of where the
# old one stopped: the clock catches up that moment with silence (no speaker can be on the
# new node yet). Later than that, the span is marked lost instead.
MAX_CATCH_UP_SECONDS = 2

Publish = Callable[[feed.Event], None]


class Room:
    """The pipeline of one live space. Create it, then run :meth:`run` as a task."""

    def __init__(
        self,
        space_id: str,
        directory: Path,
        publish: Publish,
        *,
        seamless: bool = False,
        announced_address: str = "",
    ) -> None:
        self.space_id = space_id
        self.directory = directory
        self._publish = publish
        self.stage = Stage(
            self._on_audio, on_ended=self._on_ended, announced_address=announced_address
        )
        self.encoder = AacEncoder(SAMPLE_RATE, CHANNELS, BITRATE)
        self.recorder = Recorder(directory)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"record-{space_id}")
        self._pending_writes = 0
        self._recording_state = "ok"
        self._talking: tuple[str, ...] = ()
        self._muted: dict[str, bool] = {}
        self._stop = asyncio.Event()
        self._finish_on_stop = True
        self.ticks = 0
        self.late_ticks = 0
        # Set when the room hands its program over to another node (:meth:`hand_over`);
        # the Media Sequence Number the program goes on from there, once stopped.
        self._handing_over = False
        self.handed_over_at: int | None = None
        # Unix time of the mixer's first sample when the room goes on from a program
        # handed over (its clock is the program's, not this process's start).
        self._clock_origin: float | None = None
        self._resume(Recorder.recover(directory), seamless)

    def _resume(self, recorded: Recorded, seamless: bool) -> None:
        """Set up the mixer, encoder and segmenter: fresh, or after what is on disk."""
        now = Fraction(clock.now())
        cadence = Cadence()
        init = init_segment(
            self.encoder.audio_specific_config, SAMPLE_RATE, CHANNELS, bitrate=BITRATE
        )
        if recorded.init is None or recorded.ended or not recorded.parts:
            self.mixer = Mixer()
            self.segmenter = Segmenter(program_start=now)
            self.recorder.begin(init, init_line(init, cadence, CHANNELS, now))
            self._publish(feed.Began(self.space_id, init, cadence, 0, resumed=False))
            return
        last = recorded.parts[-1]
        end_pts = last.pts + last.duration
        end_pdt = last.pdt + Fraction(last.duration, SAMPLE_RATE)
        handed_over = recorded.entries[-1] is last and last.closes_segment
        if seamless and handed_over and now - end_pdt <= MAX_CATCH_UP_SECONDS:
            self._go_on(recorded, cadence, end_pts, end_pdt)
            return
        # A restart after a crash (or a handover too late to catch up with silence
        # honestly): the media between the last durable part and now is lost. Mark it
        # with a gap segment and carry on later on the same timeline, so timestamps keep
        # increasing for players that ignore discontinuities.
        lost = max(1, math.ceil((now - end_pdt) * SAMPLE_RATE))
        gap = GapLine(recorded.next_msn, min(lost, cadence.segment_target), end_pdt)
        # The encoder's first unit comes PRIMING samples before its first input sample;
        # starting the mixer that much later keeps the resumed units after the recorded.
        start_pts = end_pts + lost + PRIMING
        self.mixer = Mixer(start_pts=start_pts)
        self.segmenter = Segmenter(
            program_start=now - Fraction(start_pts, SAMPLE_RATE),
            first_msn=gap.msn + 1,
            decode_origin=recorded.parts[0].pts,
        )
        self.recorder.resume(gap)
        self._publish(feed.Began(self.space_id, recorded.init_data, cadence, 0, resumed=True))
        self._publish(feed.Gap(self.space_id, GapMarker(gap.msn, gap.duration, gap.pdt)))
        if self.recorder.degraded is not None:
            self._recording_state = "degraded"
        self._health()  # whoever serves it learns the recording's state from here on
        log.warning(
            "room_resumed_after_gap",
            extra={
                "fields": {
                    "space_id": self.space_id,
                    "lost_seconds": round(lost / SAMPLE_RATE, 3),
                    "gap_msn": gap.msn,
                }
            },
        )

    def _go_on(self, recorded: Recorded, cadence: Cadence, end_pts: int, end_pdt: Fraction) -> None:
        """Carry on a program handed over at the end of a segment (its last part ends at
        ``end_pts``, ``end_pdt``): from the next segment, on the program's own clock,
        nothing lost. Started late, the clock catches up (the ticks it missed are
        silence: no speaker could be here yet)."""
        # The encoder's first unit comes PRIMING samples before its first input sample:
        # the mixer starts that much later, so that the first unit starts at end_pts.
        start_pts = end_pts + PRIMING
        self.mixer = Mixer(start_pts=start_pts)
        self.segmenter = Segmenter(
            program_start=end_pdt - Fraction(end_pts, SAMPLE_RATE),
            first_msn=recorded.next_msn,
            decode_origin=recorded.parts[0].pts,
        )
        self._clock_origin = float(end_pdt + Fraction(PRIMING, SAMPLE_RATE))
        self.recorder.reopen()
        self._publish(
            feed.Began(self.space_id, recorded.init_data, cadence, 0, resumed=True, seamless=True)
        )
        if self.recorder.degraded is not None:
            self._recording_state = "degraded"
        self._health()
        log.info(
            "room_handed_over_here",
            extra={
                "fields": {
                    "space_id": self.space_id,
                    "msn": recorded.next_msn,
                    "late_s": round(clock.now() - self._clock_origin, 3),
                }
            },
        )

    def hand_over(self) -> None:
        """Stop at the end of the current segment without ending the program, for another
        node to go on from the next one (:meth:`run` returns then; see
        :attr:`handed_over_at`)."""
        self._handing_over = True

    # -- speakers ------------------------------------------------------------------------

    async def publish(self, speaker_id: str, offer_sdp: str) -> Publication:
        """Put a speaker on stage from a WHIP offer; returns the answer.

        A room being handed over is no longer a stage: a session begun now would end with
        it, within a segment, and cost the speaker another round of publishing. "Not
        found" sends the offer on to the node the space moves to (the web tier waits for
        it, :meth:`~podium.web.mediapool.MediaPool.publish`)."""
        if self._handing_over:
            raise NotFound(f"space {self.space_id} is moving to another server")
        if speaker_id not in self.mixer.speakers:
            self.mixer.add_speaker(speaker_id)
            self.mixer.set_muted(speaker_id, self._muted.get(speaker_id, False))
        try:
            return await self.stage.publish(speaker_id, offer_sdp)
        except BaseException:
            if speaker_id not in self.stage.publications().values():
                self.mixer.remove_speaker(speaker_id)
            raise

    async def unpublish(self, resource_id: str, speaker_id: str) -> None:
        """End one session; only its own speaker may (anyone else gets "not found")."""
        if self.stage.publications().get(resource_id) != speaker_id:
            raise NotFound("no such WHIP session")
        await self.stage.unpublish(resource_id)

    def set_muted(self, speaker_id: str, muted: bool) -> None:
        self._muted[speaker_id] = muted
        if speaker_id in self.mixer.speakers:
            self.mixer.set_muted(speaker_id, muted)

    async def drop(self, speaker_id: str) -> None:
        """Take a speaker off the air: every session of theirs ends."""
        self._muted.pop(speaker_id, None)
        for resource_id, speaker in list(self.stage.publications().items()):
            if speaker == speaker_id:
                await self.stage.unpublish(resource_id)

    def _on_audio(self, speaker_id: str, frame: PcmFrame) -> None:
        if speaker_id in self.mixer.speakers:
            self.mixer.push(speaker_id, frame)

    def _on_ended(self, ended: SessionEnded) -> None:
        # A speaker who published again keeps their mixer slot for the new session.
        speaker = ended.speaker_id
        if speaker not in self.stage.publications().values() and speaker in self.mixer.speakers:
            self.mixer.remove_speaker(speaker)
        self._health()

    # -- the clock -----------------------------------------------------------------------

    async def run(self) -> None:
        """Tick every 20 ms until :meth:`end`; then flush, finish and export."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self._clock_origin is not None:
            started -= clock.now() - self._clock_origin
        pauses = 0  # catch-up pauses since the clock was last on time
        self._health()
        while not self._stop.is_set():
            deadline = started + (self.ticks + 1) * TICK_SECONDS
            delay = deadline - loop.time()
            if delay > 0:
                pauses = 0
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    pass
                else:
                    break
            else:
                if -delay > LATE_TICK_SECONDS:
                    self.late_ticks += 1
                if -delay > TICK_SECONDS and pauses < CATCH_UP_PAUSES:
                    pauses += 1
                    await asyncio.sleep(CATCH_UP_PAUSE_SECONDS)
            self._tick()
        if self._finish_on_stop:
            await self._finish()
        else:
            await self.stage.close()
            self._writer.shutdown(wait=True)
            self.recorder.close()

    def end(self) -> None:
        """End the program: :meth:`run` flushes, finishes the recording and exports it."""
        self._stop.set()

    def abandon(self) -> None:
        """Stop without ending the program (the process is shutting down): the recording
        stays open and resumes, with a gap, when the worker starts again."""
        self._finish_on_stop = False
        self._stop.set()

    def _tick(self) -> None:
        self.ticks += 1
        result = self.mixer.tick()
        for speaker_id, minus in result.minus.items():
            self.stage.send_to(speaker_id, minus)
        for unit in self.encoder.encode(result.program, result.pts):
            for part in self.segmenter.push(unit):
                self._emit(part)
        talking = tuple(sorted(s for s, level in result.levels.items() if level.talking))
        if talking != self._talking:
            self._talking = talking
            self._health()

    def _emit(self, part: Part) -> None:
        if self.handed_over_at is not None:
            return  # the next node makes the program from here
        self._publish(feed.PartReady(self.space_id, part))
        if self._handing_over and part.closes_segment and self.handed_over_at is None:
            self.handed_over_at = part.msn + 1
            self.abandon()
        if self._recording_state != "ok":
            return
        if self._pending_writes >= MAX_PENDING_WRITES:
            self.recorder.degraded = "the disk is too slow to keep up with the recording"
            self._degrade()
            return
        self._pending_writes += 1
        loop = asyncio.get_running_loop()
        future = self._writer.submit(self.recorder.write_part, part)
        future.add_done_callback(lambda done: loop.call_soon_threadsafe(self._written, done))

    def _written(self, done: Future[bool]) -> None:
        self._pending_writes -= 1
        if not done.result() and self._recording_state == "ok":
            self._degrade()

    def _degrade(self) -> None:
        self._recording_state = "degraded"
        log.error(
            "recording_degraded",
            extra={"fields": {"space_id": self.space_id, "reason": self.recorder.degraded}},
        )
        self._health()

    def _health(self) -> None:
        self._publish(
            feed.Health(
                self.space_id,
                "ok" if self._recording_state == "ok" else "degraded",
                self.recorder.degraded or "",
                speakers=tuple(sorted(self.mixer.speakers)),
                talking=self._talking,
            )
        )

    async def _finish(self) -> None:
        """Close the program: last parts, end of recording, playlist end, M4A export."""
        await self.stage.close()
        for unit in self.encoder.flush():
            for part in self.segmenter.push(unit):
                self._emit(part)
        for part in self.segmenter.flush():
            self._emit(part)
        ended = asyncio.get_running_loop().run_in_executor(self._writer, self.recorder.end)
        await ended
        self._publish(feed.Ended(self.space_id))
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._writer, export_m4a, self.directory
            )
        except Exception as exc:
            self._publish(feed.Exported(self.space_id, ok=False, reason=str(exc)))
        else:
            self._publish(feed.Exported(self.space_id, ok=True))
        finally:
            self._writer.shutdown(wait=True)
