"""Speaker-to-speaker mouth-to-ear latency on loopback: Podium's room against bare aiortc.

DESIGN target: "speaker <-> speaker mouth-to-ear on loopback: ITU G.114 (< 150 ms good,
> 400 ms unusable): p95 <= 150 ms". This is a benchmark, not a test: it measures, prints
p50/p95/max side by side and asserts nothing.

Speaker A sends 20 ms bursts of a 1 kHz tone (amplitude 0.5) every 500 ms, silence
between them; speaker B listens. The **mouth** is the moment A's sender asks the source for
the tick that starts a burst (``read()``, called by the paced track right before the frame
goes to aiortc's Opus encoder). The **ear** is the moment B's receiver hands over the frame
holding the burst's first sample above 0.1, plus that sample's offset in the frame (the
ear would hear it that much later if the frame were played on arrival). One clock
(``time.monotonic``) and one process for both ends, so the difference is exact.

- **Podium**: the real media worker process (``python -m podium.media.worker``, a Unix
  socket, raised priority as in production) runs one room; A and B are the real
  ``podium speak`` client (:func:`podium.clients.speak.speak`) in this process, published
  through a small WHIP shim on loopback that forwards offers to the worker's
  ``POST /rooms/{id}/publishers``. The path: A's Opus encode, RTP over loopback, the
  worker's decode, jitter buffer (60 ms target), mixer tick (20 ms), mix-minus outbound
  queue and pacer, Opus encode, RTP, B's decode.
- **Reference**: two aiortc peer connections in this process, connected directly; A sends
  the same source through the same paced track ``podium speak`` uses, B decodes it. One
  WebRTC hop with no server: Opus encode, RTP over loopback, Opus decode.

Podium's path has a second WebRTC hop (a decode and an encode) besides the jitter buffer,
the tick and the outbound queue, so the ratio bounds what the server adds from above.
Run from the repository root::

    .venv/bin/python bench/speaker_latency.py [--seconds 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import av
import httpx
import numpy as np
import numpy.typing as npt
import uvicorn
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# The sender and the frame conversion of ``podium speak`` itself, so that the reference is
# measured through exactly the same pacing and the same PCM conversion as Podium.
from podium.clients.speak import _SourceTrack, _to_pcm, speak
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES, PcmFrame

SPACE = "latency"
BURST_HZ = 1000.0
BURST_AMPLITUDE = 0.5
BURST_EVERY = 25  # ticks: one burst each 500 ms, far apart enough never to be confused
LEAD_IN = 50  # ticks of silence before the first burst: ICE, DTLS and jitter anchoring
ONSET = 0.1  # |sample| above which the burst has arrived (silence decodes to ~0)
MAX_LATENCY = 0.4  # s: G.114's "unusable"; an onset later than this is not paired
TICK_SECONDS = TICK_SAMPLES / SAMPLE_RATE


class BurstSource:
    """Silence with a one-tick 1 kHz burst every :data:`BURST_EVERY` ticks after the lead-in;
    notes the monotonic time at which each burst tick is read (handed to the sender)."""

    def __init__(self) -> None:
        self.ticks = 0
        self.emitted: list[float] = []
        t = np.arange(TICK_SAMPLES) / SAMPLE_RATE
        self._burst = (BURST_AMPLITUDE * np.sin(2 * np.pi * BURST_HZ * t)).astype(np.float32)
        self._silence = np.zeros(TICK_SAMPLES, dtype=np.float32)

    def read(self) -> npt.NDArray[np.float32]:
        index = self.ticks
        self.ticks += 1
        if index >= LEAD_IN and (index - LEAD_IN) % BURST_EVERY == 0:
            self.emitted.append(time.monotonic())
            return self._burst
        return self._silence

    def close(self) -> None:
        pass


class SilenceSource:
    def read(self) -> npt.NDArray[np.float32]:
        return np.zeros(TICK_SAMPLES, dtype=np.float32)

    def close(self) -> None:
        pass


@dataclass
class Ear:
    """What B heard: the onset times of bursts (arrival plus offset in the frame)."""

    onsets: list[float] = field(default_factory=list)
    frames: int = 0
    _quiet_until: float = 0.0

    def __call__(self, frame: PcmFrame) -> None:
        arrived = time.monotonic()
        self.frames += 1
        loud = np.flatnonzero(np.abs(frame.samples) > ONSET)
        if not len(loud) or arrived < self._quiet_until:
            return
        onset = arrived + int(loud[0]) / SAMPLE_RATE
        self.onsets.append(onset)
        # The rest of this burst (and any codec ringing) is not a new onset.
        self._quiet_until = arrived + BURST_EVERY * TICK_SECONDS / 2


@dataclass(frozen=True, slots=True)
class Result:
    """Latency figures of one path, in milliseconds, and the raw samples in burst order."""

    name: str
    bursts: int
    paired: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    min_ms: float
    samples_ms: list[float]
    missed: list[int]  # indices of the bursts never heard


def pair(emitted: Sequence[float], onsets: Sequence[float]) -> list[float | None]:
    """Latency of each burst: its first onset within :data:`MAX_LATENCY` after emission,
    or ``None`` if it was not heard. Bursts are 500 ms apart and the window is 400 ms, so
    no onset can pair with two."""
    latencies: list[float | None] = []
    for sent in emitted:
        heard = [o for o in onsets if sent <= o < sent + MAX_LATENCY]
        latencies.append(heard[0] - sent if heard else None)
    return latencies


def summarise(name: str, emitted: Sequence[float], onsets: Sequence[float]) -> Result:
    paired = pair(emitted, onsets)
    ms = [1000 * x for x in paired if x is not None]
    if not ms:
        raise SystemExit(f"{name}: no burst was heard ({len(emitted)} sent)")
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Result(
        name=name,
        bursts=len(emitted),
        paired=len(ms),
        p50_ms=statistics.median(ms),
        p95_ms=p95,
        max_ms=max(ms),
        min_ms=min(ms),
        samples_ms=[round(x, 2) for x in ms],
        missed=[i for i, x in enumerate(paired) if x is None],
    )


def burst_ticks(seconds: float) -> int:
    return LEAD_IN + round(seconds / TICK_SECONDS)


# ---- reference: bare aiortc ----------------------------------------------------------------


async def reference(seconds: float) -> Result:
    """A -> B over one direct aiortc connection, no server."""
    source, ear = BurstSource(), Ear()
    a, b = RTCPeerConnection(), RTCPeerConnection()
    track = _SourceTrack(source, burst_ticks(seconds))
    listening: list[asyncio.Task[None]] = []

    async def listen(remote: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await remote.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            ear(_to_pcm(frame))

    @b.on("track")
    def on_track(remote: MediaStreamTrack) -> None:
        listening.append(asyncio.create_task(listen(remote)))

    try:
        transceiver = a.addTransceiver(track, direction="sendonly")
        capabilities = RTCRtpSender.getCapabilities("audio")
        codecs = capabilities.codecs if capabilities is not None else []
        transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() == "audio/opus"])
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        await track.finished.wait()
        await asyncio.sleep(MAX_LATENCY)
    finally:
        await a.close()
        await b.close()
        for task in listening:
            task.cancel()
        await asyncio.gather(*listening, return_exceptions=True)
    return summarise("aiortc direct", source.emitted, ear.onsets)


# ---- Podium: the media worker, A and B through WHIP ----------------------------------------


def whip_shim(worker: httpx.AsyncClient) -> Starlette:
    """WHIP in front of the worker's publishers API, as the web process provides it."""

    async def publish(request: Request) -> Response:
        offer = (await request.body()).decode()
        answer = await worker.post(
            f"/rooms/{SPACE}/publishers",
            json={"speaker_id": request.path_params["speaker"], "sdp": offer},
        )
        answer.raise_for_status()
        body = answer.json()
        return Response(
            body["answer_sdp"],
            status_code=201,
            media_type="application/sdp",
            headers={
                "Location": f"/whip/session/{request.path_params['speaker']}/{body['resource_id']}"
            },
        )

    async def leave(request: Request) -> Response:
        speaker, resource = request.path_params["speaker"], request.path_params["resource"]
        await worker.delete(f"/rooms/{SPACE}/publishers/{resource}", params={"speaker": speaker})
        return Response(status_code=200)

    return Starlette(
        routes=[
            Route("/whip/session/{speaker}/{resource}", leave, methods=["DELETE"]),
            Route("/whip/{speaker}", publish, methods=["POST"]),
        ]
    )


async def start_worker(directory: Path) -> tuple[asyncio.subprocess.Process, Path]:
    """``podium serve``'s media worker, as ``podium serve`` starts it (its own process)."""
    socket = directory / "worker.sock"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "podium.media.worker",
        "--socket",
        str(socket),
        "--recordings",
        str(directory / "recordings"),
        "--parent",
        str(os.getpid()),
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not socket.exists():
        if process.returncode is not None or time.monotonic() > deadline:
            raise SystemExit("the media worker did not start")
        await asyncio.sleep(0.05)
    return process, socket


async def podium(seconds: float, directory: Path) -> Result:
    process, socket = await start_worker(directory)
    transport = httpx.AsyncHTTPTransport(uds=str(socket))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://worker", timeout=30
        ) as worker:
            (await worker.post(f"/rooms/{SPACE}")).raise_for_status()
            server = uvicorn.Server(
                uvicorn.Config(
                    whip_shim(worker),
                    host="127.0.0.1",
                    port=0,
                    log_config=None,
                    lifespan="off",
                    access_log=False,
                )
            )
            serving = asyncio.create_task(server.serve())
            try:
                while not server.started:  # noqa: ASYNC110 - uvicorn offers only a flag
                    await asyncio.sleep(0.01)
                port = server.servers[0].sockets[0].getsockname()[1]
                base = f"http://127.0.0.1:{port}/whip"
                source, ear = BurstSource(), Ear()
                # B first, so that it hears from A's first tick on.
                listener = asyncio.create_task(
                    speak(f"{base}/b", "", SilenceSource(), seconds=None, on_heard=ear)
                )
                while not ear.frames:
                    if listener.done():
                        await listener  # raises what went wrong
                    await asyncio.sleep(0.05)
                talker = speak(f"{base}/a", "", source, seconds=burst_ticks(seconds) * TICK_SECONDS)
                await talker
                await asyncio.sleep(MAX_LATENCY)
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            finally:
                server.should_exit = True
                await serving
            status = (await worker.get("/status")).json()
            (await worker.delete(f"/rooms/{SPACE}")).raise_for_status()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
    result = summarise("Podium room", source.emitted, ear.onsets)
    late = status["rooms"].get(SPACE, {}).get("late_ticks", 0)
    if late:
        print(f"note: the room ran {late} tick(s) over 100 ms late", file=sys.stderr)
    return result


# ---- report --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model or platform.processor(),
        "cores": str(os.cpu_count()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aiortc": version("aiortc"),
        "av": av.__version__,
        "load_1min": f"{os.getloadavg()[0]:.2f}",
    }


def table(podium_result: Result, reference_result: Result) -> str:
    rows = [
        ("", "p50 ms", "p95 ms", "max ms", "min ms", "heard/sent"),
        *(
            (
                r.name,
                f"{r.p50_ms:.1f}",
                f"{r.p95_ms:.1f}",
                f"{r.max_ms:.1f}",
                f"{r.min_ms:.1f}",
                f"{r.paired}/{r.bursts}",
            )
            for r in (podium_result, reference_result)
        ),
        (
            "Podium / direct",
            f"{podium_result.p50_ms / reference_result.p50_ms:.2f}x",
            f"{podium_result.p95_ms / reference_result.p95_ms:.2f}x",
            "",
            "",
            "",
        ),
        (
            "Podium - direct",
            f"+{podium_result.p50_ms - reference_result.p50_ms:.1f}",
            f"+{podium_result.p95_ms - reference_result.p95_ms:.1f}",
            "",
            "",
            "",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    verdict = "meets" if podium_result.p95_ms <= 150 else "MISSES"
    lines.append(f"DESIGN target p95 <= 150 ms (ITU G.114): Podium {verdict} it")
    return "\n".join(lines)


async def run(seconds: float) -> tuple[Result, Result]:
    with tempfile.TemporaryDirectory(prefix="podium-latency-") as tmp:
        podium_result = await podium(seconds, Path(tmp))
    reference_result = await reference(seconds)
    return podium_result, reference_result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=30.0, help="bursts per path: 2/s")
    parser.add_argument("--json", type=Path, help="write the figures and raw samples here")
    args = parser.parse_args(argv)
    podium_result, reference_result = asyncio.run(run(args.seconds))
    print(table(podium_result, reference_result))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "burst": {
                        "hz": BURST_HZ,
                        "ms": TICK_SECONDS * 1000,
                        "every_ms": BURST_EVERY * TICK_SECONDS * 1000,
                    },
                    "podium": asdict(podium_result),
                    "reference": asdict(reference_result),
                    "ratio_p50": podium_result.p50_ms / reference_result.p50_ms,
                    "ratio_p95": podium_result.p95_ms / reference_result.p95_ms,
                    "machine": machine(),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
