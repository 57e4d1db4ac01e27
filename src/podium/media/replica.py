"""A web node's copies of the programs it serves: the recording on a second machine.

A web node receives every part of every live space from the media node that makes it
(:mod:`podium.media.remote`). Before it puts a part into its playlist it writes it here,
fsynced, in the recorder's layout (:mod:`podium.record.recorder`), under
``{data_dir}/replicas/{space_id}``. So every part a listener has heard is durable on the
media node and on the web node that served it: a media node lost for good costs no part
anyone heard, and a media node that takes the space over puts the recording together
again from these copies (:mod:`podium.record.assemble`).

Writes run in one thread, in feed order; each event is handed on (to the origin) only once
what it adds is durable. A copy starts where its node began following: a web node that
joins mid-space holds the program from its catch-up on, and the other copies fill in the
rest when they are merged. If a copy cannot be written (a full disk), or the disk is so
slow that an event has waited :data:`MAX_WAIT_S`, the event is handed on all the same (the
media node and the other web nodes have it, and the broadcast must not wait on a web
node's disk); that is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from podium.errors import StorageError
from podium.origin import feed
from podium.record.export import export_m4a
from podium.record.manifest import GapLine, PartLine, init_line
from podium.record.recorder import Recorded, Recorder
from podium.segment.segmenter import Part

log = logging.getLogger("podium.media")

CHANNELS = 1  # the program's, as the media worker encodes it
# The longest an event waits for the disk before it is served anyway.
MAX_WAIT_S = 0.5
# Where ended copies with holes go: not a replay this node can serve (not a space id).
PARTIAL_DIR = "_partial"


@dataclass(slots=True)
class _Copy:
    recorder: Recorder
    began: feed.Began
    started: bool  # its init and first line are written
    last: tuple[int, int]  # the (msn, index) of the last entry written


@dataclass(slots=True)
class _Waiting:
    then: Callable[[], None]
    since: float
    durable: bool = False


class Replicas:
    """The copies under ``directory``, one per space. Event loop only, but for the thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="replica")
        # Exports take seconds for a long space: not in the way of the parts.
        self._exporter = ThreadPoolExecutor(1, thread_name_prefix="replica-export")
        self._copies: dict[str, _Copy] = {}
        self._waiting: deque[_Waiting] = deque()
        self.parts_written = 0
        self.failures = 0
        self.served_early = 0

    def keep(self, event: feed.Event, then: Callable[[], None]) -> None:
        """Make what ``event`` adds durable here, then call ``then`` on the event loop.
        Calls come back in the order they were made, each at most :data:`MAX_WAIT_S`
        late: a disk slower than that does not hold the broadcast up (what is served
        before it is durable here is counted in ``served_early``)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(then, loop.time())
        self._waiting.append(waiting)
        future = self._writer.submit(self._write, event)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._written, waiting))
        loop.call_later(MAX_WAIT_S, self._serve)

    def _written(self, waiting: _Waiting) -> None:
        waiting.durable = True
        self._serve()

    def _serve(self) -> None:
        """Hand on, in order, every event that is durable or has waited long enough."""
        now = asyncio.get_running_loop().time()
        while self._waiting:
            head = self._waiting[0]
            if not head.durable:
                if now - head.since < MAX_WAIT_S:
                    return
                if self.served_early == 0:
                    log.warning(
                        "replica_behind",
                        extra={"fields": {"directory": str(self.directory)}},
                    )
                self.served_early += 1
            self._waiting.popleft()
            head.then()

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._exporter.shutdown(wait=True)
        for copy in self._copies.values():
            copy.recorder.close()
        self._copies.clear()

    def path(self, space_id: str) -> Path:
        return self.directory / space_id

    # -- in the writer thread ------------------------------------------------------------

    def _write(self, event: feed.Event) -> None:
        try:
            if isinstance(event, feed.Began):
                self._begin(event)
            elif isinstance(event, feed.PartReady):
                self._part(event.space_id, event.part)
            elif isinstance(event, feed.Gap):
                self._gap(event)
            elif isinstance(event, feed.Ended):
                copy = self._copies.pop(event.space_id, None)
                if copy is not None and copy.started:
                    copy.recorder.end()
                    self._finish(event.space_id)
        except Exception:
            self.failures += 1
            log.exception("replica_write_failed", extra={"fields": {"space": event.space_id}})

    def _finish(self, space_id: str) -> None:
        """An ended copy: a whole one becomes a replay this node serves itself (the
        single file made beside it, as the media node makes its own); one with holes is
        put aside, for the media node's recording to answer instead."""
        directory = self.path(space_id)
        if whole(Recorder.recover(directory)):
            self._exporter.submit(self._export, space_id)
        else:
            self._put_aside(space_id)

    def _export(self, space_id: str) -> None:
        try:
            export_m4a(self.path(space_id))
        except StorageError as exc:
            log.error("replica_export_failed", extra={"fields": {"error": exc.detail}})
            self._put_aside(space_id)

    def _put_aside(self, space_id: str) -> None:
        aside = self.directory / PARTIAL_DIR
        aside.mkdir(exist_ok=True)
        shutil.rmtree(aside / space_id, ignore_errors=True)
        self.path(space_id).rename(aside / space_id)

    def _begin(self, event: feed.Began) -> None:
        current = self._copies.get(event.space_id)
        if current is not None:
            if current.began.init == event.init:
                return  # the same program, followed again (a catch-up, or a new node)
            current.recorder.close()
        directory = self.path(event.space_id)
        recorder = Recorder(directory)
        found = Recorder.recover(directory)
        if found.init is not None and not found.ended and found.init_data == event.init:
            # This node kept a copy before (it restarted, or lost the feed): go on with it.
            recorder.reopen()
            last = found.entries[-1] if found.entries else None
            position = (-1, -1) if last is None else _position(last)
            self._copies[event.space_id] = _Copy(recorder, event, True, position)
            return
        if directory.exists():
            shutil.rmtree(directory)
        self._copies[event.space_id] = _Copy(recorder, event, False, (-1, -1))

    def _part(self, space_id: str, part: Part) -> None:
        copy = self._copies.get(space_id)
        if copy is None or (part.msn, part.index) <= copy.last:
            return  # not followed from its start here, or already kept (a catch-up)
        if not copy.started:
            cadence = copy.began.cadence
            start = part.program_date_time - Fraction(part.pts, cadence.sample_rate)
            init = copy.began.init
            copy.recorder.begin(init, init_line(init, cadence, CHANNELS, start))
            copy.started = True
        if copy.recorder.write_part(part):
            self.parts_written += 1
        else:
            self.failures += 1
        copy.last = (part.msn, part.index)

    def _gap(self, event: feed.Gap) -> None:
        copy = self._copies.get(event.space_id)
        marker = event.marker
        if copy is None or not copy.started or marker.msn <= copy.last[0]:
            return
        copy.recorder.write_gap(GapLine(marker.msn, marker.duration, marker.program_date_time))
        copy.last = (marker.msn, 1 << 30)


def whole(recorded: Recorded) -> bool:
    """Whether an ended copy holds the whole program: every segment from the first, each
    one's parts from index 0 on, a gap where a span was lost where it was made."""
    if not (recorded.ended and recorded.entries and recorded.dropped == 0):
        return False
    msn, index = 0, 0  # where the next entry must be
    for entry in recorded.entries:
        if isinstance(entry, GapLine):
            # A gap closes a segment left open, and takes the next number.
            if entry.msn != (msn + 1 if index > 0 else msn):
                return False
            msn, index = entry.msn + 1, 0
            continue
        at = (entry.msn, entry.index)
        # A segment may end short only where its program stopped (a restart).
        if at != (msn, index) and not (index > 0 and at == (msn + 1, 0)):
            return False
        msn, index = (entry.msn + 1, 0) if entry.closes_segment else (entry.msn, entry.index + 1)
    return True


def _position(entry: PartLine | GapLine) -> tuple[int, int]:
    return (entry.msn, entry.index) if isinstance(entry, PartLine) else (entry.msn, 1 << 30)
