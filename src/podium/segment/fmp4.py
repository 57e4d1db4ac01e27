"""ISO BMFF (fragmented MP4) boxes for one AAC-LC audio track, as CMAF wants them.

Two values are produced, both plain ``bytes``:

* :func:`init_segment`: the CMAF header (``ftyp`` + ``moov``), served as ``init.mp4`` and
  named by ``EXT-X-MAP``. Its sample tables are empty; ``mvex`` announces fragments.
* :func:`fragment`: one CMAF chunk (``moof`` + ``mdat``), served as one LL-HLS part. A
  segment is the concatenation of its parts' chunks.

References: ISO/IEC 14496-12 (ISO base media file format, "-12" below), ISO/IEC 14496-14
(MP4 file format: ``mp4a`` and ``esds``), ISO/IEC 14496-1 (descriptors inside ``esds``),
ISO/IEC 14496-3 (AudioSpecificConfig) and ISO/IEC 23000-19 (CMAF).

All integers are big-endian. A box is ``size:u32 type:4cc payload`` (-12 4.2); a full box
adds ``version:u8 flags:u24``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from podium.encode.units import AccessUnit

# The unity transformation matrix of mvhd and tkhd (-12 8.2.2.3): 16.16 and 2.30 fixed point.
_UNITY_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)

# tfhd flag (-12 8.8.7.1): data offsets in trun count from the start of this moof. CMAF
# requires it for its fragments, and it makes each chunk self-contained, so parts can be
# served alone or concatenated into segments without rewriting offsets.
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000

# trun flags (-12 8.8.8.1).
_TRUN_DATA_OFFSET = 0x000001
_TRUN_SAMPLE_DURATION = 0x000100
_TRUN_SAMPLE_SIZE = 0x000200

_U32_MAX = 0xFFFFFFFF


def box(kind: bytes, *payload: bytes) -> bytes:
    """A plain box: 32-bit size, four-character type, payload (-12 4.2)."""
    if len(kind) != 4:
        raise ValueError(f"box type must be four bytes, got {kind!r}")
    body = b"".join(payload)
    size = 8 + len(body)
    if size > _U32_MAX:
        # 64-bit ``largesize`` boxes are never needed for 256 ms of audio; refusing keeps
        # every reader of our output on the simple path.
        raise ValueError(f"{kind!r} box of {size} bytes exceeds 32-bit size")
    return struct.pack(">I4s", size, kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A full box: a plain box whose payload starts with version:u8 and flags:u24."""
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _descriptor(tag: int, *payload: bytes) -> bytes:
    """An MPEG-4 descriptor (14496-1 8.3.3): tag, expandable size, payload.

    The size is written in 7-bit groups, most significant first, with the top bit set on
    every byte but the last ("sizeOfInstance" with "nextByte").
    """
    body = b"".join(payload)
    size = len(body)
    groups = [size & 0x7F]
    size >>= 7
    while size:
        groups.append(0x80 | (size & 0x7F))
        size >>= 7
    if len(groups) > 4:
        raise ValueError("descriptor larger than 2**28 bytes")
    return bytes([tag, *reversed(groups)]) + body


def _esds(asc: bytes, bitrate: int) -> bytes:
    """The elementary stream descriptor box carrying the AudioSpecificConfig (14496-14 5.6)."""
    decoder_specific_info = _descriptor(0x05, asc)
    decoder_config = _descriptor(
        0x04,
        struct.pack(
            ">BBBHII",
            # objectTypeIndication 0x40: "Audio ISO/IEC 14496-3" (14496-1 Table 5).
            0x40,
            # streamType 0x05 (AudioStream) << 2, upStream 0, reserved 1.
            (0x05 << 2) | 0x01,
            0,  # bufferSizeDB, high byte (u24 split to fit struct)
            0,  # bufferSizeDB, low 16 bits: 0 = unknown
            bitrate,  # maxBitrate
            bitrate,  # avgBitrate; 0 means variable or unknown
        ),
        decoder_specific_info,
    )
    # SLConfigDescriptor with predefined = 2: "Reserved for use in MP4 files" (14496-14 3.1.2
    # requires exactly this in MP4).
    sl_config = _descriptor(0x06, b"\x02")
    # ES_ID 0: 14496-14 3.1.2 says "ES_ID ... set to 0 as stored"; no dependence, URL or OCR.
    es_descriptor = _descriptor(0x03, struct.pack(">HB", 0, 0), decoder_config, sl_config)
    return full_box(b"esds", 0, 0, es_descriptor)


def _mp4a(asc: bytes, sample_rate: int, channels: int, bitrate: int) -> bytes:
    """The ``mp4a`` AudioSampleEntry (-12 12.2.3, 14496-14 5.6)."""
    return box(
        b"mp4a",
        # SampleEntry: reserved u8[6] = 0, data_reference_index = 1 (the one dref entry).
        b"\x00" * 6,
        struct.pack(">H", 1),
        # AudioSampleEntry: reserved u32[2], channelcount, samplesize 16, pre_defined,
        # reserved, samplerate as 16.16 fixed point.
        struct.pack(">IIHHHHI", 0, 0, channels, 16, 0, 0, sample_rate << 16),
        _esds(asc, bitrate),
    )


def _ftyp() -> bytes:
    # CMAF (23000-19) headers list the structural brand 'cmfc'; 'caac' is the brand of the AAC
    # Core CMAF media profile (AAC-LC, mono or stereo, up to 48 kHz); 'iso6' covers tfdt v1 and
    # default-base-is-moof.
    return box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6", b"cmfc", b"caac", b"mp41")


def _mvhd(timescale: int, next_track_id: int) -> bytes:
    # Version 0, creation/modification time 0 (unknown: the header is the same for every
    # space), duration 0 because the duration lives in the fragments (-12 8.8.1).
    return full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, timescale, 0),
        struct.pack(">IH", 0x00010000, 0x0100),  # rate 1.0, volume 1.0
        b"\x00" * 10,  # reserved u16 + u32[2]
        _UNITY_MATRIX,
        b"\x00" * 24,  # pre_defined u32[6]
        struct.pack(">I", next_track_id),
    )


def _tkhd(track_id: int) -> bytes:
    # Flags 0x3: track_enabled | track_in_movie. Audio: volume 1.0, width = height = 0.
    return full_box(
        b"tkhd",
        0,
        0x000003,
        struct.pack(">IIIII", 0, 0, track_id, 0, 0),  # times, track_ID, reserved, duration
        b"\x00" * 8,  # reserved u32[2]
        struct.pack(">hhhH", 0, 0, 0x0100, 0),  # layer, alternate_group, volume, reserved
        _UNITY_MATRIX,
        struct.pack(">II", 0, 0),
    )


def _mdhd(timescale: int) -> bytes:
    # Language 'und' packed as three 5-bit letters offset by 0x60 (-12 8.4.2.3).
    language = ((ord("u") - 0x60) << 10) | ((ord("n") - 0x60) << 5) | (ord("d") - 0x60)
    return full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, language, 0))


def _hdlr() -> bytes:
    return full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"soun"), b"SoundHandler\x00")


def _dinf() -> bytes:
    # One self-contained data reference: 'url ' with flag 1 = "media data is in this file".
    return box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))


def _stbl(sample_entry: bytes) -> bytes:
    # Sample tables are mandatory but empty: every sample lives in a movie fragment.
    return box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), sample_entry),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )


def init_segment(
    asc: bytes,
    sample_rate: int,
    channels: int,
    track_id: int = 1,
    *,
    bitrate: int = 0,
) -> bytes:
    """The CMAF header for one AAC track: ``ftyp`` + ``moov`` (``init.mp4``).

    Args:
        asc: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), as PyAV's
            ``codec_context.extradata``; stored verbatim in ``esds``.
        sample_rate: Hz; also the media timescale, so decode times are sample counts.
        channels: 1 or 2.
        track_id: the track's ID; fragments must use the same one.
        bitrate: average bits per second for ``esds``, 0 when unknown.

    Returns:
        The encoded boxes. The same arguments always give the same bytes.

    Raises:
        ValueError: on an empty ASC, a rate not representable in the sample entry, a
            channel count other than 1 or 2, or a non-positive track ID.
    """
    if not asc:
        raise ValueError("empty AudioSpecificConfig")
    if not 0 < sample_rate < 65536:
        raise ValueError(f"sample rate {sample_rate} not representable in mp4a")
    if channels not in (1, 2):
        raise ValueError(f"{channels} channels: only mono and stereo are supported")
    if not 0 < track_id < _U32_MAX:
        raise ValueError(f"track ID {track_id} out of range")
    trak = box(
        b"trak",
        _tkhd(track_id),
        box(
            b"mdia",
            _mdhd(sample_rate),
            _hdlr(),
            box(
                b"minf",
                full_box(b"smhd", 0, 0, struct.pack(">hH", 0, 0)),  # balance 0, reserved
                _dinf(),
                _stbl(_mp4a(asc, sample_rate, channels, bitrate)),
            ),
        ),
    )
    # trex (-12 8.8.3): defaults for fragments. Every trun states its own durations and
    # sizes; default sample flags 0 mean "sync sample", which every AAC frame is.
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))
    moov = box(b"moov", _mvhd(sample_rate, track_id + 1), trak, box(b"mvex", trex))
    return _ftyp() + moov


def styp() -> bytes:
    """A segment type box that may lead a CMAF segment (-12 8.16.2).

    'msdh' is the media segment brand of 14496-12 8.16; 'cmfs' marks a CMAF segment.
    """
    return box(b"styp", b"msdh", struct.pack(">I", 0), b"msdh", b"cmfs")


def fragment(
    sequence_number: int,
    base_decode_time: int,
    units: Sequence[AccessUnit],
    *,
    track_id: int = 1,
    with_styp: bool = False,
) -> bytes:
    """One CMAF chunk: ``[styp] moof(mfhd, traf(tfhd, tfdt, trun)) mdat``.

    Args:
        sequence_number: ``mfhd`` sequence number; -12 8.8.5.3 wants it to increase
            across the track's fragments in decode order. 1 to 2**32-1.
        base_decode_time: decode time of the first unit, in samples from the track's
            start (``tfdt`` version 1, 64-bit, so a long space never wraps).
        units: the access units, in decode order; their ``duration`` and ``len(data)``
            become the per-sample entries of ``trun``.
        track_id: must match the init segment's.
        with_styp: lead with :func:`styp`, as the first chunk of a CMAF segment may.

    Returns:
        The encoded boxes.

    Raises:
        ValueError: on no units, a unit with non-positive duration or no data, or numbers
            that do not fit their fields.
    """
    if not units:
        raise ValueError("a fragment needs at least one access unit")
    if not 0 < sequence_number <= _U32_MAX:
        raise ValueError(f"sequence number {sequence_number} out of range")
    if not 0 <= base_decode_time < 2**64:
        raise ValueError(f"base decode time {base_decode_time} out of range")
    entries = []
    for unit in units:
        if unit.duration <= 0 or not unit.data:
            raise ValueError(f"access unit at pts {unit.pts} has no duration or no data")
        entries.append(struct.pack(">II", unit.duration, len(unit.data)))
    samples = b"".join(entries)

    def moof(data_offset: int) -> bytes:
        trun_flags = _TRUN_DATA_OFFSET | _TRUN_SAMPLE_DURATION | _TRUN_SAMPLE_SIZE
        trun_head = struct.pack(">Ii", len(units), data_offset)
        return box(
            b"moof",
            full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number)),
            box(
                b"traf",
                full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", track_id)),
                full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time)),
                full_box(b"trun", 0, trun_flags, trun_head, samples),
            ),
        )

    # The data offset counts from the first byte of moof (default-base-is-moof) to the first
    # sample: the whole moof plus the 8-byte mdat header. The moof's size does not depend on
    # the offset's value, so a first pass with 0 measures it.
    moof_size = len(moof(0))
    chunk = moof(moof_size + 8) + box(b"mdat", *(unit.data for unit in units))
    return styp() + chunk if with_styp else chunk
