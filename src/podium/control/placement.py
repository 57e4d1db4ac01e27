"""Which media node hosts which live space: a choice by load, and a lease with a fencing token.

**The choice** (:func:`choose`, pure) puts a new room on the media node that would be
least loaded with it, load being the cores its rooms are expected to use (a room, plus
each speaker's decoding and mix-minus: :data:`ROOM_CORES`, :data:`SPEAKER_CORES`) or the
cores its worker was measured to use, whichever is more, over the cores it offers. Nodes
with more cores take proportionally more rooms, and a node whose rooms are busy takes the
next ones later.

**The lease** (:class:`Leases`, in Redis) says which node speaks for a space: a hash
``podium:lease:{space}`` with the node and a fencing token (a counter's next value, taken
when the lease is taken rather than renewed), expiring after :data:`LEASE_S` unless its
holder renews it (every :data:`RENEW_S`). A node may take a lease that nobody holds or
renew its own, never another's; a node that finds its lease taken stops its room at
once, so two nodes never both write a space's program. Each node's leased spaces are also
kept in a set, which is what placement counts (heartbeats come too late for a burst of
starts). Everything goes through :meth:`Fleet.call`: while Redis is away, nothing can be
taken or renewed, and answers are ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from podium.control.fleet import PREFIX, Fleet, Node

LEASE_S = 6.0
RENEW_S = 1.0
# What a room costs a media node, in cores (bench/mix_encode.py, bench/speaker_latency.py):
# mixing and encoding the program, and each speaker's decoding, jitter buffer and
# mix-minus encoding.
ROOM_CORES = 0.02
SPEAKER_CORES = 0.03
_TOKENS = f"{PREFIX}lease-tokens"

# KEYS: the lease, the holder's set of spaces, the token counter. ARGV: the node, the
# lease's time to live (ms), the space. Returns {1, node, token} when held by the node
# now (taken or renewed), {0, holder, token} when another node holds it.
_HOLD = """
local holder = redis.call('HGET', KEYS[1], 'node')
if holder and holder ~= ARGV[1] then
    return {0, holder, redis.call('HGET', KEYS[1], 'token')}
end
local token
if holder then
    token = redis.call('HGET', KEYS[1], 'token')
else
    token = tostring(redis.call('INCR', KEYS[3]))
    redis.call('HSET', KEYS[1], 'node', ARGV[1], 'token', token)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return {1, ARGV[1], token}
"""
# KEYS: the lease, the giver's set, the receiver's set, the token counter. ARGV: the
# giver, the receiver, the lease's time to live (ms), the space. Hands the lease over, with
# a new token, if the giver holds it; returns the token, or nil.
_GIVE = """
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] then
    return nil
end
local token = tostring(redis.call('INCR', KEYS[4]))
redis.call('HSET', KEYS[1], 'node', ARGV[2], 'token', token)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SREM', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[4])
return token
"""
# KEYS: the lease, the node's set. ARGV: the node, the space. Drops the lease if the node
# holds it.
_RELEASE = """
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a space's lease, with its fencing token; ``mine`` if the asker does."""

    space_id: str
    node: str
    token: int
    mine: bool


@dataclass(frozen=True, slots=True)
class Candidate:
    """A media node as placement sees it."""

    node: str
    rooms: int
    speakers: int = 0
    cores: float = 1.0
    cpu_cores: float = 0.0  # what its worker was last measured to use


def load(candidate: Candidate, extra_rooms: int = 0) -> float:
    """The share of its cores a node uses (with ``extra_rooms`` more rooms on it)."""
    expected = (candidate.rooms + extra_rooms) * ROOM_CORES + candidate.speakers * SPEAKER_CORES
    return max(expected, candidate.cpu_cores + extra_rooms * ROOM_CORES) / max(candidate.cores, 0.1)


def ranked(candidates: Iterable[Candidate]) -> list[str]:
    """The nodes, best first for one more room: least loaded with it, then by name."""
    return [c.node for c in sorted(candidates, key=lambda c: (load(c, 1), c.node))]


def choose(candidates: Iterable[Candidate]) -> str | None:
    """The node a new room goes to, or None if there is none."""
    order = ranked(candidates)
    return order[0] if order else None


def _key(space_id: str) -> str:
    return f"{PREFIX}lease:{space_id}"


def _held_by(node: str) -> str:
    return f"{PREFIX}leased:{node}"


class Leases:
    """The fleet's leases, as ``node`` takes, renews and gives them up."""

    def __init__(self, fleet: Fleet, node: str, ttl_s: float = LEASE_S) -> None:
        self._fleet = fleet
        self.node = node
        self._ttl_ms = int(ttl_s * 1000)
        self._hold = fleet.script(_HOLD)
        self._release = fleet.script(_RELEASE)
        self._give = fleet.script(_GIVE)
        # Spaces given up lately (monotonic time): a renewal that read the rooms just
        # before one ended must not take its lease again.
        self._released: dict[str, float] = {}

    def hold(self, space_id: str) -> Lease | None:
        """Take the space's lease, or renew it; None if Redis cannot be reached."""
        self._released.pop(space_id, None)
        keys = [_key(space_id), _held_by(self.node), _TOKENS]
        answer = self._fleet.call(
            lambda client: self._hold(keys=keys, args=[self.node, self._ttl_ms, space_id])
        )
        if answer is None:
            return None
        held, holder, token = answer
        return Lease(space_id, _text(holder), int(token), bool(held))

    def hold_all(self, space_ids: Iterable[str]) -> list[Lease] | None:
        """:meth:`hold` for each space in one round trip, and the node's set made exactly
        those spaces that it holds (None if Redis cannot be reached). Spaces released
        within a lease's time are left out."""
        now = time.monotonic()
        for space_id, at in list(self._released.items()):
            if now - at > self._ttl_ms / 1000:
                del self._released[space_id]
        wanted = [space_id for space_id in space_ids if space_id not in self._released]

        def renew(client: redis.Redis) -> list[Lease]:
            pipe = client.pipeline(transaction=False)
            pipe.delete(_held_by(self.node))
            for space_id in wanted:
                self._hold(
                    keys=[_key(space_id), _held_by(self.node), _TOKENS],
                    args=[self.node, self._ttl_ms, space_id],
                    client=pipe,
                )
            answers = pipe.execute()[1:]
            return [
                Lease(space_id, _text(holder), int(token), bool(held))
                for space_id, (held, holder, token) in zip(wanted, answers, strict=True)
            ]

        leases: list[Lease] | None = self._fleet.call(renew)
        return leases

    def give(self, space_id: str, node: str) -> Lease | None:
        """Hand the space's lease to ``node`` (a planned handover), if this node holds
        it: the lease that ``node`` holds now, or None."""
        keys = [_key(space_id), _held_by(self.node), _held_by(node), _TOKENS]
        token = self._fleet.call(
            lambda client: self._give(keys=keys, args=[self.node, node, self._ttl_ms, space_id])
        )
        if token is None:
            return None
        self._released[space_id] = time.monotonic()  # not this node's to renew now
        return Lease(space_id, node, int(token), mine=False)

    def reclaim(self, space_id: str, node: str) -> Lease | None:
        """Take back a lease handed to ``node`` that did not take the space on (it died, or
        refused), if ``node`` holds it still: the lease this node holds now, or None."""
        keys = [_key(space_id), _held_by(node), _held_by(self.node), _TOKENS]
        token = self._fleet.call(
            lambda client: self._give(keys=keys, args=[node, self.node, self._ttl_ms, space_id])
        )
        if token is None:
            return None
        self._released.pop(space_id, None)
        return Lease(space_id, self.node, int(token), mine=True)

    def release(self, space_id: str) -> None:
        self._released[space_id] = time.monotonic()
        keys = [_key(space_id), _held_by(self.node)]
        self._fleet.call(lambda client: self._release(keys=keys, args=[self.node, space_id]))


def holder(fleet: Fleet, space_id: str) -> Lease | None:
    """Who holds the space's lease now (None: nobody, or Redis cannot be reached)."""
    fields = fleet.call(lambda client: client.hgetall(_key(space_id)))
    if not fields:
        return None
    return Lease(space_id, _text(fields["node"]), int(fields["token"]), mine=False)


def leased(fleet: Fleet, node: str) -> list[str] | None:
    """The spaces ``node`` holds leases for (None if Redis cannot be reached)."""
    members = fleet.call(lambda client: client.smembers(_held_by(node)))
    return None if members is None else sorted(_text(m) for m in members)


def room_counts(fleet: Fleet, nodes: list[str]) -> dict[str, int] | None:
    """How many spaces each node holds leases for (None if Redis cannot be reached)."""

    def count(client: redis.Redis) -> dict[str, int]:
        pipe = client.pipeline(transaction=False)
        for node in nodes:
            pipe.scard(_held_by(node))
        return {node: int(n) for node, n in zip(nodes, pipe.execute(), strict=True)}

    counts: dict[str, int] | None = fleet.call(count)
    return counts


def candidates(fleet: Fleet, nodes: Iterable[Node]) -> list[Candidate]:
    """The media nodes among ``nodes`` as placement weighs them: the rooms each holds
    leases for (else says it runs), its speakers, the cores it offers and uses. A node
    being drained (:meth:`Fleet.draining`) is none: it takes no more spaces."""
    draining = fleet.draining() or {}
    media = [node for node in nodes if node.role == "media" and node.id not in draining]
    counts = room_counts(fleet, [node.id for node in media]) or {}
    return [
        Candidate(
            node=node.id,
            rooms=counts.get(node.id, len(node.load.get("media_rooms") or [])),
            speakers=int(node.load.get("speakers", 0)),
            cores=float(node.load.get("cores", 1.0)),
            cpu_cores=float(node.load.get("worker_cpu", 0.0)),
        )
        for node in media
    ]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
