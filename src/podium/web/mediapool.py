"""A web node's media: every media node of the fleet, each space's commands to its host.

:class:`MediaPool` has :class:`~podium.media.link.MediaLink`'s commands and finds the
media nodes in the fleet's registry (role ``media``, at the URL each one registers; a
``media_url`` setting is followed from the start, before the registry has been read). It
follows every one's feed into this node's origin (:class:`~podium.media.remote.RemoteMedia`
each), so this node serves every live space whatever node hosts it.

A space that goes live is placed on the media node that would be least loaded with it
(:mod:`podium.control.placement`; the node takes the space's lease as it starts the room),
trying the next one if that node does not answer. Every later command for the space (a
WHIP offer, mute, end) goes to the holder of its lease, else to the node that feeds its
program here, else to the node the database says ran it; so do requests for a replay or
an old part that the origin does not hold (:meth:`url_for`). Hosts and speakers use the
space's URLs on the web tier and never see which media node it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from podium import clock, errors
from podium.control import placement
from podium.control.fleet import Fleet, Node
from podium.control.spaces import Spaces
from podium.media.link import STARTUP_SECONDS, MediaLink, MediaUnavailable, Publication
from podium.media.remote import RemoteMedia
from podium.media.replica import Replicas
from podium.origin.origin import Origin

log = logging.getLogger("podium.media")

DISCOVER_S = 2.0
# How long a WHIP offer for a space moving between media nodes waits for it to land.
MOVING_WAIT_S = 3.0
MOVING_POLL_S = 0.05


class MediaPool(MediaLink):
    """The fleet's media nodes, as one :class:`MediaLink`. :meth:`run` as a task."""

    def __init__(
        self,
        fleet: Fleet,
        secret: str,
        origin: Origin,
        runtime_dir: Path,
        spaces: Spaces,
        seed_url: str = "",
        replicas: Replicas | None = None,
    ) -> None:
        super().__init__(runtime_dir, origin.recordings, origin, live_spaces=list)
        self._fleet = fleet
        self._secret = secret
        self._spaces = spaces
        self._seed = seed_url.rstrip("/")
        self._runtime_dir = runtime_dir
        self.links: dict[str, RemoteMedia] = {}  # by URL
        self._follows: dict[str, asyncio.Task[None]] = {}
        self._registered: list[Node] = []  # the media nodes the registry last listed
        self.sources: dict[str, RemoteMedia] = {}
        self.replicas = replicas
        self._changed = asyncio.Event()

    # -- lifetime ------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow every media node in the registry until :meth:`close`."""
        if self._seed:
            self._follow(self._seed)
        try:
            while not self._closing:
                self._discover()
                self.restarts = sum(link.restarts for link in self.links.values())
                await asyncio.sleep(DISCOVER_S)
        finally:
            for url in list(self.links):
                await self._unfollow(url)

    def _discover(self) -> None:
        nodes = self._fleet.nodes(clock.now())
        if nodes is None:
            return  # Redis is away: keep following whom we follow
        self._registered = [node for node in nodes if node.role == "media"]
        wanted = {node.url.rstrip("/") for node in self._registered}
        for url in wanted - self.links.keys():
            self._follow(url)
        for url in self.links.keys() - wanted - {self._seed}:
            log.info("media_node_gone", extra={"fields": {"url": url}})
            asyncio.get_running_loop().create_task(self._unfollow(url))

    def _follow(self, url: str) -> None:
        link = RemoteMedia(
            url,
            self._secret,
            self.origin,
            self._runtime_dir,
            self.sources,
            self._accepts,
            self.replicas,
        )
        self.links[url] = link
        self._follows[url] = asyncio.get_running_loop().create_task(link.run())
        self._changed.set()

    async def _unfollow(self, url: str) -> None:
        link = self.links.pop(url, None)
        task = self._follows.pop(url, None)
        if link is not None:
            await link.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _accepts(self, link: RemoteMedia, space_id: str) -> bool:
        """Whether ``link``'s node may feed the space: it holds the lease, or nobody
        can say otherwise (no lease, or Redis away)."""
        lease = placement.holder(self._fleet, space_id)
        return lease is None or lease.node == link.node

    async def wait_ready(self) -> None:
        """Wait until at least one media node is followed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_SECONDS
        while not any(link._ready.is_set() for link in self.links.values()):
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise MediaUnavailable("no media node can be reached")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.1))

    async def close(self) -> None:
        self._closing = True
        for link in list(self.links.values()):
            await link.close()
        if self.replicas is not None:
            await asyncio.to_thread(self.replicas.close)

    # -- where a space is ----------------------------------------------------------------

    def _url_of(self, node: str | None) -> str | None:
        if node is None:
            return None
        for registered in self._registered:
            if registered.id == node:
                return registered.url.rstrip("/")
        for link in self.links.values():
            if link.node == node:
                return link.url
        return None

    def url_for(self, space_id: str) -> str | None:
        """The media node that speaks for the space now, or that recorded it."""
        lease = placement.holder(self._fleet, space_id)
        if lease is not None and (url := self._url_of(lease.node)):
            return url
        source = self.sources.get(space_id)
        if source is not None:
            return source.url
        try:
            recorded_by = self._spaces.media_node_of(space_id)
        except errors.PodiumError:  # the database is away
            recorded_by = None
        if (url := self._url_of(recorded_by)) is not None:
            return url
        return self._seed or None

    def _link_for(self, space_id: str) -> RemoteMedia:
        url = self.url_for(space_id)
        link = self.links.get(url) if url else None
        if link is None:
            raise MediaUnavailable(f"no media node hosts space {space_id} now")
        return link

    def _candidates(self) -> list[placement.Candidate]:
        followed = [node for node in self._registered if node.url.rstrip("/") in self.links]
        return placement.candidates(self._fleet, followed)

    # -- commands ------------------------------------------------------------------------

    async def start_room(self, space_id: str) -> str | None:
        """Place the space's room on a media node (the least loaded that answers) and
        start it there; returns that node."""
        lease = placement.holder(self._fleet, space_id)
        order = [lease.node] if lease is not None else placement.ranked(self._candidates())
        urls = [url for node in order if (url := self._url_of(node)) in self.links]
        if not urls:  # the registry not read yet: whichever node is followed
            urls = [url for url, link in self.links.items() if link._ready.is_set()]
        for url in urls:
            link = self.links[url]
            try:
                await link.start_room(space_id)
            except MediaUnavailable as exc:
                log.warning(
                    "media_node_skipped",
                    extra={"fields": {"space_id": space_id, "url": url, "error": exc.detail}},
                )
                continue
            except errors.Conflict:
                # Another node took the space's lease meanwhile: the room runs there.
                held = placement.holder(self._fleet, space_id)
                if held is None:
                    raise
                return held.node
            return link.node
        raise MediaUnavailable("no media node can take the space's room now; try again")

    async def end_room(self, space_id: str) -> None:
        await self._link_for(space_id).end_room(space_id)

    async def abandon_room(self, space_id: str) -> None:
        await self._link_for(space_id).abandon_room(space_id)

    async def publish(self, space_id: str, speaker_id: str, sdp: str) -> Publication:
        """The offer to the node that hosts the space. The web tier found the space live:
        a media node without its room is one it is moving to, about to start it, so the
        offer waits for it, up to :data:`MOVING_WAIT_S`, then is answered 503 (try again),
        never as a refusal."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MOVING_WAIT_S
        while True:
            try:
                return await self._link_for(space_id).publish(space_id, speaker_id, sdp)
            except errors.NotFound as exc:
                if loop.time() >= deadline:
                    raise MediaUnavailable(
                        f"the space's media is moving to another server; try again ({exc.detail})"
                    ) from exc
            await asyncio.sleep(MOVING_POLL_S)

    async def unpublish(self, space_id: str, resource_id: str, speaker_id: str) -> None:
        await self._link_for(space_id).unpublish(space_id, resource_id, speaker_id)

    async def patch(
        self,
        space_id: str,
        resource_id: str,
        speaker_id: str,
        if_match: str | None,
        fragment: str,
    ) -> tuple[int, str]:
        link = self._link_for(space_id)
        return await link.patch(space_id, resource_id, speaker_id, if_match, fragment)

    async def set_muted(self, space_id: str, speaker_id: str, muted: bool) -> None:
        await self._link_for(space_id).set_muted(space_id, speaker_id, muted)

    async def drop_speaker(self, space_id: str, speaker_id: str) -> None:
        await self._link_for(space_id).drop_speaker(space_id, speaker_id)

    def followed(self) -> list[str]:
        """The media nodes whose feeds come in now, by name."""
        return sorted(str(link.node) for link in self.links.values() if link._ready.is_set())

    async def status(self) -> dict[str, Any]:
        """Whether the media nodes answer: each one followed, by name; rooms are each
        media node's own to report."""
        nodes = self.followed()
        if not nodes:
            raise MediaUnavailable("no media node can be reached")
        return {"rooms": {}, "nodes": nodes}
