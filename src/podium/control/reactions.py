"""Emoji reactions: a fixed set, counted per second and in total, rate limited per listener.

Reactions are one of the per-listener writes of DESIGN.md principle 1: small, verified by
ticket, aggregated here into counts, and rate limited. What listeners see is the aggregate
in the room state (:meth:`ReactionCounter.snapshot`), a cacheable object, never a stream of
individual reactions.

The allowed set is fixed, small and chosen to read well at a glance in a live audio room:

====  =====================  ====================
 👏   U+1F44F                applause
 ❤️   U+2764 U+FE0F          love (also accepted without the variation selector)
 😂   U+1F602                laughter
 🔥   U+1F525                "that's hot"
 👍   U+1F44D                agreement
 🙌   U+1F64C                celebration
 😮   U+1F62E                surprise
 💯   U+1F4AF                "exactly"
====  =====================  ====================

A fixed set keeps the counters bounded (8 numbers per second), keeps the room state small
and cacheable, and leaves no free text to moderate.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TypedDict

from podium.control.ratelimit import TokenBuckets
from podium.errors import InvalidInput, RateLimited

ALLOWED: tuple[str, ...] = ("👏", "❤️", "😂", "🔥", "👍", "🙌", "😮", "💯")

# Keyboards and platforms differ on whether the heart carries U+FE0F; both mean the same.
_ALIASES = {"❤": "❤️"}
_CANONICAL = {e: e for e in ALLOWED} | _ALIASES
MAX_CHARS = 8  # the longest allowed reaction is 2 code points; 8 leaves room for nothing long


def validate(emoji: str) -> str:
    """Return the canonical form of ``emoji``, or raise :class:`InvalidInput` saying why."""
    if not emoji:
        raise InvalidInput("a reaction must be one emoji; got an empty string")
    if len(emoji) > MAX_CHARS:
        raise InvalidInput(f"a reaction must be one emoji; got {len(emoji)} characters")
    canonical = _CANONICAL.get(emoji)
    if canonical is None:
        raise InvalidInput(f"{emoji!r} is not an allowed reaction; use one of {' '.join(ALLOWED)}")
    return canonical


class ReactionSnapshot(TypedDict):
    """What the room state shows: every allowed emoji, in :data:`ALLOWED` order."""

    window_seconds: int
    recent: dict[str, int]
    totals: dict[str, int]
    total: int


class ReactionCounter:
    """Counts of one space's reactions: per emoji per whole second, and in total.

    ``history_seconds`` whole seconds are kept (memory: that many rows of at most 8
    counters); ``recent_seconds`` of them make the snapshot's recent counts. Each listener
    may react ``rate`` times per second with a burst of ``burst`` (defaults 5/s, 10: faster
    than anyone taps, slower than a script), tracked for at most ``max_listeners`` listeners
    (least recently active forgotten first). Time never runs backwards: an earlier ``now``
    counts at the latest time seen.
    """

    def __init__(
        self,
        history_seconds: int = 60,
        recent_seconds: int = 10,
        rate: float = 5.0,
        burst: float = 10,
        max_listeners: int = 100_000,
    ) -> None:
        if not 1 <= recent_seconds <= history_seconds:
            raise ValueError("need 1 <= recent_seconds <= history_seconds")
        self.history_seconds = history_seconds
        self.recent_seconds = recent_seconds
        self._limits = TokenBuckets(rate=rate, burst=burst, max_keys=max_listeners)
        self._seconds: deque[tuple[int, dict[str, int]]] = deque()
        self._totals: dict[str, int] = dict.fromkeys(ALLOWED, 0)
        self._now = -math.inf

    def add(self, listener_id: str, emoji: str, now: float) -> str:
        """Count one reaction by ``listener_id`` at ``now``; return its canonical emoji.

        The rate limit is taken first, so junk costs a listener tokens as real reactions
        do. Raises :class:`RateLimited` (with ``retry_after``) or :class:`InvalidInput`.
        """
        now = self._tick(now)
        wait = self._limits.take(listener_id, now)
        if wait > 0:
            raise RateLimited(f"reactions are coming too fast; wait {wait:.1f} s", retry_after=wait)
        canonical = validate(emoji)
        second = math.floor(now)
        if not self._seconds or self._seconds[-1][0] != second:
            self._seconds.append((second, {}))
            self._forget(second)
        counts = self._seconds[-1][1]
        counts[canonical] = counts.get(canonical, 0) + 1
        self._totals[canonical] += 1
        return canonical

    def per_second(self, now: float) -> list[tuple[int, dict[str, int]]]:
        """The kept seconds with any reactions, oldest first: ``(second, {emoji: count})``."""
        self._forget(math.floor(self._tick(now)))
        return [(second, dict(counts)) for second, counts in self._seconds]

    def snapshot(self, now: float) -> ReactionSnapshot:
        """Counts over the ``recent_seconds`` whole seconds up to and including ``now``'s,
        and all-time totals, for every allowed emoji (zeros included, fixed order)."""
        current = math.floor(self._tick(now))
        self._forget(current)
        recent = dict.fromkeys(ALLOWED, 0)
        for second, counts in self._seconds:
            if second > current - self.recent_seconds:
                for emoji, n in counts.items():
                    recent[emoji] += n
        return ReactionSnapshot(
            window_seconds=self.recent_seconds,
            recent=recent,
            totals=dict(self._totals),
            total=sum(self._totals.values()),
        )

    def _tick(self, now: float) -> float:
        self._now = max(self._now, now)
        return self._now

    def _forget(self, current: int) -> None:
        while self._seconds and self._seconds[0][0] <= current - self.history_seconds:
            self._seconds.popleft()
