"""The media node's feed, passed on to web nodes: each one an origin for every live space.

A media node's web process reads its worker's feed (:mod:`podium.origin.feed`) into its
own origin, as on one machine, and passes every line on to the web nodes that follow it.
A web node that connects mid-space first gets what it needs to serve the program from
now: for each live program its start (with the first media sequence number it will be
sent) and its last :data:`BACKLOG_SEGMENTS` segments, with the recording's state; then
every event as it comes. Sequence numbers are the media node's, so a player (or an edge)
that switches web nodes finds the same playlist.

A follower that falls :data:`MAX_QUEUED` lines behind is cut off rather than let grow the
media node's memory; it reconnects and catches up like a new one.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from dataclasses import dataclass, field

from podium.origin import feed

BACKLOG_SEGMENTS = 6
MAX_QUEUED = 20_000


@dataclass(slots=True)
class _Backlog:
    began: feed.Began
    events: deque[tuple[int, bytes]] = field(default_factory=deque)  # (msn, line)
    starts: deque[int] = field(default_factory=deque)  # msns of the segments kept
    health: bytes | None = None


class Fanout:
    """Every line of the feed to every follower, and a catch-up for new ones."""

    def __init__(self, segments: int = BACKLOG_SEGMENTS) -> None:
        self._segments = segments
        self._programs: dict[str, _Backlog] = {}
        self._followers: set[asyncio.Queue[bytes | None]] = set()

    def publish(self, event: feed.Event, line: bytes) -> None:
        """Pass on one event (with its line, as the worker wrote it). Event loop only."""
        self._keep(event, line)
        for queue in list(self._followers):
            if queue.qsize() >= MAX_QUEUED:
                self._cut_off(queue)
            else:
                queue.put_nowait(line)

    def follow(self) -> tuple[list[bytes], asyncio.Queue[bytes | None]]:
        """The catch-up lines and a queue of every line after them (``None``: cut off).
        Nothing can come between the two: both are taken without yielding the loop."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._followers.add(queue)
        return self.catch_up(), queue

    def leave(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._followers.discard(queue)

    @property
    def followers(self) -> int:
        return len(self._followers)

    def catch_up(self) -> list[bytes]:
        lines: list[bytes] = []
        for backlog in self._programs.values():
            first = backlog.events[0][0] if backlog.events else backlog.began.first_msn
            began = dataclasses.replace(
                backlog.began, first_msn=first, resumed=False, seamless=False
            )
            lines.append(feed.render(began))
            lines.extend(line for _, line in backlog.events)
            if backlog.health is not None:
                lines.append(backlog.health)
        return lines

    def _keep(self, event: feed.Event, line: bytes) -> None:
        if isinstance(event, feed.Began):
            self._programs[event.space_id] = _Backlog(began=event)
            return
        backlog = self._programs.get(event.space_id)
        if backlog is None:
            return
        if isinstance(event, feed.Ended):
            del self._programs[event.space_id]  # followers serve it from the media node
        elif isinstance(event, feed.Health):
            backlog.health = line
        elif isinstance(event, feed.PartReady | feed.Gap):
            msn = event.part.msn if isinstance(event, feed.PartReady) else event.marker.msn
            starts_segment = isinstance(event, feed.Gap) or event.part.index == 0
            if starts_segment and (not backlog.starts or backlog.starts[-1] != msn):
                backlog.starts.append(msn)
            backlog.events.append((msn, line))
            while len(backlog.starts) > self._segments:
                backlog.starts.popleft()
            while backlog.events and backlog.starts and backlog.events[0][0] < backlog.starts[0]:
                backlog.events.popleft()

    def _cut_off(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._followers.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)
