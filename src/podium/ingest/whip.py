"""The WHIP core (RFC 9725) of one live space: sessions, their peer connections and audio.

Sans-HTTP: the web shell parses requests, authenticates the speaker, and calls
:meth:`Stage.publish` (``POST``), :meth:`Stage.patch` (``PATCH``) and :meth:`Stage.unpublish`
(``DELETE``); it turns the returned values and raised :mod:`podium.errors` into responses.
The stage owns everything else: one aiortc peer connection per speaker, a task reading each
speaker's decoded Opus into :class:`~podium.pcm.PcmFrame`, a task watching each
session so that none outlives its usefulness, and the outbound mix-minus track.

Lifetimes are bounded. A session is closed when the speaker deletes it, publishes again
(the new session replaces the old one), when its ICE does not connect within
``ice_timeout``, when its connection fails or the peer closes DTLS, and when no audio
arrives for ``media_timeout`` (a client that vanished without a word; ICE consent freshness
would catch it too, but only after ~30 s).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from podium.errors import Conflict, InvalidInput, NotFound
from podium.ingest.outbound import DEFAULT_CAPACITY, MixMinusTrack, OutboundBuffer
from podium.ingest.pcm import FrameConverter
from podium.ingest.sdp import SdpFragment, announce_address, parse_fragment, validate_offer
from podium.pcm import TICK_SAMPLES, PcmFrame

log = logging.getLogger("podium.ingest")

MAX_PUBLISHERS = 13
"""A host and up to a dozen speakers (DESIGN.md)."""

AudioCallback = Callable[[str, PcmFrame], None]


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """Told to ``on_ended`` when a session is gone: whose, which, and why (for people)."""

    resource_id: str
    speaker_id: str
    reason: str
    frames_received: int


@dataclass(frozen=True, slots=True)
class Publication:
    """The result of a successful publish, for the ``201 Created`` response.

    ``resource_id`` names the WHIP session (the web shell builds the ``Location`` from it);
    ``answer_sdp`` is the complete SDP answer with every server candidate (we never trickle
    from the server side); ``etag`` is the strong entity-tag of the ICE session, already
    quoted (``"..."``); ``replaced`` is the resource id of the speaker's previous session
    that this one replaced, if any (that resource is gone: 404 from now on).
    """

    resource_id: str
    speaker_id: str
    answer_sdp: str
    etag: str
    replaced: str | None


class PatchOutcome(Enum):
    """What a PATCH did; the value is the HTTP status RFC 9725 section 4.3 prescribes."""

    APPLIED = 204
    """Trickled candidates were applied (or silently discarded, as the RFC requires)."""
    ICE_RESTART_UNSUPPORTED = 422
    """The fragment asked for an ICE restart, which aiortc cannot do."""
    PRECONDITION_FAILED = 412
    """``If-Match`` names another ICE session."""
    PRECONDITION_REQUIRED = 428
    """``If-Match`` is missing."""


@dataclass(frozen=True, slots=True)
class PatchAnswer:
    """The answer to a PATCH: ``outcome.value`` is the status, ``detail`` says why."""

    outcome: PatchOutcome
    detail: str
    candidates_added: int = 0

    @property
    def status(self) -> int:
        return self.outcome.value


@dataclass(frozen=True, slots=True)
class PublicationStats:
    """Counters of one live session.

    ``state`` is the peer connection's (``new``/``connecting``/``connected``/``failed``/
    ``closed``); ``packets_received``/``packets_lost`` come from aiortc's RTP receiver;
    ``frames_received``/``samples_received`` count PCM delivered to ``on_audio``;
    ``frames_missing`` counts 20 ms frames absent between consecutive ``pts`` (lost or
    undecodable packets); ``decode_errors`` counts frames that could not be turned into
    PCM; the ``outbound_*`` counters are the mix-minus buffer's.
    """

    resource_id: str
    speaker_id: str
    state: str
    packets_received: int
    packets_lost: int
    frames_received: int
    samples_received: int
    frames_missing: int
    decode_errors: int
    outbound_sent: int
    outbound_dropped: int
    outbound_underruns: int


class _Session:
    """One speaker's WHIP session: peer connection, counters, and the events tasks wait on."""

    def __init__(self, speaker_id: str, pc: RTCPeerConnection, capacity: int) -> None:
        self.resource_id = secrets.token_urlsafe(16)
        self.speaker_id = speaker_id
        self.pc = pc
        self.etag = f'"{secrets.token_hex(12)}"'
        self.remote_ufrag = ""
        self.audio_mid: str | None = None
        self.buffer = OutboundBuffer(capacity)
        self.outbound = MixMinusTrack(self.buffer)
        self.receiver: RTCRtpReceiver | None = None
        self.connected = asyncio.Event()
        self.activity = asyncio.Event()
        self.published = False
        self.ended = False
        self.end_reason = ""
        self.tasks: set[asyncio.Task[None]] = set()
        self.frames_received = 0
        self.samples_received = 0
        self.frames_missing = 0
        self.decode_errors = 0
        self.next_pts: int | None = None

    def wake(self) -> None:
        """Wake the watchdog, whatever it is waiting for."""
        self.connected.set()
        self.activity.set()


class Stage:
    """The WHIP ingest of one live space: at most ``max_publishers`` speakers at a time.

    ``on_audio(speaker_id, frame)`` receives every decoded frame, on the event loop; it must
    not block (hand the frame to the mixer and return). ``on_ended`` (optional) is told when
    a published session ends, for any reason (the mixer can drop that speaker then).
    ``ice_timeout`` bounds how long a session may take to connect; ``media_timeout`` how
    long a connected one may go without audio. ``ice_servers`` configures the server's own
    gathering (none by default: a server with public addresses needs no STUN, and aiortc's
    own default would query Google's STUN server); the web shell may advertise servers to
    clients with :func:`ice_server_links`. ``announced_address`` (a server behind 1:1 NAT:
    its public address) is offered in each answer beside the server's own addresses
    (:func:`~podium.ingest.sdp.announce_address`).
    """

    def __init__(
        self,
        on_audio: AudioCallback,
        *,
        max_publishers: int = MAX_PUBLISHERS,
        ice_timeout: float = 15.0,
        media_timeout: float = 10.0,
        ice_servers: Sequence[RTCIceServer] = (),
        outbound_capacity: int = DEFAULT_CAPACITY,
        on_ended: Callable[[SessionEnded], None] | None = None,
        announced_address: str = "",
    ) -> None:
        self._on_audio = on_audio
        self._on_ended = on_ended
        self.max_publishers = max_publishers
        self.ice_timeout = ice_timeout
        self.media_timeout = media_timeout
        self.ice_servers = tuple(ice_servers)
        self.announced_address = announced_address
        self._outbound_capacity = outbound_capacity
        self._by_resource: dict[str, _Session] = {}
        self._by_speaker: dict[str, _Session] = {}
        self._pending: dict[str, int] = {}  # speakers with a publish in progress
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- the WHIP operations ---------------------------------------------------------

    async def publish(self, speaker_id: str, offer_sdp: str | bytes) -> Publication:
        """Answer ``offer_sdp`` from ``speaker_id`` and start a session.

        Waits for the server's ICE gathering to complete, because RFC 9725 section 4.3.2
        says "the WHIP endpoint SHALL gather all the ICE candidates for the media server
        before responding to the client request and the SDP answer SHALL contain the full
        list of ICE candidates of the media server". If the speaker already has a session
        it is closed once the new one is set up.

        Raises :class:`~podium.errors.InvalidInput` for an offer Podium cannot accept
        (nothing is left behind), :class:`~podium.errors.Conflict` if the stage is full
        (``max_publishers`` other speakers) or closed.
        """
        summary = validate_offer(offer_sdp)
        text = offer_sdp if isinstance(offer_sdp, str) else offer_sdp.decode("utf-8")
        self._reserve(speaker_id)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self.ice_servers)))
        session = _Session(speaker_id, pc, self._outbound_capacity)
        session.remote_ufrag = summary.ice_ufrag
        session.audio_mid = summary.audio_mid
        try:
            self._wire(session)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="offer"))
                audio = self._audio_transceiver(pc)
                pc.addTrack(session.outbound)
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as exc:
                # aiortc reports bad SDP with assert, KeyError, ValueError...; the offer is
                # at fault whatever the type, and the speaker must hear why.
                raise InvalidInput(
                    f"the SDP offer could not be negotiated ({type(exc).__name__}: {exc})"
                ) from exc
            session.receiver = audio.receiver
            _shorten_receive_buffer(audio.receiver)
            session.audio_mid = audio.mid
            if self._closed:
                raise Conflict("this space's stage is closed")
        except BaseException:
            self._release(speaker_id)
            # Also stops the reader task aiortc's "track" event may already have started.
            await self._end(session, "publish failed")
            raise
        self._release(speaker_id)
        answer = pc.localDescription
        previous = self._by_speaker.get(speaker_id)
        self._by_speaker[speaker_id] = session
        self._by_resource[session.resource_id] = session
        session.published = True
        self._spawn(session, self._watch(session))
        if previous is not None:
            await self._end(previous, "replaced by a new session")
        log.info(
            "ingest.published",
            extra={"fields": {"speaker": speaker_id, "resource": session.resource_id}},
        )
        return Publication(
            resource_id=session.resource_id,
            speaker_id=speaker_id,
            answer_sdp=(
                announce_address(answer.sdp, self.announced_address)
                if self.announced_address
                else answer.sdp
            ),
            etag=session.etag,
            replaced=previous.resource_id if previous is not None else None,
        )

    async def unpublish(self, resource_id: str) -> None:
        """End the session ``resource_id`` (HTTP ``DELETE``); its slot is free on return.

        Raises :class:`~podium.errors.NotFound` if there is no such live session.
        """
        await self._end(self._session(resource_id), "deleted by the client")

    async def patch(
        self, resource_id: str, if_match: str | None, sdpfrag: str | bytes
    ) -> PatchAnswer:
        """Apply a trickle-ICE ``PATCH`` (RFC 9725 section 4.3.1) to ``resource_id``.

        Trickle ICE is supported: aiortc adds remote candidates while its checks run.
        ICE restarts are not (aiortc cannot change ICE credentials of a live transport), and
        RFC 9725 section 4.3.1 says what to answer then:

            If the WHIP session supports either Trickle ICE or ICE restarts, but not both,
            it MUST return a "422 Unprocessable Content" error response for the HTTP PATCH
            requests that are not supported as per Section 15.5.21 of [RFC9110].

        Raises :class:`~podium.errors.NotFound` for an unknown session and
        :class:`~podium.errors.InvalidInput` for a malformed fragment ("the WHIP session
        MUST reject the HTTP PATCH with an appropriate 4xx error response").
        """
        session = self._session(resource_id)
        # RFC 9725 section 4.3.1: "Missing or outdated ETags in the PATCH requests from WHIP
        # clients will be answered by WHIP sessions as per Section 13.1.1 of [RFC9110] and
        # Section 3 of [RFC6585], with a "428 Precondition Required" response for a missing
        # entity tag and a "412 Precondition Failed" response for a non-matching entity tag."
        if if_match is None or not if_match.strip():
            return PatchAnswer(
                PatchOutcome.PRECONDITION_REQUIRED,
                "a PATCH must carry If-Match with the ICE session's entity-tag",
            )
        if not etag_matches(if_match, session.etag):
            return PatchAnswer(
                PatchOutcome.PRECONDITION_FAILED,
                f"If-Match does not name the current ICE session {session.etag}",
            )
        fragment = parse_fragment(sdpfrag)
        if fragment.ice_ufrag is not None and fragment.ice_ufrag != session.remote_ufrag:
            # RFC 9725 section 4.3.3: new "ice-ufrag"/"ice-pwd" mean an ICE restart.
            return PatchAnswer(
                PatchOutcome.ICE_RESTART_UNSUPPORTED,
                "ICE restarts are not supported; DELETE this session and publish again",
            )
        added = await self._add_candidates(session, fragment)
        return PatchAnswer(PatchOutcome.APPLIED, f"{added} candidate(s) accepted", added)

    def send_to(self, speaker_id: str, samples: npt.NDArray[np.float32]) -> bool:
        """Queue one 20 ms tick (960 samples) for ``speaker_id`` to hear; never blocks.

        Returns whether the speaker has a live session (if not, the tick is discarded).
        When the speaker's buffer is full its oldest tick is dropped and counted. A speaker
        whose offer was ``sendonly`` hears nothing; the ticks are drained all the same.
        Raises ``ValueError`` if ``samples`` is not 960 mono samples.
        """
        session = self._by_speaker.get(speaker_id)
        if session is None:
            if np.shape(samples) != (TICK_SAMPLES,):
                raise ValueError(f"a tick is {TICK_SAMPLES} mono samples")
            return False
        session.buffer.push(samples)
        return True

    # -- inspection ------------------------------------------------------------------

    def publications(self) -> dict[str, str]:
        """Live sessions: resource id to speaker id."""
        return {rid: s.speaker_id for rid, s in self._by_resource.items()}

    def speaker_of(self, resource_id: str) -> str:
        """The speaker who owns ``resource_id`` (for the web shell's authorization check).

        Raises :class:`~podium.errors.NotFound`.
        """
        return self._session(resource_id).speaker_id

    async def stats(self) -> list[PublicationStats]:
        """Counters of every live session."""
        out: list[PublicationStats] = []
        for session in list(self._by_resource.values()):
            received = lost = 0
            if session.receiver is not None:
                try:
                    report = await session.receiver.getStats()
                except Exception:  # a receiver torn down meanwhile has no stats
                    report = None
                for entry in (report or {}).values():
                    if getattr(entry, "type", "") == "inbound-rtp":
                        received += int(entry.packetsReceived)
                        lost += int(entry.packetsLost)
            out.append(
                PublicationStats(
                    resource_id=session.resource_id,
                    speaker_id=session.speaker_id,
                    state=session.pc.connectionState,
                    packets_received=received,
                    packets_lost=lost,
                    frames_received=session.frames_received,
                    samples_received=session.samples_received,
                    frames_missing=session.frames_missing,
                    decode_errors=session.decode_errors,
                    outbound_sent=session.buffer.popped,
                    outbound_dropped=session.buffer.dropped,
                    outbound_underruns=session.buffer.underruns,
                )
            )
        return out

    async def close(self) -> None:
        """End every session and task; later publishes raise :class:`Conflict`."""
        self._closed = True
        for session in list(self._by_resource.values()):
            await self._end(session, "stage closed")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals -------------------------------------------------------------------

    def _reserve(self, speaker_id: str) -> None:
        if self._closed:
            raise Conflict("this space's stage is closed")
        speakers = set(self._by_speaker) | set(self._pending)
        if speaker_id not in speakers and len(speakers) >= self.max_publishers:
            raise Conflict(
                f"the stage is full: {self.max_publishers} speakers are already publishing; "
                "one must leave before another can join"
            )
        self._pending[speaker_id] = self._pending.get(speaker_id, 0) + 1

    def _release(self, speaker_id: str) -> None:
        left = self._pending.get(speaker_id, 0) - 1
        if left > 0:
            self._pending[speaker_id] = left
        else:
            self._pending.pop(speaker_id, None)

    def _session(self, resource_id: str) -> _Session:
        session = self._by_resource.get(resource_id)
        if session is None:
            raise NotFound("no such WHIP session (it ended, or never existed)")
        return session

    def _audio_transceiver(self, pc: RTCPeerConnection) -> RTCRtpTransceiver:
        audio: RTCRtpTransceiver | None = None
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "audio" and audio is None:
                audio = transceiver
                capabilities = RTCRtpReceiver.getCapabilities("audio")
                codecs = capabilities.codecs if capabilities is not None else []
                transceiver.setCodecPreferences(
                    [c for c in codecs if c.mimeType.lower() == "audio/opus"]
                )
            else:
                # Podium ingests one audio track; declining the rest costs the client
                # nothing and spares us decoding video.
                transceiver.direction = "inactive"
        if audio is None:
            raise ValueError("no audio transceiver")
        return audio

    def _wire(self, session: _Session) -> None:
        pc = session.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and not session.ended:
                self._spawn(session, self._read(session, track))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "connected":
                session.connected.set()
            elif state in ("failed", "closed"):
                session.end_reason = session.end_reason or f"connection {state}"
                session.wake()

    def _spawn(self, session: _Session, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        session.tasks.add(task)
        self._tasks.add(task)
        task.add_done_callback(session.tasks.discard)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, session: _Session, track: MediaStreamTrack) -> None:
        """Decode ``track`` into PCM frames for ``on_audio`` until it ends."""
        converter = FrameConverter()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            session.activity.set()
            try:
                pcm_frames = converter.convert(frame)  # type: ignore[arg-type]
            except Exception:
                session.decode_errors += 1
                continue
            for pcm in pcm_frames:
                if session.next_pts is not None and pcm.pts > session.next_pts:
                    session.frames_missing += (pcm.pts - session.next_pts) // TICK_SAMPLES
                session.next_pts = pcm.pts + pcm.samples.shape[0]
                session.frames_received += 1
                session.samples_received += pcm.samples.shape[0]
                try:
                    self._on_audio(session.speaker_id, pcm)
                except Exception:
                    # The mixer's bug must not end a speaker's session; say so loudly.
                    log.exception(
                        "ingest.on_audio_failed", extra={"fields": {"speaker": session.speaker_id}}
                    )

    async def _watch(self, session: _Session) -> None:
        """End ``session`` if ICE does not connect in time, fails, or audio stops."""
        try:
            await asyncio.wait_for(session.connected.wait(), self.ice_timeout)
        except TimeoutError:
            session.end_reason = session.end_reason or (
                f"ICE did not connect within {self.ice_timeout:g} s"
            )
        while not session.end_reason:
            session.activity.clear()
            try:
                await asyncio.wait_for(session.activity.wait(), self.media_timeout)
            except TimeoutError:
                session.end_reason = f"no audio for {self.media_timeout:g} s"
        await self._end(session, session.end_reason)

    async def _end(self, session: _Session, reason: str) -> None:
        """Unregister ``session``, close its connection and wait for its tasks (idempotent)."""
        if self._by_resource.get(session.resource_id) is session:
            del self._by_resource[session.resource_id]
        if self._by_speaker.get(session.speaker_id) is session:
            del self._by_speaker[session.speaker_id]
        if session.ended:
            return
        session.ended = True
        session.end_reason = session.end_reason or reason
        log.info(
            "ingest.unpublished",
            extra={
                "fields": {
                    "speaker": session.speaker_id,
                    "resource": session.resource_id,
                    "reason": session.end_reason,
                    "frames": session.frames_received,
                }
            },
        )
        await self._close_pc(session)
        current = asyncio.current_task()
        others = [t for t in session.tasks if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._on_ended is not None and session.published:
            ended = SessionEnded(
                session.resource_id, session.speaker_id, session.end_reason, session.frames_received
            )
            try:
                self._on_ended(ended)
            except Exception:
                log.exception(
                    "ingest.on_ended_failed", extra={"fields": {"speaker": session.speaker_id}}
                )

    @staticmethod
    async def _close_pc(session: _Session) -> None:
        session.outbound.stop()
        try:
            await session.pc.close()
        except Exception:  # closing must not fail the caller; the connection is gone anyway
            log.exception("ingest.close_failed", extra={"fields": {"speaker": session.speaker_id}})

    async def _add_candidates(self, session: _Session, fragment: SdpFragment) -> int:
        added = 0
        for item in fragment.candidates:
            candidate = candidate_from_sdp(item.line)
            candidate.sdpMid = item.mid if item.mid is not None else session.audio_mid
            if candidate.sdpMid is None:
                candidate.sdpMLineIndex = 0
            try:
                await session.pc.addIceCandidate(candidate)
            except Exception as exc:
                # RFC 9725 section 4.3.2: "If the WHIP session does not support a candidate
                # transport or is not able to resolve the connection address, it MUST
                # silently discard the candidate and continue processing the rest of the
                # request normally."
                log.debug("ingest.candidate_discarded", extra={"fields": {"error": repr(exc)}})
                continue
            added += 1
        if fragment.end_of_candidates:
            try:
                await session.pc.addIceCandidate(None)
            except Exception as exc:
                log.debug("ingest.end_of_candidates_failed", extra={"fields": {"error": repr(exc)}})
        return added


def etag_matches(if_match: str, etag: str) -> bool:
    """Whether an ``If-Match`` field value matches the strong entity-tag ``etag``.

    RFC 9110 section 13.1.1: ``*`` matches any current representation; otherwise the field
    is a comma-separated list of entity-tags compared with the strong comparison function,
    so weak tags (``W/"..."``) never match.
    """
    value = if_match.strip()
    if value == "*":
        return True
    return any(tag.strip() == etag for tag in value.split(","))


def ice_server_links(servers: Sequence[RTCIceServer]) -> list[str]:
    """``Link`` header values advertising ``servers`` (RFC 9725 section 4.4).

    One value per URL: ``<stun:stun.example.net>; rel="ice-server"``, with ``username``,
    ``credential`` and ``credential-type="password"`` for servers that have credentials.
    """
    links: list[str] = []
    for server in servers:
        urls = [server.urls] if isinstance(server.urls, str) else list(server.urls)
        for url in urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username is not None and server.credential is not None:
                link += (
                    f'; username="{_quoted(server.username)}"'
                    f'; credential="{_quoted(server.credential)}"'
                    '; credential-type="password"'
                )
            links.append(link)
    return links


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# aiortc's audio receiver holds every frame until four later ones have arrived: a fixed
# 80 ms on the speaker-to-speaker path, which the mixer's own jitter buffer (sized for
# arrival jitter, and counted) makes redundant. One frame of prefetch keeps aiortc's
# reordering of packets and gives back 60 ms. The buffer is private to aiortc (pinned in
# requirements/lock.txt); if a release renames it, this does nothing.
_RECEIVE_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_RECEIVE_CAPACITY = 16


def _shorten_receive_buffer(receiver: object) -> None:
    if isinstance(getattr(receiver, _RECEIVE_BUFFER, None), JitterBuffer):
        setattr(receiver, _RECEIVE_BUFFER, JitterBuffer(capacity=_RECEIVE_CAPACITY, prefetch=1))
