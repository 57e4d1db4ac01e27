"""Object names: what is produced parses back, and nothing else parses."""

from __future__ import annotations

import random
import string

import pytest

from podium.segment import Kind, ObjectName, parse_name
from podium.segment.names import MAX_MSN, MAX_PART_INDEX, part_name, segment_name


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("init.mp4", ObjectName(Kind.INIT)),
        ("live.m3u8", ObjectName(Kind.PLAYLIST)),
        ("part-0-0.m4s", ObjectName(Kind.PART, 0, 0)),
        ("part-12-7.m4s", ObjectName(Kind.PART, 12, 7)),
        (f"part-{MAX_MSN}-{MAX_PART_INDEX}.m4s", ObjectName(Kind.PART, MAX_MSN, MAX_PART_INDEX)),
        ("seg-0.m4s", ObjectName(Kind.SEGMENT, 0)),
        (f"seg-{MAX_MSN}.m4s", ObjectName(Kind.SEGMENT, MAX_MSN)),
    ],
)
def test_valid_names_round_trip(name: str, parsed: ObjectName) -> None:
    assert parse_name(name) == parsed
    assert parsed.render() == name


@pytest.mark.parametrize(
    "name",
    [
        "", "init.mp4\n", "INIT.MP4", "./init.mp4", "../init.mp4", "a/init.mp4", "live.m3u8?x",
        "part-01-0.m4s", "part-1-00.m4s", "part--1-0.m4s", "part-+1-0.m4s", "part-1-0.M4S",
        "part-1-0.m4s\n", " part-1-0.m4s", "part-1-0.m4s.", "part-1.m4s", "part-1-0-0.m4s",
        f"part-{MAX_MSN + 1}-0.m4s", f"part-1-{MAX_PART_INDEX + 1}.m4s",
        "part-99999999999-0.m4s", "part-1-0000.m4s", "part-\u0663-0.m4s", "part-1-0.m4s%00",
        "seg-00.m4s", "seg-.m4s", "seg-1.mp4", "seg-1.m4s/", "seg-1\x00.m4s",
        f"seg-{MAX_MSN + 1}.m4s", "seg-1e3.m4s", "seg-0x10.m4s", "seg-\uff11.m4s",
        "init.mp4/../../etc/passwd", "%2e%2e%2finit.mp4",
    ],
)  # fmt: skip
def test_everything_else_is_rejected(name: str) -> None:
    assert parse_name(name) is None


def test_builders_refuse_unparseable_numbers() -> None:
    assert part_name(3, 4) == "part-3-4.m4s"
    assert segment_name(9) == "seg-9.m4s"
    with pytest.raises(ValueError, match="msn"):
        segment_name(-1)
    with pytest.raises(ValueError, match="part index"):
        part_name(0, MAX_PART_INDEX + 1)


def test_fuzz_parse_accepts_only_canonical_names() -> None:
    """Random strings near the grammar: whatever parses renders back to the same string."""
    rng = random.Random(20260102)
    alphabet = string.digits + "-.partsegm4init3u8/\\%\x00\n +\u0663"
    templates = ["part-{}-{}.m4s", "seg-{}.m4s", "{}", "{}{}"]
    accepted = 0
    for _ in range(20000):
        template = rng.choice(templates)
        fields = [
            "".join(rng.choice(alphabet if rng.random() < 0.3 else string.digits)
                    for _ in range(rng.randint(0, 12)))
            for _ in range(template.count("{}"))
        ]  # fmt: skip
        name = template.format(*fields)
        if rng.random() < 0.05:
            name = rng.choice(["init.mp4", "live.m3u8"])
        parsed = parse_name(name)
        if parsed is not None:
            accepted += 1
            assert parsed.render() == name
            assert name.isascii()
            assert "/" not in name
            assert ".." not in name
    assert accepted > 1000  # the fuzz reaches the accepting paths too
