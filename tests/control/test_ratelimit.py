from __future__ import annotations

import pytest

from podium.control.ratelimit import TokenBuckets


def test_burst_then_refill_at_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)
    assert buckets.take("a", 0.5) == 0.0
    assert buckets.take("a", 0.5) == pytest.approx(0.5)
    assert buckets.take("a", 100.0) == 0.0  # refills, but never above the burst
    assert [buckets.take("a", 100.0) for _ in range(3)][-1] == pytest.approx(0.5)


def test_keys_are_independent() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) > 0
    assert buckets.take("b", 0.0) == 0.0


def test_memory_is_bounded_under_a_flood_of_keys() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=100)
    for i in range(10_000):
        buckets.take(f"k{i}", 0.0)
    assert len(buckets) == 100


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    buckets.take("a", 10.0)
    assert buckets.take("a", 5.0) > 0


def test_rejects_nonsense_configuration() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBuckets(rate=0, burst=1)
