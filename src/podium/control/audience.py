"""Audience numbers from listener beacons: concurrent, peak, unique, joins, replay plays.

Numbers are true (DESIGN.md, principle 6): each figure below is defined, and the one called
"concurrent" is never a cumulative count. A listener proves it is still listening with a
small beacon (about every 15 s) that carries its ticket; the shell verifies the ticket
(:mod:`podium.control.tickets`), rate limits it (:class:`BeaconLimiter`) and then calls
:meth:`Audience.beacon` with the ticket's listener id.

Definitions, for one space, with ``W`` the window (30 s) and ``S`` the sampling step (5 s):

concurrent at t
    the number of distinct listener ids heard (beacon or join) in ``(t - W, t]``. With a
    15 s beacon a listening client is heard at least twice per window, so one lost beacon
    does not make it vanish; a client that stops is gone at most ``W`` after its last one.
peak
    the largest concurrent value ever *sampled*, with its time. Samples are taken at every
    multiple of ``S`` on the Unix clock (so at every minute boundary too), as time passes,
    and at every read of :meth:`Audience.concurrent` / :meth:`Audience.snapshot`; reads
    count so that no figure ever shown exceeds the peak shown beside it. Between samples a
    crowd arriving and leaving within ``S`` could be missed; at ``S`` = 5 s and ``W`` = 30 s
    any listener present for 5 s or more falls on a sample.
unique
    the number of distinct listener ids ever heard in the space.
joins
    :class:`ExactAudience`: the first sign (join event or beacon) of an id never seen
    before. :class:`SketchAudience`: every explicit join event (a sketch cannot tell a first
    beacon from a later one). The two agree whenever each listener's first sign is a join
    event with a fresh id, which is what the join endpoint does: it mints the id.
replay plays
    explicit events, one per start of the replay.
minute series
    one :class:`MinuteStats` row per clock minute ``(start, start + 60]``: joins and
    reactions whose events fell in it, the concurrent value sampled at ``start + 60``, and
    the largest concurrent sampled in it (grid samples and reads, including that end one).

Every interval is open on the left and closed on the right, like the window, so an event
stamped exactly on a boundary is counted in the sample, bucket and minute that end there.

Two implementations share these definitions. :class:`ExactAudience` keeps sets and is right
to the listener; its memory grows with the audience (an id per present and per unique
listener). :class:`SketchAudience` keeps HyperLogLog sketches (``p`` = 14, 16 KiB each) and
its memory is fixed whatever the crowd: one sketch for unique and ``W/S + 1`` bucket sketches
for concurrency (8 sketches, 128 KiB at the defaults), plus the bounded minute series. Its
error is that of HyperLogLog: relative standard error ``1.04 / sqrt(2**p)``, 0.81 % at
``p`` = 14, for unique and for concurrent alike (a union of bucket sketches is itself a
sketch of the union); about 99.7 % of estimates fall within three standard errors
(2.4 %). Below ``2.5 * 2**p`` (~41 000) ids the estimator is linear counting, whose error is
smaller still. Its concurrent window is whole buckets: exactly ``(t - W, t]`` at multiples
of ``S`` (so every peak sample on the grid) and up to ``S`` longer in between.

Time goes one way: an event stamped earlier than one already seen is counted at the later
time (callers feed events in arrival order; nodes' clocks differ by milliseconds).
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from podium.control.ratelimit import TokenBuckets
from podium.errors import RateLimited

MINUTE = 60


def hash64(item: str) -> int:
    """A 64-bit hash of ``item``, the same on every node (so sketches merge across nodes).

    Unkeyed, because listener ids are minted at random by the server, not chosen by
    clients: no one can aim ids at a register to skew a sketch.
    """
    return int.from_bytes(hashlib.blake2b(item.encode(), digest_size=8).digest(), "big")


# 2**-k for every register value a 64-bit hash can produce.
_NEG_POW2 = np.ldexp(1.0, -np.arange(66, dtype=np.int32))


class HyperLogLog:
    """A HyperLogLog cardinality sketch (Flajolet et al., 2007) with ``2**p`` byte registers.

    Adding the same item again changes nothing, which is why a flood of beacons from one
    listener cannot inflate a count. Relative standard error is ``1.04 / sqrt(2**p)``; small
    counts use linear counting (the paper's small-range correction). A 64-bit hash makes the
    large-range correction unnecessary.
    """

    __slots__ = ("_registers", "m", "p")

    def __init__(self, p: int = 14) -> None:
        if not 4 <= p <= 18:
            raise ValueError("precision p must be between 4 and 18")
        self.p = p
        self.m = 1 << p
        self._registers = bytearray(self.m)

    @property
    def standard_error(self) -> float:
        return 1.04 / math.sqrt(self.m)

    def add(self, item: str) -> None:
        self.add_hash(hash64(item))

    def add_hash(self, h: int) -> None:
        """Add an item by its 64-bit hash: the top ``p`` bits pick a register, which keeps
        the largest position of the first 1-bit seen in the other ``64 - p`` bits."""
        tail_bits = 64 - self.p
        index = h >> tail_bits
        rank = tail_bits - (h & ((1 << tail_bits) - 1)).bit_length() + 1
        if rank > self._registers[index]:
            self._registers[index] = rank

    def update(self, other: HyperLogLog) -> None:
        """Make this sketch the union of itself and ``other`` (same ``p``)."""
        if other.p != self.p:
            raise ValueError("only sketches of the same precision merge")
        np.maximum(self._array(), other._array(), out=self._array())

    def estimate(self) -> float:
        return _estimate(self._array())

    def registers(self) -> int:
        """How many registers this sketch holds: its memory in bytes, fixed at ``2**p``."""
        return len(self._registers)

    def _array(self) -> npt.NDArray[np.uint8]:
        return np.frombuffer(self._registers, dtype=np.uint8)

    @staticmethod
    def union_estimate(sketches: Iterable[HyperLogLog]) -> float:
        """The estimated cardinality of the union of ``sketches``, leaving them unchanged."""
        arrays = [s._array() for s in sketches]
        if not arrays:
            return 0.0
        return _estimate(np.maximum.reduce(arrays) if len(arrays) > 1 else arrays[0])


def _estimate(registers: npt.NDArray[np.uint8]) -> float:
    m = len(registers)
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / float(_NEG_POW2[registers].sum())
    if raw <= 2.5 * m:
        zeros = int(np.count_nonzero(registers == 0))
        if zeros:
            return m * math.log(m / zeros)
    return raw


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """One clock minute ``(start, start + 60]`` of a space (see the module docstring)."""

    start: float
    joins: int
    reactions: int
    concurrent_end: int
    concurrent_max: int


@dataclass(frozen=True, slots=True)
class AudienceSnapshot:
    """The audience figures at ``at``; ``exact`` is False for sketch estimates."""

    at: float
    concurrent: int
    peak: int
    peak_at: float | None
    unique: int
    joins: int
    replay_plays: int
    exact: bool


class Audience(ABC):
    """The audience of one space. Feed it events in arrival order; read figures any time.

    ``window`` is W and ``step`` is S of the module docstring; ``history_minutes`` bounds
    the minute series (a day by default). Reads advance time too and are peak samples.
    """

    exact: bool

    def __init__(
        self, window: float = 30.0, step: float = 5.0, history_minutes: int = 24 * 60
    ) -> None:
        if step <= 0 or window < step or history_minutes < 1:
            raise ValueError("need 0 < step <= window and history_minutes >= 1")
        if not float(window / step).is_integer() or not float(MINUTE / step).is_integer():
            raise ValueError("step must divide both the window and a minute")
        self.window = window
        self.step = step
        self._steps_per_minute = round(MINUTE / step)
        self._now: float | None = None
        self._next_k = 0  # the next sample is at _next_k * step
        self._last_heard = -math.inf
        self._peak = 0
        self._peak_at: float | None = None
        self._joins = 0
        self._replay_plays = 0
        self._minute_start = 0.0
        self._minute_joins = 0
        self._minute_reactions = 0
        self._minute_max = 0
        self._series: deque[MinuteStats] = deque(maxlen=history_minutes)

    # -- events --------------------------------------------------------------------------

    def join(self, listener_id: str, now: float) -> None:
        """An explicit join (a ticket was issued): the listener is heard at ``now``."""
        self._hear_at(listener_id, now, explicit=True)

    def beacon(self, listener_id: str, now: float) -> None:
        """A beacon from a verified, rate-limited ticket: the listener is heard at ``now``.

        Idempotent within an instant: a flood from one id adds nothing to any count.
        """
        self._hear_at(listener_id, now, explicit=False)

    def reaction(self, now: float, count: int = 1) -> None:
        """``count`` accepted reactions at ``now``, for the minute series."""
        self._advance(now)
        self._minute_reactions += count

    def replay_play(self, now: float) -> None:
        """One start of the replay."""
        self._advance(now)
        self._replay_plays += 1

    # -- reads ---------------------------------------------------------------------------

    def concurrent(self, now: float) -> int:
        """Distinct listeners heard in ``(now - window, now]``; also a peak sample."""
        now = self._advance(now)
        count = self._count_at(now) if self._anyone_within(now) else 0
        self._sample(now, count)
        return count

    def unique(self) -> int:
        """Distinct listener ids ever heard in this space."""
        return self._unique_count()

    def snapshot(self, now: float) -> AudienceSnapshot:
        """Every headline figure at ``now`` (taking a peak sample)."""
        concurrent = self.concurrent(now)
        return AudienceSnapshot(
            at=self._now if self._now is not None else now,
            concurrent=concurrent,
            peak=self._peak,
            peak_at=self._peak_at,
            unique=self._unique_count(),
            joins=self._joins,
            replay_plays=self._replay_plays,
            exact=self.exact,
        )

    def series(self, now: float) -> tuple[MinuteStats, ...]:
        """The minutes that ended before ``now``, oldest first (at most ``history_minutes``)."""
        self._advance(now)
        return tuple(self._series)

    # -- implementation hooks ------------------------------------------------------------

    @abstractmethod
    def _hear(self, listener_id: str, now: float, explicit: bool) -> bool:
        """Record that ``listener_id`` was heard at ``now``; return True if it is a join."""

    @abstractmethod
    def _count_at(self, t: float) -> int:
        """Concurrent at ``t``, given every event so far was at or before ``t``."""

    @abstractmethod
    def _unique_count(self) -> int: ...

    # -- shared bookkeeping --------------------------------------------------------------

    def _hear_at(self, listener_id: str, now: float, explicit: bool) -> None:
        now = self._advance(now)
        self._last_heard = now
        if self._hear(listener_id, now, explicit):
            self._joins += 1
            self._minute_joins += 1

    def _anyone_within(self, t: float) -> bool:
        # Past W + S of silence every implementation counts zero; skipping the computation
        # keeps a long idle stretch cheap to walk through.
        return t - self._last_heard < self.window + self.step

    def _advance(self, now: float) -> float:
        """Move time to ``now`` (never backwards), taking every grid sample before it."""
        if self._now is None:
            self._next_k = math.ceil(now / self.step)
            self._minute_start = math.ceil(now / MINUTE) * MINUTE - MINUTE
            self._now = now
            return now
        now = max(now, self._now)
        # Strictly before ``now``: events stamped exactly at a sample time belong in it.
        while self._next_k * self.step < now:
            t = self._next_k * self.step
            count = self._count_at(t) if self._anyone_within(t) else 0
            self._sample(t, count)
            if self._next_k % self._steps_per_minute == 0:
                self._close_minute(t, count)
            self._next_k += 1
        self._now = now
        return now

    def _sample(self, t: float, count: int) -> None:
        if count > self._peak:
            self._peak, self._peak_at = count, t
        self._minute_max = max(self._minute_max, count)

    def _close_minute(self, end: float, count: int) -> None:
        # ``count`` was sampled at ``end``: it is this minute's end value and, through
        # _sample, already in its max.
        self._series.append(
            MinuteStats(
                start=self._minute_start,
                joins=self._minute_joins,
                reactions=self._minute_reactions,
                concurrent_end=count,
                concurrent_max=self._minute_max,
            )
        )
        self._minute_start = end
        self._minute_joins = self._minute_reactions = self._minute_max = 0


class ExactAudience(Audience):
    """Exact figures from an ordered dict of present listeners and a set of every id.

    Memory is one entry per listener present in the window plus one per unique id: right
    for tests and for spaces up to some hundred thousand listeners.
    """

    exact = True

    def __init__(
        self, window: float = 30.0, step: float = 5.0, history_minutes: int = 24 * 60
    ) -> None:
        super().__init__(window, step, history_minutes)
        self._present: OrderedDict[str, float] = OrderedDict()  # id -> last heard, oldest first
        self._seen: set[str] = set()

    def _hear(self, listener_id: str, now: float, explicit: bool) -> bool:
        first = listener_id not in self._seen
        if first:
            self._seen.add(listener_id)
        self._present[listener_id] = now
        self._present.move_to_end(listener_id)
        return first

    def _count_at(self, t: float) -> int:
        # Time only moves forward, so whoever has fallen out of the window stays out.
        horizon = t - self.window
        while self._present:
            oldest = next(iter(self._present.values()))
            if oldest > horizon:
                break
            self._present.popitem(last=False)
        return len(self._present)

    def _unique_count(self) -> int:
        return len(self._seen)


class SketchAudience(Audience):
    """Approximate figures in fixed memory: HyperLogLog sketches of precision ``p``.

    Unique is one sketch of every id. Concurrent is the union of the bucket sketches that
    overlap the window; bucket ``j`` holds the ids heard in ``(j * step, (j + 1) * step]``
    and is dropped once no window can reach it.
    """

    exact = False

    def __init__(
        self,
        window: float = 30.0,
        step: float = 5.0,
        history_minutes: int = 24 * 60,
        p: int = 14,
    ) -> None:
        super().__init__(window, step, history_minutes)
        self.p = p
        self._unique = HyperLogLog(p)
        self._buckets: dict[int, HyperLogLog] = {}

    @property
    def standard_error(self) -> float:
        """Relative standard error of unique and concurrent: 1.04 / sqrt(2**p)."""
        return self._unique.standard_error

    def registers(self) -> int:
        """Registers (bytes) held now: at most ``(window / step + 2) * 2**p``, any crowd."""
        return self._unique.registers() + sum(b.registers() for b in self._buckets.values())

    def _hear(self, listener_id: str, now: float, explicit: bool) -> bool:
        h = hash64(listener_id)
        self._unique.add_hash(h)
        j = math.ceil(now / self.step) - 1
        bucket = self._buckets.get(j)
        if bucket is None:
            bucket = self._buckets[j] = HyperLogLog(self.p)
            oldest_needed = math.floor((now - self.window) / self.step)
            for stale in [k for k in self._buckets if k < oldest_needed]:
                del self._buckets[stale]
        bucket.add_hash(h)
        return explicit

    def _count_at(self, t: float) -> int:
        low = math.floor((t - self.window) / self.step)
        high = math.ceil(t / self.step) - 1
        covering = [b for j, b in self._buckets.items() if low <= j <= high]
        return round(HyperLogLog.union_estimate(covering))

    def _unique_count(self) -> int:
        return round(self._unique.estimate())


class BeaconLimiter:
    """Per-listener beacon rate limit, applied by the caller before :meth:`Audience.beacon`.

    A client beacons every ~15 s; the default allows one per 5 s on average with a burst of
    4 (a reconnect, a retry), three times what an honest client needs. Refusing a flood here
    saves the work; the counts would not move anyway, as an id counts once. At most
    ``max_keys`` listeners are tracked (least recently heard forgotten first); a forgotten
    one starts with a full bucket.
    """

    def __init__(self, rate: float = 0.2, burst: float = 4, max_keys: int = 100_000) -> None:
        self._buckets = TokenBuckets(rate=rate, burst=burst, max_keys=max_keys)

    def check(self, listener_id: str, now: float) -> None:
        """Return if a beacon from ``listener_id`` at ``now`` is allowed; else raise
        :class:`RateLimited` with the seconds to wait."""
        wait = self._buckets.take(listener_id, now)
        if wait > 0:
            raise RateLimited("beacons are coming too fast from this ticket", retry_after=wait)
