from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pytest

from podium.control.audience import (
    Audience,
    BeaconLimiter,
    ExactAudience,
    HyperLogLog,
    SketchAudience,
)
from podium.errors import RateLimited

T0 = 1_700_000_040.0  # a minute boundary on the Unix clock
END = T0 + 720.0
SE = 1.04 / math.sqrt(2**14)


@dataclass(frozen=True, slots=True)
class Crowd:
    """A simulated audience: listener i arrives (join event), beacons every 15 s, leaves."""

    arrive: np.ndarray  # seconds, multiples of 0.5 so some fall exactly on grid points
    beacons: np.ndarray  # number of beacons after the join

    @classmethod
    def make(cls, n: int, seed: int) -> Crowd:
        rng = np.random.default_rng(seed)
        arrive = T0 + np.round(rng.uniform(0, 360, n) * 2) / 2
        stay = rng.uniform(5, 330, n)
        return cls(arrive=arrive, beacons=np.floor(stay / 15).astype(np.int64))

    def events(self) -> list[tuple[float, int, str]]:
        """(time, order, listener id); order 0 is the join, then beacons."""
        out: list[tuple[float, int, str]] = []
        for i, (a, k) in enumerate(zip(self.arrive.tolist(), self.beacons.tolist(), strict=True)):
            out.extend((a + 15.0 * b, b, f"listener-{i}") for b in range(k + 1))
        out.sort()
        return out

    def concurrent(self, t: float) -> int:
        """Listeners whose latest heard time at or before t is in (t - 30, t]."""
        started = self.arrive <= t
        k = np.minimum(self.beacons, np.floor((t - self.arrive) / 15.0))
        last = self.arrive + 15.0 * k
        return int(np.count_nonzero(started & (last > t - 30.0)))


def _replay(audience: Audience, crowd: Crowd, reads: list[float]) -> dict[float, int]:
    """Feed the crowd's events, reading concurrent at each time in ``reads``."""
    seen: dict[float, int] = {}
    pending = sorted(reads)
    for t, order, listener in crowd.events():
        while pending and pending[0] < t:
            r = pending.pop(0)
            seen[r] = audience.concurrent(r)
        if order == 0:
            audience.join(listener, t)
        else:
            audience.beacon(listener, t)
        if order == 1 and listener.endswith("7"):
            audience.reaction(t, 2)
    for r in pending:
        seen[r] = audience.concurrent(r)
    return seen


CROWD = Crowd.make(5000, seed=11)
READS = [T0 + 35.0 * i for i in range(1, 20)] + [END]  # on the 5 s grid


def test_exact_audience_matches_the_definitions() -> None:
    audience = ExactAudience()
    seen = _replay(audience, CROWD, READS)
    assert seen == {r: CROWD.concurrent(r) for r in READS}

    first = float(CROWD.arrive.min())
    grid = np.arange(math.ceil(first / 5) * 5, END + 1, 5.0)
    expected = [CROWD.concurrent(t) for t in grid.tolist()]
    snap = audience.snapshot(END)
    assert snap.concurrent == 0
    assert snap.peak > 1500  # a crowd, not a handful
    assert snap.peak == max(expected)
    assert snap.peak_at == grid[int(np.argmax(expected))]
    assert snap.unique == 5000
    assert snap.joins == 5000
    assert snap.exact

    rows = audience.series(END + 1)
    assert rows[0].start == math.ceil(first / 60) * 60 - 60
    assert [r.start for r in rows] == [rows[0].start + 60 * i for i in range(len(rows))]
    assert rows[-1].start + 60 == END
    for row in rows:
        in_minute = (CROWD.arrive > row.start) & (CROWD.arrive <= row.start + 60)
        assert row.joins == int(np.count_nonzero(in_minute))
        assert row.concurrent_end == CROWD.concurrent(row.start + 60)
        window = [
            c
            for t, c in zip(grid.tolist(), expected, strict=True)
            if row.start < t <= row.start + 60
        ]
        assert row.concurrent_max == max(window)
    assert sum(r.joins for r in rows) == 5000
    reacting = [i for i in range(5000) if str(i).endswith("7") and CROWD.beacons[i] >= 1]
    assert sum(r.reactions for r in rows) == 2 * len(reacting)


def test_sketch_audience_is_within_three_standard_errors() -> None:
    exact, sketch = ExactAudience(), SketchAudience()
    seen_exact = _replay(exact, CROWD, READS)
    seen_sketch = _replay(sketch, CROWD, READS)
    for r in READS:
        assert abs(seen_sketch[r] - seen_exact[r]) <= 3 * SE * seen_exact[r] + 1, r
    a, b = exact.snapshot(END), sketch.snapshot(END)
    assert abs(b.peak - a.peak) <= 3 * SE * a.peak + 1
    assert abs(b.unique - 5000) <= 3 * SE * 5000
    assert b.joins == a.joins == 5000  # every first sign here is a join event
    assert not b.exact
    for x, y in zip(exact.series(END + 1), sketch.series(END + 1), strict=True):
        assert (x.start, x.joins, x.reactions) == (y.start, y.joins, y.reactions)
        assert abs(y.concurrent_end - x.concurrent_end) <= 3 * SE * x.concurrent_end + 1
        assert abs(y.concurrent_max - x.concurrent_max) <= 3 * SE * x.concurrent_max + 1


def test_sketch_memory_is_bounded_whatever_the_crowd() -> None:
    bound = (30 // 5 + 2) * 2**14
    for crowd in (Crowd.make(50, seed=1), Crowd.make(3000, seed=2)):
        sketch = SketchAudience()
        most = 0
        for t, order, listener in crowd.events():
            (sketch.join if order == 0 else sketch.beacon)(listener, t)
            most = max(most, sketch.registers())
        assert most <= bound
    assert sketch.standard_error == pytest.approx(0.0081, abs=1e-4)


def _feed(audience: Audience, crowd: Crowd, flooder: str = "", flood: int = 0) -> None:
    for t, order, listener in crowd.events():
        if order == 0:
            audience.join(listener, t)
        else:
            for _ in range(1 + (flood if listener == flooder else 0)):
                audience.beacon(listener, t)
        if listener == flooder:  # the flooder also beacons between its honest beacons
            for _ in range(flood):
                audience.beacon(listener, t + 0.5)


@pytest.mark.parametrize("kind", [ExactAudience, SketchAudience])
def test_a_beacon_flood_from_one_listener_changes_nothing(kind: type[Audience]) -> None:
    crowd = Crowd.make(300, seed=5)
    flooder = f"listener-{int(np.argmax(crowd.beacons))}"
    calm, flooded = kind(), kind()
    _feed(calm, crowd)
    _feed(flooded, crowd, flooder, flood=200)
    assert flooded.snapshot(END) == calm.snapshot(END)
    assert flooded.series(END + 1) == calm.series(END + 1)
    assert calm.snapshot(END).unique == pytest.approx(300, rel=3 * SE)


def test_beacon_limiter_refuses_a_flood_but_never_an_honest_client() -> None:
    limiter = BeaconLimiter()
    for i in range(100):
        limiter.check("honest", T0 + 15.0 * i)
    for _ in range(4):  # the burst
        limiter.check("flooder", T0)
    for _ in range(1000):
        with pytest.raises(RateLimited, match="too fast") as caught:
            limiter.check("flooder", T0)
        assert caught.value.retry_after == pytest.approx(5.0)
    limiter.check("flooder", T0 + 5.0)


def test_exact_joins_count_first_signs_only() -> None:
    audience = ExactAudience()
    audience.beacon("a", T0 + 1)  # first sign is a beacon: a join
    audience.join("a", T0 + 2)  # not again
    audience.join("b", T0 + 3)
    audience.beacon("b", T0 + 100)  # b left and came back: present again, not a new join
    assert audience.concurrent(T0 + 100) == 1
    snap = audience.snapshot(T0 + 100)
    assert (snap.joins, snap.unique, snap.peak, snap.peak_at) == (2, 2, 2, T0 + 5)


def test_window_is_open_on_the_left_and_closed_on_the_right() -> None:
    for kind in (ExactAudience, SketchAudience):
        audience = kind()
        audience.beacon("a", T0)
        assert audience.concurrent(T0) == 1
        assert audience.concurrent(T0 + 29.999) == 1
        assert audience.concurrent(T0 + 30) == 0


def test_time_never_runs_backwards() -> None:
    audience = ExactAudience()
    audience.beacon("a", T0 + 50)
    audience.beacon("b", T0 + 10)  # late: counted at T0 + 50
    assert audience.concurrent(T0 + 75) == 2
    assert audience.concurrent(T0 + 20) == 2  # a read in the past reads at the latest time


def test_replay_plays_and_a_long_idle_stretch() -> None:
    audience = SketchAudience(history_minutes=60)
    audience.join("a", T0)
    audience.replay_play(T0 + 1)
    audience.replay_play(T0 + 86_400)  # a day later: the walk is cheap, history bounded
    rows = audience.series(T0 + 86_401)
    assert len(rows) == 60
    assert all(r.concurrent_max == 0 for r in rows)
    assert audience.snapshot(T0 + 86_401).replay_plays == 2


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="divide"):
        ExactAudience(window=30, step=7)
    with pytest.raises(ValueError, match="step"):
        ExactAudience(window=3, step=5)


def test_hyperloglog_estimates_merges_and_ignores_repeats() -> None:
    rng = random.Random(3)
    big = HyperLogLog()
    for _ in range(100_000):  # past 2.5 * 2**14: the raw estimator, not linear counting
        big.add_hash(rng.getrandbits(64))
    assert abs(big.estimate() - 100_000) <= 3 * SE * 100_000
    left, right, both = HyperLogLog(), HyperLogLog(), HyperLogLog()
    for i in range(20_000):
        (left if i % 2 else right).add(f"id{i}")
        both.add(f"id{i}")
        both.add(f"id{i}")
    assert HyperLogLog.union_estimate([left, right]) == both.estimate()
    left.update(right)
    assert left.estimate() == both.estimate()
    assert abs(both.estimate() - 20_000) <= 3 * SE * 20_000
    assert HyperLogLog().estimate() == 0.0
    assert HyperLogLog.union_estimate([]) == 0.0
    with pytest.raises(ValueError, match="precision"):
        left.update(HyperLogLog(p=10))
