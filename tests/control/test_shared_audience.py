"""The fleet's audience in a real Redis: two nodes hearing overlapping crowds count each
listener once, within HyperLogLog's error; with Redis gone each node counts what it
heard, and what it heard meanwhile reaches the fleet's figures when Redis is back."""

from __future__ import annotations

from podium.control.fleet import Fleet
from podium.control.sharedaudience import SharedAudience
from services import Redis

# Three standard errors of Redis's HyperLogLog (0.81 %); at these sizes its estimator
# is far closer than that, but the promise is the sketch's.
TOLERANCE = 3 * 0.0081
T0 = 1_800_000_000.0  # a multiple of every step


def _node(redis_server: Redis, name: str) -> Fleet:
    return Fleet(redis_server.url, name, "all", f"http://{name}", T0)


def _close(count: int, truth: int) -> bool:
    return abs(count - truth) <= max(1, TOLERANCE * truth)


def test_a_listener_heard_on_two_nodes_counts_once(redis_server: Redis) -> None:
    a_fleet, b_fleet = _node(redis_server, "a"), _node(redis_server, "b")
    a, b = SharedAudience(a_fleet, "space1"), SharedAudience(b_fleet, "space1")
    listeners = [f"l:{n}" for n in range(3000)]
    for n, listener in enumerate(listeners):
        (a if n % 2 else b).join(listener, T0 + 1)
    for listener in listeners[:1500]:  # half of them beacon to the other node too
        a.beacon(listener, T0 + 12)
        b.beacon(listener, T0 + 13)
    for audience in (a, b):
        snapshot = audience.snapshot(T0 + 14)
        assert _close(snapshot.concurrent, 3000), snapshot
        assert _close(snapshot.unique, 3000), snapshot
        assert snapshot.joins == 3000  # every join, on either node, once
        assert audience.fleet_wide
    # Only the 1500 who kept beaconing are still here a window after the joins.
    later = a.snapshot(T0 + 40)
    assert _close(later.concurrent, 1500), later
    assert _close(later.unique, 3000), later
    assert later.peak >= later.concurrent
    # And nobody, once a whole window has passed in silence.
    assert b.concurrent(T0 + 80) == 0
    a_fleet.close()
    b_fleet.close()


def test_without_redis_each_node_counts_its_own_and_the_fleet_catches_up(
    redis_server: Redis,
) -> None:
    a_fleet, b_fleet = _node(redis_server, "a"), _node(redis_server, "b")
    a, b = SharedAudience(a_fleet, "space2"), SharedAudience(b_fleet, "space2")
    for n in range(100):
        (a if n % 2 else b).join(f"before:{n}", T0 + 1)
    assert b.flush()  # as the room ticker does every second
    assert a.snapshot(T0 + 2).unique == 100
    redis_server.kill()
    for n in range(40):
        a.join(f"during:{n}", T0 + 3)
    alone = a.snapshot(T0 + 4)
    assert not a.fleet_wide
    # What this node heard: its 50 before, and 40 during (a sketch of its own).
    assert _close(alone.concurrent, 90), alone
    assert _close(alone.unique, 90), alone
    redis_server.start()  # empty, as a restarted cache is
    a_fleet.retry_now()
    b_fleet.retry_now()
    b.beacon("before:0", T0 + 6)
    back = a.snapshot(T0 + 7)
    assert a.fleet_wide
    # What Redis lost in the restart is gone from it, but the node kept and sent what it
    # heard while Redis was away; a new beacon lands in it again.
    assert _close(back.unique, 41), back
    assert _close(b.snapshot(T0 + 7).concurrent, 41)
    a_fleet.close()
    b_fleet.close()
