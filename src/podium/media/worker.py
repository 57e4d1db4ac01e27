"""The media worker process: rooms, and a small HTTP interface on a Unix socket.

Started by ``podium serve`` (``python -m podium.media.worker``), never by hand. It raises
its own scheduling priority where allowed and dies with its parent. The web process talks
to it through :mod:`podium.media.link`:

=================================  =========================================================
``POST /rooms/{id}``               start the space's room (resumes a recording left open;
                                   ``?seamless=1``: one handed over, with no gap)
``POST /rooms/{id}/hand-over``     stop at the end of the segment, the program left open
                                   for another node to go on with → ``{"next_msn"}``
``DELETE /rooms/{id}``             end the program; answers once the playlist has ended
``POST /rooms/{id}/abandon``       stop the room without ending the program (its lease
                                   went to another node); answers once it has stopped
``POST /rooms/{id}/publishers``    a WHIP offer ``{"speaker_id", "sdp"}`` → the answer
``DELETE /rooms/{id}/publishers/{rid}``  a speaker leaves
``PATCH /rooms/{id}/publishers/{rid}``   trickle ICE ``{"if_match", "fragment"}``
``GET /feed``                      the event feed (see :mod:`podium.origin.feed`)
``GET /status``                    rooms, ticks, late ticks, recording state, CPU time
=================================  =========================================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from podium import logs
from podium.errors import Conflict, InvalidInput, NotFound, PodiumError
from podium.media.room import Room
from podium.origin import feed

log = logging.getLogger("podium.media")

# A subscriber that falls this far behind is cut off (and reconnects) rather than letting
# the worker buffer without bound.
FEED_QUEUE = 4096
KEEPALIVE_SECONDS = 5.0
# Niceness the worker asks for: ahead of the web process (0) for the CPU.
MEDIA_NICENESS = -10


class Worker:
    def __init__(self, recordings: Path, *, announced_address: str = "") -> None:
        self.recordings = recordings
        # Offered to speakers beside the machine's own addresses (1:1 NAT).
        self.announced_address = announced_address
        self.rooms: dict[str, Room] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._ended: dict[str, asyncio.Event] = {}
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()
        self.dropped_subscribers = 0

    def publish(self, event: feed.Event) -> None:
        line = feed.render(event)
        if isinstance(event, feed.Ended) and event.space_id in self._ended:
            self._ended[event.space_id].set()
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(line)
            except asyncio.QueueFull:
                # Too slow: end this subscription (it reconnects and catches up from disk)
                # rather than buffer without bound or hold up the rooms.
                self._subscribers.discard(queue)
                self.dropped_subscribers += 1
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    def start_room(self, space_id: str, *, seamless: bool = False) -> None:
        if space_id in self.rooms:
            return
        directory = self.recordings / space_id
        room = Room(
            space_id,
            directory,
            self.publish,
            seamless=seamless,
            announced_address=self.announced_address,
        )
        self.rooms[space_id] = room
        self._ended[space_id] = asyncio.Event()
        self._runs[space_id] = asyncio.create_task(self._run(space_id, room))

    async def _run(self, space_id: str, room: Room) -> None:
        try:
            await room.run()
        except Exception:
            log.exception("room_failed", extra={"fields": {"space_id": space_id}})
        finally:
            self.rooms.pop(space_id, None)
            self._runs.pop(space_id, None)
            ended = self._ended.pop(space_id, None)
            if ended is not None:
                ended.set()

    async def end_room(self, space_id: str) -> None:
        room = self._room(space_id)
        ended = self._ended[space_id]
        room.end()
        await ended.wait()

    async def abandon_room(self, space_id: str) -> None:
        """Stop a room without ending its program: nothing more is written for it here."""
        room = self._room(space_id)
        ended = self._ended[space_id]
        room.abandon()
        await ended.wait()

    async def hand_over_room(self, space_id: str) -> int:
        """Stop a room at the end of its segment, its program left open for another node
        to go on with; returns the Media Sequence Number it goes on from."""
        room = self._room(space_id)
        ended = self._ended[space_id]
        room.hand_over()
        await ended.wait()
        if room.handed_over_at is None:
            raise Conflict(f"space {space_id} stopped before it could be handed over")
        return room.handed_over_at

    def _room(self, space_id: str) -> Room:
        room = self.rooms.get(space_id)
        if room is None:
            raise NotFound(f"space {space_id} is not on air")
        return room

    async def shutdown(self) -> None:
        """Stop every room without ending its program (it resumes on the next start)."""
        for room in self.rooms.values():
            room.abandon()
        await asyncio.gather(*self._runs.values(), return_exceptions=True)
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def subscribe(self) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(FEED_QUEUE)
        self._subscribers.add(queue)
        try:
            yield b"\n"  # lets the subscriber know it is registered
            while True:
                try:
                    line = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b"\n"
                    continue
                if line is None:
                    return
                yield line
        finally:
            self._subscribers.discard(queue)


def _error(exc: PodiumError) -> JSONResponse:
    return JSONResponse({"kind": exc.kind, "detail": exc.detail}, status_code=exc.status)


def create_app(worker: Worker) -> Starlette:
    async def start(request: Request) -> Response:
        seamless = request.query_params.get("seamless") == "1"
        worker.start_room(request.path_params["space_id"], seamless=seamless)
        return Response(status_code=204)

    async def hand_over(request: Request) -> Response:
        next_msn = await worker.hand_over_room(request.path_params["space_id"])
        return JSONResponse({"next_msn": next_msn})

    async def end(request: Request) -> Response:
        await worker.end_room(request.path_params["space_id"])
        return Response(status_code=204)

    async def abandon(request: Request) -> Response:
        await worker.abandon_room(request.path_params["space_id"])
        return Response(status_code=204)

    async def publish(request: Request) -> Response:
        body = await _json(request)
        room = worker._room(request.path_params["space_id"])
        publication = await room.publish(str(body["speaker_id"]), str(body["sdp"]))
        return JSONResponse(
            {
                "resource_id": publication.resource_id,
                "answer_sdp": publication.answer_sdp,
                "etag": publication.etag,
                "replaced": publication.replaced,
            },
            status_code=201,
        )

    async def unpublish(request: Request) -> Response:
        room = worker._room(request.path_params["space_id"])
        speaker = request.query_params.get("speaker", "")
        await room.unpublish(request.path_params["resource_id"], speaker)
        return Response(status_code=204)

    async def speaker(request: Request) -> Response:
        room = worker._room(request.path_params["space_id"])
        speaker_id = request.path_params["speaker_id"]
        if request.method == "DELETE":
            await room.drop(speaker_id)
        else:
            room.set_muted(speaker_id, bool((await _json(request)).get("muted")))
        return Response(status_code=204)

    async def patch(request: Request) -> Response:
        body = await _json(request)
        room = worker._room(request.path_params["space_id"])
        rid = request.path_params["resource_id"]
        if room.stage.publications().get(rid) != request.query_params.get("speaker"):
            raise NotFound("no such WHIP session")
        answer = await room.stage.patch(
            request.path_params["resource_id"], body.get("if_match"), str(body["fragment"])
        )
        return JSONResponse({"status": answer.status, "detail": answer.detail})

    async def feed_stream(request: Request) -> Response:
        return StreamingResponse(worker.subscribe(), media_type="application/x-ndjson")

    async def status(request: Request) -> Response:
        return JSONResponse(
            {
                "rooms": {
                    space_id: {
                        "ticks": room.ticks,
                        "late_ticks": room.late_ticks,
                        "jitter": asdict(room.mixer.jitter_totals()),
                        "speakers": list(room.mixer.speakers),
                        "recording": room.recorder.degraded or "ok",
                    }
                    for space_id, room in worker.rooms.items()
                },
                "dropped_subscribers": worker.dropped_subscribers,
                # Seconds of CPU the worker has used (all its threads): its load, for
                # placing rooms on media nodes.
                "cpu_s": time.process_time(),
            }
        )

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PodiumError)
        return _error(exc)

    return Starlette(
        routes=[
            Route("/rooms/{space_id}", start, methods=["POST"]),
            Route("/rooms/{space_id}", end, methods=["DELETE"]),
            Route("/rooms/{space_id}/abandon", abandon, methods=["POST"]),
            Route("/rooms/{space_id}/hand-over", hand_over, methods=["POST"]),
            Route("/rooms/{space_id}/publishers", publish, methods=["POST"]),
            Route("/rooms/{space_id}/publishers/{resource_id}", unpublish, methods=["DELETE"]),
            Route("/rooms/{space_id}/publishers/{resource_id}", patch, methods=["PATCH"]),
            Route("/rooms/{space_id}/speakers/{speaker_id}", speaker, methods=["POST", "DELETE"]),
            Route("/feed", feed_stream),
            Route("/status", status),
        ],
        exception_handlers={PodiumError: on_error},
    )


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidInput("the worker expects a JSON body") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the worker expects a JSON object")
    return body


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (even by SIGKILL)."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _raise_priority() -> int:
    """Run ahead of the web process; returns the niceness obtained."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, MEDIA_NICENESS)
    return os.getpriority(os.PRIO_PROCESS, 0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="podium-media-worker")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--recordings", type=Path, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--log-format", default="json")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--announce", default="", help="public address behind 1:1 NAT")
    args = parser.parse_args()
    _die_with_parent()
    if os.getppid() != args.parent:
        return  # the parent died before we could ask to die with it
    logs.configure(args.log_format, args.log_level)
    niceness = _raise_priority()
    worker = Worker(args.recordings, announced_address=args.announce)
    args.socket.unlink(missing_ok=True)
    config = uvicorn.Config(
        create_app(worker),
        uds=str(args.socket),
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    log.info("media_worker_started", extra={"fields": {"niceness": niceness}})

    async def run() -> None:
        async def close_rooms_on_exit() -> None:
            # uvicorn waits for open connections before it stops, and the feed is one:
            # stop the rooms (which ends the feed) as soon as shutdown is asked for.
            while not server.should_exit:  # noqa: ASYNC110 - uvicorn offers only a flag
                await asyncio.sleep(0.1)
            await worker.shutdown()

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(close_rooms_on_exit())
            await server.serve()

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        asyncio.run(run())
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
