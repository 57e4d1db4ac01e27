"""A recording put together again from the copies other machines keep of it.

A media node that takes a live space over from one that died has none of its recording.
Every web node keeps a copy of each program it serves (:mod:`podium.media.replica`), in
the recorder's layout, and a copy may have holes where its node was not following. Here
the copies' manifests are merged (:func:`merge`: every part once, in order, each taken from
a copy that holds it) and written as this node's recording (:func:`write`: every part
checked against its checksum, fsynced), so that the room resumes from it as it would after
a restart on the node that made it, with the span lost marked as a gap.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from podium.record import manifest
from podium.record.manifest import EndLine, GapLine, InitLine, PartLine
from podium.record.recorder import (
    INIT_FILE,
    MANIFEST_FILE,
    PARTS_DIR,
    Recorder,
    fsync_dir,
    write_durably,
)
from podium.segment.names import part_name

AAC_FRAME = 1024  # samples in one AAC-LC access unit


class CopyDamaged(Exception):
    """A copy's bytes are not what its manifest says."""


@dataclass(frozen=True, slots=True)
class Copy:
    """What one machine holds of a recording, read from its manifest."""

    source: str
    init: InitLine
    entries: tuple[PartLine | GapLine, ...]
    ended: bool

    @property
    def parts(self) -> int:
        return sum(isinstance(e, PartLine) for e in self.entries)


def read_manifest(source: str, raw: bytes) -> Copy | None:
    """The copy ``raw`` (a manifest's bytes) describes, or None if it has no init line."""
    init: InitLine | None = None
    entries: list[PartLine | GapLine] = []
    ended = False
    for chunk in raw.splitlines(keepends=True):
        line = manifest.parse(chunk)
        if line is None:
            break  # a torn last line
        if isinstance(line, InitLine):
            init = line
        elif isinstance(line, PartLine | GapLine):
            entries.append(line)
        elif isinstance(line, EndLine):
            ended = True
    return None if init is None else Copy(source, init, tuple(entries), ended)


@dataclass(frozen=True, slots=True)
class Merged:
    init: InitLine
    # Each entry with the copy to fetch it from (None for a gap).
    entries: tuple[tuple[PartLine | GapLine, str | None], ...]

    @property
    def parts(self) -> int:
        return sum(isinstance(e, PartLine) for e, _ in self.entries)


def merge(copies: list[Copy]) -> Merged | None:
    """Every part any copy holds, once, in program order; a segment no copy holds
    becomes a gap. Copies of another init (another encoder run) are left out."""
    if not copies:
        return None
    best = max(copies, key=lambda c: c.parts)
    same = [c for c in copies if c.init.sha256 == best.init.sha256]
    parts: dict[tuple[int, int], tuple[PartLine, str]] = {}
    gaps: dict[int, GapLine] = {}
    for copy in sorted(same, key=lambda c: -c.parts):  # the fullest copy first
        for entry in copy.entries:
            if isinstance(entry, PartLine):
                parts.setdefault((entry.msn, entry.index), (entry, copy.source))
            else:
                gaps.setdefault(entry.msn, entry)
    with_parts = {msn for msn, _ in parts}
    ordered: list[tuple[PartLine | GapLine, str | None]] = []
    for msn in sorted(with_parts | gaps.keys()):
        if msn in with_parts:
            ordered.extend(parts[key] for key in sorted(k for k in parts if k[0] == msn))
        else:
            ordered.append((gaps[msn], None))
    return Merged(best.init, tuple(_fill_holes(best.init, ordered)))


def _fill_holes(
    init: InitLine, entries: list[tuple[PartLine | GapLine, str | None]]
) -> list[tuple[PartLine | GapLine, str | None]]:
    """Mark every whole segment missing between two entries as a gap: nobody has it."""
    segment = init.part_units * init.parts_per_segment * AAC_FRAME
    filled: list[tuple[PartLine | GapLine, str | None]] = []
    for entry, source in entries:
        if filled:
            last = filled[-1][0]
            end = last.pdt + Fraction(last.duration, init.sample_rate)
            for msn in range(last.msn + 1, entry.msn):
                filled.append((GapLine(msn, segment, end), None))
                end += Fraction(segment, init.sample_rate)
        filled.append((entry, source))
    return filled


def write(
    directory: Path,
    merged: Merged,
    init_data: bytes,
    fetch: Callable[[PartLine, str], bytes],
) -> None:
    """Write ``merged`` as the recording in ``directory`` (replacing what is there).

    ``fetch`` returns a part's bytes from the copy named; each is checked against the
    manifest's checksum before it counts. The manifest is written last, so a crash
    half-way leaves a directory that recovers as no recording at all, never as a wrong
    one."""
    if hashlib.sha256(init_data).hexdigest() != merged.init.sha256:
        raise CopyDamaged("the init segment does not match its checksum")
    if directory.exists():
        shutil.rmtree(directory)
    (directory / PARTS_DIR).mkdir(parents=True)
    lines: list[manifest.Line] = [merged.init]
    for entry, source in merged.entries:
        if isinstance(entry, PartLine):
            assert source is not None
            data = fetch(entry, source)
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                raise CopyDamaged(f"{part_name(entry.msn, entry.index)} from {source} is damaged")
            write_durably(directory / PARTS_DIR / part_name(entry.msn, entry.index), data)
        lines.append(entry)
    write_durably(directory / INIT_FILE, init_data)
    fd = os.open(directory / MANIFEST_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"".join(manifest.render(line) for line in lines))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(directory)


def extend(directory: Path, copy: Copy, fetch: Callable[[PartLine], bytes]) -> int:
    """Bring the recording in ``directory``, a copy of the beginning of ``copy``, up to
    it: the entries after its own, every part checked and fsynced, their manifest lines
    appended last. Returns how many parts it added.

    Raises :class:`CopyDamaged` if the recording here is not the beginning of ``copy``,
    or a part is not what the manifest says."""
    recorded = Recorder.recover(directory)
    held = recorded.entries
    if (
        recorded.init is None
        or recorded.ended
        or recorded.init.sha256 != copy.init.sha256
        or list(copy.entries[: len(held)]) != held
    ):
        raise CopyDamaged("the recording kept here is not the beginning of the copy")
    added = copy.entries[len(held) :]
    for entry in added:
        if isinstance(entry, PartLine):
            data = fetch(entry)
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                raise CopyDamaged(f"{part_name(entry.msn, entry.index)} is damaged")
            write_durably(directory / PARTS_DIR / part_name(entry.msn, entry.index), data)
    fd = os.open(directory / MANIFEST_FILE, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"".join(manifest.render(line) for line in added))
        os.fsync(fd)
    finally:
        os.close(fd)
    return sum(isinstance(e, PartLine) for e in added)
