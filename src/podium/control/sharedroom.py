"""A space's room state as the fleet shares it, in Redis: one document, one version
sequence, and a channel that tells every node when it changed.

Any node may publish a new document (after a change it made: a hand raised, a speaker
muted, the space ended); once a second one node, the room's *leader* (a short lease in
Redis), rebuilds it from what is shared (database, audience sketches, reaction counts,
admission) and publishes it if it differs. A publication whose content is the one in
force changes nothing, so the version only moves when the room does; the same version
means the same document on every node, and the ``ETag`` and ``?after=N`` of a client that
moves between nodes keep their meaning. Every publication is announced on
:data:`CHANNEL` (``"<space> <version>"``), and each node wakes its long polls when it
reads the new document.

Reactions are counted per second in Redis too (every node adds what it took; the leader
reads the recent seconds), so the room state's counts are the fleet's.

Redis is a cache of the present: without it, each node builds its own document with its
own versions (never going back below the last shared one it saw), as a lone node does.
"""

from __future__ import annotations

import json
import math
from typing import Any

from redis.commands.core import Script

from podium.control.fleet import PREFIX, Fleet
from podium.control.reactions import ALLOWED, ReactionCounter, ReactionSnapshot

CHANNEL = f"{PREFIX}room-changed"
LEAD_S = 3.0
KEEP_S = 24 * 3600

# KEYS[1]: the room's hash. ARGV: digest, document (JSON, without the version), channel,
# space id, keep (ms), the lowest version to give (a node's own, after an outage).
# Returns the version in force after the call.
_PUBLISH = """
local state = redis.call('HMGET', KEYS[1], 'digest', 'version')
local version = tonumber(state[2]) or 0
if state[1] == ARGV[1] then
    return version
end
version = math.max(version + 1, tonumber(ARGV[6]))
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'document', ARGV[2], 'version', version)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. version)
return version
"""

# KEYS[1]: the lease; ARGV: this node, lease (ms). Returns 1 if this node holds it now.
_LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""


class SharedRoom:
    """The shared document of one space."""

    def __init__(self, fleet: Fleet, publish: Script, lead: Script, space_id: str) -> None:
        self._fleet = fleet
        self._publish = publish
        self._lead = lead
        self.space_id = space_id
        self._key = f"{PREFIX}room:{space_id}"

    def publish(self, digest: str, content: dict[str, Any], at_least: int) -> int | None:
        """Make ``content`` the room's document unless it is already; the version in force,
        or None if Redis cannot be reached."""
        document = json.dumps(content, sort_keys=True, ensure_ascii=False)
        args: list[str | int] = [digest, document, CHANNEL, self.space_id, KEEP_S * 1000, at_least]
        version = self._fleet.call(
            lambda client: self._publish(keys=[self._key], args=args, client=client)
        )
        return None if version is None else int(version)

    def read(self) -> tuple[int, str, dict[str, Any]] | None:
        """(version, digest, content) in force, or None (none yet, or no Redis)."""
        fields = self._fleet.call(
            lambda client: client.hmget(self._key, "version", "digest", "document")
        )
        if not fields or fields[0] is None or fields[2] is None:
            return None
        return int(fields[0]), str(fields[1]), json.loads(fields[2])

    def lead(self) -> bool:
        """Take or keep the lease of rebuilding this room; False if another node has it."""
        args: list[str | int] = [self._fleet.node_id, int(LEAD_S * 1000)]
        held = self._fleet.call(
            lambda client: self._lead(keys=[f"{self._key}:leader"], args=args, client=client)
        )
        # Without Redis every node builds its own.
        return held is None or int(held) == 1


class SharedReactions(ReactionCounter):
    """A space's reactions counted by the whole fleet: each node takes its listeners'
    reactions (and rate limits them) as a lone node does, and adds the counts to Redis
    every :meth:`flush`; :meth:`snapshot` reads the fleet's."""

    def __init__(self, fleet: Fleet, space_id: str) -> None:
        super().__init__()
        self._fleet = fleet
        self._key = f"{PREFIX}reactions:{space_id}:"
        self._pending: dict[int, dict[str, int]] = {}

    def add(self, listener_id: str, emoji: str, now: float) -> str:
        canonical = super().add(listener_id, emoji, now)
        counts = self._pending.setdefault(math.floor(self._now), {})
        counts[canonical] = counts.get(canonical, 0) + 1
        return canonical

    def flush(self) -> bool:
        """Add what was taken since the last flush to the fleet's counts."""
        if not self._pending:
            return True
        pending = self._pending
        ttl = self.history_seconds + 5

        def send(client: Any) -> bool:
            pipe = client.pipeline(transaction=False)
            for second, counts in pending.items():
                for emoji, n in counts.items():
                    pipe.hincrby(f"{self._key}s:{second}", emoji, n)
                    pipe.hincrby(f"{self._key}totals", emoji, n)
                pipe.expire(f"{self._key}s:{second}", ttl)
            pipe.expire(f"{self._key}totals", KEEP_S)
            pipe.execute()
            return True

        if self._fleet.call(send) is None:
            oldest = math.floor(self._now) - self.history_seconds
            self._pending = {s: c for s, c in pending.items() if s > oldest}
            return False
        self._pending = {}
        return True

    def snapshot(self, now: float) -> ReactionSnapshot:
        own = super().snapshot(now)
        if not self.flush():
            return own
        current = math.floor(self._tick(now))
        seconds = range(current - self.recent_seconds + 1, current + 1)

        def read(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for second in seconds:
                pipe.hgetall(f"{self._key}s:{second}")
            pipe.hgetall(f"{self._key}totals")
            result: list[Any] = pipe.execute()
            return result

        rows = self._fleet.call(read)
        if rows is None:
            return own
        recent = dict.fromkeys(ALLOWED, 0)
        for row in rows[:-1]:
            for emoji, n in row.items():
                if emoji in recent:
                    recent[emoji] += int(n)
        totals = dict.fromkeys(ALLOWED, 0)
        for emoji, n in rows[-1].items():
            if emoji in totals:
                totals[emoji] = int(n)
        return ReactionSnapshot(
            window_seconds=self.recent_seconds,
            recent=recent,
            totals=totals,
            total=sum(totals.values()),
        )


def scripts(fleet: Fleet) -> tuple[Script, Script]:
    """The publish and lead scripts, registered once per node."""
    return fleet.script(_PUBLISH), fleet.script(_LEAD)
