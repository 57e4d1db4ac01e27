"""Admission control and the waiting room, as a pure core: time and counts are arguments."""

from __future__ import annotations

import random

import pytest

from podium.control.admission import (
    MAX_RETRY_S,
    Admitted,
    Limits,
    Queued,
    Reason,
    Refused,
    SpaceAdmission,
)


def gate(**limits: float | int | None) -> SpaceAdmission:
    return SpaceAdmission(Limits(**limits), rng=random.Random(7))  # type: ignore[arg-type]


def queued(decision: object) -> Queued:
    assert isinstance(decision, Queued), decision
    return decision


def test_no_limits_admits_everyone_at_once() -> None:
    admission = gate()
    assert all(isinstance(admission.arrive(0.0, seated=n), Admitted) for n in range(1000))
    assert admission.capacity(0.0, 1000).admitting


def test_join_rate_admits_a_burst_then_queues_in_order() -> None:
    admission = gate(max_join_rate=10)
    first = [admission.arrive(0.0, 0) for _ in range(10)]
    assert all(isinstance(d, Admitted) for d in first)  # one second of burst
    waiting = [queued(admission.arrive(0.0, 10)) for _ in range(30)]
    assert [w.position for w in waiting] == list(range(1, 31))
    assert all(w.reason is Reason.JOIN_RATE for w in waiting)
    # Position p waits p / rate: the estimate is exact for a rate limit.
    assert [w.estimated_wait_s for w in waiting[:3]] == pytest.approx([0.1, 0.2, 0.3])
    assert waiting[-1].estimated_wait_s == pytest.approx(3.0)


def test_queue_is_served_first_in_first_out_at_the_rate() -> None:
    admission = gate(max_join_rate=10)
    for _ in range(10):
        admission.arrive(0.0, 0)
    waiting = [queued(admission.arrive(0.0, 10)) for _ in range(20)]
    admitted_at: dict[str, float] = {}
    t = 0.0
    while len(admitted_at) < len(waiting) and t < 10:
        t = round(t + 0.05, 2)
        for w in waiting:
            if w.entry_id in admitted_at:
                continue
            if isinstance(admission.poll(w.entry_id, t, 10), Admitted):
                admitted_at[w.entry_id] = t
    order = sorted(waiting, key=lambda w: admitted_at[w.entry_id])
    assert [w.position for w in order] == list(range(1, 21))
    # 20 people at 10 a second: the last is in at 2 s, as its estimate said.
    assert admitted_at[waiting[-1].entry_id] == pytest.approx(2.0, abs=0.06)
    for w in waiting:
        assert w.estimated_wait_s is not None
        assert admitted_at[w.entry_id] == pytest.approx(w.estimated_wait_s, abs=0.06)


def test_a_newcomer_never_overtakes_the_queue() -> None:
    admission = gate(max_join_rate=1)
    assert isinstance(admission.arrive(0.0, 0), Admitted)
    early = queued(admission.arrive(0.0, 1))
    # A token is back at 1 s: it belongs to the one waiting, not to a new arrival.
    late = queued(admission.arrive(1.0, 1))
    assert late.position == 1 or late.position == 2
    assert isinstance(admission.poll(early.entry_id, 1.0, 1), Admitted)
    assert queued(admission.poll(late.entry_id, 1.0, 2)).position == 1


def test_seats_full_gives_an_honest_unknown_wait_and_existing_listeners_stay() -> None:
    admission = gate(max_listeners=3)
    assert all(isinstance(admission.arrive(0.0, n), Admitted) for n in range(3))
    wait = queued(admission.arrive(0.0, 3))
    assert wait.reason is Reason.CAPACITY
    assert wait.estimated_wait_s is None  # nobody can promise when someone leaves
    assert wait.retry_after_s == MAX_RETRY_S
    assert isinstance(admission.poll(wait.entry_id, 5.0, 3), Queued)
    # Someone left: the seat goes to the head of the line.
    assert isinstance(admission.poll(wait.entry_id, 10.0, 2), Admitted)


def test_a_grant_holds_the_seat_until_collected_or_expired() -> None:
    admission = gate(max_listeners=1, claim_grace_s=30, abandon_s=1000)
    first = queued(admission.arrive(0.0, 1))
    second = queued(admission.arrive(0.0, 1))
    # A seat frees at t=1; it is granted to `first`, who has not come back yet.
    assert queued(admission.poll(second.entry_id, 1.0, 0)).position == 1
    assert not admission.capacity(1.0, 0).admitting
    # `first` never collects it: after the grace the seat goes to the next.
    assert isinstance(admission.poll(second.entry_id, 40.0, 0), Admitted)
    # `first` coming back now is placed at the back (its grant lapsed).
    assert isinstance(admission.poll(first.entry_id, 41.0, 1), Queued)


def test_abandoned_entries_are_skipped_without_spending_a_token() -> None:
    admission = gate(max_join_rate=1, abandon_s=10)
    admission.arrive(0.0, 0)
    gone = queued(admission.arrive(0.0, 1))
    stays = queued(admission.arrive(0.0, 1))
    assert (gone.position, stays.position) == (1, 2)
    # `gone` never polls; `stays` keeps polling until a token is due after the abandon time.
    for t in range(1, 20):
        decision = admission.poll(stays.entry_id, float(t) + 0.5, 1)
        if isinstance(decision, Admitted):
            break
    assert isinstance(decision, Admitted)


def test_unhealthy_node_queues_new_arrivals_with_overload_reason() -> None:
    admission = gate(max_join_rate=100)
    wait = queued(admission.arrive(0.0, 0, healthy=False))
    assert wait.reason is Reason.OVERLOAD
    assert wait.estimated_wait_s is None
    assert not admission.capacity(0.0, 0, healthy=False).admitting
    assert isinstance(admission.poll(wait.entry_id, 1.0, 0, healthy=True), Admitted)


def test_prequeue_is_shuffled_at_the_start_and_goes_before_later_arrivals() -> None:
    admission = gate(max_join_rate=1)
    early = [queued(admission.arrive(0.0, 0, started=False)) for _ in range(50)]
    assert all(e.reason is Reason.PRE_START and e.position is None for e in early)
    assert admission.capacity(0.0, 0).queue_length == 50
    # (They check back every few seconds; the space starts 20 s later.)
    late = queued(admission.arrive(20.0, 0, started=True))
    assert late.position == 50  # one of the 50 got the single token of burst
    positions = []
    for e in early:
        decision = admission.poll(e.entry_id, 20.0, 1, started=True)
        positions.append(0 if isinstance(decision, Admitted) else queued(decision).position)
    assert sorted(positions) == list(range(50))
    assert positions != sorted(positions)  # the arrival order does not decide


def test_a_full_queue_refuses_with_a_reason_and_a_retry() -> None:
    admission = gate(max_join_rate=1, max_queue=2)
    admission.arrive(0.0, 0)
    queued(admission.arrive(0.0, 1))
    queued(admission.arrive(0.0, 1))
    refused = admission.arrive(0.0, 1)
    assert isinstance(refused, Refused)
    assert refused.reason is Reason.QUEUE_FULL
    assert refused.retry_after_s >= 1


def test_unknown_entry_goes_to_the_back_of_the_line() -> None:
    admission = gate(max_join_rate=1)
    admission.arrive(0.0, 0)
    queued(admission.arrive(0.0, 1))
    assert queued(admission.poll("never-issued", 0.0, 1)).position == 2


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_listeners"):
        Limits(max_listeners=0)
    with pytest.raises(ValueError, match="max_join_rate"):
        Limits(max_join_rate=-1)


def test_the_reason_says_which_limit_a_place_waits_for() -> None:
    admission = gate(max_listeners=5, max_join_rate=1)
    assert isinstance(admission.arrive(0.0, 0), Admitted)
    places = [queued(admission.arrive(0.0, 1)) for _ in range(6)]
    # Seats 2 to 5 are free: those places wait for the rate, with a known estimate.
    assert [p.reason for p in places[:4]] == [Reason.JOIN_RATE] * 4
    assert all(p.estimated_wait_s is not None for p in places[:4])
    # Beyond the free seats they wait for someone to leave: nobody can say when.
    assert [p.reason for p in places[4:]] == [Reason.CAPACITY] * 2
    assert all(p.estimated_wait_s is None for p in places[4:])
