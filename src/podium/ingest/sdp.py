"""Validation of WHIP offers and parsing of trickle-ICE SDP fragments, before aiortc sees them.

Pure functions over text: no I/O, no aiortc. :func:`validate_offer` is the gate every
``POST`` body passes; it rejects what Podium cannot ingest (no audio, no Opus, several audio
tracks) and what is malformed in ways aiortc's own parser would trip over (it uses ``assert``
and bare ``int()``), so a bad offer costs one string scan and never a peer connection.
:func:`parse_fragment` does the same for ``PATCH`` bodies (RFC 8840).

Every rejection is :class:`~podium.errors.InvalidInput` (HTTP 422) with a message naming the
line at fault. RFC 9725 section 4.2 leaves the exact code to us:

    If the HTTP POST to the WHIP endpoint has a content type different than
    "application/sdp" or the SDP is malformed, the WHIP endpoint MUST reject the HTTP POST
    request with an appropriate 4xx error response.

422 (Unprocessable Content) is that code for an offer that is well-formed HTTP but that we
cannot accept; the content-type check (415) belongs to the web shell.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from podium.errors import InvalidInput

MAX_OFFER_BYTES = 16 * 1024
"""Largest offer accepted. A browser's audio+video offer is 4-7 KiB; an audio-only one ~2 KiB."""

MAX_FRAGMENT_BYTES = 16 * 1024
"""Largest trickle-ICE fragment accepted (a few dozen candidates fit easily)."""

_LINE = re.compile(r"^([a-z])=(.*)$")
# Control characters, and the ones Python's str.splitlines() (used by aiortc) breaks on.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_TOKEN = re.compile(r"^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$")
_MEDIA = re.compile(r"^([a-z]+) ([0-9]{1,5}) ([A-Z/]+) (\S.*)$")
_RTPMAP = re.compile(r"^([0-9]{1,3}) ([^/\s]+)/([0-9]{1,6})(?:/([0-9]{1,2}))?$")
_PT_THEN_TEXT = re.compile(r"^([0-9]{1,3}) \S.*$")
_RTCP_FB = re.compile(r"^(\*|[0-9]{1,3}) \S.*$")
_EXTMAP = re.compile(r"^[0-9]{1,3}(?:/[a-z]+)? \S+$")
_SSRC = re.compile(r"^[0-9]{1,10} [^\s:]+:.*$")
_SCTPMAP = re.compile(r"^[0-9]{1,5} \S.*$")
_SSRC_GROUP = re.compile(r"^[A-Za-z]+( [0-9]{1,10})+$")
_RTCP = re.compile(r"^[0-9]{1,5}( IN IP[46] \S+)?$")
_CONNECTION = re.compile(r"^IN IP[46] \S+$")
_FINGERPRINT = re.compile(r"^[A-Za-z0-9-]+ [0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})+$")
_INTEGER = re.compile(r"^[0-9]{1,10}$")
_ICE_CHARS = re.compile(r"^[A-Za-z0-9+/]+$")

_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# fmtp parameters aiortc converts with int() (aiortc.sdp.FMTP_INT_PARAMETERS).
_FMTP_INT_PARAMETERS = (
    "apt",
    "max-fr",
    "max-fs",
    "maxplaybackrate",
    "minptime",
    "stereo",
    "useinbandfec",
)
# Attributes aiortc reads the value of: "a=<name>" without ":" would hand it None.
_VALUE_REQUIRED = ("group", "msid-semantic", "ssrc-group")
_SETUP_ROLES = ("actpass", "active", "passive")
_CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
# RTP payload types 72-76 collide with RTCP packet types (RFC 5761 section 4).
_FORBIDDEN_PAYLOAD_TYPES = range(72, 77)


@dataclass(frozen=True, slots=True)
class OfferSummary:
    """What Podium needs to know about a valid offer.

    ``audio_mid`` is the audio section's ``a=mid`` (``None`` if absent); ``direction`` is its
    direction as offered (``sendrecv`` or ``sendonly``); ``media`` lists every section's kind
    in order; ``candidates`` counts the audio section's ICE candidates and
    ``end_of_candidates`` says whether the offer closed the list (otherwise more may be
    trickled with PATCH).
    """

    audio_mid: str | None
    opus_payload_type: int
    direction: str
    media: tuple[str, ...]
    ice_ufrag: str
    candidates: int
    end_of_candidates: bool


@dataclass(frozen=True, slots=True)
class FragmentCandidate:
    """One ``a=candidate`` line of a fragment (its value), and the ``a=mid`` it came under."""

    mid: str | None
    line: str


@dataclass(frozen=True, slots=True)
class SdpFragment:
    """A parsed ``application/trickle-ice-sdpfrag`` body (RFC 8840 section 4.4).

    ``ice_ufrag``/``ice_pwd`` are ``None`` when the fragment does not carry them;
    ``candidates`` keeps the order of the body; ``end_of_candidates`` is true if any section
    carried ``a=end-of-candidates``.
    """

    ice_ufrag: str | None
    ice_pwd: str | None
    candidates: tuple[FragmentCandidate, ...]
    end_of_candidates: bool


@dataclass(slots=True)
class _Section:
    kind: str
    port: int
    formats: tuple[str, ...]
    first_line: int
    attributes: list[tuple[int, str, str]]


def validate_offer(offer: str | bytes) -> OfferSummary:
    """Check that ``offer`` is an SDP offer Podium can ingest; return what it says.

    Accepts ``str`` or UTF-8 ``bytes`` of at most :data:`MAX_OFFER_BYTES`. Requires: ``v=0``
    as the first line, one ``o=`` (six fields) and one ``s=`` in the session part, exactly
    one enabled ``m=audio`` section that sends audio (``sendrecv`` or ``sendonly``) and maps
    a payload type to ``opus/48000/2``, ICE credentials and a DTLS fingerprint; every line of
    the form ``<letter>=<value>`` and every attribute aiortc reads numerically well-formed.
    Other sections (video, data channel) are allowed; Podium will not receive them.

    Raises :class:`~podium.errors.InvalidInput` naming the first problem found.
    """
    lines = _split_lines(offer, MAX_OFFER_BYTES, "SDP offer")
    if not lines or lines[0][1] != "v=0":
        raise InvalidInput("the body is not an SDP offer: it must start with the line 'v=0'")

    session: list[tuple[int, str, str]] = []
    sections: list[_Section] = []
    for number, line in lines[1:]:
        match = _LINE.match(line)
        if match is None:
            raise InvalidInput(f"SDP line {number} is not of the form '<letter>=<value>'")
        kind, value = match.group(1), match.group(2)
        if kind == "v":
            raise InvalidInput(f"SDP line {number}: 'v=' may only appear once, first")
        if kind == "m":
            sections.append(_parse_media_line(number, value))
        elif sections:
            sections[-1].attributes.append((number, kind, value))
        else:
            session.append((number, kind, value))

    _check_session(session)
    for section in sections:
        _check_section(section)

    session_attrs = [(n, *_split_attribute(v)) for n, k, v in session if k == "a"]
    audio = [s for s in sections if s.kind == "audio" and s.port != 0]
    if not audio:
        kinds = ", ".join(s.kind for s in sections) or "none"
        raise InvalidInput(
            f"the SDP offer has no audio to ingest (media sections: {kinds}); "
            "Podium speakers must send one Opus audio track"
        )
    if len(audio) > 1:
        raise InvalidInput(
            f"the SDP offer has {len(audio)} audio sections; WHIP carries a single "
            "MediaStream and Podium takes exactly one audio track per speaker"
        )
    section = audio[0]
    attrs = [(n, *_split_attribute(v)) for n, k, v in section.attributes if k == "a"]

    opus = [
        int(m.group(1))
        for _, name, value in attrs
        if name == "rtpmap"
        and (m := _RTPMAP.match(value)) is not None
        and m.group(2).lower() == "opus"
        and m.group(3) == "48000"
        and m.group(1) in section.formats
    ]
    if not opus:
        raise InvalidInput(
            f"the audio section (line {section.first_line}) offers no Opus codec "
            "('a=rtpmap:<pt> opus/48000/2'); Podium only ingests Opus"
        )

    directions = [name for _, name, _ in attrs if name in _DIRECTIONS]
    direction = directions[-1] if directions else "sendrecv"
    if direction not in ("sendrecv", "sendonly"):
        raise InvalidInput(
            f"the audio section (line {section.first_line}) is '{direction}': a WHIP offer "
            "must send audio (sendonly, or sendrecv to hear the other speakers)"
        )

    ufrag = _last(attrs, "ice-ufrag") or _last(session_attrs, "ice-ufrag")
    pwd = _last(attrs, "ice-pwd") or _last(session_attrs, "ice-pwd")
    if ufrag is None or pwd is None:
        raise InvalidInput("the SDP offer has no ICE credentials (a=ice-ufrag and a=ice-pwd)")
    if _last(attrs, "fingerprint") is None and _last(session_attrs, "fingerprint") is None:
        raise InvalidInput("the SDP offer has no DTLS fingerprint (a=fingerprint)")

    return OfferSummary(
        audio_mid=_last(attrs, "mid"),
        opus_payload_type=opus[0],
        direction=direction,
        media=tuple(s.kind for s in sections),
        ice_ufrag=ufrag,
        candidates=sum(1 for _, name, _ in attrs if name == "candidate"),
        end_of_candidates=any(name == "end-of-candidates" for _, name, _ in attrs),
    )


def parse_fragment(body: str | bytes) -> SdpFragment:
    """Parse an ``application/trickle-ice-sdpfrag`` body (RFC 8840 section 9).

    Only ``a=`` and ``m=`` lines are allowed. ICE credentials may appear at the top or in a
    section; candidates are kept with the ``a=mid`` of their section. Raises
    :class:`~podium.errors.InvalidInput` if the body is too large, not text, or has a
    malformed line or candidate.
    """
    lines = _split_lines(body, MAX_FRAGMENT_BYTES, "SDP fragment")
    ufrag: str | None = None
    pwd: str | None = None
    mid: str | None = None
    end = False
    pending: list[tuple[int, str]] = []  # candidates of the current section, before its mid
    candidates: list[FragmentCandidate] = []

    def close_section() -> None:
        candidates.extend(FragmentCandidate(mid=mid, line=line) for _, line in pending)
        pending.clear()

    for number, line in lines:
        match = _LINE.match(line)
        if match is None or match.group(1) not in ("a", "m"):
            raise InvalidInput(f"SDP fragment line {number} is not an 'a=' or 'm=' line (RFC 8840)")
        if match.group(1) == "m":
            close_section()
            _parse_media_line(number, match.group(2))
            mid = None
            continue
        name, value = _split_attribute(match.group(2))
        if name == "ice-ufrag":
            ufrag = _ice_chars(number, name, value)
        elif name == "ice-pwd":
            pwd = _ice_chars(number, name, value)
        elif name == "mid":
            if not value:
                raise InvalidInput(f"SDP fragment line {number}: empty a=mid")
            mid = value
        elif name == "candidate":
            _check_candidate(number, value)
            pending.append((number, value))
        elif name == "end-of-candidates":
            end = True
    close_section()
    return SdpFragment(
        ice_ufrag=ufrag, ice_pwd=pwd, candidates=tuple(candidates), end_of_candidates=end
    )


def _split_lines(text: str | bytes, limit: int, what: str) -> list[tuple[int, str]]:
    """Numbered non-empty lines of ``text``; rejects oversized, non-UTF-8 or binary bodies."""
    if isinstance(text, str):
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"the {what} is not valid text") from exc
    else:
        raw = bytes(text)
    if len(raw) > limit:
        raise InvalidInput(f"the {what} is {len(raw)} bytes; the limit is {limit}")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the {what} is not UTF-8 text") from exc
    # RFC 8866 ends lines with CRLF but asks parsers to accept a bare LF too.
    numbered: list[tuple[int, str]] = []
    for number, line in enumerate(decoded.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if _CONTROL.search(line):
            raise InvalidInput(f"{what} line {number} contains a control character")
        numbered.append((number, line))
    return numbered


def _split_attribute(value: str) -> tuple[str, str]:
    name, _, rest = value.partition(":")
    return name, rest


def _last(attrs: list[tuple[int, str, str]], name: str) -> str | None:
    found = [value for _, attr, value in attrs if attr == name]
    return found[-1] if found else None


def _parse_media_line(number: int, value: str) -> _Section:
    match = _MEDIA.match(value)
    if match is None:
        raise InvalidInput(
            f"SDP line {number}: malformed 'm=' line (expected "
            "'m=<media> <port> <proto> <fmt> ...')"
        )
    kind, port, formats = match.group(1), int(match.group(2)), tuple(match.group(4).split())
    if port > 65535:
        raise InvalidInput(f"SDP line {number}: port {port} is out of range")
    if kind in ("audio", "video"):
        for fmt in formats:
            if not fmt.isdigit() or len(fmt) > 3 or int(fmt) > 127:
                raise InvalidInput(f"SDP line {number}: '{fmt}' is not an RTP payload type")
            if int(fmt) in _FORBIDDEN_PAYLOAD_TYPES:
                raise InvalidInput(f"SDP line {number}: payload type {fmt} is reserved")
    return _Section(kind=kind, port=port, formats=formats, first_line=number, attributes=[])


def _check_session(session: list[tuple[int, str, str]]) -> None:
    origins = [(n, v) for n, k, v in session if k == "o"]
    names = [n for n, k, _ in session if k == "s"]
    if len(origins) != 1:
        raise InvalidInput("the SDP offer must have exactly one 'o=' line before any 'm=' line")
    if len(names) != 1:
        raise InvalidInput("the SDP offer must have exactly one 's=' line before any 'm=' line")
    number, origin = origins[0]
    if len(origin.split()) != 6:
        raise InvalidInput(f"SDP line {number}: 'o=' must have six fields")
    for number, kind, value in session:
        _check_line(number, kind, value)


def _check_section(section: _Section) -> None:
    declared: set[str] = set()
    for number, kind, value in section.attributes:
        _check_line(number, kind, value)
        if kind == "a" and value.startswith("rtpmap:"):
            declared.add(value[len("rtpmap:") :].split(" ", 1)[0])
    for number, kind, value in section.attributes:
        name, rest = _split_attribute(value)
        # aiortc looks fmtp parameters up by the codec its rtpmap declared.
        if kind == "a" and name == "fmtp" and rest.split(" ", 1)[0] not in declared:
            raise InvalidInput(f"SDP line {number}: a=fmtp for a payload type with no a=rtpmap")


def _check_line(number: int, kind: str, value: str) -> None:
    if kind == "c" and _CONNECTION.match(value) is None:
        raise InvalidInput(f"SDP line {number}: malformed 'c=' line")
    if kind != "a":
        return
    name, rest = _split_attribute(value)
    if not name or _TOKEN.match(name) is None:
        raise InvalidInput(f"SDP line {number}: malformed attribute name")
    if name in _VALUE_REQUIRED and ":" not in value:
        raise InvalidInput(f"SDP line {number}: a={name} needs a value")
    check = _ATTRIBUTE_CHECKS.get(name)
    if check is not None:
        check(number, name, rest)


def _pattern(regex: re.Pattern[str]) -> Callable[[int, str, str], None]:
    def check(number: int, name: str, value: str) -> None:
        if regex.match(value) is None:
            raise InvalidInput(f"SDP line {number}: malformed a={name}")

    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[int, str, str], None]:
    def check(number: int, name: str, value: str) -> None:
        if value not in choices:
            raise InvalidInput(f"SDP line {number}: a={name} must be one of {', '.join(choices)}")

    return check


def _ice_chars(number: int, name: str, value: str) -> str:
    # RFC 8839 section 5.4: ice-char = ALPHA / DIGIT / "+" / "/", 4-256 characters.
    if not 4 <= len(value) <= 256 or _ICE_CHARS.match(value) is None:
        raise InvalidInput(f"SDP line {number}: malformed a={name}")
    return value


def _check_ice_chars(number: int, name: str, value: str) -> None:
    _ice_chars(number, name, value)


def _check_fmtp(number: int, name: str, value: str) -> None:
    if _PT_THEN_TEXT.match(value) is None:
        raise InvalidInput(f"SDP line {number}: malformed a={name}")
    for parameter in value.split(" ", 1)[1].split(";"):
        key, equals, number_text = parameter.partition("=")
        if equals and key in _FMTP_INT_PARAMETERS and _INTEGER.match(number_text) is None:
            raise InvalidInput(f"SDP line {number}: a=fmtp parameter {key} must be an integer")


def _check_candidate(number: int, value: str) -> None:
    """RFC 8839 section 5.1: foundation component transport priority address port typ type."""
    bits = value.split()
    ok = (
        len(bits) >= 8
        and len(bits) % 2 == 0
        and len(bits[0]) <= 32
        and bits[1].isdigit()
        and 1 <= int(bits[1]) <= 256
        and _TOKEN.match(bits[2]) is not None
        and _INTEGER.match(bits[3]) is not None
        and int(bits[3]) < 2**32
        and bits[5].isdigit()
        and int(bits[5]) <= 65535
        and bits[6] == "typ"
        and bits[7] in _CANDIDATE_TYPES
    )
    if ok:
        extensions = dict(zip(bits[8::2], bits[9::2], strict=True))
        rport = extensions.get("rport")
        ok = rport is None or (rport.isdigit() and int(rport) <= 65535)
    if not ok:
        raise InvalidInput(f"SDP line {number}: malformed a=candidate")


_ATTRIBUTE_CHECKS: dict[str, Callable[[int, str, str], None]] = {
    "rtpmap": _pattern(_RTPMAP),
    "fmtp": _check_fmtp,
    "rtcp-fb": _pattern(_RTCP_FB),
    "extmap": _pattern(_EXTMAP),
    "ssrc": _pattern(_SSRC),
    "ssrc-group": _pattern(_SSRC_GROUP),
    "rtcp": _pattern(_RTCP),
    "fingerprint": _pattern(_FINGERPRINT),
    "sctp-port": _pattern(_INTEGER),
    "max-message-size": _pattern(_INTEGER),
    "sctpmap": _pattern(_SCTPMAP),
    "setup": _one_of(_SETUP_ROLES),
    "ice-ufrag": _check_ice_chars,
    "ice-pwd": _check_ice_chars,
    "candidate": lambda number, _name, value: _check_candidate(number, value),
}


def announce_address(answer: str, address: str) -> str:
    """``answer`` with each of its host candidates offered at ``address`` too: for a
    server behind 1:1 NAT (a cloud VM), where the world reaches its private address and
    port at a public address and the same port.

    The announced candidate comes first, with the priority of the one it stands for; the
    private one stays (a TURN server or a speaker inside the same network reaches that).
    Candidates of the other address family, and the ``c=`` line's default address when it
    is not a host candidate's, are left as they are.
    """
    announced = ipaddress.ip_address(address)
    lines = answer.split("\r\n")
    out: list[str] = []
    private: set[str] = set()
    for line in lines:
        if line.startswith("a=candidate:"):
            bits = line[len("a=candidate:") :].split()
            if len(bits) >= 8 and bits[6] == "typ" and bits[7] == "host":
                with contextlib.suppress(ValueError):
                    own = ipaddress.ip_address(bits[4])
                    if own.version == announced.version and own != announced:
                        # A foundation of its own (RFC 8445 5.1.1.3: it differs by address).
                        foundation = hashlib.sha256(f"{bits[0]} {address}".encode()).hexdigest()
                        copy = [foundation[:32], *bits[1:4], str(announced), *bits[5:]]
                        out.append("a=candidate:" + " ".join(copy))
                        private.add(bits[4])
        out.append(line)
    ip = "IP4" if announced.version == 4 else "IP6"
    return "\r\n".join(
        f"c=IN {ip} {announced}"
        if line.startswith("c=IN ") and line.split()[-1] in private
        else line
        for line in out
    )
