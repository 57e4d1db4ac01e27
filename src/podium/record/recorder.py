"""Durable recording of a program, crash recovery, and the single-file export.

Layout of a recording directory::

    init.mp4                  the CMAF header (ftyp + moov)
    parts/part-{msn}-{i}.m4s  one file per LL-HLS part, exactly the bytes served live
    manifest.jsonl            what is recorded, with checksums (see manifest.py)
    replay.m4a                the whole program as one file, written when it ends

Every write is fsynced before it counts (file, then its directory entry, then the manifest
line), so a crash loses at most the part being written. Any failure to write makes the
recording *degraded*: it is reported at once, once, with the reason, and no further part
is written (a recording with silent holes in it would be worse than one that says it
stopped). The broadcast does not depend on the disk and carries on.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from podium.record import manifest
from podium.record.manifest import EndLine, GapLine, InitLine, PartLine
from podium.segment.names import part_name
from podium.segment.segmenter import Part

log = logging.getLogger("podium.record")

INIT_FILE = "init.mp4"
PARTS_DIR = "parts"
MANIFEST_FILE = "manifest.jsonl"
EXPORT_FILE = "replay.m4a"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name, fsynced, then renamed."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_dir(path.parent)


@dataclass(slots=True)
class Recorded:
    """What a recording directory holds, checked against its manifest.

    ``entries`` are the parts and gaps in the order they were recorded. Only parts whose
    files exist with the right checksum count; the first bad or missing one and every
    part after it are left out and counted in ``dropped`` (a crash can only hurt the
    tail).
    """

    init: InitLine | None = None
    init_data: bytes = b""
    entries: list[PartLine | GapLine] = field(default_factory=list)
    ended: bool = False
    dropped: int = 0

    @property
    def parts(self) -> list[PartLine]:
        return [e for e in self.entries if isinstance(e, PartLine)]

    @property
    def next_msn(self) -> int:
        """The first Media Sequence Number after everything recorded."""
        if not self.entries:
            return 0
        return self.entries[-1].msn + 1


class Recorder:
    """Writes one program to ``directory``. Not thread-safe: call it from one thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.degraded: str | None = None
        self._manifest_fd: int | None = None

    # -- writing -------------------------------------------------------------------------

    def begin(self, init_data: bytes, init: InitLine) -> None:
        """Start a new recording: write the init segment and the manifest's first line."""
        self._guard(lambda: self._begin(init_data, init), "start the recording")

    def resume(self, gap: GapLine) -> None:
        """Continue a recovered recording after a restart, noting the span lost."""

        def write() -> None:
            self._open_manifest()
            self._append(gap)

        self._guard(write, "resume the recording")

    def reopen(self) -> None:
        """Append to a recording begun earlier (a copy kept by another node goes on)."""
        self._guard(self._open_manifest, "reopen the recording")

    def write_gap(self, gap: GapLine) -> bool:
        """Note a span lost where the program was made (a gap in the feed it copies)."""
        if self.degraded is not None:
            return False
        return self._guard(lambda: self._append(gap), "note a gap")

    def write_part(self, part: Part) -> bool:
        """Make ``part`` durable. Returns False (and stays degraded) if it could not be."""
        if self.degraded is not None:
            return False

        def write() -> None:
            write_durably(self.directory / PARTS_DIR / part.name, part.data)
            self._append(
                PartLine(
                    msn=part.msn,
                    index=part.index,
                    pts=part.pts,
                    duration=part.duration,
                    pdt=part.program_date_time,
                    closes_segment=part.closes_segment,
                    size=len(part.data),
                    sha256=hashlib.sha256(part.data).hexdigest(),
                )
            )

        return self._guard(write, f"write {part.name}")

    def end(self) -> None:
        """Mark the program as complete and close the manifest."""
        if self.degraded is None:
            self._guard(lambda: self._append(EndLine()), "finish the recording")
        self.close()

    def close(self) -> None:
        if self._manifest_fd is not None:
            os.close(self._manifest_fd)
            self._manifest_fd = None

    def _begin(self, init_data: bytes, init: InitLine) -> None:
        (self.directory / PARTS_DIR).mkdir(parents=True, exist_ok=True)
        fsync_dir(self.directory)
        write_durably(self.directory / INIT_FILE, init_data)
        self._open_manifest()
        self._append(init)

    def _open_manifest(self) -> None:
        path = self.directory / MANIFEST_FILE
        self._manifest_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(self.directory)

    def _append(self, line: manifest.Line) -> None:
        assert self._manifest_fd is not None, "the recording has not begun"
        os.write(self._manifest_fd, manifest.render(line))
        os.fsync(self._manifest_fd)

    def _guard(self, write: Callable[[], None], what: str) -> bool:
        try:
            write()
        except OSError as exc:
            self.degraded = f"could not {what}: {exc.strerror or exc}"
            log.error(
                "recording_degraded",
                extra={"fields": {"directory": str(self.directory), "reason": self.degraded}},
            )
            self.close()
            return False
        return True

    # -- reading -------------------------------------------------------------------------

    @staticmethod
    def recover(directory: Path) -> Recorded:
        """Read back what ``directory`` durably holds (see :class:`Recorded`)."""
        found = Recorded()
        try:
            raw = (directory / MANIFEST_FILE).read_bytes()
            found.init_data = (directory / INIT_FILE).read_bytes()
        except FileNotFoundError:
            return found
        broken = False
        for chunk in raw.splitlines(keepends=True):
            line = manifest.parse(chunk)
            if isinstance(line, InitLine):
                if hashlib.sha256(found.init_data).hexdigest() != line.sha256:
                    return Recorded()
                found.init = line
            elif isinstance(line, PartLine):
                if broken or not _part_intact(directory, line):
                    broken = True
                    found.dropped += 1
                    continue
                found.entries.append(line)
            elif isinstance(line, GapLine):
                if not broken:
                    found.entries.append(line)
            elif isinstance(line, EndLine):
                found.ended = True
        return found

    @staticmethod
    def read_part(directory: Path, msn: int, index: int) -> bytes:
        return (directory / PARTS_DIR / part_name(msn, index)).read_bytes()


def _part_intact(directory: Path, line: PartLine) -> bool:
    try:
        data = (directory / PARTS_DIR / part_name(line.msn, line.index)).read_bytes()
    except OSError:
        return False
    return len(data) == line.size and hashlib.sha256(data).hexdigest() == line.sha256
