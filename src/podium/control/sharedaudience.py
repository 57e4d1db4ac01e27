"""A space's audience counted by the whole fleet, in Redis HyperLogLogs.

The definitions are :mod:`podium.control.audience`'s, and so are the windows: Redis holds
one HyperLogLog of every id heard in the space (unique) and one per ``step`` bucket
(concurrent is ``PFCOUNT`` over the buckets the window covers, which Redis answers as the
count of their union). A listener heard on node A and again on node B is one id in one
sketch: counted once. Redis's HyperLogLog has a relative standard error of 0.81 %, as
Podium's own sketches (``p`` = 14).

Ids heard are buffered and sent in one pipeline per read or per :data:`FLUSH_IDS` ids,
so a beacon costs no Redis round trip of its own. Joins and replay plays are fleet-wide
counters. Peak samples and the minute series are this node's view of the fleet's
figures (every node samples the same shared sketches).

While Redis cannot be reached the figures are this node's own (a local sketch fed with
everything this node hears, all along), and the snapshot says so (``fleet_wide`` false);
they are the fleet's again once Redis answers. What a node heard during the outage is
sent when it is back, so ids heard only then are not lost to unique.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from podium.control.audience import Audience, AudienceSnapshot, SketchAudience
from podium.control.fleet import PREFIX, Fleet

FLUSH_IDS = 500
WINDOW_S = 30.0
STEP_S = 5.0


def audience_keys(
    space_id: str, now: float, window: float = WINDOW_S, step: float = STEP_S
) -> tuple[str, str, list[str], int]:
    """The sketches of ``space_id`` at ``now``: the bucket an id heard now goes in, the
    unique sketch, the buckets whose union is the concurrent count, and a bucket's time to
    live (seconds). The fleet's admission seats listeners in them directly."""
    prefix = f"{PREFIX}audience:{space_id}:"
    low = math.floor((now - window) / step)
    high = math.ceil(now / step) - 1
    return (
        f"{prefix}b:{high}",
        prefix + "unique",
        [f"{prefix}b:{j}" for j in range(low, high + 1)],
        int(window + 2 * step) + 1,
    )


class SharedAudience(Audience):
    """The audience of ``space_id`` as every node of ``fleet`` hears it."""

    exact = False

    def __init__(
        self,
        fleet: Fleet,
        space_id: str,
        window: float = WINDOW_S,
        step: float = STEP_S,
        history_minutes: int = 24 * 60,
    ) -> None:
        super().__init__(window, step, history_minutes)
        self._fleet = fleet
        self._key = f"{PREFIX}audience:{space_id}:"
        self._local = SketchAudience(window, step, history_minutes)
        # bucket index -> ids heard in it, not yet sent; and counters not yet sent.
        self._pending: dict[int, set[str]] = {}
        self._pending_ids = 0
        self._pending_joins = 0
        self._pending_plays = 0
        self.fleet_wide = True

    # -- events: also kept locally, for when Redis cannot be reached -----------------------

    def _hear(self, listener_id: str, now: float, explicit: bool) -> bool:
        if explicit:
            self._local.join(listener_id, now)
            self._pending_joins += 1
        else:
            self._local.beacon(listener_id, now)
        self._pending.setdefault(math.ceil(now / self.step) - 1, set()).add(listener_id)
        self._pending_ids += 1
        if self._pending_ids >= FLUSH_IDS:
            self.flush()
        return explicit

    def replay_play(self, now: float) -> None:
        super().replay_play(now)
        self._local.replay_play(now)
        self._pending_plays += 1

    def reaction(self, now: float, count: int = 1) -> None:
        super().reaction(now, count)
        self._local.reaction(now, count)

    # -- Redis -----------------------------------------------------------------------------

    def flush(self) -> bool:
        """Send what was heard; return whether Redis has it all (else it is kept). The
        room ticker calls this every second, so other nodes see this one's listeners
        within about a second."""
        if not self._pending and not self._pending_joins and not self._pending_plays:
            return self._fleet.available or self._fleet.call(lambda c: c.ping()) is not None
        ttl = int(self.window + 2 * self.step) + 1

        def send(client: Any) -> bool:
            pipe = client.pipeline(transaction=False)
            every = set().union(*self._pending.values()) if self._pending else set()
            if every:
                pipe.pfadd(self._key + "unique", *every)
            for bucket, ids in self._pending.items():
                pipe.pfadd(f"{self._key}b:{bucket}", *ids)
                pipe.expire(f"{self._key}b:{bucket}", ttl)
            if self._pending_joins:
                pipe.incrby(self._key + "joins", self._pending_joins)
            if self._pending_plays:
                pipe.incrby(self._key + "replay_plays", self._pending_plays)
            pipe.execute()
            return True

        if self._fleet.call(send) is None:
            # Keep what is still needed: unique forever, buckets only while a window can
            # reach them, so an outage costs bounded memory.
            oldest = math.floor(((self._now or 0.0) - self.window) / self.step)
            self._pending = {j: ids for j, ids in self._pending.items() if j >= oldest}
            return False
        self._pending.clear()
        self._pending_ids = self._pending_joins = self._pending_plays = 0
        return True

    def _count_at(self, t: float) -> int:
        if not self.flush():
            self.fleet_wide = False
            return self._local.concurrent(t)
        low = math.floor((t - self.window) / self.step)
        high = math.ceil(t / self.step) - 1
        keys = [f"{self._key}b:{j}" for j in range(low, high + 1)]
        counted = self._fleet.call(lambda client: client.pfcount(*keys))
        if counted is None:
            self.fleet_wide = False
            return self._local.concurrent(t)
        self.fleet_wide = True
        return int(counted)

    def _unique_count(self) -> int:
        counted = (
            self._fleet.call(lambda client: client.pfcount(self._key + "unique"))
            if self.flush()
            else None
        )
        if counted is None:
            self.fleet_wide = False
            return self._local.unique()
        return int(counted)

    def _anyone_within(self, t: float) -> bool:
        # Another node may have heard someone: only Redis can say.
        return True

    def snapshot(self, now: float) -> AudienceSnapshot:
        own = super().snapshot(now)
        if not self.fleet_wide:
            return replace(own, joins=self._local.snapshot(now).joins)
        counters = self._fleet.call(
            lambda client: client.mget(self._key + "joins", self._key + "replay_plays")
        )
        if counters is None:
            return own
        joins, plays = (int(value or 0) for value in counters)
        return replace(own, joins=joins, replay_plays=plays)
