"""A web node's media: the fleet's media node, reached over TCP with a shared secret.

:class:`RemoteMedia` has :class:`~podium.media.link.MediaLink`'s commands (a space goes
live or ends, a WHIP offer, mute) and sends them to the media node's internal API
(``/internal/media/…``, see :mod:`podium.web.internal`). It follows the media node's feed
into this node's origin, so every web node serves every live space's playlists and parts
itself: the media node sends each part once per web node, whatever the crowd. The feed
starts with a catch-up (:mod:`podium.media.fanout`); if the media node cannot be
reached, the feed is tried again with a backoff and commands answer 503.

Each event is first made durable in this node's copy of the program
(:mod:`podium.media.replica`), then served. While the feed is lost, the programs it made
say their recording is degraded (nobody here can tell it is being made) until their
program comes back, from this node or from another that took them over.

A program that ended is dropped from this node's origin: its replay and any part older
than the catch-up are answered from the media node, which has the recording.

Where several media nodes feed one origin (:mod:`podium.web.mediapool`), each space has one
source: the node whose program began last and that ``accept`` lets in (the pool asks the
space's lease). Events for a space from any other node are dropped, so a node that lost a
space cannot put a part into its playlist.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

import httpx

from podium.media.link import MediaLink, MediaUnavailable
from podium.media.replica import Replicas
from podium.origin import feed
from podium.origin.origin import Origin

log = logging.getLogger("podium.media")

RETRY_S = 0.5
RETRY_MAX_S = 5.0
CONNECT_TIMEOUT_S = 3.0
# A feed silent this long (a media node sends a line every second at least) is lost: the
# node died without closing it, hangs, or is paused.
FEED_SILENT_S = 4.0


class RemoteMedia(MediaLink):
    """The media node at ``url``, authenticated with ``secret``. :meth:`run` as a task."""

    def __init__(
        self,
        url: str,
        secret: str,
        origin: Origin,
        runtime_dir: Path,
        sources: dict[str, RemoteMedia] | None = None,
        accept: Callable[[RemoteMedia, str], bool] | None = None,
        replicas: Replicas | None = None,
    ) -> None:
        super().__init__(runtime_dir, origin.recordings, origin, live_spaces=list)
        self.url = url.rstrip("/")
        self._secret = secret
        # The media node's name, as it says in the feed's first line.
        self.node: str | None = None
        self.connected_at: float | None = None
        # Which link feeds which space into the origin (shared by a pool's links), and
        # whether a program beginning here may take a space over.
        self.sources: dict[str, RemoteMedia] = {} if sources is None else sources
        self._accept = accept or (lambda link, space_id: True)
        # Where this node keeps its copy of each program, written before it is served.
        self.replicas = replicas

    async def wait_ready(self) -> None:
        """Wait, briefly, for the feed: a command for a node that is away fails fast
        (503), so that a client tries again, and finds the space's next node."""
        try:
            await asyncio.wait_for(self._ready.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError as exc:
            raise MediaUnavailable(f"the media node at {self.url} cannot be reached") from exc

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self.url}/internal/media",
            headers={"Authorization": f"Bearer {self._secret}"},
            timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT_S),
        )

    async def run(self) -> None:
        """Follow the media node's feed until :meth:`close`, reconnecting after a loss."""
        delay = RETRY_S
        while not self._closing:
            self._client = self._new_client()
            try:
                await self._follow()
                delay = RETRY_S
            except Exception as exc:  # whatever it was, the answer is to follow again
                if not self._closing:
                    self._mark_lost()
                    log.warning(
                        "media_node_unreachable",
                        extra={"fields": {"url": self.url, "error": repr(exc)}},
                    )
            finally:
                self._ready.clear()
                client, self._client = self._client, None
                await client.aclose()
            if not self._closing:
                self.restarts += 1
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)

    async def _follow(self) -> None:
        assert self._client is not None
        timeout = httpx.Timeout(30.0, connect=CONNECT_TIMEOUT_S, read=FEED_SILENT_S)
        async with self._client.stream("GET", "/feed", timeout=timeout) as response:
            if response.status_code != 200:
                await response.aread()
                raise MediaUnavailable(
                    f"the media node refused to be followed ({response.status_code}):"
                    f" {response.text[:200]}"
                )
            lines = response.aiter_lines()
            hello = json.loads(await anext(lines))
            self.node = str(hello["node"])
            # What was followed before is stale: the catch-up brings back what is live.
            self._forget_mine()
            self._ready.set()
            log.info("media_node_followed", extra={"fields": {"url": self.url, "node": self.node}})
            async for line in lines:
                if not line:
                    continue
                try:
                    self._take(feed.parse(line.encode()))
                except Exception:
                    log.exception("feed_event_failed", extra={"fields": {"line": line[:200]}})
            raise MediaUnavailable("the media node closed its feed")

    def _take(self, event: feed.Event) -> None:
        space_id = event.space_id
        moved = False
        if isinstance(event, feed.Began):
            previous = self.sources.get(space_id)
            if previous is not self:
                if not self._accept(self, space_id):
                    log.warning(
                        "feed_refused_not_leaseholder",
                        extra={"fields": {"space_id": space_id, "node": self.node}},
                    )
                    return
                self.sources[space_id] = self  # the program moved here
                # (lost for a while, unless handed over: then it goes on, nothing lost)
                moved = previous is not None and event.resumed and not event.seamless
        elif self.sources.get(space_id) is not self:
            return  # another node speaks for this space now

        def serve() -> None:
            self.origin.apply(event)
            if moved and (program := self.origin.program(space_id)) is not None:
                program.moved = True
                log.warning(
                    "space_media_moved", extra={"fields": {"space_id": space_id, "to": self.node}}
                )
            if isinstance(event, feed.Ended):
                self.origin.forget(space_id)

        if isinstance(event, feed.Ended):
            del self.sources[space_id]
        if self.replicas is None:
            serve()
        else:
            self.replicas.keep(event, serve)

    def _mark_lost(self) -> None:
        """The spaces this node makes cannot be recorded as far as anyone here knows:
        say so until their program comes back (from this node or another)."""
        for space_id in [s for s, link in self.sources.items() if link is self]:
            program = self.origin.program(space_id)
            if program is not None and not program.playlist.ended:
                program.recording = "degraded"
                program.recording_reason = "the media server of this space cannot be reached"

    def _forget_mine(self) -> None:
        for space_id in [s for s, link in self.sources.items() if link is self]:
            self.origin.forget(space_id)
            del self.sources[space_id]

    async def close(self) -> None:
        self._closing = True
        if self._client is not None:
            await self._client.aclose()
