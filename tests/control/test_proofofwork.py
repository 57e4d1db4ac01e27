"""Proof of work for joins: stateless challenges, one-hash checks, single use."""

from __future__ import annotations

import hashlib

import pytest

from podium.control import proofofwork
from podium.control.health import HealthGuard
from podium.errors import InvalidInput

KEY = b"k" * 32
SALT = b"\x01" * 8


def test_a_solution_verifies_and_costs_the_declared_work() -> None:
    challenge = proofofwork.issue(KEY, "space1", 12, 1000.0, SALT)
    nonce = proofofwork.solve(challenge.token, challenge.difficulty)
    verified = proofofwork.verify(KEY, challenge.token, nonce, "space1", 1001.0)
    assert verified.difficulty == 12
    digest = hashlib.sha256(f"{challenge.token}:{nonce}".encode()).digest()
    assert proofofwork.leading_zero_bits(digest) >= 12


def test_leading_zero_bits() -> None:
    assert proofofwork.leading_zero_bits(b"\x00\x00\x80") == 16
    assert proofofwork.leading_zero_bits(b"\x00\x01") == 15
    assert proofofwork.leading_zero_bits(b"\xff") == 0
    assert proofofwork.leading_zero_bits(b"\x00\x00") == 16


def bad_nonce(token: str, difficulty: int) -> str:
    nonce = 0
    prefix = token.encode() + b":"
    while (
        proofofwork.leading_zero_bits(hashlib.sha256(prefix + str(nonce).encode()).digest())
        >= difficulty
    ):
        nonce += 1
    return str(nonce)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t, n: (t, bad_nonce(t, 12)), "does not solve"),
        (lambda t, n: (t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), n), "not issued here"),
        (lambda t, n: ("!!" + t, n), "malformed"),
        (lambda t, n: (t, "12a"), "decimal digits"),
        (lambda t, n: (t, "1" * 40), "decimal digits"),
        (lambda t, n: ("", n), "malformed"),
    ],
)
def test_forged_and_wrong_solutions_are_refused(mutate, message) -> None:  # type: ignore[no-untyped-def]
    challenge = proofofwork.issue(KEY, "space1", 12, 1000.0, SALT)
    nonce = proofofwork.solve(challenge.token, 12)
    token, nonce = mutate(challenge.token, nonce)
    with pytest.raises(InvalidInput, match=message):
        proofofwork.verify(KEY, token, nonce, "space1", 1001.0)


def test_other_space_expired_and_other_key_are_refused() -> None:
    challenge = proofofwork.issue(KEY, "space1", 10, 1000.0, SALT)
    nonce = proofofwork.solve(challenge.token, 10)
    with pytest.raises(InvalidInput, match="another space"):
        proofofwork.verify(KEY, challenge.token, nonce, "space2", 1001.0)
    with pytest.raises(InvalidInput, match="expired"):
        proofofwork.verify(KEY, challenge.token, nonce, "space1", 1000.0 + proofofwork.TTL_S)
    with pytest.raises(InvalidInput, match="not issued here"):
        proofofwork.verify(b"x" * 32, challenge.token, nonce, "space1", 1001.0)


def test_a_token_is_spent_once() -> None:
    spent = proofofwork.SpentTokens(max_tokens=3)
    assert spent.spend("a", 10.0, 0.0)
    assert not spent.spend("a", 10.0, 1.0)
    for name in "bcdef":
        assert spent.spend(name, 10.0, 1.0)
    assert len(spent) <= 3


def test_difficulty_grows_a_bit_per_doubling_of_pressure() -> None:
    assert proofofwork.difficulty_for(1.0, 16) == 16
    assert proofofwork.difficulty_for(2.0, 16) == 17
    assert proofofwork.difficulty_for(16.0, 16) == 20
    assert proofofwork.difficulty_for(1e12, 16) == proofofwork.MAX_DIFFICULTY
    assert proofofwork.difficulty_for(0.0, 2) == proofofwork.MIN_DIFFICULTY


def test_health_guard_sheds_at_once_and_recovers_only_after_calm() -> None:
    guard = HealthGuard(max_lag_s=0.2, max_cpu=0.9, recover_s=3.0)
    assert guard.observe(0.0, 0.01, 0.3)
    assert not guard.observe(1.0, 0.5, 0.3)  # a late loop
    assert not guard.observe(2.0, 0.15, 0.3)  # better, but not calm (over half the limit)
    assert not guard.observe(3.0, 0.05, 0.3)
    assert not guard.observe(5.0, 0.05, 0.3)
    assert guard.observe(6.1, 0.05, 0.3)  # calm for 3 s
    assert guard.observe(7.0, 0.01, 0.99)  # a busy CPU alone is a loop doing its work
    assert not guard.observe(8.0, 0.15, 0.99)  # busy and starting to run late: shed
