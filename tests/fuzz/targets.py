"""Coverage-guided fuzz targets (atheris) for what parses bytes from the network.

Each target takes the fuzzer's bytes and raises only when it finds something wrong: an
exception other than the parser's documented clear refusal, an answer that contradicts
another reading of the same input, or a forgery accepted. Run one with
``python tests/fuzz/targets.py NAME [libFuzzer flags] [CORPUS_DIR]``; ``scripts/fuzz``
runs them all, and ``tests/fuzz/test_fuzz.py`` runs each for a bounded number of inputs
from the seed corpus in ``tests/fuzz/corpus/NAME``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["podium"]):
    from podium import clock, server
    from podium.clients import hls, httpwire, links
    from podium.config import Secret, Settings
    from podium.control import invites, proofofwork, tickets
    from podium.control.lifecycle import Action as SpaceAction
    from podium.errors import InvalidInput, Unauthenticated
    from podium.ingest import sdp, whip
    from podium.record import archive
    from podium.segment import Cadence, Part, Timeline
    from podium.segment.blocking import Action, decide_query
    from podium.web.joinpath import JOIN_PATH, JoinFastPath

from aiortc import RTCIceServer
from aiortc.sdp import SessionDescription  # not instrumented: not ours

KEY = b"k" * 32
SPACE = "fuzzspace1"
NOW = 1_800_000_000.0


def sdp_offer(data: bytes) -> None:
    """A WHIP offer: accepted, or refused with InvalidInput; and whatever it accepts,
    aiortc's own parser (asserts, int(), dict lookups) must parse."""
    try:
        sdp.validate_offer(data)
    except InvalidInput:
        return
    SessionDescription.parse(data.decode())


def sdp_fragment(data: bytes) -> None:
    """A WHIP PATCH trickle-ICE fragment (RFC 8840): parsed, or InvalidInput."""
    with contextlib.suppress(InvalidInput):
        sdp.parse_fragment(data)


def _reading(pieces: list[bytes]) -> tuple[object, ...]:
    parser = httpwire.ResponseParser(max_head=4096, max_body=65536)
    parser.expect("GET")
    try:
        for piece in pieces:
            answer = parser.feed(piece)
            if answer is not None:
                return ("response", answer.status, dict(answer.headers), answer.body)
        answer = parser.feed_eof()
    except httpwire.ProtocolError:
        return ("protocol-error",)
    if answer is None:
        return ("nothing",)
    return ("response", answer.status, dict(answer.headers), answer.body)


def http_response(data: bytes) -> None:
    """The load client's response parser: a response or ProtocolError, never anything
    else, a body within its limit, and the same reading whether the bytes arrive at once
    or in pieces (the pieces are cut where the first bytes say)."""
    provider = atheris.FuzzedDataProvider(data)
    cuts = sorted(provider.ConsumeIntListInRange(provider.ConsumeIntInRange(0, 6), 0, 4096))
    raw = provider.ConsumeBytes(provider.remaining_bytes())
    whole = _reading([raw])
    edges = [0, *(c for c in cuts if c < len(raw)), len(raw)]
    split = _reading([raw[a:b] for a, b in itertools.pairwise(edges)])
    if whole[0] == "response":
        assert len(whole[3]) <= 65536  # type: ignore[arg-type]
    # Bytes after a complete response belong to the next one, so an answer seen whole
    # must be seen the same in pieces.
    assert whole == split, (whole, split)


def playlist(data: bytes) -> None:
    """The playlist parsers the clients use, media and multivariant: a value, or
    ValueError with a line; and a variant chosen only from what was parsed."""
    text = data.decode("utf-8", errors="replace")
    for parse in (hls.parse_playlist, hls.parse_multivariant):
        try:
            parsed = parse(text)
        except ValueError as exc:
            if not str(exc).startswith("line "):
                raise AssertionError(f"a refusal that names no line: {exc}") from exc
            continue
        if isinstance(parsed, tuple):
            with contextlib.suppress(ValueError):
                assert hls.audio_variant(parsed) in parsed


_TIMELINE = Timeline(Cadence(), first_msn=0)
for _n in range(19):
    _TIMELINE.add(
        Part(
            _n // 8,
            _n % 8,
            _n * 12288,
            12288,
            b"",
            Fraction(_n * 12288, 48000),
            closes_segment=_n % 8 == 7,
        )
    )
_SNAPSHOT = _TIMELINE.snapshot()


def hls_directives(data: bytes) -> None:
    """``_HLS_msn``, ``_HLS_part``, ``_HLS_skip`` as a query brings them: a decision,
    never an exception; a wait always has a deadline."""
    provider = atheris.FuzzedDataProvider(data)
    values = [
        provider.ConsumeUnicodeNoSurrogates(24) if provider.ConsumeBool() else None
        for _ in range(3)
    ]
    decision = decide_query(_SNAPSHOT, values[0], values[1], values[2])
    assert isinstance(decision.action, Action)
    if decision.action is Action.WAIT:
        assert decision.timeout is not None
        assert decision.timeout > 0


_TICKET = tickets.issue(KEY, SPACE, "listener1", "listener", NOW, 3600)
_INVITE, _ = invites.issue(KEY, SPACE, NOW, 3600)
_CHALLENGE = proofofwork.issue(KEY, SPACE, proofofwork.MIN_DIFFICULTY, NOW, b"saltsalt")


def _tampered(provider: atheris.FuzzedDataProvider, genuine: str) -> str:
    """Either fuzz text, or the genuine token with a few characters changed."""
    if provider.ConsumeBool():
        return provider.ConsumeUnicodeNoSurrogates(provider.remaining_bytes())
    text = list(genuine)
    for _ in range(provider.ConsumeIntInRange(1, 3)):
        if text:
            at = provider.ConsumeIntInRange(0, len(text) - 1)
            text[at] = chr(provider.ConsumeIntInRange(0x20, 0x7E))
    return "".join(text)


def _only_the_genuine(
    provider: atheris.FuzzedDataProvider,
    genuine: str,
    what: str,
    verify: Callable[[str], object],
    refusal: type[Exception],
) -> None:
    """``verify`` on fuzz text or a changed ``genuine``: it refuses with ``refusal``, or
    the text is the genuine one."""
    text = _tampered(provider, genuine)
    try:
        verify(text)
    except refusal:
        return
    assert text == genuine, f"a forged {what} verified: {text!r}"


def ticket(data: bytes) -> None:
    """Tickets (and queue tokens, which are tickets): genuine or Unauthenticated; no
    changed token verifies."""
    provider = atheris.FuzzedDataProvider(data)
    _only_the_genuine(
        provider,
        _TICKET,
        "ticket",
        lambda text: tickets.verify(KEY, text, SPACE, NOW),
        Unauthenticated,
    )


def invite(data: bytes) -> None:
    """Invite links: live or Unauthenticated; no changed invite verifies."""
    provider = atheris.FuzzedDataProvider(data)
    _only_the_genuine(
        provider,
        _INVITE,
        "invite",
        lambda text: invites.verify(KEY, text, SPACE, NOW),
        Unauthenticated,
    )


def proof_of_work(data: bytes) -> None:
    """A proof-of-work answer: checked or InvalidInput; no changed token verifies."""
    provider = atheris.FuzzedDataProvider(data)

    def verify(token: str) -> object:
        nonce = provider.ConsumeUnicodeNoSurrogates(24) if provider.ConsumeBool() else "0"
        return proofofwork.verify(KEY, token, nonce, SPACE, NOW)

    _only_the_genuine(provider, _CHALLENGE.token, "challenge", verify, InvalidInput)


class _Join:
    """The anonymous-join fast path as the server runs it: the real middleware in front of
    a real application (a throwaway data directory, one live and one ended space), driven
    through ASGI. What it passes on (a request with credentials) reaches ``passed``."""

    def __init__(self, pow_mode: str) -> None:
        settings = Settings(
            data_dir=Path(tempfile.mkdtemp(prefix="podium-fuzz-")),
            secret_key=Secret("k" * 32),
            join_pow=pow_mode,  # type: ignore[arg-type]
            pow_difficulty=proofofwork.MIN_DIFFICULTY,
            join_per_second=1e9,
            join_burst=1_000_000_000,
            trusted_proxies="127.0.0.0/8",
        )
        self.app, context, _ = server.build(settings)
        # What a join may answer: what the OpenAPI document says it answers.
        operation = self.app.openapi()["paths"]["/api/v1/spaces/{space_id}/join"]["post"]
        self.statuses = frozenset(int(code) for code in operation["responses"])
        owner = context.accounts.find_by_handle(server.OWNER_HANDLE)
        assert owner is not None
        now = clock.now()
        self.spaces = []
        ended = [SpaceAction.START, SpaceAction.END]
        for title, actions in (("live", [SpaceAction.START]), ("ended", ended)):
            space = context.spaces.create(owner.id, title, "", None, now)
            for action in actions:
                context.spaces.transition(space.id, action, owner.id, now)
            self.spaces.append(space.id)
        self.fast_path = JoinFastPath(self._passed)
        self.passed = False
        self.loop = asyncio.new_event_loop()

    async def _passed(self, scope: object, receive: object, send: object) -> None:
        self.passed = True

    def answer(
        self, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, dict[bytes, bytes], bytes] | None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
            "app": self.app,
        }
        events = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, object]] = []

        async def receive() -> object:
            return events.pop(0) if events else {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        self.passed = False
        self.loop.run_until_complete(self.fast_path(scope, receive, send))
        if self.passed:
            return None
        start, *chunks = sent
        head = dict(start["headers"])  # type: ignore[call-overload]
        return int(start["status"]), head, b"".join(c["body"] for c in chunks)  # type: ignore[misc]


_JOINS: dict[bool, _Join] = {}
_CONTENT_TYPES = [b"application/json", b"application/merge-patch+json", b"text/plain"]
_HEADERS = [b"x-forwarded-for", b"cookie", b"authorization", b"origin"]
_SESSION = b"podium_session="


def join(data: bytes) -> None:
    """``POST /api/v1/spaces/{id}/join`` with any body and headers: the fast path answers
    a join, or a refusal the OpenAPI document lists, as a problem document; and it
    passes on to the framework exactly what is not its own (credentials, or not a join).

    The input is a flags byte (bit 0: proof of work on; bits 1-2: the live space, the ended
    one, or an id from the input; bits 3-4: a content type, none, or one from the input), a
    byte whose bits 0-3 add ``X-Forwarded-For``, ``Cookie``, ``Authorization`` and
    ``Origin``, then the chosen fields from the input, each ended by a NUL, then the body.
    """
    flags, present = (data + b"\0\0")[:2]
    pow_on = bool(flags & 1)
    if pow_on not in _JOINS:
        _JOINS[pow_on] = _Join("on" if pow_on else "off")
    target = _JOINS[pow_on]
    fields = iter(data[2:].split(b"\0", 6))

    def field() -> bytes:
        return next(fields, b"")

    pick = (flags >> 1) & 3
    space_id = target.spaces[pick] if pick < 2 else field().decode("utf-8", errors="replace")
    headers: list[tuple[bytes, bytes]] = []
    kind = (flags >> 3) & 3
    if kind < 2:
        headers.append((b"content-type", _CONTENT_TYPES[kind]))
    elif kind == 3:
        headers.append((b"content-type", field()))
    for bit, name in enumerate(_HEADERS):
        if present & (1 << bit):
            headers.append((name, field()))
    credentials = any(
        name == b"authorization" or (name == b"cookie" and _SESSION in value)
        for name, value in headers
    )
    body = b"\0".join(fields)
    path = f"/api/v1/spaces/{space_id}/join"
    # Only a join (an id without "/") is the fast path's, and only one without credentials.
    fast = JOIN_PATH.fullmatch(path) is not None and not credentials
    answer = target.answer(path, headers, body)
    if answer is None:
        assert not fast, "an anonymous join was passed on to the framework"
        return
    assert fast, "a request with credentials, or not a join, was answered as a join"
    status, head, text = answer
    assert status in target.statuses, (status, text)
    document = json.loads(text)
    if status >= 400:
        assert head[b"content-type"] == b"application/problem+json", head
        assert document["status"] == status, document
        assert isinstance(document["type"], str)
        assert isinstance(document["title"], str)
    else:
        assert document["status"] in {"admitted", "replay", "queued"}, document


_ARCHIVE_KEY = archive.Ed25519PrivateKey.from_private_bytes(KEY)


def _genuine_archive() -> str:
    entries: list[dict[str, object]] = [
        {
            "kind": "part",
            "msn": 0,
            "index": n,
            "pts": n * 12_288,
            "duration": 12_288,
            "pdt": str(int(NOW) + n),
            "size": 100,
            "sha256": "a" * 64,
            "frames": 12,
            "audio_sha256": f"{n:064x}",
        }
        for n in range(3)
    ]
    entries.append(
        {"kind": "gap", "msn": 1, "duration": 98_304, "pdt": "1800000003", "reason": "r"}
    )
    document = archive.build(
        SPACE, "b" * 64, 48_000, Fraction(int(NOW)), entries, None, _ARCHIVE_KEY, "http://x", NOW
    )
    return json.dumps(document)


GENUINE_ARCHIVE = _genuine_archive()
TRUSTED = [archive.public_bytes(_ARCHIVE_KEY.public_key())]


def archive_document(data: bytes) -> None:
    """A signed archive as ``podium verify`` reads it: checked, or ArchiveError; a changed
    genuine archive never checks out unless it reads as the same document; and the CMAF
    part reader gives frames or ArchiveError."""
    provider = atheris.FuzzedDataProvider(data)
    text = _tampered(provider, GENUINE_ARCHIVE)
    try:
        document = archive.load(text.encode("utf-8", "surrogatepass"))
        report = archive.check_archive(document, TRUSTED)
        report.words()
    except archive.ArchiveError:
        pass
    else:
        # A signature's last character has bits base64 leaves unused: the same signature.
        document["signature"] = archive.b64(archive.unb64(document["signature"]))
        if report.unedited and document != json.loads(GENUINE_ARCHIVE):
            raise AssertionError(f"a changed archive checks out: {text!r}")
    with contextlib.suppress(archive.ArchiveError):
        archive.part_audio(data)


def ice_server_links(data: bytes) -> None:
    """``Link`` headers a WHIP server sent: read without an exception whatever they
    hold; and servers written as links (any username and credential) read back as they
    were, also after whatever came before."""
    provider = atheris.FuzzedDataProvider(data)
    username = provider.ConsumeUnicodeNoSurrogates(40)
    credential = provider.ConsumeUnicodeNoSurrogates(40)
    rest = provider.ConsumeUnicodeNoSurrogates(200)
    links.ice_servers_from_links([rest])
    servers = [
        RTCIceServer(urls="stun:stun.example.net"),
        RTCIceServer(
            urls="turn:turn.example.net:3478?transport=tcp",
            username=username,
            credential=credential,
        ),
    ]
    written = whip.ice_server_links(servers)
    assert links.ice_servers_from_links(written) == servers, written
    assert links.ice_servers_from_links([", ".join(written)]) == servers, written


TARGETS: dict[str, Callable[[bytes], None]] = {
    "ice_server_links": ice_server_links,
    "join": join,
    "sdp_offer": sdp_offer,
    "sdp_fragment": sdp_fragment,
    "http_response": http_response,
    "playlist": playlist,
    "hls_directives": hls_directives,
    "ticket": ticket,
    "invite": invite,
    "proof_of_work": proof_of_work,
    "archive": archive_document,
}


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in TARGETS:
        sys.exit(f"usage: targets.py {{{','.join(sorted(TARGETS))}}} [libFuzzer flags] [CORPUS]")
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
