"""The verifiable archive: a recording's manifest as a signed hash chain, and the check of
a replay (the M4A file, or the HLS segments) against it.

When a space has ended, the node that recorded it *seals* the recording
(:func:`seal`): every entry of the manifest, in order (each part, with the SHA-256 of its
bytes as served and of the audio it carries, and each gap, where a crash or a restart lost
a span), is chained to the one before it (``hash = SHA-256(prev || entry)``), and the
chain's head, with the replay file's own SHA-256, is signed with the server's Ed25519 key.
The result, ``archive.json``, is served beside the replay.

Anyone can then check a replay against it (:func:`verify_file`, :func:`verify_segments`):
the chain must lead to the signed head, the signature must be the server's, and the audio
must be the recorded audio, part after part, from the first to the last. A byte altered, a
part dropped, duplicated or moved, a part from another space, a cut at the end: each
makes the audio of some part differ, and the check says which part, at what time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from podium.record.manifest import PartLine
from podium.record.recorder import EXPORT_FILE, Recorder, fsync_dir, write_durably

FORMAT = "podium-archive/1"
ARCHIVE_FILE = "archive.json"
GAP_REASON = (
    "the recording was interrupted here (its server stopped or restarted, or the space"
    " moved to another server without a clean handover); this span was never recorded"
)


class ArchiveError(ValueError):
    """An archive that cannot be read, or a recording that cannot be sealed."""


def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key: the start of the SHA-256 of its raw bytes."""
    return hashlib.sha256(public_bytes(public)).hexdigest()[:16]


def public_bytes(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _fraction(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}" if value.denominator != 1 else str(value)


# -- the audio a part carries ------------------------------------------------------------


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in ``data[start:end]``."""
    end = len(data) if end is None else end
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if size == 1:
            if position + 16 > end:
                raise ArchiveError("truncated box header")
            size = struct.unpack_from(">Q", data, position + 8)[0]
            header = 16
        if size < header or position + size > end:
            raise ArchiveError(f"malformed box {kind!r} at byte {position}")
        yield kind, position + header, position + size
        position += size


def part_audio(data: bytes) -> tuple[int, bytes]:
    """The number of audio frames in a CMAF part and their bytes (its ``mdat``)."""
    frames = 0
    audio = b""
    for kind, start, end in _boxes(data):
        if kind == b"moof":
            for inner, inner_start, inner_end in _boxes(data, start, end):
                if inner != b"traf":
                    continue
                for leaf, leaf_start, _ in _boxes(data, inner_start, inner_end):
                    if leaf == b"trun":
                        frames += struct.unpack_from(">I", data, leaf_start + 4)[0]
        elif kind == b"mdat":
            audio += data[start:end]
    if frames == 0:
        raise ArchiveError("a part with no audio frames")
    return frames, audio


# -- sealing -----------------------------------------------------------------------------


def _chain(space_id: str, init_sha256: str, entries: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Each entry's link: the SHA-256 of the link before it and the entry."""
    previous = hashlib.sha256(f"{FORMAT}\n{space_id}\n{init_sha256}".encode()).hexdigest()
    for entry in entries:
        body = {k: v for k, v in entry.items() if k not in ("prev", "hash")}
        previous = hashlib.sha256(bytes.fromhex(previous) + _canonical(body)).hexdigest()
        yield previous


def _signed(document: dict[str, Any]) -> bytes:
    """What the signature covers: everything but the entries (which the head covers)."""
    return _canonical({k: v for k, v in document.items() if k not in ("entries", "signature")})


def seal(
    directory: Path, space_id: str, key: Ed25519PrivateKey, origin: str, now: float
) -> dict[str, Any]:
    """Write ``directory/archive.json`` for an ended recording; return it."""
    recorded = Recorder.recover(directory)
    if recorded.init is None or not recorded.ended:
        raise ArchiveError(f"the recording of space {space_id} has not ended")
    entries: list[dict[str, Any]] = []
    for line in recorded.entries:
        if isinstance(line, PartLine):
            frames, audio = part_audio(Recorder.read_part(directory, line.msn, line.index))
            entries.append(
                {
                    "kind": "part",
                    "msn": line.msn,
                    "index": line.index,
                    "pts": line.pts,
                    "duration": line.duration,
                    "pdt": _fraction(line.pdt),
                    "size": line.size,
                    "sha256": line.sha256,
                    "frames": frames,
                    "audio_sha256": hashlib.sha256(audio).hexdigest(),
                }
            )
        else:
            entries.append(
                {
                    "kind": "gap",
                    "msn": line.msn,
                    "duration": line.duration,
                    "pdt": _fraction(line.pdt),
                    "reason": GAP_REASON,
                }
            )
    replay = directory / EXPORT_FILE
    document = build(
        space_id,
        hashlib.sha256(recorded.init_data).hexdigest(),
        recorded.init.sample_rate,
        recorded.init.program_start,
        entries,
        hashlib.sha256(replay.read_bytes()).hexdigest() if replay.exists() else None,
        key,
        origin,
        now,
    )
    write_durably(directory / ARCHIVE_FILE, json.dumps(document, indent=1).encode() + b"\n")
    fsync_dir(directory)
    return document


def build(
    space_id: str,
    init_sha256: str,
    sample_rate: int,
    program_start: Fraction,
    entries: list[dict[str, Any]],
    replay_sha256: str | None,
    key: Ed25519PrivateKey,
    origin: str,
    now: float,
) -> dict[str, Any]:
    """The signed archive of ``entries`` (each part's and gap's fields, in order): each
    entry gets its link in the chain, and the head is signed."""
    head = ""
    for entry, link in zip(entries, _chain(space_id, init_sha256, entries), strict=True):
        entry["prev"], entry["hash"] = head, link
        head = link
    public = key.public_key()
    document: dict[str, Any] = {
        "format": FORMAT,
        "space": space_id,
        "origin": origin,
        "sealed_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "sample_rate": sample_rate,
        "program_start": _fraction(program_start),
        "init_sha256": init_sha256,
        "parts": sum(1 for e in entries if e["kind"] == "part"),
        "gaps": sum(1 for e in entries if e["kind"] == "gap"),
        "head": head,
        "replay_sha256": replay_sha256,
        "key_id": key_id(public),
        "public_key": b64(public_bytes(public)),
        "entries": entries,
    }
    document["signature"] = b64(key.sign(_signed(document)))
    return document


# -- checking ----------------------------------------------------------------------------


@dataclass
class Report:
    """What a check found, in words: ``problems`` empty means unedited."""

    archive: dict[str, Any]
    signer_trusted: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def unedited(self) -> bool:
        return not self.problems

    def gaps(self) -> list[str]:
        return [
            f"{_clock(self.archive, e)} for {e['duration'] / self.archive['sample_rate']:.1f} s:"
            f" {e['reason']}"
            for e in self.archive["entries"]
            if e["kind"] == "gap"
        ]

    def words(self) -> str:
        """The report, for people."""
        archive = self.archive
        parts = [e for e in archive["entries"] if e["kind"] == "part"]
        lines = []
        if self.unedited:
            span = ""
            if parts:
                span = f", from the first part ({_clock(archive, parts[0])}) to the last"
                span += f" ({_clock(archive, parts[-1])})"
            lines.append(f"UNEDITED: this is the recording of space {archive['space']}{span},")
            lines.append("every part as it was broadcast, none missing, none added, none moved.")
        else:
            lines.append(
                f"NOT THE RECORDING: this differs from the recording of space {archive['space']}."
            )
            lines.extend(f"  - {problem}" for problem in self.problems)
        gaps = self.gaps()
        if gaps:
            lines.append(f"The recording itself has {len(gaps)} gap(s):")
            lines.extend(f"  - at {gap}" for gap in gaps)
        elif self.unedited:
            lines.append("The recording has no gap.")
        signer = f"key {archive['key_id']}"
        when = archive["sealed_at"]
        if self.signer_trusted:
            lines.append(f"Signed by {archive['origin']} ({signer}) on {when}.")
        else:
            lines.append(
                f"Signed with {signer} on {when}, which claims to be {archive['origin']};"
                " compare the key with that server's /.well-known/podium-archive-keys.json."
            )
        lines.extend(self.notes)
        return "\n".join(lines)


def _clock(archive: dict[str, Any], entry: dict[str, Any]) -> str:
    """Where an entry is: its time into the space and its wall-clock time."""
    name = f"part {entry['msn']}.{entry['index']}" if entry["kind"] == "part" else "a gap"
    try:
        start = Fraction(archive["program_start"])
        moment = Fraction(entry["pdt"])
        offset = float(moment - start)
        minutes, seconds = divmod(max(0.0, offset), 60)
        hours, minutes = divmod(int(minutes), 60)
        wall = datetime.fromtimestamp(float(moment), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):  # times no recording has
        return f"an impossible time ({name})"
    return f"{hours}:{minutes:02d}:{seconds:06.3f} into the space ({wall}, {name})"


def load(raw: bytes) -> dict[str, Any]:
    """An archive as read from bytes: its shape checked, or :class:`ArchiveError`."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ArchiveError(f"not an archive: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ArchiveError(f"not an archive in the {FORMAT} format")
    _validate(document)
    return document


_TEXT = ("space", "origin", "sealed_at", "init_sha256", "head", "key_id", "public_key", "signature")
_PART = {"msn": int, "index": int, "pts": int, "duration": int, "size": int, "frames": int}
_PART_TEXT = ("pdt", "sha256", "audio_sha256", "prev", "hash")


def _validate(document: dict[str, Any]) -> None:
    """The fields a check reads, of the types it reads them as."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ArchiveError(f"the archive is malformed: {what}")

    for name in _TEXT:
        need(isinstance(document.get(name), str), f"{name} is not text")
    rate = document.get("sample_rate")
    need(isinstance(rate, int) and not isinstance(rate, bool) and rate > 0, "sample_rate")
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise ArchiveError("the archive is malformed: entries is not a list")
    for entry in [
        document.get("program_start"),
        *(e.get("pdt") for e in entries if isinstance(e, dict)),
    ]:
        try:
            Fraction(str(entry))
        except (ValueError, ZeroDivisionError):
            need(False, f"{entry!r} is not a time")
    for entry in entries:
        need(isinstance(entry, dict) and entry.get("kind") in ("part", "gap"), "an entry")
        numbers = _PART if entry["kind"] == "part" else {"msn": int, "duration": int}
        for name in numbers:
            value = entry.get(name)
            need(isinstance(value, int) and not isinstance(value, bool), f"entry {name}")
        texts = _PART_TEXT if entry["kind"] == "part" else ("pdt", "reason", "prev", "hash")
        for name in texts:
            need(isinstance(entry.get(name), str), f"entry {name}")
        if entry["kind"] == "part":
            need(entry["frames"] > 0 and entry["size"] >= 0, "entry frames or size")


def check_archive(document: dict[str, Any], trusted: list[bytes]) -> Report:
    """The archive's own integrity: its chain leads to its head, its head is signed by
    its key, and that key is one of ``trusted`` (the server's published keys; none
    given, the key it names is reported as not checked)."""
    _validate(document)
    try:
        public_raw = unb64(str(document["public_key"]))
        public = Ed25519PublicKey.from_public_bytes(public_raw)
        entries = list(document["entries"])
        space_id, init_sha256 = str(document["space"]), str(document["init_sha256"])
        signature = unb64(str(document["signature"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchiveError(f"the archive is incomplete: {exc}") from exc
    report = Report(document, signer_trusted=public_raw in trusted)
    if trusted and public_raw not in trusted:
        report.problems.append(
            "the archive is signed with a key the server does not publish: not its archive"
        )
    try:
        public.verify(signature, _signed(document))
    except InvalidSignature:
        report.problems.append("the archive's signature does not match it: it was altered")
        return report
    previous = ""
    for entry, link in zip(entries, _chain(space_id, init_sha256, entries), strict=True):
        if entry.get("prev") != previous or entry.get("hash") != link:
            report.problems.append(
                f"the archive's entries were altered, from {_clock(document, entry)} on"
            )
            return report
        previous = link
    if previous != document.get("head"):
        report.problems.append("the archive's entries do not lead to its signed head")
    return report


def _parts(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in document["entries"] if e["kind"] == "part"]


def verify_file(path: Path, document: dict[str, Any], trusted: list[bytes]) -> Report:
    """Check a replay file (the M4A, or any MP4 of the program's audio) against an archive:
    its audio frames, in order, must be the recorded parts' frames, all of them."""
    report = check_archive(document, trusted)
    if not report.unedited:
        return report
    packets = _packets(path)
    whole = hashlib.sha256(path.read_bytes()).hexdigest()
    at = 0
    for entry in _parts(document):
        frames = packets[at : at + int(entry["frames"])]
        if len(frames) < int(entry["frames"]):
            report.problems.append(f"the file ends early: it stops at {_clock(document, entry)}")
            return report
        if hashlib.sha256(b"".join(frames)).hexdigest() != entry["audio_sha256"]:
            report.problems.append(
                f"the audio differs from the recording at {_clock(document, entry)}"
                + _what_is_there(document, frames)
            )
            return report
        at += int(entry["frames"])
    if at < len(packets):
        report.problems.append(
            f"the file has {len(packets) - at} frame(s) of audio after the recording's end"
        )
        return report
    if whole == document.get("replay_sha256"):
        report.notes.append("The file is the server's replay file, byte for byte.")
    else:
        report.notes.append(
            "The file is not the server's replay file byte for byte (another container"
            " or tags), but its audio is the recording's, frame for frame."
        )
    return report


def _what_is_there(document: dict[str, Any], frames: list[bytes]) -> str:
    """Where the audio found in place of a part comes from, if it is another part."""
    digest = hashlib.sha256(b"".join(frames)).hexdigest()
    for entry in _parts(document):
        if entry["audio_sha256"] == digest:
            return f"; what is there is the audio of {_clock(document, entry)} (moved or repeated)"
    return "; what is there is not any part of this recording (altered, or from elsewhere)"


def _packets(path: Path) -> list[bytes]:
    import av  # here: the archive's chain checks need no codec library

    try:
        with av.open(str(path), "r") as source:
            audio = source.streams.audio[0]
            return [bytes(p) for p in source.demux(audio) if p.size and p.dts is not None]
    except (av.FFmpegError, IndexError) as exc:
        raise ArchiveError(f"{path} is not an audio file that can be read: {exc}") from exc


def verify_segments(
    segments: list[tuple[int, bytes | None]], document: dict[str, Any], trusted: list[bytes]
) -> Report:
    """Check an HLS replay against an archive: ``segments`` are (Media Sequence Number,
    bytes, or None for an ``EXT-X-GAP`` segment), in playlist order. Each segment must be
    its recorded parts, byte for byte, and every recorded segment must be there."""
    report = check_archive(document, trusted)
    if not report.unedited:
        return report
    by_msn: dict[int, list[dict[str, Any]]] = {}
    for entry in _parts(document):
        by_msn.setdefault(int(entry["msn"]), []).append(entry)
    gaps = {int(e["msn"]) for e in document["entries"] if e["kind"] == "gap"}
    expected = sorted(by_msn.keys() | gaps)
    listed = [msn for msn, _ in segments]
    if listed != expected:
        missing = sorted(set(expected) - set(listed))
        extra = sorted(set(listed) - set(expected))
        if missing:
            report.problems.append(f"segments {_msns(missing)} of the recording are missing")
        if extra:
            report.problems.append(f"segments {_msns(extra)} are not in the recording")
        if not missing and not extra:
            report.problems.append("the segments are not in the recorded order")
        return report
    for msn, data in segments:
        if msn in gaps:
            if data is not None:
                report.problems.append(f"segment {msn} has audio where the recording has a gap")
                return report
            continue
        if data is None:
            entry = by_msn[msn][0]
            report.problems.append(f"segment {msn} is marked lost, {_clock(document, entry)}")
            return report
        at = 0
        for entry in by_msn[msn]:
            chunk = data[at : at + int(entry["size"])]
            if hashlib.sha256(chunk).hexdigest() != entry["sha256"]:
                report.problems.append(
                    f"the audio differs from the recording at {_clock(document, entry)}"
                )
                return report
            at += int(entry["size"])
        if at != len(data):
            report.problems.append(f"segment {msn} holds more than its recorded parts")
            return report
    report.notes.append("Every segment is the recording's, byte for byte.")
    return report


def _msns(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
