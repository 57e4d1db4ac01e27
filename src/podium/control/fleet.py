"""Shared ephemeral state of a fleet, in Redis: the node registry and fleet-wide limits.

Set ``redis_url`` and every node registers itself (a hash per node and a sorted set of
nodes by expiry, refreshed by a heartbeat: a node that stops beating drops out within
:data:`NODE_TTL_S`) and takes its rate-limit tokens from one bucket per key that all
nodes share (an atomic Lua script, timed by Redis's own clock so that nodes' clocks do
not matter).

Redis is a cache of the present, never the only copy of anything durable. When it cannot
be reached, each node falls back to its share of every limit (the limit divided by the
number of live nodes it last saw), says so (:attr:`Fleet.problem`, shown in ``/readyz``
and ``/metrics``), and tries Redis again after :data:`RETRY_S` (doubling, up to
:data:`RETRY_MAX_S`, while it stays away), recovering by itself.
Calls are short and bounded by a socket timeout; after a failure they are not tried at
all for a moment, so an outage does not stall the event loop.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from redis.commands.core import Script

from podium.control.ratelimit import TokenBuckets

PREFIX = "podium:"
NODE_TTL_S = 10.0
HEARTBEAT_S = 2.0
RETRY_S = 1.0
RETRY_MAX_S = 8.0
TIMEOUT_S = 0.25
SERVING = f"{PREFIX}serving-nodes"
# The nodes being drained (a hash: node → when it was asked), see Fleet.drain.
DRAINING = f"{PREFIX}draining"

# KEYS[1]: the bucket; ARGV: rate a second, burst, cost. Returns the seconds to wait (as
# a string: Lua numbers become integers on the way out), "0" when the tokens were taken.
_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then
    tokens = burst
else
    tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
end
local wait = 0
if tokens >= cost then
    tokens = tokens - cost
else
    wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate) * 1000) + 1000)
return tostring(wait)
"""


class RateLimiter(Protocol):
    """What a handler asks a limit: take ``cost`` for ``key``; 0.0, or seconds to wait."""

    def take(self, key: str, now: float, cost: float = 1.0) -> float: ...


@dataclass(frozen=True, slots=True)
class Node:
    """One node as the registry shows it."""

    id: str
    role: str
    url: str
    started_at: float
    seen_at: float
    load: dict[str, Any]


class Fleet:
    """This node's view of the fleet through one Redis."""

    def __init__(self, url: str, node_id: str, role: str, public_url: str, now: float) -> None:
        self.url = url
        self.node_id = node_id
        self.role = role
        self.public_url = public_url
        self.started_at = now
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            decode_responses=True,
        )
        self._bucket: Script = self._client.register_script(_BUCKET_SCRIPT)
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._failures = 0
        # Why Redis is not in use now (None: it is), and the live nodes that serve the
        # crowd (web and all, not media) last seen: each one's share of a limit.
        self.problem: str | None = None
        self.live_nodes = 1

    @property
    def available(self) -> bool:
        return self.problem is None

    def retry_now(self) -> None:
        """Try Redis on the next call rather than after :data:`RETRY_S`."""
        self._retry_at = 0.0

    def call(self, work: Any) -> Any:
        """Run ``work(client)``; on a Redis error, note it and return None."""
        if self.problem is not None and time.monotonic() < self._retry_at:
            return None
        try:
            result = work(self._client)
        except redis.RedisError as exc:
            with self._lock:
                self.problem = f"Redis unreachable ({exc.__class__.__name__}: {exc})"
                # Each failed try may have waited out a timeout on the event loop: back
                # off, up to RETRY_MAX_S, while Redis stays away.
                self._failures += 1
                delay = min(RETRY_MAX_S, RETRY_S * 2 ** (self._failures - 1))
                self._retry_at = time.monotonic() + delay
            return None
        self.problem = None
        self._failures = 0
        return result

    # -- the node registry -------------------------------------------------------------

    def heartbeat(self, now: float, load: dict[str, Any]) -> None:
        """Say this node is alive (with its load) and learn how many are."""
        record: dict[Any, str] = {
            "role": self.role,
            "url": self.public_url,
            "started_at": repr(self.started_at),
            "seen_at": repr(now),
            "load": json.dumps(load, sort_keys=True),
        }

        def beat(client: redis.Redis) -> int:
            pipe = client.pipeline()
            key = f"{PREFIX}node:{self.node_id}"
            pipe.hset(key, mapping=record)
            pipe.pexpire(key, int(NODE_TTL_S * 1000))
            pipe.zadd(f"{PREFIX}nodes", {self.node_id: now + NODE_TTL_S})
            pipe.zremrangebyscore(f"{PREFIX}nodes", "-inf", now)
            # The nodes that take the crowd's requests (not a media node): what a limit
            # is shared by when Redis is away.
            if self.role != "media":
                pipe.zadd(SERVING, {self.node_id: now + NODE_TTL_S})
            pipe.zremrangebyscore(SERVING, "-inf", now)
            pipe.zcard(SERVING)
            return int(pipe.execute()[-1])

        count = self.call(beat)
        if count is not None:
            self.live_nodes = max(1, count)

    def nodes(self, now: float) -> list[Node] | None:
        """The live nodes, or None if Redis cannot be reached."""

        def read(client: redis.Redis) -> list[Node]:
            ids = [_text(i) for i in client.zrangebyscore(f"{PREFIX}nodes", now, "+inf")]
            pipe = client.pipeline()
            for node_id in ids:
                pipe.hgetall(f"{PREFIX}node:{node_id}")
            found = []
            for node_id, fields in zip(ids, pipe.execute(), strict=True):
                if fields:
                    found.append(
                        Node(
                            id=node_id,
                            role=fields["role"],
                            url=fields["url"],
                            started_at=float(fields["started_at"]),
                            seen_at=float(fields["seen_at"]),
                            load=json.loads(fields["load"]),
                        )
                    )
            return sorted(found, key=lambda node: node.id)

        listed: list[Node] | None = self.call(read)
        return listed

    def leave(self) -> None:
        """Drop out of the registry at once (a clean shutdown), rather than by expiry."""

        def drop(client: redis.Redis) -> None:
            client.zrem(f"{PREFIX}nodes", self.node_id)
            client.zrem(SERVING, self.node_id)
            client.delete(f"{PREFIX}node:{self.node_id}")

        self.call(drop)

    # -- draining ----------------------------------------------------------------------

    def drain(self, node_id: str, now: float) -> bool:
        """Mark a node as being drained (it takes no more spaces and hands its own over);
        False if Redis cannot be reached."""
        return self.call(lambda client: client.hset(DRAINING, node_id, repr(now))) is not None

    def undrain(self, node_id: str) -> bool:
        """The node takes spaces again (a drain cancelled, or the node started anew)."""
        return self.call(lambda client: client.hdel(DRAINING, node_id)) is not None

    def draining(self) -> dict[str, float] | None:
        """The nodes being drained, with when each was asked to (Unix time); None if
        Redis cannot be reached."""
        fields = self.call(lambda client: client.hgetall(DRAINING))
        if fields is None:
            return None
        return {_text(node): float(at) for node, at in fields.items()}

    # -- limits ------------------------------------------------------------------------

    def take(self, name: str, key: str, rate: float, burst: float, cost: float) -> float | None:
        """Take from the fleet's bucket ``name``/``key``; None if Redis cannot be reached."""
        bucket = f"{PREFIX}limit:{name}:{key}"
        answer = self.call(lambda client: self._bucket(keys=[bucket], args=[rate, burst, cost]))
        return None if answer is None else float(answer)

    def script(self, text: str) -> Script:
        """A Lua script to run through :meth:`call` (sent once, then run by its hash)."""
        return self._client.register_script(text)

    def close(self) -> None:
        self._client.close()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedBuckets:
    """A token bucket per key that the whole fleet shares (``rate`` and ``burst`` are the
    fleet's), or, while Redis cannot be reached, this node's share of it."""

    def __init__(self, fleet: Fleet, name: str, rate: float, burst: float) -> None:
        self._fleet = fleet
        self.name = name
        self.rate = rate
        self.burst = burst
        self._share = 0
        self._local = TokenBuckets(rate, burst)

    def take(self, key: str, now: float, cost: float = 1.0) -> float:
        wait = self._fleet.take(self.name, key, self.rate, self.burst, cost)
        if wait is not None:
            return wait
        share = max(1, self._fleet.live_nodes)
        if share != self._share:
            self._share = share
            self._local = TokenBuckets(self.rate / share, max(1.0, self.burst / share))
        return self._local.take(key, now, cost)
