"""Is this node healthy enough to let more people in? A pure core with hysteresis.

The web process measures its event-loop lag (how late a timer fires) and its CPU use
(process CPU seconds per wall second) and feeds them here. When the lag passes its
limit, or the CPU passes its limit while the lag is past half of its own, the node sheds
*new* joins (they queue, with an honest reason) before the people already listening feel
it; it recovers only once both have been back under a margin below their limits (half
the lag, 15 points of CPU) for ``recover_s``, so admission does not flap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class HealthGuard:
    max_lag_s: float = 0.25
    max_cpu: float = 0.95  # of one core: the web process runs one event loop
    recover_s: float = 3.0
    shedding: bool = False
    lag_s: float = 0.0
    cpu: float = 0.0
    _calm_since: float | None = None

    def observe(self, now: float, lag_s: float, cpu: float) -> bool:
        """Record one measurement; return whether the node is healthy (not shedding)."""
        self.lag_s = lag_s
        self.cpu = cpu
        # A busy CPU alone is no harm (one event loop serving well runs near 100 %); it
        # matters when the loop is also starting to run late.
        over = lag_s > self.max_lag_s or (cpu > self.max_cpu and lag_s > self.max_lag_s / 2)
        calm = lag_s <= self.max_lag_s / 2 and cpu <= self.max_cpu - 0.15
        if over:
            self.shedding = True
            self._calm_since = None
        elif self.shedding:
            if not calm:
                self._calm_since = None
            elif self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= self.recover_s:
                self.shedding = False
                self._calm_since = None
        return not self.shedding

    @property
    def healthy(self) -> bool:
        return not self.shedding
