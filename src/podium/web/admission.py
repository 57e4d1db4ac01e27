"""The shell around admission: one gate per node, measuring health and join pressure.

It owns what the pure cores need from the outside world: the clock, the event-loop lag
and CPU readings (:class:`~podium.control.health.HealthGuard`), how many joins arrive a
second (which switches proof of work on in ``auto`` mode and sets its difficulty), the
spent proof-of-work tokens, and one :class:`~podium.control.admission.SpaceAdmission`
per space. Queue tokens are signed with a key derived from the ticket key, so a queue
token can never pass as a listener ticket, nor the reverse.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from podium import clock
from podium.config import PowMode, Settings
from podium.control import proofofwork, tickets
from podium.control.admission import Limits, SpaceAdmission
from podium.control.health import HealthGuard
from podium.errors import Unauthenticated

log = logging.getLogger("podium.admission")

QUEUE_TTL_S = 6 * 3600.0
_QUEUE_TIER = "queue"
_SAMPLE_S = 0.1
_CPU_WINDOW_S = 1.0
_LAG_SMOOTHING = 0.3
_PRESSURE_WINDOW_S = 2.0
_SEATED_CACHE_S = 0.25


@dataclass(slots=True)
class _Seated:
    value: int = 0
    at: float = float("-inf")
    added: int = 0


class Gate:
    """Admission state of this node. Used from the event loop only."""

    def __init__(self, settings: Settings, key: bytes) -> None:
        self.limits = Limits(
            max_listeners=settings.max_listeners or None,
            max_join_rate=settings.max_join_rate or None,
        )
        self.health = HealthGuard(
            max_lag_s=settings.shed_loop_lag_ms / 1000,
            max_cpu=settings.shed_cpu_percent / 100,
        )
        self.pow_mode: PowMode = settings.join_pow
        self.pow_above = settings.pow_above_joins_per_s
        self.pow_base = settings.pow_difficulty
        self.spent = proofofwork.SpentTokens()
        self._key = key
        self._queue_key = hmac.new(key, b"podium-queue-token", hashlib.sha256).digest()
        self._spaces: dict[str, SpaceAdmission] = {}
        self._seated: dict[str, _Seated] = {}
        self._arrivals: deque[float] = deque()  # join request times, oldest first

    # -- per space ----------------------------------------------------------------------

    def space(self, space_id: str) -> SpaceAdmission:
        admission = self._spaces.get(space_id)
        if admission is None:
            admission = self._spaces[space_id] = SpaceAdmission(self.limits)
        return admission

    def spaces(self) -> list[tuple[str, SpaceAdmission]]:
        return list(self._spaces.items())

    def seated(self, space_id: str, now: float, count: Callable[[float], int]) -> int:
        """Listeners in ``space_id`` now: the audience count, re-read every 250 ms, plus
        those admitted since (so a burst of joins cannot overshoot the limit)."""
        cache = self._seated.setdefault(space_id, _Seated())
        if now - cache.at >= _SEATED_CACHE_S:
            cache.value, cache.at, cache.added = count(now), now, 0
        return cache.value + cache.added

    def note_admitted(self, space_id: str) -> None:
        self._seated.setdefault(space_id, _Seated()).added += 1

    # -- queue tokens ---------------------------------------------------------------------

    def queue_token(self, space_id: str, entry_id: str, now: float) -> str:
        return tickets.issue(self._queue_key, space_id, entry_id, _QUEUE_TIER, now, QUEUE_TTL_S)

    def queue_entry(self, space_id: str, token: str, now: float) -> str:
        """The entry id a queue token stands for; raises Unauthenticated if it is not ours."""
        try:
            verified = tickets.verify(self._queue_key, token, space_id, now)
        except Unauthenticated as exc:
            raise Unauthenticated(f"queue token refused: {exc.detail}") from exc
        if verified.tier != _QUEUE_TIER:
            raise Unauthenticated("queue token refused: it is not a queue token")
        return verified.listener_id

    # -- join pressure and proof of work ---------------------------------------------------

    def arrival(self, now: float) -> None:
        """Count one join request (admitted, queued or refused alike)."""
        self._arrivals.append(now)
        self._trim(now)

    def arrivals_per_s(self, now: float) -> float:
        self._trim(now)
        return len(self._arrivals) / _PRESSURE_WINDOW_S

    def _trim(self, now: float) -> None:
        horizon = now - _PRESSURE_WINDOW_S
        while self._arrivals and self._arrivals[0] <= horizon:
            self._arrivals.popleft()

    def pow_required(self, now: float) -> bool:
        if self.pow_mode == "on":
            return True
        if self.pow_mode == "off":
            return False
        return self.arrivals_per_s(now) >= self.pow_above

    def challenge(self, space_id: str, now: float) -> proofofwork.Challenge:
        pressure = self.arrivals_per_s(now) / self.pow_above if self.pow_above > 0 else 1.0
        difficulty = proofofwork.difficulty_for(pressure, self.pow_base)
        return proofofwork.issue(self._key, space_id, difficulty, now, os.urandom(8))

    def check_pow(self, space_id: str, token: str, nonce: str, now: float) -> bool:
        """True if the solution is good and unused (then it is spent); raises InvalidInput
        for a bad one, returns False for a reused one."""
        challenge = proofofwork.verify(self._key, token, nonce, space_id, now)
        return self.spent.spend(token, challenge.expires_at, now)

    # -- health ---------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self.health.healthy

    async def run(self) -> None:
        """Measure event-loop lag every 100 ms and CPU over each second, for ever."""
        lag = 0.0
        cpu = 0.0
        window_wall = time.monotonic()
        window_cpu = time.process_time()
        while True:
            asked = time.monotonic()
            await asyncio.sleep(_SAMPLE_S)
            woke = time.monotonic()
            lag += _LAG_SMOOTHING * (max(0.0, woke - asked - _SAMPLE_S) - lag)
            if woke - window_wall >= _CPU_WINDOW_S:
                spent = time.process_time()
                cpu = (spent - window_cpu) / (woke - window_wall)
                window_wall, window_cpu = woke, spent
            was = self.health.healthy
            now_healthy = self.health.observe(clock.now(), lag, cpu)
            if was != now_healthy:
                log.warning(
                    "admission_shedding" if not now_healthy else "admission_recovered",
                    extra={"fields": {"loop_lag_s": round(lag, 3), "cpu": round(cpu, 2)}},
                )
