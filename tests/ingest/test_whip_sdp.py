"""Offer validation and fragment parsing: golden offers, targeted rejections, seeded fuzz."""

from __future__ import annotations

import contextlib
import random

import pytest
from aiortc.sdp import SessionDescription

from podium.errors import InvalidInput
from podium.ingest.sdp import MAX_OFFER_BYTES, parse_fragment, validate_offer

# A browser-style WHIP offer (after the example of RFC 9725 section 4.2): audio + video.
BROWSER_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 5228595038118931041 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:EsAw",
        "a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 DA:7B:57:DC:28:CE:04:4F:31:79:85:C4:31:67:EB:27:58:29:ED:77:2A:"
        "0D:24:AE:ED:AD:30:BC:BD:F1:9C:02",
        "a=setup:actpass",
        "a=mid:0",
        "a=bundle-only",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendonly",
        "a=msid:- d46fb922-d52a-4e9c-aa87-444eadc1521b",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0",
        "a=candidate:1 1 udp 1686052607 198.51.100.7 3478 typ srflx raddr 192.0.2.1 rport 61764",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:EsAw",
        "a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
        "a=fingerprint:sha-256 DA:7B:57:DC:28:CE:04:4F:31:79:85:C4:31:67:EB:27:58:29:ED:77:2A:"
        "0D:24:AE:ED:AD:30:BC:BD:F1:9C:02",
        "a=setup:actpass",
        "a=mid:1",
        "a=bundle-only",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 nack pli",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=ssrc-group:FID 1 2",
        "a=ssrc:1 cname:x",
        "",
    ]
)


def replace_line(sdp: str, old: str, new: str | None) -> str:
    lines = sdp.split("\r\n")
    index = lines.index(old)
    if new is None:
        del lines[index]
    else:
        lines[index] = new
    return "\r\n".join(lines)


def test_browser_offer_is_accepted_and_summarised() -> None:
    summary = validate_offer(BROWSER_OFFER)
    assert summary.audio_mid == "0"
    assert summary.opus_payload_type == 111
    assert summary.direction == "sendonly"
    assert summary.media == ("audio", "video")
    assert summary.ice_ufrag == "EsAw"
    assert summary.candidates == 2
    assert not summary.end_of_candidates
    # Bytes and bare-LF line endings are accepted too (RFC 8866 asks parsers to be lenient).
    assert validate_offer(BROWSER_OFFER.replace("\r\n", "\n").encode()) == summary


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("v=0", "v=1", "must start with the line 'v=0'"),
        ("o=- 5228595038118931041 2 IN IP4 127.0.0.1", None, "exactly one 'o='"),
        ("o=- 5228595038118931041 2 IN IP4 127.0.0.1", "o=- 1 2", "six fields"),
        ("s=-", None, "exactly one 's='"),
        ("m=audio 9 UDP/TLS/RTP/SAVPF 111 0", "m=audio 0 UDP/TLS/RTP/SAVPF 111 0", "no audio"),
        ("m=audio 9 UDP/TLS/RTP/SAVPF 111 0", "m=audio nine RTP 111", "malformed 'm='"),
        ("m=audio 9 UDP/TLS/RTP/SAVPF 111 0", "m=audio 9 UDP/TLS/RTP/SAVPF 0", "no Opus"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 G722/8000", "no Opus"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus", "malformed a=rtpmap"),
        ("a=sendonly", "a=recvonly", "must send audio"),
        ("a=ice-ufrag:EsAw", "a=ice-ufrag:", "malformed a=ice-ufrag"),
        ("a=setup:actpass", "a=setup:holdconn", "a=setup must be one of"),
        ("a=fmtp:111 minptime=10;useinbandfec=1", "a=fmtp:112 x=1", "no a=rtpmap"),
        ("a=ssrc:1 cname:x", "a=ssrc:one cname:x", "malformed a=ssrc"),
        ("a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp:port", "malformed a=rtcp"),
        ("c=IN IP4 0.0.0.0", "c=IN IP9", "malformed 'c='"),
        ("a=mid:0", "mid:0", "not of the form"),
        ("a=mid:0", "a=mid:0\x00", "control character"),
        (
            "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0",
            "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 617640 typ host generation 0",
            "malformed a=candidate",
        ),
        (
            "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0",
            "a=candidate:1 1 udp 1 192.0.2.1 1 typ host raddr",
            "malformed a=candidate",
        ),
    ],
)
def test_bad_offers_are_rejected_with_the_reason(old: str, new: str | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_offer(replace_line(BROWSER_OFFER, old, new))


def test_offers_without_one_usable_audio_track_are_rejected() -> None:
    video_only = BROWSER_OFFER.replace("m=audio 9", "m=application 9")
    with pytest.raises(InvalidInput, match=r"no audio to ingest \(media sections: application"):
        validate_offer(video_only)
    audio = BROWSER_OFFER[BROWSER_OFFER.index("m=audio") : BROWSER_OFFER.index("m=video")]
    with pytest.raises(InvalidInput, match="2 audio sections"):
        validate_offer(BROWSER_OFFER + audio)
    no_fingerprint = "\r\n".join(
        line for line in BROWSER_OFFER.split("\r\n") if not line.startswith("a=fingerprint")
    )
    with pytest.raises(InvalidInput, match="fingerprint"):
        validate_offer(no_fingerprint)


def test_size_and_encoding_limits() -> None:
    padded = BROWSER_OFFER + "a=x-pad:" + "x" * MAX_OFFER_BYTES + "\r\n"
    with pytest.raises(InvalidInput, match="limit is 16384"):
        validate_offer(padded)
    with pytest.raises(InvalidInput, match="not UTF-8"):
        validate_offer(b"v=0\r\n\xff\xfe")
    with pytest.raises(InvalidInput, match="not valid text"):
        validate_offer("v=0\r\ns=\ud800")
    with pytest.raises(InvalidInput):
        validate_offer("")


def _mutate(rng: random.Random, text: str) -> str | bytes:
    """One random corruption of ``text``: line edits, byte noise, truncation."""
    lines = text.split("\r\n")
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        op = rng.randrange(7)
        if op == 0:
            del lines[i]
            if not lines:
                lines = [""]
        elif op == 1:
            lines.insert(i, rng.choice(lines))
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3 and lines[i]:
            k = rng.randrange(len(lines[i]))
            lines[i] = lines[i][:k] + chr(rng.randrange(0x20, 0x7F)) + lines[i][k + 1 :]
        elif op == 4:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        elif op == 5:
            lines[i] = lines[i].replace(" ", rng.choice(["", "  ", "\t", ":"]), 1)
        else:
            lines[i] = lines[i] + rng.choice([" 99999999999", ":", "/", " x", "=", "\u00e9"])
    out = "\r\n".join(lines)
    if rng.random() < 0.1:
        raw = bytearray(out.encode())
        for _ in range(rng.randint(1, 5)):
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    return out


def test_fuzzed_offers_only_ever_raise_invalid_input() -> None:
    """Whatever the bytes, validate_offer returns or raises InvalidInput; and what it lets
    through, aiortc's own SDP parser (asserts, int(), dict lookups) can parse."""
    rng = random.Random(20250326)
    accepted = 0
    for _ in range(3000):
        body = _mutate(rng, BROWSER_OFFER)
        try:
            validate_offer(body)
        except InvalidInput:
            continue
        accepted += 1
        text = body.decode() if isinstance(body, bytes) else body
        SessionDescription.parse(text)
    for _ in range(500):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
        with pytest.raises(InvalidInput):
            validate_offer(noise)
    assert accepted > 100  # the fuzz also walked the accepting paths


def test_fragments_are_parsed_per_rfc_8840() -> None:
    fragment = parse_fragment(
        "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n"
        "a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active\r\n"
        "a=end-of-candidates\r\n"
    )
    assert fragment.ice_ufrag == "EsAw"
    assert fragment.ice_pwd == "P2uYro0UCOQ4zxjKXaWCBui1"
    assert [c.mid for c in fragment.candidates] == ["0", "0"]
    assert fragment.candidates[1].line.endswith("tcptype active")
    assert fragment.end_of_candidates
    restart = parse_fragment("a=ice-ufrag:ysXw\na=ice-pwd:vw5LmwG4y/e6dPP/zAP9Gp5k\n")
    assert restart.candidates == ()
    assert not restart.end_of_candidates
    for bad in ("v=0", "a=candidate:1 1 udp", "a=ice-ufrag:a b", "m=audio", "x"):
        with pytest.raises(InvalidInput):
            parse_fragment(bad)


def test_fuzzed_fragments_only_ever_raise_invalid_input() -> None:
    rng = random.Random(8840)
    base = (
        "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\n"
        "a=mid:0\r\na=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\n"
        "a=end-of-candidates"
    )
    for _ in range(2000):
        with contextlib.suppress(InvalidInput):
            parse_fragment(_mutate(rng, base))


def test_ice_server_link_headers() -> None:
    from aiortc import RTCIceServer

    from podium.ingest.whip import etag_matches, ice_server_links

    links = ice_server_links(
        [
            RTCIceServer("stun:stun.example.net"),
            RTCIceServer(["turn:turn.example.net?transport=udp"], "user", 'pa"ss'),
        ]
    )
    assert links == [
        '<stun:stun.example.net>; rel="ice-server"',
        '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; '
        'credential="pa\\"ss"; credential-type="password"',
    ]
    assert etag_matches('"a", "b"', '"b"')
    assert etag_matches("*", '"b"')
    assert not etag_matches('W/"b"', '"b"')


def test_an_announced_address_is_offered_beside_each_host_candidate() -> None:
    from podium.ingest.sdp import announce_address

    answer = (
        "v=0\r\nm=audio 40000 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 10.0.0.2\r\n"
        "a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 10.0.0.2 40000 typ host\r\n"
        "a=candidate:d0bcf3d9 1 udp 2130706431 fd00::2 40001 typ host\r\n"
        "a=candidate:aa 1 udp 1694498815 198.51.100.1 40002 typ srflx"
        " raddr 10.0.0.2 rport 40000\r\n"
        "a=end-of-candidates\r\n"
    )
    announced = announce_address(answer, "203.0.113.5")
    candidates = [line for line in announced.split("\r\n") if line.startswith("a=candidate:")]
    assert [c.split()[4:6] for c in candidates] == [
        ["203.0.113.5", "40000"],  # first, the same port
        ["10.0.0.2", "40000"],  # the private one stays
        ["fd00::2", "40001"],  # another family: as it was
        ["198.51.100.1", "40002"],
    ]
    foundation = candidates[0].split()[0].removeprefix("a=candidate:")
    assert len(foundation) <= 32
    assert foundation != "f957a2332b1715da3b0ef8ba684454eb"
    assert candidates[0].split()[1:4] == candidates[1].split()[1:4]
    assert "c=IN IP4 203.0.113.5" in announced
