"""The room state document: what every listener polls, built once per change.

One JSON object per space, with a version. It is rebuilt at most about once a second (on
a ticker) or at once after a moderation action, and served as a cacheable GET with an
ETag; ``?after=N`` holds the request until the version passes N (a long poll), so clients
wait for the next version instead of hammering, and an edge cache coalesces them all into
one origin request per version: the cost is the same at 10 or 10 million listeners.

Audience numbers and reactions live here too, in memory, fed by beacons and reactions
that carry listener tickets (no database write per listener).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio

from podium import clock
from podium.control.audience import Audience, ExactAudience, SketchAudience
from podium.control.lifecycle import Space, SpaceStatus
from podium.control.reactions import ReactionCounter
from podium.control.sharedaudience import SharedAudience
from podium.control.sharedroom import CHANNEL, SharedReactions, SharedRoom, scripts
from podium.control.stage import Stage
from podium.errors import StorageError
from podium.origin.program import Program
from podium.web.context import Context

log = logging.getLogger("podium.room")

# Minutes before a scheduled start from which listeners see "starting" (soon), not silence.
STARTING_SOON_S = 10 * 60
LONG_POLL_S = 20.0
REFRESH_S = 1.0


@dataclass(slots=True)
class LiveRoom:
    audience: Audience
    reactions: ReactionCounter = field(default_factory=ReactionCounter)
    document: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    version: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_read: float = 0.0
    built_at: float = 0.0
    # In a fleet, the document every node shares (None: this node's own).
    shared: SharedRoom | None = None


class RoomHub:
    """Every room the web process is serving state for. Mutated from the event loop only."""

    def __init__(self, context: Context, exact_audience: bool) -> None:
        self._context = context
        self._exact = exact_audience
        self._rooms: dict[str, LiveRoom] = {}
        self._scripts = scripts(context.fleet) if context.fleet is not None else None

    def _audience(self, space_id: str) -> Audience:
        """In a fleet, the audience every node counts together; else this node's own."""
        if self._context.fleet is not None:
            return SharedAudience(self._context.fleet, space_id)
        return ExactAudience() if self._exact else SketchAudience()

    def room(self, space_id: str) -> LiveRoom:
        room = self._rooms.get(space_id)
        if room is None:
            fleet = self._context.fleet
            if fleet is not None and self._scripts is not None:
                room = LiveRoom(
                    audience=self._audience(space_id),
                    reactions=SharedReactions(fleet, space_id),
                    shared=SharedRoom(fleet, *self._scripts, space_id),
                )
            else:
                room = LiveRoom(audience=self._audience(space_id))
            self._rooms[space_id] = room
        return room

    def rooms(self) -> list[str]:
        """The spaces this node holds a room (audience, reactions, state) for."""
        return list(self._rooms)

    def state(self, space: Space) -> LiveRoom:
        """The room with a document no older than the last change or refresh."""
        room = self.room(space.id)
        room.last_read = clock.now()
        if room.last_read - room.built_at >= REFRESH_S:
            try:
                self._update(space)
            except StorageError:
                if not room.document:
                    raise
                # The database cannot be reached: the last document stays true of the
                # stage (nobody can change it meanwhile) and its audience numbers.
        return room

    def _update(self, space: Space) -> None:
        """Bring the document up to date: rebuild it on a node of its own or on the
        room's leader; elsewhere in a fleet, take the one the leader published."""
        room = self.room(space.id)
        if room.shared is not None and not room.shared.lead():
            room.built_at = clock.now()
            if self._pull(room):
                return
        self.refresh(space)

    def refresh(self, space: Space) -> None:
        """Rebuild the document (and publish it to the fleet); bump the version and wake
        long polls if it changed. Called after every change this node makes."""
        room = self.room(space.id)
        room.built_at = clock.now()
        content = build_document(self._context, space, room, room.built_at)
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        if digest == room.digest:
            return
        version = room.version + 1
        if room.shared is not None:
            shared = room.shared.publish(digest, content, at_least=version)
            version = version if shared is None else shared
        self._adopt(room, version, digest, content)

    def _pull(self, room: LiveRoom) -> bool:
        """Take the fleet's document if it is newer; False if there is none to take."""
        assert room.shared is not None
        found = room.shared.read()
        if found is None:
            return False
        version, digest, content = found
        if version > room.version:
            self._adopt(room, version, digest, content)
        return True

    @staticmethod
    def _adopt(room: LiveRoom, version: int, digest: str, content: dict[str, Any]) -> None:
        if version <= room.version:
            return
        room.digest = digest
        room.version = version
        room.document = {"version": version, **content}
        room.changed.set()
        room.changed = asyncio.Event()

    async def follow_fleet(self, url: str) -> None:
        """Hear of every room change another node publishes (Redis pub/sub) and wake the
        long polls waiting here, for as long as this node runs."""
        while True:
            client = redis.asyncio.Redis.from_url(
                url, decode_responses=True, socket_connect_timeout=1.0
            )
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._heard(str(message["data"]))
            except (redis.RedisError, OSError) as exc:
                log.debug("room_changes_unheard", extra={"fields": {"error": repr(exc)}})
            finally:
                await client.aclose()
            await asyncio.sleep(1.0)  # Redis is away: the ticker keeps rooms fresh

    def _heard(self, message: str) -> None:
        space_id, _, version = message.partition(" ")
        room = self._rooms.get(space_id)
        if room is None or room.shared is None or not version.isdigit():
            return
        if int(version) > room.version:
            # The change may be the space's own (it ended, say): read it afresh next.
            self._context.spaces.forget(space_id)
            self._pull(room)

    async def wait_after(self, space: Space, version: int, within: float) -> LiveRoom:
        """The room once its version passes ``version`` or ``within`` seconds pass."""
        room = self.state(space)
        if room.version <= version:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(room.changed.wait(), within)
        return room

    async def run(self) -> None:
        """Refresh the rooms people are watching, about once a second."""
        while True:
            await asyncio.sleep(REFRESH_S)
            now = clock.now()
            for space_id, room in list(self._rooms.items()):
                if isinstance(room.audience, SharedAudience):
                    room.audience.flush()
                if isinstance(room.reactions, SharedReactions):
                    room.reactions.flush()
                if now - room.last_read > 10 * LONG_POLL_S:
                    continue  # nobody is watching; the next read rebuilds it
                try:
                    self._update(self._context.spaces.get_cached(space_id, now))
                except StorageError as exc:
                    log.warning(
                        "room_state_stale",
                        extra={"fields": {"space": space_id, "error": exc.detail}},
                    )
                except Exception:
                    # One bad room must not stop the others' state.
                    log.exception("room_state_failed", extra={"fields": {"space": space_id}})


def person_of_user(user_id: str) -> str:
    return f"u:{user_id}"


def build_document(context: Context, space: Space, room: LiveRoom, now: float) -> dict[str, Any]:
    """The room state without its version (the hub adds it)."""
    base = context.settings.base_url
    host = context.accounts.get_user(space.host_id)
    context.rooms.ensure(space.id, person_of_user(host.id), host.display_name)
    stage: Stage = context.rooms.stage(space.id)
    program = (
        context.origin.program(space.id)
        if space.status in (SpaceStatus.LIVE, SpaceStatus.ENDED)
        else None
    )
    talking = set(program.talking) if program is not None else set()
    audience = room.audience.snapshot(now)
    links: dict[str, str] = {
        "page": f"{base}/s/{space.id}",
        "playlist": f"{base}/hls/{space.id}/index.m3u8",
        "media_playlist": f"{base}/hls/{space.id}/live.m3u8",
        "calendar": f"{base}/api/v1/spaces/{space.id}/calendar.ics",
    }
    if space.status is SpaceStatus.ENDED:
        links["replay"] = f"{base}/hls/{space.id}/replay.m4a"
    return {
        "space_id": space.id,
        "title": space.title,
        "description": space.description,
        "status": _status(space, now),
        "scheduled_start": clock.rfc3339(space.scheduled_start),
        "started_at": clock.rfc3339(space.started_at),
        "ended_at": clock.rfc3339(space.ended_at),
        "host": {"handle": host.handle, "display_name": host.display_name},
        "stage": [
            {
                "person": seat.person,
                "name": seat.name,
                "role": seat.role.value,
                "muted": seat.muted,
                "talking": seat.person in talking and not seat.muted,
            }
            for seat in stage.seats
        ],
        "hands": {"count": len(stage.hands)},
        "reactions": room.reactions.snapshot(now),
        "audience": {
            "concurrent": audience.concurrent,
            "peak": audience.peak,
            "unique": audience.unique,
            "replay_plays": audience.replay_plays,
            "exact": audience.exact,
        },
        "capacity": _capacity(context, space, room, now),
        "recording": "off" if program is None else program.recording,
        "interruption": _interruption(program),
        "links": links,
    }


def _interruption(program: Program | None) -> dict[str, Any] | None:
    """The last span the program lost: when it came back, how long, and whether its
    media moved to another server to come back."""
    if program is None or program.interruption is None:
        return None
    gap = program.interruption
    return {"resumed_at": clock.rfc3339(gap.at), "lost_s": gap.lost_s, "moved": gap.moved}


def _capacity(context: Context, space: Space, room: LiveRoom, now: float) -> dict[str, Any]:
    gate = context.gate
    seated = gate.seated(space.id, now, room.audience.concurrent)
    capacity = gate.space(space.id).capacity(now, seated, gate.healthy)
    limits = gate.limits
    return {
        "admitting": capacity.admitting and space.status is SpaceStatus.LIVE,
        "queue_length": capacity.queue_length,
        "listeners": seated,
        "max_listeners": limits.max_listeners,
        "max_join_rate": limits.max_join_rate,
        "estimated_wait_s": (
            None if capacity.estimated_wait_s is None else round(capacity.estimated_wait_s, 1)
        ),
        "proof_of_work": gate.pow_required(now),
    }


def _status(space: Space, now: float) -> str:
    if space.status is SpaceStatus.SCHEDULED and (
        space.scheduled_start is not None and space.scheduled_start - now <= STARTING_SOON_S
    ):
        return "starting"
    return space.status.value
