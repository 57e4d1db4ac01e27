"""The join contract as the load generator reads it (podium.clients.joining), the flood's
judgement of answers (podium.clients.flood.judge), and the storm report's definitions
(podium.clients.loadreport): pure functions on hand-made values."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from podium.clients.flood import JOIN_HAMMER, PATTERNS, Hit, judge, schedule
from podium.clients.joining import (
    Admitted,
    Challenge,
    Queued,
    Refused,
    Unexpected,
    join_body,
    leading_zero_bits,
    read_join_answer,
    solve_some,
)
from podium.clients.load import StormPlan, arrival_offset, source_address, source_addresses
from podium.clients.loadreport import ListenerRecord, Tally, count_overtakes, timeline
from podium.errors import ClientError

TICKET = {
    "ticket": "t",
    "listener_id": "l:1",
    "expires_at": "2030-01-01T00:00:00Z",
    "beacon_every_s": 15,
    "state_url": "http://h/api/v1/spaces/s/state",
    "playlist_url": "http://h/hls/s/live.m3u8",
}
QUEUED = {
    "status": "queued",
    "position": 3,
    "queue_length": 10,
    "estimated_wait_s": 1.5,
    "retry_after_s": 1.6,
    "queue_token": "q",
    "reason": "join_rate",
    "starts_at": None,
}


def answer(status: int, document: Any, headers: dict[str, str] | None = None) -> Any:
    return read_join_answer(status, headers or {}, json.dumps(document).encode(), 0.0)


def test_admitted_queued_and_replay_answers() -> None:
    admitted = answer(200, {"status": "admitted", **TICKET})
    assert isinstance(admitted, Admitted)
    assert not admitted.replay
    assert admitted.beacon_every_s == 15
    # A server without admission control answers a ticket without a status.
    assert isinstance(answer(200, TICKET), Admitted)
    replay = answer(200, {"status": "replay", "replay_url": "http://h/r.m4a", **TICKET})
    assert isinstance(replay, Admitted)
    assert replay.replay
    queued = answer(202, QUEUED)
    assert queued == Queued(3, 10, 1.5, 1.6, "q", "join_rate", None)
    pre = answer(202, {**QUEUED, "position": None, "estimated_wait_s": None, "reason": "pre_start"})
    assert isinstance(pre, Queued)
    assert pre.position is None


def test_challenges_and_refusals() -> None:
    challenge = answer(
        428, {"reason": "proof_of_work", "challenge": {"token": "abc", "difficulty": 12}}
    )
    assert challenge == Challenge("abc", 12)
    refused = answer(429, {"reason": "rate_limited", "retry_after_s": 2.5})
    assert refused == Refused(429, "rate_limited", 2.5)
    scoped = answer(429, {"reason": "rate_limited", "scope": "address", "retry_after_s": 1})
    assert scoped == Refused(429, "rate_limited", 1.0, "address")
    # The header wins over the body: Retry-After is what a client must honour.
    full = answer(503, {"reason": "queue_full", "retry_after_s": 2.5}, {"retry-after": "7"})
    assert full == Refused(503, "queue_full", 7.0)


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (200, b"not json", "not JSON"),
        (200, b"[1]", "not a JSON object"),
        (200, json.dumps({**TICKET, "ticket": ""}).encode(), "ticket"),
        (200, json.dumps({**TICKET, "status": "maybe"}).encode(), "status"),
        (202, json.dumps({**QUEUED, "position": 0}).encode(), "position"),
        (202, json.dumps({**QUEUED, "reason": "because"}).encode(), "reason"),
        (202, json.dumps({**QUEUED, "retry_after_s": -1}).encode(), "retry_after_s"),
        (428, json.dumps({"reason": "proof_of_work"}).encode(), "challenge"),
        (429, json.dumps({"detail": "slow down"}).encode(), "reason"),
        (503, json.dumps({"reason": "overloaded"}).encode(), "retry"),
        (500, json.dumps({"detail": "boom"}).encode(), "boom"),
        (404, json.dumps({"detail": "no such space"}).encode(), "no such space"),
    ],
)
def test_answers_outside_the_contract_are_unexpected(status: int, body: bytes, why: str) -> None:
    result = read_join_answer(status, {}, body, 0.0)
    assert isinstance(result, Unexpected)
    assert why in result.why


def test_join_body() -> None:
    assert join_body(None, None, None) == b""
    assert json.loads(join_body("q", "t", "42")) == {
        "queue_token": "q",
        "pow": {"token": "t", "nonce": "42"},
    }


def test_proof_of_work_solutions_verify_with_hashlib() -> None:
    for difficulty in (0, 4, 12):
        nonce = solve_some("token-x", difficulty, 0, 1 << 20)
        assert nonce is not None
        digest = hashlib.sha256(f"token-x:{nonce}".encode()).digest()
        assert leading_zero_bits(digest) >= difficulty
        # The first solution: no smaller nonce solves it.
        for smaller in range(int(nonce)):
            earlier = hashlib.sha256(f"token-x:{smaller}".encode()).digest()
            assert leading_zero_bits(earlier) < difficulty
    assert leading_zero_bits(b"\x00\x0f" + b"\xff" * 30) == 12
    assert solve_some("token-x", 30, 0, 10) is None


def test_flood_judgement() -> None:
    forged = next(p for p in PATTERNS if p.name == "forged_ticket")
    oversized = next(p for p in PATTERNS if p.name == "oversized_body")
    assert judge(forged, Hit(401, "urn:podium:problem:unauthenticated")) is None
    assert judge(forged, Hit(429)) is None
    assert judge(forged, Hit(503, "overloaded")) is None
    assert judge(forged, Hit(503)) == "503 without a reason"
    assert judge(forged, Hit(500)) == "500"
    assert "expected" in (judge(forged, Hit(204)) or "")  # a forged ticket accepted!
    assert judge(oversized, Hit(None, cut="closed")) is None
    assert judge(forged, Hit(None, cut="closed")) is not None
    assert judge(JOIN_HAMMER, Hit(202)) is None
    cycle = schedule()
    assert cycle.count(JOIN_HAMMER) * 4 == len(cycle)
    assert set(cycle) == {*PATTERNS, JOIN_HAMMER}


def test_plan_bounds() -> None:
    StormPlan("http://127.0.0.1:1", "s", 100_000, 3600).check()
    for bad in (
        StormPlan("http://127.0.0.1:1", "s", 100_001, 1),
        StormPlan("http://127.0.0.1:1", "s", 0, 1),
        StormPlan("http://127.0.0.1:1", "s", 10, 3601),
        StormPlan("http://127.0.0.1:1", "s", 10, 1, duration_s=7200),
        StormPlan("ftp://127.0.0.1:1", "s", 10, 1),
        StormPlan("http://127.0.0.1:1", "../x", 10, 1),
        StormPlan("http://127.0.0.1:1", "s", 10, 1, source_network="not a network"),
    ):
        with pytest.raises(ClientError):
            bad.check()


def test_arrivals_and_source_addresses() -> None:
    assert [arrival_offset(i, 4, 2.0) for i in range(4)] == [0.0, 0.5, 1.0, 1.5]
    network = source_addresses("127.1.0.0/30")
    assert [source_address(network, i) for i in range(3)] == ["127.1.0.1", "127.1.0.2", "127.1.0.1"]
    assert source_address(source_addresses("127.0.0.9/32"), 5) == "127.0.0.9"
    assert source_address(None, 5) is None


def record(
    index: int, queued: float | None, admitted: float | None, **extra: Any
) -> ListenerRecord:
    return ListenerRecord(index, 0.0, first_queued_at=queued, admitted_at=admitted, **extra)


def test_overtakes_follow_queue_order_with_tolerance() -> None:
    in_order = [record(i, 1.0 + i * 0.1, 5.0 + i * 0.2) for i in range(5)]
    assert count_overtakes(in_order, 0.5) == 0
    # The fifth, queued last, is let in two seconds before the first.
    jumped = [*in_order[:4], record(4, 1.4, 3.0)]
    assert count_overtakes(jumped, 0.5) == 1
    assert count_overtakes(jumped, 3.0) == 0
    # Someone ahead still waiting when a later one is admitted: overtaken.
    waiting = [record(0, 1.0, None, left_at=20.0), record(1, 1.1, 5.0)]
    assert count_overtakes(waiting, 0.5) == 1
    # Someone ahead who left the line before: not overtaken.
    left = [record(0, 1.0, None, left_at=2.0), record(1, 1.1, 5.0)]
    assert count_overtakes(left, 0.5) == 0
    # Told to check back in 4 s, the first saw its grant up to 4 s late: the second, let
    # in 3 s before that was seen, may have been granted after it. Told 1 s: overtaken.
    patient = [record(0, 1.0, 8.0, last_wait_s=4.0), record(1, 1.1, 5.0)]
    assert count_overtakes(patient, 0.5) == 0
    hasty = [record(0, 1.0, 8.0, last_wait_s=1.0), record(1, 1.1, 5.0)]
    assert count_overtakes(hasty, 0.5) == 1


def test_timeline_counts_each_second() -> None:
    tally = Tally(started_at=100.0)
    tally.refused(101.5, "rate_limited")
    records = [
        ListenerRecord(0, 100.1, admitted_at=100.2, first_audio_at=100.4),
        ListenerRecord(1, 100.9, first_queued_at=101.0, admitted_at=102.5),
        ListenerRecord(2, 101.2, first_queued_at=101.3, left_at=103.1, outcome="queued"),
    ]
    rows = timeline(records, tally, 103.5)
    assert [r["arrivals"] for r in rows] == [2, 1, 0, 0]
    assert [r["admitted"] for r in rows] == [1, 0, 1, 0]
    assert [r["queued"] for r in rows] == [0, 2, 0, 0]
    assert [r["in_queue"] for r in rows] == [0, 2, 2, 1]
    assert [r["refused"] for r in rows] == [0, 1, 0, 0]
