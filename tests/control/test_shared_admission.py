"""The fleet's admission in a real Redis: nodes that share it share one capacity, one join
rate and one waiting room (take-a-number), and without Redis each admits its share."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from podium.control.admission import Admitted, Limits, Queued, Reason, Refused
from podium.control.fleet import Fleet
from podium.control.sharedadmission import SharedAdmission, admission_script
from podium.control.sharedaudience import SharedAudience
from services import Redis

T0 = 1_800_000_000.0


@pytest.fixture
def fleets(redis_server: Redis) -> Iterator[list[Fleet]]:
    nodes = [Fleet(redis_server.url, f"n{i}", "all", f"http://n{i}", T0) for i in range(3)]
    yield nodes
    for fleet in nodes:
        fleet.close()


def _admissions(fleets: list[Fleet], space: str, limits: Limits) -> list[SharedAdmission]:
    return [SharedAdmission(f, admission_script(f), space, limits) for f in fleets]


def test_one_capacity_for_all_nodes(fleets: list[Fleet]) -> None:
    nodes = _admissions(fleets, "cap", Limits(max_listeners=10))
    decisions = [nodes[i % 3].arrive(T0, 0, listener=f"l:{i}") for i in range(30)]
    admitted = [d for d in decisions if isinstance(d, Admitted)]
    queued = [d for d in decisions if isinstance(d, Queued)]
    assert len(admitted) == 10  # fleet-wide, not ten a node
    assert len(queued) == 20
    # One line across the nodes: positions 1..20 in arrival order, whichever node answered.
    assert [q.position for q in queued] == list(range(1, 21))
    assert all(q.reason is Reason.CAPACITY and q.estimated_wait_s is None for q in queued)
    assert {q.queue_length for q in queued[-1:]} == {20}
    # Every node tells the room state the same.
    answers = {(c.admitting, c.queue_length) for c in (n.capacity(T0, 0) for n in nodes)}
    assert answers == {(False, 20)}


def test_the_line_is_served_in_order_at_the_join_rate(fleets: list[Fleet]) -> None:
    nodes = _admissions(fleets, "rate", Limits(max_join_rate=5.0))
    decisions = [nodes[i % 3].arrive(T0, seated=0) for i in range(25)]
    admitted = sum(isinstance(d, Admitted) for d in decisions)
    assert admitted in (5, 6)  # one second of burst (and what dripped in meanwhile)
    queued = [d for d in decisions if isinstance(d, Queued)]
    assert all(q.reason is Reason.JOIN_RATE for q in queued)
    # The estimate is the wait at 5 a second, to within the tokens' drip during the calls.
    for q in queued:
        assert q.position is not None
        assert q.estimated_wait_s is not None
        assert q.estimated_wait_s == pytest.approx(q.position / 5.0, abs=0.3)
    # Polled from any node after waiting, grants come in queue order.
    time.sleep(1.3)
    answers = [nodes[(i + 1) % 3].poll(q.entry_id, T0, seated=0) for i, q in enumerate(queued)]
    granted = [i for i, a in enumerate(answers) if isinstance(a, Admitted)]
    assert granted == list(range(len(granted)))
    assert 5 <= len(granted) <= 8
    # A granted number is collected once: asking again with it is a new arrival.
    again = nodes[0].poll(queued[0].entry_id, T0, seated=0)
    assert not isinstance(again, Admitted) or again.entry_id != queued[0].entry_id


def test_an_abandoned_number_is_skipped_without_a_token(fleets: list[Fleet]) -> None:
    limits = Limits(max_join_rate=2.0, abandon_s=0.3)
    nodes = _admissions(fleets, "abandon", limits)
    assert isinstance(nodes[0].arrive(T0, 0), Admitted)
    assert isinstance(nodes[0].arrive(T0, 0), Admitted)
    gone = nodes[1].arrive(T0, 0)
    keeps = nodes[2].arrive(T0, 0)
    assert isinstance(gone, Queued)
    assert isinstance(keeps, Queued)
    assert (gone.position, keeps.position) == (1, 2)
    # The second keeps asking; the first stopped. The first token drips in after 0.5 s,
    # when the first has been silent longer than abandon_s: it goes to the second.
    answer = keeps
    for _ in range(12):
        time.sleep(0.1)
        answer = nodes[2].poll(keeps.entry_id, T0, 0)
        if isinstance(answer, Admitted):
            break
    assert isinstance(answer, Admitted), answer


def test_admitted_listeners_are_in_the_fleets_audience_at_once(fleets: list[Fleet]) -> None:
    nodes = _admissions(fleets, "seated", Limits(max_listeners=4))
    for i in range(4):  # admitted on several nodes, none of which has sent what it heard
        assert isinstance(nodes[i % 3].arrive(T0, 0, listener=f"l:{i}"), Admitted)
    waiting = nodes[2].arrive(T0, 0, listener="l:4")
    assert isinstance(waiting, Queued)
    assert waiting.reason is Reason.CAPACITY
    # Every node's audience counts them: the admission put them in the sketches.
    audience = SharedAudience(fleets[1], "seated")
    assert audience.concurrent(T0) == 4
    assert audience.snapshot(T0).unique == 4
    # Seats free once listeners fall out of the window (they stopped beaconing); the one
    # waiting gets one, through any node, and is counted in turn.
    later = T0 + 40
    assert isinstance(nodes[0].poll(waiting.entry_id, later, 0, listener="l:4"), Admitted)
    assert audience.concurrent(later) == 1


def test_the_pre_queue_is_shuffled_once_at_the_start(fleets: list[Fleet]) -> None:
    nodes = _admissions(fleets, "pre", Limits(max_join_rate=1.0))
    early = [nodes[i % 3].arrive(T0, 0, started=False) for i in range(40)]
    assert all(isinstance(e, Queued) and e.reason is Reason.PRE_START for e in early)
    assert early[-1].queue_length == 40  # type: ignore[union-attr]
    assert nodes[0].capacity(T0, 0).queue_length == 40
    # After the start, each early arrival has a number; together they are 1..40 in some
    # order that is not the arrival order.
    positions = []
    for i, e in enumerate(early):
        assert isinstance(e, Queued)
        answer = nodes[(i + 2) % 3].poll(e.entry_id, T0, 0, started=True)
        positions.append(answer.position if isinstance(answer, Queued) else 0)
    # (The one who drew number 1 took the one token there was: admitted, shown as 0.)
    assert sorted(positions) == [0, *range(1, 40)]
    assert positions != sorted(positions)
    # A newcomer after the start queues behind them all.
    late = nodes[1].arrive(T0, 0)
    assert isinstance(late, Queued)
    assert late.position == 40


def test_a_full_waiting_room_refuses_with_a_wait(fleets: list[Fleet]) -> None:
    nodes = _admissions(fleets, "full", Limits(max_join_rate=1.0, max_queue=3))
    answers = [nodes[i % 3].arrive(T0, 0) for i in range(6)]
    assert sum(isinstance(a, Queued) for a in answers) == 3
    refused = answers[-1]
    assert isinstance(refused, Refused)
    assert refused.reason is Reason.QUEUE_FULL
    assert refused.retry_after_s >= 1.0


def test_without_redis_each_node_admits_its_share(redis_server: Redis, fleets: list[Fleet]) -> None:
    for fleet in fleets:
        fleet.heartbeat(T0, {})
        fleet.live_nodes = 3
    nodes = _admissions(fleets, "outage", Limits(max_listeners=30))
    redis_server.kill()
    for node in nodes:
        seated = 0  # as the gate counts this node's own audience and admissions
        for _ in range(15):
            seated += isinstance(node.arrive(T0, seated), Admitted)
        assert seated == 10  # a third of 30
        assert not node.fleet_wide
    # Back: the fleet's admission again, from Redis's state (empty after a restart).
    redis_server.start()
    for fleet in fleets:
        fleet.retry_now()
    answer = nodes[0].arrive(T0, 30, listener="l:back")
    assert isinstance(answer, Admitted)
    assert nodes[0].fleet_wide


def test_a_burst_never_passes_the_capacity_whatever_the_sketch_counts(
    fleets: list[Fleet],
) -> None:
    # Redis's HyperLogLog counts these 200 ids as 197 (and only reaches 200 at the 203rd):
    # seats counted by the sketch alone would let three too many in.
    nodes = _admissions(fleets, "exact", Limits(max_listeners=200))
    admitted = sum(
        isinstance(nodes[i % 3].arrive(T0, 0, listener=f"burst:{i}"), Admitted) for i in range(250)
    )
    assert admitted == 200
