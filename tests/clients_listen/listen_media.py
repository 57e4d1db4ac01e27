"""A real LL-HLS origin for the listen tests: real AAC, real segmenter, the real routes.

A uniquely named module (not ``conftest``) so test files can import it unambiguously.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
import uvicorn
from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from podium.encode.aac import AacEncoder
from podium.origin import feed
from podium.origin.origin import Origin
from podium.origin.routes import router
from podium.segment import AccessUnit
from podium.segment.cadence import Cadence
from podium.segment.fmp4 import init_segment
from podium.segment.segmenter import Part, Segmenter
from podium.segment.timeline import GapMarker
from podium.web.problems import install

RATE = 48000
SPACE = "tonespace"
PART_SECONDS = 0.256
# A fixed program start (2026-01-02T03:04:05.5Z) for programs that are not paced live.
PROGRAM_START = Fraction(17673230455, 10)


@dataclass(frozen=True)
class Encoded:
    asc: bytes
    units: tuple[AccessUnit, ...]
    signal: npt.NDArray[np.float32]

    @property
    def init(self) -> bytes:
        return init_segment(self.asc, RATE, 1, bitrate=64000)


def tone(seconds: float, frequency: float = 1000.0) -> npt.NDArray[np.float32]:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def chirp(seconds: float, start: float = 200.0, stop: float = 8000.0) -> npt.NDArray[np.float32]:
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * (start * t + (stop - start) * t**2 / (2 * seconds))
    return (0.5 * np.sin(phase)).astype(np.float32)


def encode(signal: npt.NDArray[np.float32], pts: int = 0) -> Encoded:
    encoder = AacEncoder()
    units = encoder.encode(signal, pts) + encoder.flush()
    return Encoded(encoder.audio_specific_config, tuple(units), signal)


def cut(
    units: Sequence[AccessUnit],
    program_start: Fraction,
    *,
    first_msn: int = 0,
    decode_origin: int | None = None,
) -> list[Part]:
    segmenter = Segmenter(
        program_start=program_start, first_msn=first_msn, decode_origin=decode_origin
    )
    parts = [part for unit in units for part in segmenter.push(unit)]
    return parts + segmenter.flush()


def origin_app(tmp: Path) -> tuple[FastAPI, Origin]:
    """The origin's real routes on a bare app, with the problem-document handlers."""
    origin = Origin(tmp)
    app = FastAPI()
    app.state.origin = origin
    app.include_router(router)
    install(app)
    return app, origin


def begin(origin: Origin, init: bytes) -> None:
    origin.apply(feed.Began(SPACE, init, Cadence(), first_msn=0, resumed=False))


def publish(origin: Origin, parts: Sequence[Part]) -> None:
    for part in parts:
        origin.apply(feed.PartReady(SPACE, part))


def gap(origin: Origin, msn: int, duration: int, program_date_time: Fraction) -> None:
    origin.apply(feed.Gap(SPACE, GapMarker(msn, duration, program_date_time)))


def end(origin: Origin) -> None:
    origin.apply(feed.Ended(SPACE))


def playlist_url(base: str) -> str:
    return f"{base}/hls/{SPACE}/live.m3u8"


async def publish_live(origin: Origin, parts: Sequence[Part], *, then_end: bool) -> None:
    """Publish each part when the wall clock reaches the end of its media, as the media
    worker does when it encodes live audio."""
    loop = asyncio.get_running_loop()
    offset = loop.time() - time.time()
    for part in parts:
        due = float(part.program_date_time) + part.duration / RATE + offset
        await asyncio.sleep(max(0.0, due - loop.time()))
        publish(origin, [part])
    if then_end:
        end(origin)


@contextlib.asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on a loopback port chosen by the OS; yield its base URL."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it Nagle's algorithm and delayed ACKs add 40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", ws="none", http="h11", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def peak_frequency(pcm: npt.NDArray[np.float64]) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum)) * RATE / len(pcm)


class Faults:
    """ASGI middleware in front of the origin: logs every request (path and query) and
    answers scripted failures for named objects, in order, before passing them through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[str] = []
        self._scripted: dict[str, list[tuple[int, dict[str, str]]]] = {}

    def fail(self, name: str, status: int, headers: dict[str, str] | None = None) -> None:
        """The next request for ``name`` (last path component) gets ``status``."""
        self._scripted.setdefault(name, []).append((status, headers or {}))

    def names(self) -> list[str]:
        return [request.split("?")[0].rsplit("/", 1)[-1] for request in self.requests]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope["query_string"].decode()
            self.requests.append(scope["path"] + ("?" + query if query else ""))
            scripted = self._scripted.get(scope["path"].rsplit("/", 1)[-1])
            if scripted:
                status, headers = scripted.pop(0)
                await Response(b"scripted failure", status, headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)
