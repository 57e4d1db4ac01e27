"""Admission control and the waiting room of one space: a pure core.

Nobody who arrives at a busy space is told "not available" (DESIGN.md, principle 3). A
new listener is either admitted at once, or given a place in a fair FIFO queue with an
honest estimate of the wait, and admitted in order at the allowed rate:

- **Join rate.** A token bucket of ``max_join_rate`` tokens a second (one second of
  burst) meters every admission, direct or from the queue.
- **Seats.** At most ``max_listeners`` people listen at once. ``seated`` (how many are
  listening now, from the audience counter) is an argument to every call, plus the grants
  handed out but not yet collected. Existing listeners are never dropped to make room.
- **Health.** When the node is unhealthy (event-loop lag, CPU: see :mod:`podium.control.health`)
  admission pauses; arrivals still get a queue place, so nobody already in is degraded.
- **Order.** Admission grants go to the head of the queue only. A queued client returns
  with its entry id when told to (``retry_after_s``); a grant waits ``claim_grace_s`` for
  its owner, then the seat goes back. An entry whose owner stopped asking for
  ``abandon_s`` is skipped when reached, without spending a token.
- **Before the start.** Arrivals before a scheduled start wait in a pre-queue which is
  shuffled when the space goes live, so arriving first (by script) gains nothing.

Time, the seated count, health and randomness are arguments: this module does no I/O.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from enum import StrEnum

# How often a queued client with an unknown wait checks back (and the longest we ever
# ask it to wait between checks, so a freed seat is noticed promptly).
MAX_RETRY_S = 5.0
MIN_RETRY_S = 0.25


class Reason(StrEnum):
    """Why an arrival was queued or refused (machine-readable, sent to clients)."""

    JOIN_RATE = "join_rate"
    CAPACITY = "capacity"
    OVERLOAD = "overload"
    PRE_START = "pre_start"
    QUEUE_FULL = "queue_full"


@dataclass(frozen=True, slots=True)
class Limits:
    """``None`` means unlimited."""

    max_listeners: int | None = None
    max_join_rate: float | None = None
    max_queue: int = 1_000_000
    claim_grace_s: float = 30.0
    abandon_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_listeners is not None and self.max_listeners < 1:
            raise ValueError("max_listeners must be at least 1 (or None)")
        if self.max_join_rate is not None and self.max_join_rate <= 0:
            raise ValueError("max_join_rate must be positive (or None)")
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")


@dataclass(frozen=True, slots=True)
class Admitted:
    entry_id: str | None  # the queue entry that was granted, or None for a direct admission


@dataclass(frozen=True, slots=True)
class Queued:
    entry_id: str
    reason: Reason
    position: int | None  # 1-based among those still waiting; None before the start
    queue_length: int
    estimated_wait_s: float | None  # None: unknown (waiting for a seat, or for health)
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    retry_after_s: float


Decision = Admitted | Queued | Refused


@dataclass(slots=True)
class _Entry:
    id: str
    last_seen: float
    seq: int | None = None  # place in the queue; None while in the pre-queue
    granted_at: float | None = None


@dataclass(slots=True)
class Capacity:
    """What the room state says about admission (all true at ``now``)."""

    admitting: bool
    queue_length: int
    estimated_wait_s: float | None


@dataclass(slots=True)
class SpaceAdmission:
    """The admission state of one space on one node. Mutate from one thread only."""

    limits: Limits
    rng: random.Random = field(default_factory=random.Random)
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _waiting: list[int] = field(default_factory=list)  # queue seqs, ascending
    _by_seq: dict[int, _Entry] = field(default_factory=dict)
    _head: int = 0  # index in _waiting of the first entry not yet granted or skipped
    _next_seq: int = 0
    _granted: dict[str, _Entry] = field(default_factory=dict)
    _prequeue: list[_Entry] = field(default_factory=list)
    _tokens: float = 0.0
    _stamp: float | None = None

    # -- the calls the join endpoint makes ---------------------------------------------

    def arrive(
        self,
        now: float,
        seated: int,
        healthy: bool = True,
        started: bool = True,
        listener: str = "",
    ) -> Decision:
        """A new arrival (no queue entry yet). ``listener`` (who would be seated) is for
        the fleet's admission, which counts them itself; here ``seated`` says it all."""
        if not started:
            return self._prequeue_entry(now)
        self.start(now)  # those who came before the start go first, shuffled
        self._advance(now, seated, healthy)
        if self.waiting_count() == 0 and self._can_admit(seated, healthy):
            self._take_token()
            return Admitted(None)
        if self.waiting_count() >= self.limits.max_queue:
            wait = self._estimate(self.waiting_count() + 1, seated, healthy)
            return Refused(Reason.QUEUE_FULL, MAX_RETRY_S if wait is None else max(1.0, wait))
        entry = _Entry(id=self._new_id(), last_seen=now)
        self._entries[entry.id] = entry
        self._enqueue(entry)
        self._advance(now, seated, healthy)
        return self._answer(entry, now, seated, healthy)

    def poll(
        self,
        entry_id: str,
        now: float,
        seated: int,
        healthy: bool = True,
        started: bool = True,
        listener: str = "",
    ) -> Decision:
        """A queued client comes back with its entry id (from a verified queue token)."""
        entry = self._entries.get(entry_id)
        if entry is None:  # forgotten (abandoned, or this node restarted): back of the line
            return self.arrive(now, seated, healthy, started)
        entry.last_seen = now
        if entry.seq is None and started:
            self.start(now)
        self._advance(now, seated, healthy)
        return self._answer(entry, now, seated, healthy)

    def start(self, now: float) -> None:
        """The space went live: shuffle the pre-queue into the queue (idempotent)."""
        if not self._prequeue:
            return
        order = list(self._prequeue)
        self.rng.shuffle(order)
        self._prequeue.clear()
        for entry in order:
            self._enqueue(entry)

    def capacity(self, now: float, seated: int, healthy: bool = True) -> Capacity:
        """For the room state: is a new arrival let in now, how long is the line."""
        self._advance(now, seated, healthy)
        waiting = self.waiting_count()
        admitting = waiting == 0 and self._can_admit(seated, healthy)
        return Capacity(
            admitting=admitting,
            queue_length=waiting + len(self._prequeue),
            estimated_wait_s=0.0 if admitting else self._estimate(waiting + 1, seated, healthy),
        )

    def waiting_count(self) -> int:
        """Entries still waiting for a grant (abandoned ones not yet reached included)."""
        return len(self._waiting) - self._head

    # -- the machinery ------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def _prequeue_entry(self, now: float) -> Decision:
        entry = _Entry(id=self._new_id(), last_seen=now)
        self._entries[entry.id] = entry
        self._prequeue.append(entry)
        return self._answer(entry, now, 0, True)

    def _enqueue(self, entry: _Entry) -> None:
        entry.seq = self._next_seq
        self._next_seq += 1
        self._waiting.append(entry.seq)
        self._by_seq[entry.seq] = entry

    def _refill(self, now: float) -> None:
        rate = self.limits.max_join_rate
        if rate is None:
            return
        burst = max(1.0, rate)
        if self._stamp is None:
            self._tokens = burst
        else:
            self._tokens = min(burst, self._tokens + max(0.0, now - self._stamp) * rate)
        self._stamp = now

    def _take_token(self) -> None:
        if self.limits.max_join_rate is not None:
            self._tokens -= 1.0

    def _seats_free(self, seated: int) -> int | None:
        if self.limits.max_listeners is None:
            return None
        return self.limits.max_listeners - seated - len(self._granted)

    def _can_admit(self, seated: int, healthy: bool) -> bool:
        if not healthy:
            return False
        seats = self._seats_free(seated)
        if seats is not None and seats <= 0:
            return False
        return self.limits.max_join_rate is None or self._tokens >= 1.0

    def _advance(self, now: float, seated: int, healthy: bool) -> None:
        """Expire uncollected grants, refill tokens, and grant the head of the queue."""
        for entry_id, entry in list(self._granted.items()):
            assert entry.granted_at is not None
            if now - entry.granted_at > self.limits.claim_grace_s:
                del self._granted[entry_id]
                del self._entries[entry_id]
        self._refill(now)
        while self._head < len(self._waiting) and self._can_admit(seated, healthy):
            entry = self._by_seq.pop(self._waiting[self._head])
            self._head += 1
            if now - entry.last_seen > self.limits.abandon_s:
                del self._entries[entry.id]  # gone: skipped, costs no token
                continue
            self._take_token()
            entry.granted_at = now
            self._granted[entry.id] = entry
        if self._head > 1024 and self._head * 2 > len(self._waiting):
            del self._waiting[: self._head]
            self._head = 0

    def _position(self, entry: _Entry) -> int | None:
        if entry.seq is None:
            return None
        return bisect.bisect_left(self._waiting, entry.seq, lo=self._head) - self._head + 1

    def _estimate(self, position: int, seated: int, healthy: bool) -> float | None:
        """Seconds until ``position`` is granted, if the limits in force make it knowable."""
        if not healthy:
            return None
        seats = self._seats_free(seated)
        if seats is not None and position > seats:
            return None  # it depends on people leaving, which nobody can promise
        rate = self.limits.max_join_rate
        if rate is None:
            return 0.0
        return max(0.0, (position - self._tokens) / rate)

    def _reason(self, position: int, seated: int, healthy: bool) -> Reason:
        if not healthy:
            return Reason.OVERLOAD
        seats = self._seats_free(seated)
        if seats is not None and position > seats:
            return Reason.CAPACITY  # waiting for someone to leave, not for the rate
        return Reason.JOIN_RATE

    def _answer(self, entry: _Entry, now: float, seated: int, healthy: bool) -> Decision:
        if entry.granted_at is not None:  # granted: its owner collects it now
            del self._granted[entry.id]
            del self._entries[entry.id]
            return Admitted(entry.id)
        position = self._position(entry)
        if position is None:
            return Queued(
                entry.id,
                Reason.PRE_START,
                None,
                len(self._prequeue),
                None,
                MAX_RETRY_S,
            )
        wait = self._estimate(position, seated, healthy)
        # Come back just after the grant is due (a little spread so the line does not
        # arrive in lockstep), but at least every MAX_RETRY_S to see a freed seat.
        retry = MAX_RETRY_S if wait is None else wait + 0.05 + self.rng.uniform(0.0, 0.1)
        return Queued(
            entry.id,
            self._reason(position, seated, healthy),
            position,
            self.waiting_count(),
            wait,
            min(MAX_RETRY_S, max(MIN_RETRY_S, retry)),
        )
