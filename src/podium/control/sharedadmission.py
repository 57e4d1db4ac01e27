"""Admission to one space for the whole fleet: one capacity, one join rate, one waiting
room, in Redis.

The rules are :mod:`podium.control.admission`'s (read its docstring); what changes is
where the state lives. The waiting room is a take-a-number scheme, O(1) per join: each
arrival that must wait draws the next number; a *served* counter moves forward at the
admission rate while seats are free, and every number at or below it is granted. A
client's position is its number less the served counter, the same answer on every node,
and its estimate follows from the shared token bucket. Numbers are granted strictly in
order; one whose owner stopped asking for ``abandon_s`` is skipped when reached, costing
no token (each number's last check is kept in a sorted set for that).

Seats are counted from the fleet's audience itself: the script counts the listeners of
the audience window in the space's HyperLogLogs (:mod:`podium.control.sharedaudience`)
and adds each listener it admits to them in the same step, so a burst of joins through
several nodes cannot overshoot the capacity, and a node killed before it sent what it
heard has still counted everyone it let in. Those admitted within the window are also
kept exactly, and the larger of the two counts is used: a sketch's error (a burst of 200
counted as 199) cannot let in one too many. (Listeners in longer than the window are
counted by the sketches alone, within their 0.81 % standard error.) Grants not yet
collected hold a seat too.

Everything happens in one Lua script per call, timed by Redis's clock, so nodes' clocks
do not matter and no two nodes can grant one seat. Redis is a cache of the present: a
queue's state is rebuilt from nothing if it is lost (a queue token from before is then
worth a place at the back, as after a restart on one node). While Redis cannot be
reached, each node admits by itself with its share of the limits (see
:class:`SharedAdmission`).
"""

from __future__ import annotations

import os
import random
from typing import Any

from redis.commands.core import Script

from podium.control.admission import (
    MAX_RETRY_S,
    MIN_RETRY_S,
    Admitted,
    Capacity,
    Decision,
    Limits,
    Queued,
    Reason,
    Refused,
    SpaceAdmission,
)
from podium.control.fleet import PREFIX, Fleet
from podium.control.sharedaudience import WINDOW_S, audience_keys

# A queue nobody asked about for this long is forgotten by Redis.
KEEP_S = 6 * 3600

# KEYS: the state hash, grants not yet collected (zset number -> granted at), last check
# of each waiting number (zset number -> seen at), the pre-queue (set of ids), the numbers
# the pre-queue drew (hash id -> number), those admitted within the audience window (zset
# listener -> at); then the audience's HyperLogLogs: the bucket of now, the unique
# sketch, and the buckets the window covers.
# ARGV: op, entry, healthy, started, max listeners (-1: none), join rate (-1: none), claim
# grace, abandon, max queue, a fresh random id, keep (ms), the listener to seat if
# admitted, the bucket's time to live (s), the audience window (s), the node's clock.
# Returns {kind, entry, reason, position, queue length, wait} with wait "" when unknown
# and position -1 when there is none (the pre-queue); kind is admitted, queued, refused or
# capacity (then entry is "1" if a new arrival would be admitted now). One call grants or
# skips 10,000 numbers at most, a bound on the script's run time.
_SCRIPT = """
local H, G, S, P, PN, A = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local BUCKET, UNIQUE = KEYS[7], KEYS[8]
local op, entry = ARGV[1], ARGV[2]
local healthy = ARGV[3] == '1'
local started = ARGV[4] == '1'
local cap = tonumber(ARGV[5])
local rate = tonumber(ARGV[6])
local grace = tonumber(ARGV[7])
local abandon = tonumber(ARGV[8])
local max_queue = tonumber(ARGV[9])
local fresh = ARGV[10]
local keep = tonumber(ARGV[11])
local listener = ARGV[12]
local bucket_ttl = tonumber(ARGV[13])
local window = tonumber(ARGV[14])
-- The node's clock, as the audience's buckets are: the exact count keeps its window.
local heard_at = tonumber(ARGV[15])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', H, 'next', 'served', 'tokens', 'at', 'epoch')
local nxt = tonumber(state[1]) or 0
local served = tonumber(state[2]) or 0
local tokens = tonumber(state[3])
local epoch = state[5] or fresh
if rate > 0 then
    local burst = math.max(1, rate)
    if tokens == nil then
        tokens = burst
    else
        tokens = math.min(burst, tokens + math.max(0, now - tonumber(state[4])) * rate)
    end
else
    tokens = 0
end
redis.call('ZREMRANGEBYSCORE', G, '-inf', now - grace)
redis.call('ZREMRANGEBYSCORE', A, '-inf', heard_at - window)

local seated = nil
local function seats_free()
    if cap < 0 then return nil end
    if seated == nil then
        -- The sketches' count, or the exact count of those admitted within the window
        -- when that is more: a sketch may count a burst of 200 as 199.
        seated = math.max(redis.call('PFCOUNT', unpack(KEYS, 9)), redis.call('ZCARD', A))
    end
    return cap - seated - redis.call('ZCARD', G)
end

-- The admitted listener is in the audience from now on, for every node that counts.
local function seat()
    if listener ~= '' then
        redis.call('PFADD', BUCKET, listener)
        redis.call('EXPIRE', BUCKET, bucket_ttl)
        redis.call('PFADD', UNIQUE, listener)
        redis.call('ZADD', A, heard_at, listener)
    end
    seated = nil
end

local function can_admit()
    if not healthy then return false end
    local seats = seats_free()
    if seats ~= nil and seats <= 0 then return false end
    return rate < 0 or tokens >= 1
end

local function take()
    if rate > 0 then tokens = tokens - 1 end
end

local function save()
    redis.call('HSET', H, 'next', nxt, 'served', served, 'tokens', tostring(tokens),
        'at', tostring(now), 'epoch', epoch)
    for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], keep) end
end

local function start()
    while redis.call('SCARD', P) > 0 do
        for _, id in ipairs(redis.call('SPOP', P, 1000)) do
            nxt = nxt + 1
            redis.call('HSET', PN, id, nxt)
            redis.call('ZADD', S, now, nxt)
        end
    end
end

local function advance()
    local steps = 0
    while served < nxt and steps < 10000 and can_admit() do
        steps = steps + 1
        served = served + 1
        local seen = tonumber(redis.call('ZSCORE', S, served))
        redis.call('ZREM', S, served)
        if seen ~= nil and now - seen <= abandon then
            take()
            redis.call('ZADD', G, now, served)
        end
    end
end

local function estimate(position)
    if not healthy then return nil end
    local seats = seats_free()
    if seats ~= nil and position > seats then return nil end
    if rate < 0 then return 0 end
    return math.max(0, (position - tokens) / rate)
end

local function reason(position)
    if not healthy then return 'overload' end
    local seats = seats_free()
    if seats ~= nil and position > seats then return 'capacity' end
    return 'join_rate'
end

local function wait_text(wait)
    if wait == nil then return '' end
    return tostring(wait)
end

-- The answer to the holder of number n, or nil if n is no longer in the queue.
local function answer(n)
    if n <= served then
        if redis.call('ZREM', G, n) == 1 then
            seat()
            return {'admitted', 'n' .. epoch .. '-' .. n, '', 0, 0, ''}
        end
        return nil
    end
    redis.call('ZADD', S, now, n)
    local position = n - served
    return {'queued', 'n' .. epoch .. '-' .. n, reason(position), position, nxt - served,
        wait_text(estimate(position))}
end

local function arrive()
    if not started then
        redis.call('SADD', P, fresh)
        return {'queued', 'p' .. fresh, 'pre_start', -1, redis.call('SCARD', P), ''}
    end
    start()
    advance()
    if served == nxt and can_admit() then
        take()
        seat()
        return {'admitted', '', '', 0, 0, ''}
    end
    if nxt - served >= max_queue then
        return {'refused', '', 'queue_full', 0, nxt - served,
            wait_text(estimate(nxt - served + 1))}
    end
    nxt = nxt + 1
    redis.call('ZADD', S, now, nxt)
    advance()
    return answer(nxt)
end

local result
if op == 'capacity' then
    advance()
    local admitting = served == nxt and can_admit()
    local wait = 0
    if not admitting then wait = estimate(nxt - served + 1) end
    result = {'capacity', admitting and '1' or '0', '', 0,
        nxt - served + redis.call('SCARD', P), wait_text(wait)}
elseif op == 'poll' and string.sub(entry, 1, 1) == 'p' then
    local id = string.sub(entry, 2)
    if not started and redis.call('SISMEMBER', P, id) == 1 then
        result = {'queued', entry, 'pre_start', -1, redis.call('SCARD', P), ''}
    elseif started then
        start()
        local n = tonumber(redis.call('HGET', PN, id))
        if n ~= nil then
            redis.call('HDEL', PN, id)
            advance()
            result = answer(n)
        end
    end
elseif op == 'poll' then
    local number_epoch, number = string.match(entry, '^n([0-9a-f]+)-([0-9]+)$')
    if number_epoch == epoch and tonumber(number) <= nxt then
        if started then start() end
        advance()
        result = answer(tonumber(number))
    end
end
if result == nil then result = arrive() end
save()
return result
"""


class SharedAdmission:
    """The admission of one space across the fleet, with this node's health.

    Has :class:`~podium.control.admission.SpaceAdmission`'s calls. ``seated`` is only
    used while Redis cannot be reached (the script counts the fleet's audience itself),
    and Redis keeps the time; ``now`` names the audience's buckets. Between calls it
    remembers the last queue length it saw, for metrics.
    """

    def __init__(self, fleet: Fleet, script: Script, space_id: str, limits: Limits) -> None:
        self._fleet = fleet
        self._script = script
        self.limits = limits
        self.space_id = space_id
        self._keys = [
            f"{PREFIX}admission:{space_id}:{part}"
            for part in (
                "state",
                "granted",
                "seen",
                "prequeue",
                "prequeue-numbers",
                "admitted",
            )
        ]
        self._rng = random.Random()
        self._share = 0
        self._local = SpaceAdmission(limits)
        self._waiting = 0

    @property
    def fleet_wide(self) -> bool:
        return self._fleet.available

    # -- the calls -----------------------------------------------------------------------

    def arrive(
        self,
        now: float,
        seated: int,
        healthy: bool = True,
        started: bool = True,
        listener: str = "",
    ) -> Decision:
        """As :meth:`SpaceAdmission.arrive`; ``listener`` is counted in the audience at
        once if admitted."""
        answer = self._run("arrive", "", now, healthy, started, listener)
        if answer is None:
            return self._fallback().arrive(now, seated, healthy, started)
        return self._decision(answer)

    def poll(
        self,
        entry_id: str,
        now: float,
        seated: int,
        healthy: bool = True,
        started: bool = True,
        listener: str = "",
    ) -> Decision:
        answer = self._run("poll", entry_id, now, healthy, started, listener)
        if answer is None:
            return self._fallback().poll(entry_id, now, seated, healthy, started)
        return self._decision(answer)

    def capacity(self, now: float, seated: int, healthy: bool = True) -> Capacity:
        answer = self._run("capacity", "", now, healthy, False, "")
        if answer is None:
            return self._fallback().capacity(now, seated, healthy)
        _, admitting, _, _, length, wait = answer
        self._waiting = int(length)
        return Capacity(
            admitting=admitting == "1",
            queue_length=int(length),
            estimated_wait_s=float(wait) if wait != "" else None,
        )

    def start(self, now: float) -> None:
        """The pre-queue is shuffled in by the first call after the start."""

    def waiting_count(self) -> int:
        return self._waiting if self._fleet.available else self._local.waiting_count()

    # -- the machinery ------------------------------------------------------------------------

    def _run(
        self, op: str, entry: str, now: float, healthy: bool, started: bool, listener: str
    ) -> list[Any] | None:
        limits = self.limits
        bucket, unique, window, ttl = audience_keys(self.space_id, now)
        keys = [*self._keys, bucket, unique, *window]
        args: list[str | int] = [
            op,
            entry,
            int(healthy),
            int(started),
            -1 if limits.max_listeners is None else limits.max_listeners,
            -1 if limits.max_join_rate is None else repr(limits.max_join_rate),
            repr(limits.claim_grace_s),
            repr(limits.abandon_s),
            limits.max_queue,
            os.urandom(8).hex(),
            KEEP_S * 1000,
            listener,
            ttl,
            repr(WINDOW_S),
            repr(now),
        ]
        answer: list[Any] | None = self._fleet.call(
            lambda client: self._script(keys=keys, args=args, client=client)
        )
        return answer

    def _fallback(self) -> SpaceAdmission:
        """This node's share of the limits, while Redis cannot be reached."""
        share = max(1, self._fleet.live_nodes)
        if share != self._share:
            self._share = share
            limits = self.limits
            self._local = SpaceAdmission(
                Limits(
                    max_listeners=(
                        None
                        if limits.max_listeners is None
                        else max(1, limits.max_listeners // share)
                    ),
                    max_join_rate=(
                        None if limits.max_join_rate is None else limits.max_join_rate / share
                    ),
                    max_queue=limits.max_queue,
                    claim_grace_s=limits.claim_grace_s,
                    abandon_s=limits.abandon_s,
                ),
                self._rng,
            )
        return self._local

    def _decision(self, answer: list[Any]) -> Decision:
        kind, entry, reason, position, length, wait_text = answer
        wait = float(wait_text) if wait_text != "" else None
        if kind == "admitted":
            return Admitted(entry or None)
        if kind == "refused":
            return Refused(Reason(reason), MAX_RETRY_S if wait is None else max(1.0, wait))
        self._waiting = int(length)
        retry = MAX_RETRY_S if wait is None else wait + 0.05 + self._rng.uniform(0.0, 0.1)
        return Queued(
            entry_id=entry,
            reason=Reason(reason),
            position=None if int(position) < 0 else int(position),
            queue_length=int(length),
            estimated_wait_s=wait,
            retry_after_s=min(MAX_RETRY_S, max(MIN_RETRY_S, retry)),
        )


def admission_script(fleet: Fleet) -> Script:
    """The script every :class:`SharedAdmission` of ``fleet`` runs (registered once)."""
    return fleet.script(_SCRIPT)
