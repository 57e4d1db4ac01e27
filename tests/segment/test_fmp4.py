"""The ISO BMFF boxes, read back with a tiny independent box reader."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest

from podium.segment import AccessUnit, fragment, init_segment
from podium.segment.fmp4 import box, styp

# Boxes whose payload is only child boxes (ISO/IEC 14496-12).
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"dinf", b"stbl", b"mvex", b"moof", b"traf"}
# Full boxes that hold children after their 4-byte version/flags (and, for these, a count).
COUNTED_CONTAINERS = {b"stsd": 8, b"dref": 8}
# AAC LC, 48 kHz (index 3), mono: the AudioSpecificConfig of PyAV's aac encoder.
ASC = bytes.fromhex("1188")


@dataclass
class Box:
    kind: bytes
    size: int
    payload: bytes
    children: list[Box] = field(default_factory=list)

    def find(self, path: str) -> Box:
        node = self
        for name in path.split("/"):
            matches = [child for child in node.children if child.kind == name.encode()]
            assert len(matches) == 1, f"{name} in {node.kind!r}: {len(matches)} found"
            node = matches[0]
        return node


def read_boxes(data: bytes) -> list[Box]:
    """Split ``data`` into boxes, recursing into containers; sizes must tile it exactly."""
    boxes = []
    offset = 0
    while offset < len(data):
        assert len(data) - offset >= 8, "truncated box header"
        size, kind = struct.unpack_from(">I4s", data, offset)
        assert 8 <= size <= len(data) - offset, f"{kind!r} size {size} out of bounds"
        payload = data[offset + 8 : offset + size]
        node = Box(kind, size, payload)
        if kind in CONTAINERS:
            node.children = read_boxes(payload)
        elif kind in COUNTED_CONTAINERS:
            node.children = read_boxes(payload[COUNTED_CONTAINERS[kind] :])
        elif kind == b"mp4a":
            # SampleEntry (8) + AudioSampleEntry fields (20), then esds.
            node.children = read_boxes(payload[28:])
        boxes.append(node)
        offset += size
    assert offset == len(data)
    return boxes


def root(data: bytes) -> Box:
    return Box(b"root", len(data), data, read_boxes(data))


def test_box_is_size_type_payload() -> None:
    assert box(b"free", b"abc") == b"\x00\x00\x00\x0bfreeabc"
    with pytest.raises(ValueError, match="four bytes"):
        box(b"toolong", b"")


def test_init_segment_nesting_and_fields() -> None:
    data = init_segment(ASC, 48000, 1, track_id=7, bitrate=64000)
    top = root(data)
    assert [child.kind for child in top.children] == [b"ftyp", b"moov"]

    ftyp = top.find("ftyp").payload
    assert ftyp[:4] == b"iso6"
    brands = {ftyp[i : i + 4] for i in range(8, len(ftyp), 4)}
    assert {b"iso6", b"cmfc", b"caac"} <= brands

    moov = top.find("moov")
    assert [child.kind for child in moov.children] == [b"mvhd", b"trak", b"mvex"]
    mvhd = moov.find("mvhd").payload
    assert struct.unpack_from(">I", mvhd, 12)[0] == 48000  # timescale
    assert struct.unpack_from(">I", mvhd, len(mvhd) - 4)[0] == 8  # next_track_ID

    tkhd = moov.find("trak/tkhd").payload
    assert struct.unpack_from(">I", tkhd, 0)[0] & 0xFFFFFF == 3  # enabled | in movie
    assert struct.unpack_from(">I", tkhd, 12)[0] == 7

    mdhd = moov.find("trak/mdia/mdhd").payload
    assert struct.unpack_from(">I", mdhd, 12)[0] == 48000
    assert moov.find("trak/mdia/hdlr").payload[8:12] == b"soun"
    assert moov.find("trak/mdia/minf/smhd").size == 16
    url = moov.find("trak/mdia/minf/dinf/dref/url ")
    assert url.payload == b"\x00\x00\x00\x01"  # self-contained

    stbl = moov.find("trak/mdia/minf/stbl")
    assert [child.kind for child in stbl.children] == [b"stsd", b"stts", b"stsc", b"stsz", b"stco"]
    for empty in ("stts", "stsc", "stco"):
        assert stbl.find(empty).payload == b"\x00" * 8  # version/flags + entry_count 0
    mp4a = stbl.find("stsd/mp4a").payload
    (data_reference_index,) = struct.unpack_from(">H", mp4a, 6)
    channels, sample_size = struct.unpack_from(">HH", mp4a, 16)
    (rate,) = struct.unpack_from(">I", mp4a, 24)
    assert (data_reference_index, channels, sample_size, rate) == (1, 1, 16, 48000 << 16)

    esds = stbl.find("stsd/mp4a/esds").payload
    # ES_Descriptor(3) > DecoderConfigDescriptor(4: object type 0x40) > DecSpecificInfo(5).
    assert esds[4] == 0x03
    decoder_config = esds.index(b"\x04", 8)
    assert esds[decoder_config + 2] == 0x40  # Audio ISO/IEC 14496-3
    assert esds[decoder_config + 3] == 0x15  # AudioStream, reserved bit
    assert struct.unpack_from(">II", esds, decoder_config + 7) == (64000, 64000)
    assert esds[decoder_config + 15 : decoder_config + 17 + len(ASC)] == b"\x05\x02" + ASC
    assert esds.endswith(b"\x06\x01\x02")  # SLConfigDescriptor, predefined = MP4

    trex = moov.find("mvex/trex").payload
    assert struct.unpack_from(">II", trex, 4) == (7, 1)  # track_ID, sample description 1


def test_init_segment_is_deterministic_and_validates() -> None:
    assert init_segment(ASC, 48000, 1) == init_segment(ASC, 48000, 1)
    with pytest.raises(ValueError, match="AudioSpecificConfig"):
        init_segment(b"", 48000, 1)
    with pytest.raises(ValueError, match="channels"):
        init_segment(ASC, 48000, 6)
    with pytest.raises(ValueError, match="sample rate"):
        init_segment(ASC, 96000, 1)


def test_long_asc_uses_multibyte_descriptor_size() -> None:
    asc = bytes(200)  # longer than 127 bytes: the expandable size needs two bytes
    esds = root(init_segment(asc, 48000, 2)).find("moov/trak/mdia/minf/stbl/stsd/mp4a/esds")
    at = esds.payload.index(b"\x05\x81\x48")  # tag 5, size 200 = 0x81 0x48
    assert esds.payload[at + 3 : at + 203] == asc


def test_fragment_nesting_offsets_and_samples() -> None:
    units = [AccessUnit(pts=1024 * i, data=bytes([i]) * (10 + i), duration=1024) for i in range(3)]
    units.append(AccessUnit(pts=3072, data=b"\xff" * 5, duration=896))
    data = fragment(42, 2**40, units, track_id=7)
    top = root(data)
    assert [child.kind for child in top.children] == [b"moof", b"mdat"]
    moof = top.find("moof")
    assert [child.kind for child in moof.children] == [b"mfhd", b"traf"]
    assert struct.unpack(">II", moof.find("mfhd").payload) == (0, 42)

    tfhd = moof.find("traf/tfhd").payload
    assert struct.unpack(">II", tfhd) == (0x020000, 7)  # default-base-is-moof, track 7
    tfdt = moof.find("traf/tfdt").payload
    assert struct.unpack(">IQ", tfdt) == (1 << 24, 2**40)  # version 1, 64-bit time

    trun = moof.find("traf/trun").payload
    flags, count, offset = struct.unpack_from(">IIi", trun)
    assert flags == 0x000301
    assert count == 4
    samples = [struct.unpack_from(">II", trun, 12 + 8 * i) for i in range(count)]
    assert samples == [(1024, 10), (1024, 11), (1024, 12), (896, 5)]
    # The offset, from the start of moof, lands on the first byte of the mdat payload.
    assert offset == moof.size + 8
    assert data[offset : offset + 10] == b"\x00" * 10
    assert top.find("mdat").payload == b"".join(unit.data for unit in units)


def test_fragment_with_styp_and_rejections() -> None:
    unit = AccessUnit(pts=0, data=b"\x01")
    top = root(fragment(1, 0, [unit], with_styp=True))
    assert [child.kind for child in top.children] == [b"styp", b"moof", b"mdat"]
    assert styp()[8:12] == b"msdh"
    with pytest.raises(ValueError, match="at least one"):
        fragment(1, 0, [])
    with pytest.raises(ValueError, match="sequence number"):
        fragment(0, 0, [unit])
    with pytest.raises(ValueError, match="decode time"):
        fragment(1, -1, [unit])
    with pytest.raises(ValueError, match="no duration"):
        fragment(1, 0, [AccessUnit(pts=0, data=b"", duration=1024)])
