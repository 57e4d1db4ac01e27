"""Placing rooms on media nodes by load, and the lease that says who speaks for a space,
in a real Redis: one holder at a time, a fencing token that grows with every new holder,
and nothing held while Redis is away."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from podium.control import placement
from podium.control.fleet import Fleet
from podium.control.placement import Candidate, Leases
from services import Redis

T0 = 1_800_000_000.0


def _place(candidates: list[Candidate], rooms: int) -> dict[str, int]:
    """Where ``rooms`` new rooms go, one after another, each counted where it went."""
    by_node = {c.node: c for c in candidates}
    for _ in range(rooms):
        chosen = placement.choose(by_node.values())
        assert chosen is not None
        c = by_node[chosen]
        by_node[chosen] = Candidate(c.node, c.rooms + 1, c.speakers, c.cores, c.cpu_cores)
    return {node: c.rooms for node, c in by_node.items()}


def test_equal_nodes_take_turns() -> None:
    assert _place([Candidate("a", 0, cores=2), Candidate("b", 0, cores=2)], 10) == {
        "a": 5,
        "b": 5,
    }


def test_a_node_takes_rooms_in_proportion_to_its_cores() -> None:
    counts = _place([Candidate("small", 0, cores=1), Candidate("big", 0, cores=3)], 40)
    assert counts == {"small": 10, "big": 30}


def test_speakers_and_measured_cpu_count_as_load() -> None:
    # Two rooms with six speakers each weigh more than four quiet rooms.
    busy = Candidate("busy", 2, speakers=12, cores=2)
    quiet = Candidate("quiet", 4, speakers=0, cores=2)
    assert placement.choose([busy, quiet]) == "quiet"
    # A node measured hotter than its rooms explain (something else runs there) waits.
    hot = Candidate("hot", 1, cores=2, cpu_cores=1.5)
    assert placement.choose([hot, Candidate("cool", 5, cores=2)]) == "cool"


def test_no_node_no_choice() -> None:
    assert placement.choose([]) is None


@pytest.fixture
def fleets(redis_server: Redis) -> Iterator[list[Fleet]]:
    nodes = [Fleet(redis_server.url, f"m{i}", "media", f"http://m{i}", T0) for i in range(2)]
    yield nodes
    for fleet in nodes:
        fleet.close()


def test_one_holder_at_a_time_with_a_growing_token(fleets: list[Fleet]) -> None:
    first, second = Leases(fleets[0], "m0", ttl_s=0.5), Leases(fleets[1], "m1", ttl_s=0.5)
    taken = first.hold("s1")
    assert taken is not None
    assert taken.mine
    assert taken.node == "m0"
    # Renewing keeps the token; another node cannot take it while it lasts.
    renewed = first.hold("s1")
    assert renewed is not None
    assert renewed.token == taken.token
    refused = second.hold("s1")
    assert refused is not None
    assert not refused.mine
    assert refused.node == "m0"
    assert refused.token == taken.token
    assert placement.holder(fleets[1], "s1") == placement.Lease("s1", "m0", taken.token, False)
    # Unrenewed, it expires; the next holder's token is larger, whoever it is.
    time.sleep(0.7)
    assert placement.holder(fleets[1], "s1") is None
    moved = second.hold("s1")
    assert moved is not None
    assert moved.mine
    assert moved.token > taken.token
    back = first.hold_all(["s1"])
    assert back == [placement.Lease("s1", "m1", moved.token, False)]


def test_leases_are_counted_per_node_and_given_up(fleets: list[Fleet]) -> None:
    first, second = Leases(fleets[0], "m0"), Leases(fleets[1], "m1")
    for space in ("a", "b", "c"):
        first.hold(space)
    second.hold("d")
    assert placement.room_counts(fleets[0], ["m0", "m1", "m9"]) == {"m0": 3, "m1": 1, "m9": 0}
    # A renewal sets the node's count to what it holds: rooms it stopped drop out.
    assert [lease.mine for lease in first.hold_all(["a", "d"]) or []] == [True, False]
    assert placement.room_counts(fleets[0], ["m0", "m1"]) == {"m0": 1, "m1": 1}
    # Only the holder can give a lease up.
    second.release("a")
    assert placement.holder(fleets[0], "a") is not None
    first.release("a")
    assert placement.holder(fleets[0], "a") is None
    assert placement.room_counts(fleets[0], ["m0"]) == {"m0": 0}
    # A renewal that still saw the room running does not take its lease again.
    assert first.hold_all(["a"]) == []
    assert placement.holder(fleets[0], "a") is None


def test_nothing_is_held_while_redis_is_away(fleets: list[Fleet], redis_server: Redis) -> None:
    leases = Leases(fleets[0], "m0")
    assert leases.hold("s") is not None
    redis_server.kill()
    assert leases.hold("s") is None
    assert leases.hold_all(["s"]) is None
    assert placement.holder(fleets[0], "s") is None
    assert placement.room_counts(fleets[0], ["m0"]) is None
