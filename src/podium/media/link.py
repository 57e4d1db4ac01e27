"""The web process's side of the media worker: starting it, talking to it, following it.

:class:`MediaLink` spawns the worker, reads its feed into the origin, and turns web
requests (a space goes live or ends, a WHIP offer) into worker calls. If the worker dies,
it is started again and every live room resumes from its recording, with the lost span
marked as a gap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from podium import errors
from podium.media.fanout import Fanout
from podium.origin import feed
from podium.origin.origin import Origin

log = logging.getLogger("podium.media")

STARTUP_SECONDS = 30.0
RESTART_DELAY_SECONDS = 0.5
_ERRORS: dict[str, type[errors.PodiumError]] = {
    cls.kind: cls
    for cls in (
        errors.InvalidInput,
        errors.NotFound,
        errors.Conflict,
        errors.Forbidden,
        errors.StorageError,
    )
}


class MediaUnavailable(errors.PodiumError):
    status = 503
    kind = "media-unavailable"
    title = "Media worker unavailable"


@dataclass(frozen=True, slots=True)
class Publication:
    resource_id: str
    answer_sdp: str
    etag: str


class MediaLink:
    """Owns the media worker process. Call :meth:`run` as a task; it returns on close."""

    def __init__(
        self,
        runtime_dir: Path,
        recordings: Path,
        origin: Origin,
        live_spaces: Callable[[], list[str]],
        log_format: str = "json",
        log_level: str = "info",
        exported: Callable[[str], None] | None = None,
        public_address: str = "",
    ) -> None:
        self.socket = runtime_dir / "media.sock"
        self.recordings = recordings
        self.origin = origin
        self._live_spaces = live_spaces
        # Told of each space whose replay file the worker wrote (its id).
        self._exported = exported
        self._log_args = ["--log-format", log_format, "--log-level", log_level]
        if public_address:
            self._log_args += ["--announce", public_address]
        self._process: asyncio.subprocess.Process | None = None
        self._client: httpx.AsyncClient | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self.restarts = 0
        # Web nodes following this one's feed (a media node's), and their catch-up.
        self.fanout = Fanout()
        # The node whose worker runs the rooms, where several share a database.
        self.node: str | None = None

    # -- lifetime ------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a worker running and its feed flowing into the origin until :meth:`close`."""
        while not self._closing:
            try:
                await self._start_worker()
                await self._follow_feed()
            except Exception as exc:
                # Whatever went wrong, the answer is the same: start a fresh worker, which
                # resumes every live room from its recording.
                if not self._closing:
                    log.error("media_worker_lost", extra={"fields": {"error": repr(exc)}})
            finally:
                self._ready.clear()
                await self._stop_worker()
            if not self._closing:
                self.restarts += 1
                await asyncio.sleep(RESTART_DELAY_SECONDS)

    async def wait_ready(self) -> None:
        """Wait (up to a startup's worth of time) until the worker takes commands."""
        try:
            await asyncio.wait_for(self._ready.wait(), STARTUP_SECONDS)
        except TimeoutError as exc:
            raise MediaUnavailable("the media worker did not start") from exc

    async def close(self) -> None:
        self._closing = True
        await self._stop_worker()

    async def _start_worker(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.recordings.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "podium.media.worker",
            "--socket",
            str(self.socket),
            "--recordings",
            str(self.recordings),
            "--parent",
            str(os.getpid()),
            *self._log_args,
            stdin=asyncio.subprocess.DEVNULL,
        )
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket))
        self._client = httpx.AsyncClient(transport=transport, base_url="http://media", timeout=30.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_SECONDS
        while not self.socket.exists():
            if self._process.returncode is not None or loop.time() > deadline:
                raise MediaUnavailable("the media worker did not start")
            await asyncio.sleep(0.05)

    async def _follow_feed(self) -> None:
        assert self._client is not None
        async with self._client.stream("GET", "/feed", timeout=None) as response:
            lines = response.aiter_lines()
            await anext(lines)  # registered: commands sent from now on are seen
            await self._resume_live_rooms()
            self._ready.set()
            async for line in lines:
                if not line:
                    continue
                try:
                    raw = line.encode() + b"\n"
                    event = feed.parse(raw)
                    self.origin.apply(event)
                    self.fanout.publish(event, raw)
                    if isinstance(event, feed.Exported) and event.ok and self._exported:
                        self._exported(event.space_id)
                except Exception:
                    # One bad event must not take the web process down with it.
                    log.exception("feed_event_failed", extra={"fields": {"line": line[:200]}})

    async def _resume_live_rooms(self) -> None:
        for space_id in self._live_spaces():
            try:
                await self._request("POST", _path("rooms", space_id))
            except errors.PodiumError as exc:
                log.error(
                    "room_resume_failed",
                    extra={"fields": {"space_id": space_id, "error": exc.detail}},
                )

    async def _stop_worker(self) -> None:
        process, self._process = self._process, None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()

    # -- commands ------------------------------------------------------------------------

    async def start_room(self, space_id: str) -> str | None:
        """Start (or resume) the space's room; returns the node that runs it, where
        several share the database (None for a node on its own)."""
        await self._call("POST", _path("rooms", space_id))
        return self.node

    async def continue_room(self, space_id: str) -> None:
        """Start the room of a program handed over by another node: it goes on from the
        recording's next segment, on the program's clock, with no gap."""
        await self._call("POST", _path("rooms", space_id) + "?seamless=1")

    async def hand_over_room(self, space_id: str) -> int:
        """Stop the room at the end of its segment without ending the program, for
        another node to :meth:`continue_room`; returns the segment it goes on from."""
        answer = await self._call("POST", _path("rooms", space_id, "hand-over"))
        return int(answer["next_msn"])

    async def end_room(self, space_id: str) -> None:
        await self._call("DELETE", _path("rooms", space_id))

    async def abandon_room(self, space_id: str) -> None:
        """Stop the room without ending its program: another node speaks for it now."""
        await self._call("POST", _path("rooms", space_id, "abandon"))

    async def publish(self, space_id: str, speaker_id: str, sdp: str) -> Publication:
        answer = await self._call(
            "POST", _path("rooms", space_id, "publishers"), {"speaker_id": speaker_id, "sdp": sdp}
        )
        return Publication(answer["resource_id"], answer["answer_sdp"], answer["etag"])

    async def unpublish(self, space_id: str, resource_id: str, speaker_id: str) -> None:
        await self._call(
            "DELETE",
            _path("rooms", space_id, "publishers", resource_id) + _speaker_query(speaker_id),
        )

    async def patch(
        self,
        space_id: str,
        resource_id: str,
        speaker_id: str,
        if_match: str | None,
        fragment: str,
    ) -> tuple[int, str]:
        answer = await self._call(
            "PATCH",
            _path("rooms", space_id, "publishers", resource_id) + _speaker_query(speaker_id),
            {"if_match": if_match, "fragment": fragment},
        )
        return int(answer["status"]), str(answer["detail"])

    async def set_muted(self, space_id: str, speaker_id: str, muted: bool) -> None:
        """Mute or unmute a speaker in the mix (their WebRTC session stays up)."""
        await self._call("POST", _path("rooms", space_id, "speakers", speaker_id), {"muted": muted})

    async def drop_speaker(self, space_id: str, speaker_id: str) -> None:
        """End every WHIP session of a speaker who left or was taken off the stage."""
        await self._call("DELETE", _path("rooms", space_id, "speakers", speaker_id))

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/status")
        return result

    async def forward(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        """A command from a web node, as it sent it (``path`` already quoted)."""
        return await self._call(method, path, body)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        await self.wait_ready()
        return await self._request(method, path, body)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        client = self._client
        if client is None:
            raise MediaUnavailable("the media worker is restarting; try again in a moment")
        try:
            response = await client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise MediaUnavailable(f"the media worker did not answer: {exc}") from exc
        if response.status_code == 204:
            return None
        document = response.json()
        if response.is_success:
            return document
        error = _ERRORS.get(document.get("kind", ""), errors.PodiumError)
        raise error(document.get("detail", "the media worker refused"))


def _path(*segments: str) -> str:
    """The worker's URL path of ``segments``, each exactly one segment whatever it holds:
    ids come from requests, and a "/" or a dot segment in one must not address anything
    else on the worker."""
    for segment in segments:
        if segment in ("", ".", ".."):
            raise errors.NotFound(f"nothing is called {segment!r}")
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


def _speaker_query(speaker_id: str) -> str:
    return "?speaker=" + quote(speaker_id, safe="")
