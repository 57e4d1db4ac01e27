from __future__ import annotations

import random

import pytest

from podium.control.reactions import ALLOWED, ReactionCounter, validate
from podium.errors import InvalidInput, RateLimited

T0 = 1_700_000_000.0


def test_allowed_set_is_small_fixed_and_valid() -> None:
    assert len(ALLOWED) == len(set(ALLOWED)) == 8
    assert [validate(e) for e in ALLOWED] == list(ALLOWED)
    assert validate("\u2764") == "\u2764\ufe0f"  # the heart without its variation selector


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty string"),
        ("👏" * 9, "9 characters"),
        ("x" * 10_000, "10000 characters"),
        ("💩", "not an allowed reaction"),
        ("👏👏", "not an allowed reaction"),
        ("<script>", "not an allowed reaction"),
        ("👏\u200d", "not an allowed reaction"),
    ],
)
def test_validate_says_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        validate(text)


def test_counts_per_second_recent_and_totals() -> None:
    counter = ReactionCounter(history_seconds=30, recent_seconds=5)
    counter.add("a", "👏", T0 + 0.2)
    counter.add("b", "👏", T0 + 0.9)
    counter.add("a", "\u2764", T0 + 3.5)
    counter.add("c", "🔥", T0 + 7.0)
    assert counter.per_second(T0 + 7.5) == [
        (int(T0), {"👏": 2}),
        (int(T0) + 3, {"❤️": 1}),
        (int(T0) + 7, {"🔥": 1}),
    ]
    snap = counter.snapshot(T0 + 7.5)  # recent: seconds T0+3 .. T0+7
    assert list(snap["recent"]) == list(ALLOWED)
    assert {e: n for e, n in snap["recent"].items() if n} == {"❤️": 1, "🔥": 1}
    assert {e: n for e, n in snap["totals"].items() if n} == {"👏": 2, "❤️": 1, "🔥": 1}
    assert snap["total"] == 4
    assert snap["window_seconds"] == 5
    late = counter.snapshot(T0 + 100)
    assert sum(late["recent"].values()) == 0
    assert late["total"] == 4
    assert counter.per_second(T0 + 100) == []


def test_history_is_bounded() -> None:
    counter = ReactionCounter(history_seconds=60, rate=1000, burst=1000)
    rng = random.Random(1)
    for i in range(20_000):
        counter.add(f"l{i % 500}", rng.choice(ALLOWED), T0 + i * 0.05)
    rows = counter.per_second(T0 + 999.99)  # seconds T0+940 .. T0+999
    assert len(rows) == 60
    assert sum(sum(c.values()) for _, c in rows) == 60 * 20
    assert counter.snapshot(T0 + 1000)["total"] == 20_000


def test_rate_limit_per_listener() -> None:
    counter = ReactionCounter()  # 5/s, burst 10
    for _ in range(10):
        counter.add("eager", "🔥", T0)
    with pytest.raises(RateLimited, match="too fast") as caught:
        counter.add("eager", "🔥", T0)
    assert caught.value.retry_after == pytest.approx(0.2)
    counter.add("calm", "🔥", T0)  # others are not affected
    counter.add("eager", "🔥", T0 + 0.2)
    assert counter.snapshot(T0 + 0.2)["totals"]["🔥"] == 12


def test_junk_costs_tokens_and_is_not_counted() -> None:
    counter = ReactionCounter(burst=2)
    for _ in range(2):
        with pytest.raises(InvalidInput):
            counter.add("junk", "nope", T0)
    with pytest.raises(RateLimited):
        counter.add("junk", "👏", T0)
    assert counter.snapshot(T0)["total"] == 0


def test_time_never_runs_backwards() -> None:
    counter = ReactionCounter(recent_seconds=2)
    counter.add("a", "👍", T0 + 10)
    counter.add("b", "👍", T0 + 1)  # late: counted in the latest second
    assert counter.per_second(T0 + 10) == [(int(T0) + 10, {"👍": 2})]


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="recent_seconds"):
        ReactionCounter(history_seconds=5, recent_seconds=10)
