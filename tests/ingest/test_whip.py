"""The WHIP stage end to end: real aiortc peers, a real uvicorn server on a loopback port.

The Starlette app below is the thinnest possible web shell over :class:`Stage`; it shows
how the real one maps the stage's values and errors to HTTP (and the bearer token stands
in for authentication: it *is* the speaker id).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from podium.clients.speak import ToneSource, speak
from podium.errors import ClientError, Conflict, InvalidInput, NotFound, PodiumError
from podium.ingest.whip import PatchOutcome, SessionEnded, Stage
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES, PcmFrame

# Safety net against a hung test, never a performance threshold.
HANG_GUARD = 20.0


def problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "status": status, "title": title, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def whip_app(stage: Stage) -> Starlette:
    def speaker(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth.removeprefix("Bearer ").strip() or None if auth.startswith("Bearer ") else None

    async def post(request: Request) -> Response:
        who = speaker(request)
        if who is None:
            return problem(401, "Authentication required", "a bearer token is required")
        if request.headers.get("content-type", "").split(";")[0] != "application/sdp":
            return problem(415, "Unsupported media type", "send application/sdp")
        try:
            publication = await stage.publish(who, await request.body())
        except PodiumError as exc:
            return problem(exc.status, exc.title, exc.detail)
        return Response(
            publication.answer_sdp,
            status_code=201,
            media_type="application/sdp",
            headers={"Location": f"/whip/{publication.resource_id}", "ETag": publication.etag},
        )

    async def delete(request: Request) -> Response:
        try:
            await stage.unpublish(request.path_params["rid"])
        except PodiumError as exc:
            return problem(exc.status, exc.title, exc.detail)
        return Response(status_code=204)

    async def patch(request: Request) -> Response:
        try:
            answer = await stage.patch(
                request.path_params["rid"], request.headers.get("if-match"), await request.body()
            )
        except PodiumError as exc:
            return problem(exc.status, exc.title, exc.detail)
        if answer.outcome is PatchOutcome.APPLIED:
            return Response(status_code=204)
        return problem(answer.status, answer.outcome.name, answer.detail)

    return Starlette(
        routes=[
            Route("/whip", post, methods=["POST"]),
            Route("/whip/{rid}", delete, methods=["DELETE"]),
            Route("/whip/{rid}", patch, methods=["PATCH"]),
        ]
    )


@contextlib.asynccontextmanager
async def serving(stage: Stage) -> AsyncIterator[str]:
    """Serve ``whip_app(stage)`` with uvicorn on 127.0.0.1, port 0; yield the WHIP URL."""
    config = uvicorn.Config(
        whip_app(stage), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/whip"
    finally:
        server.should_exit = True
        await task
        await stage.close()


class Collector:
    """``on_audio``/``on_ended`` for a test: keeps every frame and every ending."""

    def __init__(self) -> None:
        self.frames: dict[str, list[PcmFrame]] = {}
        self.ended: list[SessionEnded] = []
        self._ended_event = asyncio.Event()
        self._frame_event = asyncio.Event()

    def on_audio(self, speaker_id: str, frame: PcmFrame) -> None:
        self.frames.setdefault(speaker_id, []).append(frame)
        self._frame_event.set()

    async def wait_frames(self, speaker_id: str, count: int) -> None:
        async with asyncio.timeout(HANG_GUARD):
            while len(self.frames.get(speaker_id, [])) < count:
                self._frame_event.clear()
                await self._frame_event.wait()

    def on_ended(self, ended: SessionEnded) -> None:
        self.ended.append(ended)
        self._ended_event.set()

    async def wait_ended(self, count: int = 1) -> list[SessionEnded]:
        async with asyncio.timeout(HANG_GUARD):
            while len(self.ended) < count:
                self._ended_event.clear()
                await self._ended_event.wait()
        return self.ended


def peak_hz(samples: npt.NDArray[np.float32]) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.shape[0])))
    return float(np.argmax(spectrum)) * SAMPLE_RATE / int(samples.shape[0])


def tone(frequency: float, start: int) -> npt.NDArray[np.float32]:
    n = np.arange(start, start + TICK_SAMPLES)
    return (0.5 * np.sin(2 * np.pi * frequency * n / SAMPLE_RATE)).astype(np.float32)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def client_offer(track: MediaStreamTrack | None = None) -> RTCPeerConnection:
    """A client peer connection with its (complete) offer set as local description."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if track is None:
        pc.addTransceiver("audio", direction="sendrecv")
    else:
        pc.addTransceiver(track, direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


class NeverTrack(MediaStreamTrack):
    """A connected client that never sends audio."""

    kind = "audio"

    async def recv(self) -> Any:
        await asyncio.Event().wait()


def test_two_speakers_are_heard_and_hear_back() -> None:
    """Tones from two speakers at once arrive intact; each hears what send_to gives it."""

    async def scenario() -> None:
        collected = Collector()
        stage = Stage(collected.on_audio, on_ended=collected.on_ended)
        heard: dict[str, list[PcmFrame]] = {"speaker-a": [], "speaker-b": []}
        feeding = True

        async def feed() -> None:
            # A stand-in mixer: 440 Hz to speaker-a, 660 Hz to speaker-b, one tick every 20 ms.
            position = 0
            while feeding:
                stage.send_to("speaker-a", tone(440, position))
                stage.send_to("speaker-b", tone(660, position))
                position += TICK_SAMPLES
                await asyncio.sleep(TICK_SAMPLES / SAMPLE_RATE)

        async with serving(stage) as url:
            feeder = asyncio.create_task(feed())
            reports = await asyncio.gather(
                *(
                    speak(url, name, ToneSource(hz), seconds=2.0, on_heard=heard[name].append)
                    for name, hz in (("speaker-a", 1000), ("speaker-b", 1500))
                )
            )
            feeding = False
            await feeder
            # speak() DELETEs its session before returning: the slots are free again.
            assert stage.publications() == {}
            ended = await collected.wait_ended(2)
            assert {e.reason for e in ended} == {"deleted by the client"}

        for report in reports:
            assert report.connected
            assert report.samples_sent == 100 * TICK_SAMPLES
            assert report.resource_url.startswith(url + "/")  # relative Location resolved
        for speaker, expected in (("speaker-a", 1000.0), ("speaker-b", 1500.0)):
            frames = collected.frames[speaker]
            # Most of the 100 ticks sent arrive (the last may still be in flight at DELETE).
            assert len(frames) >= 80, len(frames)
            steps = {b.pts - a.pts for a, b in itertools.pairwise(frames)}
            assert steps == {TICK_SAMPLES}, f"pts not continuous: {sorted(steps)}"
            samples = np.concatenate([f.samples for f in frames[5:]])
            assert abs(peak_hz(samples) - expected) < 3, peak_hz(samples)
            assert 0.2 < float(np.sqrt(np.mean(samples**2))) < 0.5  # 0.5 amplitude -> 0.35 RMS
        for speaker, expected in (("speaker-a", 440.0), ("speaker-b", 660.0)):
            got = heard[speaker]
            assert len(got) >= 50, len(got)
            samples = np.concatenate([f.samples for f in got[10:]])
            assert abs(peak_hz(samples) - expected) < 3, peak_hz(samples)

    run(scenario)


def test_http_errors_reach_the_client_with_the_servers_detail() -> None:
    async def scenario() -> None:
        collected = Collector()
        stage = Stage(collected.on_audio)
        async with serving(stage) as url:
            with pytest.raises(ClientError) as refused:
                await speak(url, "", ToneSource(1000), seconds=0.2)
            assert refused.value.status == 401
            assert "a bearer token is required" in refused.value.detail
            with pytest.raises(ClientError) as unreachable:
                await speak("http://127.0.0.1:9/whip", "x", ToneSource(1000), seconds=0.2)
            assert unreachable.value.status == 0
            assert stage.publications() == {}

    run(scenario)


def test_a_cancelled_speaker_still_deletes_its_session() -> None:
    """Ctrl-C (task cancellation) mid-speech: speak() DELETEs on its way out."""

    async def scenario() -> None:
        collected = Collector()
        stage = Stage(collected.on_audio, on_ended=collected.on_ended)
        async with serving(stage) as url:
            # A sendonly speaker (no on_heard) with an endless source.
            task = asyncio.create_task(speak(url, "speaker-c", ToneSource(500), seconds=None))
            await collected.wait_frames("speaker-c", 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            [ended] = await collected.wait_ended()
            assert ended.reason == "deleted by the client"
            assert stage.publications() == {}
        samples = np.concatenate([f.samples for f in collected.frames["speaker-c"][2:]])
        assert abs(peak_hz(samples) - 500) < 10

    run(scenario)


def test_capacity_replacement_and_patch() -> None:
    """13 speakers fit, a 14th is refused until one leaves; republishing replaces; PATCH."""

    async def scenario() -> None:
        collected = Collector()
        stage = Stage(collected.on_audio, on_ended=collected.on_ended)
        client = await client_offer()
        offer = client.localDescription.sdp
        try:
            publications = [await stage.publish(f"s{i}", offer) for i in range(13)]
            assert len(stage.publications()) == 13
            with pytest.raises(Conflict, match="13 speakers"):
                await stage.publish("s13", offer)
            # A speaker already on stage may publish again: it replaces the old session.
            again = await stage.publish("s0", offer)
            assert again.replaced == publications[0].resource_id
            assert len(stage.publications()) == 13
            with pytest.raises(NotFound):
                await stage.unpublish(publications[0].resource_id)
            await stage.unpublish(publications[1].resource_id)
            admitted = await stage.publish("s13", offer)
            assert stage.speaker_of(admitted.resource_id) == "s13"

            # PATCH (RFC 9725 section 4.3): trickle is applied, restarts are refused.
            rid, etag = again.resource_id, again.etag
            ufrag = next(
                line.split(":", 1)[1]
                for line in offer.splitlines()
                if line.startswith("a=ice-ufrag:")
            )
            pwd = next(
                line.split(":", 1)[1]
                for line in offer.splitlines()
                if line.startswith("a=ice-pwd:")
            )
            trickle = (
                f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
                "a=mid:0\r\na=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\n"
                "a=end-of-candidates\r\n"
            )
            assert (await stage.patch(rid, etag, trickle)).status == 204
            assert (await stage.patch(rid, "*", trickle)).status == 204
            assert (await stage.patch(rid, None, trickle)).status == 428
            assert (await stage.patch(rid, '"other"', trickle)).status == 412
            assert (await stage.patch(rid, f"W/{etag}", trickle)).status == 412
            restart = "a=ice-ufrag:ysXw\r\na=ice-pwd:vw5LmwG4y/e6dPP/zAP9Gp5k\r\n"
            answer = await stage.patch(rid, "*", restart)
            assert answer.outcome is PatchOutcome.ICE_RESTART_UNSUPPORTED
            assert answer.status == 422
            with pytest.raises(InvalidInput):
                await stage.patch(rid, etag, "v=0\r\nnot a fragment")
            with pytest.raises(NotFound):
                await stage.patch("nope", etag, trickle)

            # A send_to for someone not on stage is refused without blocking or raising.
            assert not stage.send_to("nobody", np.zeros(TICK_SAMPLES, dtype=np.float32))
            assert stage.send_to("s13", np.zeros(TICK_SAMPLES, dtype=np.float32))
            stats = {s.speaker_id: s for s in await stage.stats()}
            assert set(stats) == set(stage.publications().values())
        finally:
            await stage.close()
            await client.close()
        assert stage.publications() == {}
        with pytest.raises(Conflict):
            await stage.publish("late", offer)

    run(scenario)


def test_malformed_offers_never_crash_nor_leave_sessions() -> None:
    async def scenario() -> None:
        collected = Collector()
        stage = Stage(collected.on_audio)
        client = await client_offer()
        lines = client.localDescription.sdp.split("\r\n")
        rng = random.Random(9725)
        accepted = rejected = 0
        try:
            for _ in range(60):
                mutated = list(lines)
                for _ in range(rng.randint(1, 3)):
                    i = rng.randrange(len(mutated))
                    choice = rng.randrange(4)
                    if choice == 0:
                        del mutated[i]
                    elif choice == 1:
                        mutated.insert(i, mutated[rng.randrange(len(mutated))])
                    elif choice == 2 and mutated[i]:
                        j = rng.randrange(len(mutated[i]))
                        mutated[i] = mutated[i][:j] + rng.choice(" :/x0\t=") + mutated[i][j + 1 :]
                    else:
                        mutated[i] = mutated[i][: rng.randrange(len(mutated[i]) + 1)]
                try:
                    publication = await stage.publish("fuzz", "\r\n".join(mutated))
                except InvalidInput:
                    rejected += 1
                else:
                    accepted += 1
                    await stage.unpublish(publication.resource_id)
                assert stage.publications() == {}
        finally:
            await stage.close()
            await client.close()
        assert rejected > 0
        assert accepted > 0

    run(scenario)


def test_sessions_that_never_connect_or_go_silent_are_cleaned_up() -> None:
    async def scenario() -> None:
        collected = Collector()
        stage = Stage(
            collected.on_audio, on_ended=collected.on_ended, ice_timeout=1.0, media_timeout=1.0
        )
        try:
            # 1. The client posts an offer and vanishes before ICE (no answer, no DELETE).
            ghost = await client_offer()
            await stage.publish("ghost", ghost.localDescription.sdp)
            await ghost.close()

            # 2. The client connects but never sends audio.
            mute = await client_offer(NeverTrack())
            answer = await stage.publish("mute", mute.localDescription.sdp)
            await mute.setRemoteDescription(
                RTCSessionDescription(sdp=answer.answer_sdp, type="answer")
            )

            # 3. The client connects, then closes its connection without DELETE.
            leaver = await client_offer(NeverTrack())
            answer = await stage.publish("leaver", leaver.localDescription.sdp)
            connected = asyncio.Event()

            @leaver.on("connectionstatechange")
            def on_state() -> None:
                if leaver.connectionState == "connected":
                    connected.set()

            await leaver.setRemoteDescription(
                RTCSessionDescription(sdp=answer.answer_sdp, type="answer")
            )
            async with asyncio.timeout(HANG_GUARD):
                await connected.wait()
            await leaver.close()

            ended = {e.speaker_id: e.reason for e in await collected.wait_ended(3)}
            assert stage.publications() == {}
            assert ended["ghost"] in ("ICE did not connect within 1 s", "connection failed")
            assert ended["mute"] == "no audio for 1 s"
            assert ended["leaver"] in ("connection closed", "no audio for 1 s")
            await mute.close()
        finally:
            await stage.close()

    run(scenario)
