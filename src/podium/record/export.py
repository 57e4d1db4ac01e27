"""The whole program as one M4A file, for download and podcast feeds.

The recorded CMAF parts are remuxed (not re-encoded: no quality loss, and fast: an hour of
audio takes well under a second) into an ordinary MP4 audio file with its index at the
front, so players can start and seek before the download finishes. Spans lost in a crash
are left out of the file (the HLS replay marks them with ``EXT-X-GAP`` instead), so the
file's timestamps run without holes.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import av

from podium.errors import StorageError
from podium.record.recorder import EXPORT_FILE, Recorder, fsync_dir


def export_m4a(directory: Path) -> Path:
    """Write ``directory/replay.m4a`` from the recording; return its path.

    Raises :class:`StorageError` if nothing is recorded or the file cannot be written.
    """
    recovered = Recorder.recover(directory)
    if recovered.init is None or not recovered.parts:
        raise StorageError(f"nothing recorded in {directory}")
    program = io.BytesIO()
    program.write(recovered.init_data)
    for line in recovered.parts:
        program.write(Recorder.read_part(directory, line.msn, line.index))
    program.seek(0)
    target = directory / EXPORT_FILE
    temporary = target.with_name(target.name + ".tmp")
    try:
        _remux(program, temporary)
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
        fsync_dir(directory)
    except (OSError, av.FFmpegError) as exc:
        temporary.unlink(missing_ok=True)
        raise StorageError(f"cannot write {target}: {exc}") from exc
    return target


def _remux(program: io.BytesIO, target: Path) -> None:
    with av.open(program, "r", format="mp4") as source:
        audio = source.streams.audio[0]
        with av.open(str(target), "w", format="ipod", options={"movflags": "+faststart"}) as sink:
            out = sink.add_stream_from_template(audio)
            next_dts = 0
            for packet in source.demux(audio):
                if packet.dts is None or packet.duration is None:
                    continue  # the demuxer's end-of-stream marker
                # Renumber so the file has no holes where a crash lost media.
                packet.dts = packet.pts = next_dts
                next_dts += packet.duration
                packet.stream = out
                sink.mux(packet)


def replay_facts(directory: Path) -> tuple[int, float] | None:
    """The replay file's size in bytes and duration in seconds, or None if it is not
    there (not written yet, or it could not be)."""
    target = directory / EXPORT_FILE
    try:
        size = target.stat().st_size
        with av.open(str(target), "r") as replay:
            audio = replay.streams.audio[0]
            if audio.duration is not None and audio.time_base is not None:
                seconds = float(audio.duration * audio.time_base)
            else:
                seconds = (replay.duration or 0) / av.time_base
    except (OSError, av.FFmpegError, IndexError):
        return None
    return size, seconds
