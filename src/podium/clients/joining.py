"""The join contract, as a client reads it: every answer to ``POST …/join`` as a value.

A space under load answers a join in one of a few documented ways (DESIGN.md, principle
3: overload is answered, never hidden); :func:`read_join_answer` turns the status, headers
and body into one of them, or into :class:`Unexpected` when the answer does not follow the
contract:

============  ==========================================  ==========================
answer        meaning                                     what a client does
============  ==========================================  ==========================
200           :class:`Admitted`: a ticket (or a replay)   listen
202           :class:`Queued`: a place in the line        wait ``retry_after_s``, ask
                                                          again with ``queue_token``
428           :class:`Challenge`: proof of work           solve, ask again with it
429, 503      :class:`Refused`, with a ``reason``         back off (full jitter, at
                                                          least ``Retry-After``)
============  ==========================================  ==========================

The proof of work: a decimal nonce such that ``SHA-256(token ":" nonce)`` has at least
``difficulty`` leading zero bits. :func:`solve_some` searches a slice of nonces, so that
an asyncio shell can solve in slices without starving its other tasks.

Pure: no I/O, no clocks (the wall time for an HTTP-date ``Retry-After`` is an argument).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podium.clients.listen import parse_retry_after

QUEUE_REASONS = frozenset({"capacity", "join_rate", "overload", "pre_start"})


@dataclass(frozen=True, slots=True)
class Admitted:
    """200: in. ``replay_url`` is set (and ``replay`` true) when the space has ended.
    ``status`` is ``None`` for a server that predates admission control."""

    ticket: str
    listener_id: str
    beacon_every_s: float
    state_url: str
    playlist_url: str
    status: str | None
    replay_url: str | None = None

    @property
    def replay(self) -> bool:
        return self.status == "replay"


@dataclass(frozen=True, slots=True)
class Queued:
    """202: a place in the waiting room. ``position`` is 1-based, ``None`` before a
    scheduled start; ``estimated_wait_s`` is ``None`` when nobody can know (a seat must
    free up first)."""

    position: int | None
    queue_length: int
    estimated_wait_s: float | None
    retry_after_s: float
    queue_token: str
    reason: str
    starts_at: str | None


@dataclass(frozen=True, slots=True)
class Challenge:
    """428: solve this proof of work, then join again with the solution."""

    token: str
    difficulty: int


@dataclass(frozen=True, slots=True)
class Refused:
    """429 or 503 with a machine-readable ``reason``; come back after ``retry_after_s``
    (the ``Retry-After`` header, else the body's ``retry_after_s``)."""

    status: int
    reason: str
    retry_after_s: float | None
    scope: str | None = None
    """Whose budget ran out, where the server says (``address``: the client address's)."""


@dataclass(frozen=True, slots=True)
class Unexpected:
    """Not an answer the contract allows; ``why`` says what was wrong."""

    status: int
    why: str


JoinAnswer = Admitted | Queued | Challenge | Refused | Unexpected


def join_body(queue_token: str | None, pow_token: str | None, nonce: str | None) -> bytes:
    """The JSON body of a join: empty when there is nothing to send."""
    body: dict[str, Any] = {}
    if queue_token is not None:
        body["queue_token"] = queue_token
    if pow_token is not None and nonce is not None:
        body["pow"] = {"token": pow_token, "nonce": nonce}
    return json.dumps(body, separators=(",", ":")).encode() if body else b""


def read_join_answer(
    status: int, headers: Mapping[str, str], body: bytes, wall_now: float
) -> JoinAnswer:
    """What a join answer means (``headers`` with lower-case names)."""
    try:
        document = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return Unexpected(status, f"the {status} answer's body is not JSON")
    if not isinstance(document, dict):
        return Unexpected(status, f"the {status} answer's body is not a JSON object")
    try:
        if status == 200:
            return _admitted(document)
        if status == 202:
            return _queued(document)
        if status == 428:
            return _challenge(document)
        if status in (429, 503):
            return _refused(status, headers, document, wall_now)
    except (KeyError, TypeError, ValueError) as exc:
        return Unexpected(status, f"the {status} answer is malformed: {exc}")
    detail = document.get("detail")
    return Unexpected(
        status, f"status {status}" + (f": {detail}" if isinstance(detail, str) else "")
    )


def _text(document: Mapping[str, Any], key: str) -> str:
    value = document[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty string")
    return value


def _number(document: Mapping[str, Any], key: str, *, optional: bool = False) -> float | None:
    value = document.get(key) if optional else document[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key!r} must be a number")
    if value < 0:
        raise ValueError(f"{key!r} must not be negative")
    return float(value)


def _admitted(document: Mapping[str, Any]) -> Admitted:
    status = document.get("status")
    if status not in (None, "admitted", "replay"):
        raise ValueError(f"'status' {status!r} is not admitted or replay")
    replay_url = _text(document, "replay_url") if status == "replay" else None
    beacon = _number(document, "beacon_every_s")
    assert beacon is not None
    if beacon <= 0:
        raise ValueError("'beacon_every_s' must be positive")
    return Admitted(
        ticket=_text(document, "ticket"),
        listener_id=_text(document, "listener_id"),
        beacon_every_s=beacon,
        state_url=_text(document, "state_url"),
        playlist_url=_text(document, "playlist_url"),
        status=status,
        replay_url=replay_url,
    )


def _queued(document: Mapping[str, Any]) -> Queued:
    if document.get("status") != "queued":
        raise ValueError(f"'status' is {document.get('status')!r}, not 'queued'")
    reason = _text(document, "reason")
    if reason not in QUEUE_REASONS:
        raise ValueError(f"unknown queue reason {reason!r}")
    position = document["position"]
    if position is not None and (
        isinstance(position, bool) or not isinstance(position, int) or position < 1
    ):
        raise ValueError("'position' must be a positive integer or null")
    length = document["queue_length"]
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError("'queue_length' must be a non-negative integer")
    retry = _number(document, "retry_after_s")
    assert retry is not None
    starts_at = document.get("starts_at")
    if starts_at is not None and not isinstance(starts_at, str):
        raise ValueError("'starts_at' must be a string or null")
    return Queued(
        position=position,
        queue_length=length,
        estimated_wait_s=_number(document, "estimated_wait_s", optional=True),
        retry_after_s=retry,
        queue_token=_text(document, "queue_token"),
        reason=reason,
        starts_at=starts_at,
    )


def _challenge(document: Mapping[str, Any]) -> Challenge:
    if document.get("reason") != "proof_of_work":
        raise ValueError(f"'reason' is {document.get('reason')!r}, not 'proof_of_work'")
    challenge = document["challenge"]
    if not isinstance(challenge, dict):
        raise ValueError("'challenge' must be an object")
    difficulty = challenge["difficulty"]
    if isinstance(difficulty, bool) or not isinstance(difficulty, int):
        raise ValueError("'difficulty' must be an integer")
    if not 0 <= difficulty <= 64:
        raise ValueError(f"difficulty {difficulty} is out of reason (0 to 64 bits)")
    return Challenge(_text(challenge, "token"), difficulty)


def _refused(
    status: int, headers: Mapping[str, str], document: Mapping[str, Any], wall_now: float
) -> Refused:
    reason = _text(document, "reason")
    retry = parse_retry_after(headers.get("retry-after"), wall_now)
    if retry is None:
        retry = _number(document, "retry_after_s", optional=True)
    if retry is None:
        raise ValueError("a refusal must say when to retry (Retry-After or retry_after_s)")
    scope = document.get("scope")
    return Refused(status, reason, retry, scope if isinstance(scope, str) else None)


# -- proof of work -----------------------------------------------------------------------


def leading_zero_bits(digest: bytes) -> int:
    """How many bits at the start of ``digest`` are zero."""
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def solve_some(token: str, difficulty: int, start: int, count: int) -> str | None:
    """The first nonce in ``[start, start + count)`` that solves the challenge, or ``None``.

    A nonce solves it when ``SHA-256((token + ":" + nonce).encode())`` has at least
    ``difficulty`` leading zero bits, i.e. read as a 256-bit integer it is below
    ``2 ** (256 - difficulty)``. About ``2 ** difficulty`` tries are needed on average.
    """
    bound = 1 << (256 - difficulty)
    prefix = hashlib.sha256(token.encode() + b":")
    for nonce in range(start, start + count):
        attempt = prefix.copy()
        attempt.update(str(nonce).encode())
        if int.from_bytes(attempt.digest(), "big") < bound:
            return str(nonce)
    return None


__all__ = [
    "QUEUE_REASONS",
    "Admitted",
    "Challenge",
    "JoinAnswer",
    "Queued",
    "Refused",
    "Unexpected",
    "join_body",
    "leading_zero_bits",
    "read_join_answer",
    "solve_some",
]
