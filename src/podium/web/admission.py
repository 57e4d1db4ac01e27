"""The shell around admission: one gate per node, measuring health and join pressure.

It owns what the pure cores need from the outside world: the clock, the event-loop lag
and CPU readings (:class:`~podium.control.health.HealthGuard`), how many joins arrive a
second (which switches proof of work on in ``auto`` mode and sets its difficulty), the
spent proof-of-work tokens, and one :class:`~podium.control.admission.SpaceAdmission`
per space (or, in a fleet, one :class:`~podium.control.sharedadmission.SharedAdmission`
that every node shares, and a join pressure summed over the nodes). Queue tokens are
signed with a key derived from the ticket key, so a queue token can never pass as a
listener ticket, nor the reverse.
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
from typing import Any, Protocol

from podium import clock
from podium.config import PowMode, Settings
from podium.control import proofofwork, tickets
from podium.control.admission import Capacity, Decision, Limits, SpaceAdmission
from podium.control.fleet import PREFIX, Fleet
from podium.control.health import HealthGuard
from podium.control.sharedadmission import SharedAdmission, admission_script
from podium.errors import Unauthenticated

log = logging.getLogger("podium.admission")

QUEUE_TTL_S = 6 * 3600.0
_QUEUE_TIER = "queue"
_SAMPLE_S = 0.1
_CPU_WINDOW_S = 1.0
_LAG_SMOOTHING = 0.3
_PRESSURE_WINDOW_S = 2.0
_SEATED_CACHE_S = 0.25


class Admission(Protocol):
    """One space's admission: this node's own, or the fleet's."""

    def arrive(
        self,
        now: float,
        seated: int,
        healthy: bool = True,
        started: bool = True,
        listener: str = "",
    ) -> Decision: ...

    def poll(
        self,
        entry_id: str,
        now: float,
        seated: int,
        healthy: bool = True,
        started: bool = True,
        listener: str = "",
    ) -> Decision: ...

    def capacity(self, now: float, seated: int, healthy: bool = True) -> Capacity: ...

    def waiting_count(self) -> int: ...


@dataclass(slots=True)
class _Seated:
    value: int = 0
    at: float = float("-inf")
    added: int = 0


class Gate:
    """Admission state of this node. Used from the event loop only."""

    def __init__(
        self,
        settings: Settings,
        key: bytes,
        fleet: Fleet | None = None,
        previous_key: bytes | None = None,
    ) -> None:
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
        # Queue places signed before a key rotation stay good (previous_key).
        self._queue_keys = [
            hmac.new(k, b"podium-queue-token", hashlib.sha256).digest()
            for k in (key, previous_key)
            if k is not None
        ]
        self._spaces: dict[str, Admission] = {}
        self._seated: dict[str, _Seated] = {}
        self._arrivals: deque[float] = deque()  # join request times, oldest first
        self._fleet = fleet
        self._script = admission_script(fleet) if fleet is not None else None
        self._unsent = 0  # arrivals not yet added to the fleet's count
        self._fleet_arrivals: float | None = None  # the fleet's joins a second, last read

    # -- per space ----------------------------------------------------------------------

    def space(self, space_id: str) -> Admission:
        admission = self._spaces.get(space_id)
        if admission is None:
            limited = self.limits.max_listeners is not None or self.limits.max_join_rate
            if self._fleet is not None and self._script is not None and limited:
                # (With no limit there is nothing to share: everyone is let in at once.)
                admission = SharedAdmission(self._fleet, self._script, space_id, self.limits)
            else:
                admission = SpaceAdmission(self.limits)
            self._spaces[space_id] = admission
        return admission

    @property
    def fleet_wide(self) -> bool:
        """Whether admission is the fleet's now (False: this node's own, or its share)."""
        return self._fleet is not None and self._fleet.available

    def spaces(self) -> list[tuple[str, Admission]]:
        return list(self._spaces.items())

    def seated(self, space_id: str, now: float, count: Callable[[float], int]) -> int:
        """Listeners in ``space_id`` now: the audience count, re-read every 250 ms, plus
        those admitted since (so a burst of joins cannot overshoot the limit)."""
        cache = self._seated.setdefault(space_id, _Seated())
        if now - cache.at >= _SEATED_CACHE_S:
            cache.value, cache.at, cache.added = count(now), now, 0
        return cache.value + cache.added

    def note_admitted(self, space_id: str) -> None:
        if self.fleet_wide:
            return  # the fleet's admission counts its recent admissions itself
        self._seated.setdefault(space_id, _Seated()).added += 1

    # -- queue tokens ---------------------------------------------------------------------

    def queue_token(self, space_id: str, entry_id: str, now: float) -> str:
        return tickets.issue(self._queue_keys[0], space_id, entry_id, _QUEUE_TIER, now, QUEUE_TTL_S)

    def queue_entry(self, space_id: str, token: str, now: float) -> str:
        """The entry id a queue token stands for; raises Unauthenticated if it is not ours."""
        try:
            verified = tickets.verify(self._queue_keys, token, space_id, now)
        except Unauthenticated as exc:
            raise Unauthenticated(f"queue token refused: {exc.detail}") from exc
        if verified.tier != _QUEUE_TIER:
            raise Unauthenticated("queue token refused: it is not a queue token")
        return verified.listener_id

    # -- join pressure and proof of work ---------------------------------------------------

    def arrival(self, now: float) -> None:
        """Count one join request (admitted, queued or refused alike)."""
        self._arrivals.append(now)
        self._unsent += 1
        self._trim(now)

    def arrivals_per_s(self, now: float) -> float:
        """Join requests a second: this node's, or the fleet's when it is more."""
        self._trim(now)
        own = len(self._arrivals) / _PRESSURE_WINDOW_S
        if self._fleet_arrivals is None or not self.fleet_wide:
            return own
        return max(own, self._fleet_arrivals)

    def share_pressure(self) -> None:
        """Add this node's arrivals to the fleet's count of this second, and read the
        fleet's rate over the two seconds before it (which every node has sent by now)."""
        if self._fleet is None:
            return
        second = int(time.time())
        count, self._unsent = self._unsent, 0

        def send(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            key = f"{PREFIX}arrivals:{second}"
            if count:
                pipe.incrby(key, count)
                pipe.expire(key, 10)
            pipe.mget(f"{PREFIX}arrivals:{second - 1}", f"{PREFIX}arrivals:{second - 2}")
            return pipe.execute()[-1]

        counts = self._fleet.call(send)
        self._fleet_arrivals = (
            None if counts is None else sum(int(c or 0) for c in counts) / _PRESSURE_WINDOW_S
        )

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
                self.share_pressure()
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
