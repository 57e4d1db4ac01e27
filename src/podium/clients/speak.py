"""``podium speak``: a standard WHIP client (RFC 9725) that puts an audio source on stage.

It works against any WHIP endpoint, not only Podium's: POST an SDP offer, expect
``201 Created`` with the answer and a ``Location``, send Opus audio over WebRTC, and DELETE
the session at the end (also when cancelled, e.g. on Ctrl-C). With ``on_heard`` it offers
``sendrecv`` and hands what the server sends back (Podium's mix-minus: the other speakers)
to the callback as :class:`~podium.pcm.PcmFrame`.

Nothing here imports the server side; :class:`~podium.pcm.PcmFrame` is the shared
value type of the media path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import httpx
import numpy as np
import numpy.typing as npt
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from podium import __version__
from podium.clients.links import ice_servers_from_links
from podium.errors import ClientError
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES, PcmFrame

TICK_SECONDS = TICK_SAMPLES / SAMPLE_RATE
# Reconnecting: how long without the server's receiver reports means the session is
# gone (reports come every 0.5-1.5 s), and the backoff between tries.
SILENT_S = 4.0
RETRY_S = 0.5
RETRY_MAX_S = 5.0
DELETE_TIMEOUT_S = 5.0
LOST_DELETE_TIMEOUT_S = 1.0
HeardCallback = Callable[[PcmFrame], None]
log = logging.getLogger("podium.speak")


class AudioSource(Protocol):
    """Where the speaker's audio comes from: 20 ms ticks of 48 kHz mono float32."""

    def read(self) -> npt.NDArray[np.float32] | None:
        """The next :data:`~podium.pcm.TICK_SAMPLES` samples, or ``None`` at the end."""
        ...

    def close(self) -> None:
        """Release what the source holds (files); ``read`` is not called afterwards."""
        ...


class ToneSource:
    """A sine tone of ``frequency`` Hz at ``amplitude`` (0-1), phase-continuous, endless."""

    def __init__(self, frequency: float, amplitude: float = 0.5) -> None:
        if not 0 < frequency < SAMPLE_RATE / 2:
            raise ClientError(f"a tone must be between 0 and {SAMPLE_RATE // 2} Hz")
        self.frequency = frequency
        self.amplitude = amplitude
        self._position = 0  # samples emitted so far; the phase is exact from this

    def read(self) -> npt.NDArray[np.float32]:
        n = np.arange(self._position, self._position + TICK_SAMPLES, dtype=np.float64)
        self._position += TICK_SAMPLES
        # Wrap the phase argument to keep float64 exact over hours of tone.
        phase = (n * self.frequency / SAMPLE_RATE) % 1.0
        return (self.amplitude * np.sin(2 * math.pi * phase)).astype(np.float32)

    def close(self) -> None:
        pass


class WavSource:
    """An audio file (WAV, or anything FFmpeg reads), resampled to 48 kHz mono with PyAV.

    Decodes as it goes (a long file is never held in memory). With ``loop`` it starts over
    at the end; otherwise the last tick is padded with silence and ``read`` then returns
    ``None``. Raises :class:`~podium.errors.ClientError` if the file cannot be read.
    """

    def __init__(self, path: str | Path, *, loop: bool = False) -> None:
        self.path = Path(path)
        self.loop = loop
        self._pending = np.zeros(0, dtype=np.float32)
        self._blocks: Iterator[npt.NDArray[np.float32]] | None = None
        self._container: av.container.InputContainer | None = None
        self._open()

    def _open(self) -> None:
        try:
            container = av.open(str(self.path))
            if not container.streams.audio:
                container.close()
                raise ClientError(f"{self.path} has no audio stream")
        except av.FFmpegError as exc:
            raise ClientError(f"cannot read audio file {self.path}: {exc}") from exc
        except OSError as exc:
            raise ClientError(f"cannot read audio file {self.path}: {exc}") from exc
        self._container = container
        self._blocks = self._decode(container)

    @staticmethod
    def _decode(container: av.container.InputContainer) -> Iterator[npt.NDArray[np.float32]]:
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                yield out.to_ndarray()[0].astype(np.float32)
        for out in resampler.resample(None):
            yield out.to_ndarray()[0].astype(np.float32)

    def read(self) -> npt.NDArray[np.float32] | None:
        while self._pending.shape[0] < TICK_SAMPLES:
            block = next(self._blocks, None) if self._blocks is not None else None
            if block is not None:
                self._pending = np.concatenate([self._pending, block])
                continue
            if self.loop and self._container is not None:
                self._close_container()
                self._open()
                continue
            if self._pending.shape[0] == 0:
                return None
            tail = np.zeros(TICK_SAMPLES, dtype=np.float32)
            tail[: self._pending.shape[0]] = self._pending
            self._pending = np.zeros(0, dtype=np.float32)
            return tail
        tick, self._pending = self._pending[:TICK_SAMPLES], self._pending[TICK_SAMPLES:]
        return np.ascontiguousarray(tick)

    def _close_container(self) -> None:
        self._blocks = None
        if self._container is not None:
            self._container.close()
            self._container = None

    def close(self) -> None:
        self._close_container()


@dataclass(frozen=True, slots=True)
class SpeakReport:
    """What happened: the WHIP session URL, whether media connected, ticks sent and heard."""

    resource_url: str
    connected: bool
    ticks_sent: int
    samples_sent: int
    frames_heard: int
    samples_heard: int
    sessions: int = 1  # WHIP sessions it took (more than one after reconnecting)

    @property
    def seconds_sent(self) -> float:
        return self.samples_sent / SAMPLE_RATE


class _SourceTrack(MediaStreamTrack):
    """Sends ``source`` on a 20 ms grid, at most ``limit`` ticks; then silence, and
    ``finished`` is set."""

    kind = "audio"

    def __init__(self, source: AudioSource, limit: int | None) -> None:
        super().__init__()
        self.source = source
        self.limit = limit
        self.finished = asyncio.Event()
        self.started = asyncio.Event()
        self.ticks = 0
        self.samples_sent = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = asyncio.get_running_loop().time()
        if self._start is None:
            self._start = now
            self.started.set()
        else:
            due = self._start + self.ticks * TICK_SECONDS
            if due - now < -0.1:  # after a stall, re-anchor rather than burst
                self._start = now - self.ticks * TICK_SECONDS
            elif due > now:
                await asyncio.sleep(due - now)
        if self.limit is not None and self.samples_sent >= self.limit * TICK_SAMPLES:
            self.finished.set()
        tick = None if self.finished.is_set() else self.source.read()
        if tick is None:
            self.finished.set()
            tick = np.zeros(TICK_SAMPLES, dtype=np.float32)
        else:
            self.samples_sent += TICK_SAMPLES
        mono = np.round(np.clip(tick, -1.0, 1.0) * 32767.0).astype(np.int16)
        # Hand aiortc's Opus encoder stereo, the layout it encodes: given mono, FFmpeg's
        # resampler would upmix it as a centre channel, 3 dB down on each side.
        pcm = np.repeat(mono, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.ticks * TICK_SAMPLES
        frame.time_base = Fraction(1, SAMPLE_RATE)
        self.ticks += 1
        return frame


def _to_pcm(frame: av.AudioFrame) -> PcmFrame:
    """Mono float32 PCM of a decoded 48 kHz frame (aiortc gives packed s16 stereo)."""
    fmt = frame.format.name
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    if fmt in ("s16", "flt"):
        data = data.reshape(-1, channels).T
    samples = data.astype(np.float32)
    if fmt.startswith("s16"):
        samples *= np.float32(1.0 / 32768.0)
    mono = samples.mean(axis=0, dtype=np.float32)
    base = frame.time_base or Fraction(1, SAMPLE_RATE)
    pts = int(Fraction(frame.pts or 0) * Fraction(base.numerator, base.denominator) * SAMPLE_RATE)
    return PcmFrame(pts=pts, samples=np.ascontiguousarray(mono, dtype=np.float32))


def _problem(response: httpx.Response) -> str:
    """The server's explanation: its RFC 9457 problem ``detail`` when there is one."""
    what = f"{response.status_code} {response.reason_phrase}"
    try:
        problem = response.json()
    except ValueError:
        text = response.text.strip()
        return f"the WHIP server answered {what}" + (f": {text[:200]}" if text else "")
    if isinstance(problem, dict) and "detail" in problem:
        return f"{problem.get('title', response.reason_phrase)}: {problem['detail']} ({what})"
    return f"the WHIP server answered {what}"


async def speak(
    whip_url: str,
    token: str,
    source: AudioSource,
    *,
    seconds: float | None,
    on_heard: HeardCallback | None = None,
    connect_timeout: float = 15.0,
    ice_servers: Sequence[RTCIceServer] | None = None,
    reconnect: bool = False,
) -> SpeakReport:
    """Publish ``source`` to the WHIP endpoint ``whip_url`` for ``seconds`` (or until it ends).

    ``seconds=None`` plays until the source ends (forever for a tone: cancel the task).
    With ``on_heard`` the offer is ``sendrecv`` and every frame the server sends back is
    passed to it (on the event loop; it must not block). The session is always DELETEd
    and the connection closed, also on cancellation; ``source`` is closed too.

    ``ice_servers`` (STUN and TURN) are the WHIP server's own unless given: asked for
    before each session (``OPTIONS`` on ``whip_url``, its ``Link`` headers), so that TURN
    credentials are fresh. aiortc uses the first STUN and the first TURN server only.

    With ``reconnect``, a session that is lost (the connection fails, or the server's RTCP
    receiver reports stop for :data:`SILENT_S`) or cannot be set up because the server is
    unreachable or overloaded (5xx, 429) is started again through ``whip_url`` (at once
    for a session that had been up, then with a backoff from :data:`RETRY_S` to
    :data:`RETRY_MAX_S`), and the source goes on where it was: the server may have moved
    the space to another machine.

    Raises :class:`~podium.errors.ClientError` when the server refuses (its problem
    ``detail`` in the message, its status in ``.status``), cannot be reached, answers
    something that is not a WHIP answer, or media does not connect in ``connect_timeout``
    (with ``reconnect``, only for a refusal that trying again cannot change).
    """
    limit = None if seconds is None else math.ceil(seconds * SAMPLE_RATE / TICK_SAMPLES)
    heard = {"frames": 0, "samples": 0}
    headers = {"User-Agent": f"podium-speak/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    sent = {"ticks": 0, "samples": 0}
    sessions = 0
    connected = False
    delay = RETRY_S
    # RFC 9725 section 4.6: "WHIP clients SHALL support HTTP redirections".
    async with httpx.AsyncClient(headers=headers, timeout=15.0, follow_redirects=True) as http:
        try:
            while True:
                audio_ticks = sent["samples"] // TICK_SAMPLES
                track = _SourceTrack(source, None if limit is None else limit - audio_ticks)
                sessions += 1
                session = _Session(http, track, on_heard, heard, watch=reconnect)
                try:
                    resource_url = await session.run(whip_url, connect_timeout, ice_servers)
                except ClientError as exc:
                    if not reconnect or not _worth_retrying(exc):
                        raise
                    if session.connected_for > SILENT_S:
                        # It was up: try again at once (the server may have handed the
                        # space to another node, which is waiting), then back off anew.
                        log.warning(
                            "speak_reconnecting", extra={"fields": {"error": exc.detail, "in_s": 0}}
                        )
                        delay = RETRY_S
                        continue
                    log.warning(
                        "speak_reconnecting",
                        extra={"fields": {"error": exc.detail, "in_s": delay}},
                    )
                    await asyncio.sleep(delay)
                    delay = min(RETRY_MAX_S, delay * 2)
                    continue
                finally:
                    connected = connected or session.connected
                    sent["ticks"] += track.ticks
                    sent["samples"] += track.samples_sent
                return SpeakReport(
                    resource_url=resource_url,
                    connected=connected,
                    ticks_sent=sent["ticks"],
                    samples_sent=sent["samples"],
                    frames_heard=heard["frames"],
                    samples_heard=heard["samples"],
                    sessions=sessions,
                )
        finally:
            source.close()


def _worth_retrying(exc: ClientError) -> bool:
    """Unreachable, lost, overloaded or rate limited: the same request may work later."""
    return exc.status == 0 or exc.status >= 500 or exc.status == 429


class _Session:
    """One WHIP session: offer, answer, media until the track is done or the session is
    lost; DELETEd and closed whatever happens."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        track: _SourceTrack,
        on_heard: HeardCallback | None,
        heard: dict[str, int],
        *,
        watch: bool,
    ) -> None:
        self._http = http
        self._track = track
        self._on_heard = on_heard
        self._heard = heard
        self._watch = watch
        self.connected = False
        self._connected_at: float | None = None
        self._lost_at: float | None = None

    @property
    def connected_for(self) -> float:
        if self._connected_at is None:
            return 0.0
        end = self._lost_at or asyncio.get_running_loop().time()
        return end - self._connected_at

    async def run(
        self, whip_url: str, connect_timeout: float, ice_servers: Sequence[RTCIceServer] | None
    ) -> str:
        if ice_servers is None:
            ice_servers = await _advertised_ice_servers(self._http, whip_url)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers)))
        tasks: set[asyncio.Task[None]] = set()
        resource_url: str | None = None
        connected = asyncio.Event()
        failed = asyncio.Event()
        loop = asyncio.get_running_loop()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                connected.set()
            elif pc.connectionState in ("failed", "closed"):
                failed.set()

        @pc.on("track")
        def on_track(remote: MediaStreamTrack) -> None:
            if remote.kind == "audio" and self._on_heard is not None:
                tasks.add(asyncio.create_task(_listen(remote, self._on_heard, self._heard)))

        lost = False
        try:
            transceiver = pc.addTransceiver(
                self._track, direction="sendrecv" if self._on_heard is not None else "sendonly"
            )
            capabilities = RTCRtpSender.getCapabilities("audio")
            codecs = capabilities.codecs if capabilities is not None else []
            transceiver.setCodecPreferences(
                [c for c in codecs if c.mimeType.lower() == "audio/opus"]
            )
            # aiortc gathers every candidate here, so the offer is complete: no trickle.
            await pc.setLocalDescription(await pc.createOffer())
            resource_url, answer = await _post_offer(self._http, whip_url, pc.localDescription.sdp)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            except Exception as exc:
                raise ClientError(f"the WHIP server's SDP answer is unusable: {exc!r}") from exc
            await _wait_connected(connected, failed, connect_timeout)
            self.connected = True
            self._connected_at = loop.time()
            if self._watch:
                tasks.add(asyncio.create_task(_watch_reports(transceiver.sender, failed)))
            try:
                await _play(self._track, failed)
            except ClientError:
                lost = True
                raise
            finally:
                self._lost_at = loop.time()
            return resource_url
        finally:
            # Runs on cancellation too: leave no session behind on the server (briefly,
            # for a session lost: its server may be gone, and the speaker waits).
            if resource_url is not None:
                with contextlib.suppress(httpx.HTTPError):
                    await self._http.delete(
                        resource_url, timeout=LOST_DELETE_TIMEOUT_S if lost else DELETE_TIMEOUT_S
                    )
            await pc.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _watch_reports(sender: RTCRtpSender, lost: asyncio.Event) -> None:
    """Set ``lost`` once the server's RTCP receiver reports, having come, stop coming for
    :data:`SILENT_S`: its end of the session is gone (a server that died sends no BYE,
    and ICE consent takes 30 s to notice). A server that sends no reports is left be."""
    loop = asyncio.get_running_loop()
    last: object = None
    seen_at: float | None = None
    while True:
        await asyncio.sleep(0.5)
        stats = await sender.getStats()
        stamps = [s.timestamp for s in stats.values() if s.type == "remote-inbound-rtp"]
        stamp = max(stamps) if stamps else None
        if stamp is not None and stamp != last:
            last, seen_at = stamp, loop.time()
        elif seen_at is not None and loop.time() - seen_at > SILENT_S:
            lost.set()
            return


async def _advertised_ice_servers(http: httpx.AsyncClient, whip_url: str) -> list[RTCIceServer]:
    """The STUN and TURN servers the WHIP endpoint advertises before an offer (its
    ``Link`` headers on ``OPTIONS``). One that advertises none, or refuses (the POST
    will say why), leaves the connection direct."""
    try:
        response = await http.options(whip_url)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach the WHIP endpoint {whip_url}: {exc}") from exc
    if not response.is_success:
        return []
    return ice_servers_from_links(response.headers.get_list("link"))


async def _post_offer(http: httpx.AsyncClient, whip_url: str, offer: str) -> tuple[str, str]:
    """POST the offer; return the session URL (absolute) and the SDP answer."""
    try:
        response = await http.post(
            whip_url, content=offer.encode(), headers={"Content-Type": "application/sdp"}
        )
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach the WHIP endpoint {whip_url}: {exc}") from exc
    if response.status_code != 201:
        raise ClientError(_problem(response), response.status_code)
    location = response.headers.get("Location")
    if not location:
        raise ClientError("the WHIP server answered 201 without a Location header", 201)
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        raise ClientError(
            f"the WHIP server answered {content_type or 'no content type'}, not application/sdp",
            201,
        )
    # RFC 9110 section 10.2.2: a relative Location is resolved against the target URI of
    # the request, here the URL that answered after any redirects.
    return str(response.url.join(location)), response.text


async def _wait_connected(connected: asyncio.Event, failed: asyncio.Event, limit: float) -> None:
    _done, pending = await asyncio.wait(
        [asyncio.create_task(connected.wait()), asyncio.create_task(failed.wait())],
        timeout=limit,
        return_when=asyncio.FIRST_COMPLETED,
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if not connected.is_set():
        raise ClientError(
            "the WebRTC connection to the WHIP server failed"
            if failed.is_set()
            else f"the WebRTC connection did not come up within {limit:g} s"
        )


async def _play(track: _SourceTrack, failed: asyncio.Event) -> None:
    """Wait until the track has sent all it will send, or the connection died."""
    waits = [asyncio.create_task(track.finished.wait()), asyncio.create_task(failed.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    if failed.is_set() and not track.finished.is_set():
        raise ClientError("the WebRTC connection to the WHIP server was lost")


async def _listen(track: MediaStreamTrack, on_heard: HeardCallback, heard: dict[str, int]) -> None:
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        pcm = _to_pcm(frame)  # type: ignore[arg-type]
        heard["frames"] += 1
        heard["samples"] += pcm.samples.shape[0]
        on_heard(pcm)
