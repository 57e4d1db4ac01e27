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

from podium import clock
from podium.control.audience import Audience, ExactAudience, SketchAudience
from podium.control.lifecycle import Space, SpaceStatus
from podium.control.reactions import ReactionCounter
from podium.control.sharedaudience import SharedAudience
from podium.control.stage import Stage
from podium.errors import StorageError
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


class RoomHub:
    """Every room the web process is serving state for. Mutated from the event loop only."""

    def __init__(self, context: Context, exact_audience: bool) -> None:
        self._context = context
        self._exact = exact_audience
        self._rooms: dict[str, LiveRoom] = {}

    def _audience(self, space_id: str) -> Audience:
        """In a fleet, the audience every node counts together; else this node's own."""
        if self._context.fleet is not None:
            return SharedAudience(self._context.fleet, space_id)
        return ExactAudience() if self._exact else SketchAudience()

    def room(self, space_id: str) -> LiveRoom:
        room = self._rooms.get(space_id)
        if room is None:
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
                self.refresh(space)
            except StorageError:
                if not room.document:
                    raise
                # The database cannot be reached: the last document stays true of the
                # stage (nobody can change it meanwhile) and its audience numbers.
        return room

    def refresh(self, space: Space) -> None:
        """Rebuild the document; bump the version (and wake long polls) if it changed."""
        room = self.room(space.id)
        room.built_at = clock.now()
        content = build_document(self._context, space, room, room.built_at)
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        if digest == room.digest:
            return
        room.digest = digest
        room.version += 1
        room.document = {"version": room.version, **content}
        room.changed.set()
        room.changed = asyncio.Event()

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
                if now - room.last_read > 10 * LONG_POLL_S:
                    continue  # nobody is watching; the next read rebuilds it
                try:
                    self.refresh(self._context.spaces.get_cached(space_id, now))
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
        "links": links,
    }


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
