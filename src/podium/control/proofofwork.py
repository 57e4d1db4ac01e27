"""Proof of work for joining under attack: costly to solve in bulk, one hash to check.

When a flood of joins hits a space (or an operator says so), each join must carry the
solution of a fresh challenge: a nonce such that ``SHA-256(token ":" nonce)`` starts with
``difficulty`` zero bits. A person's browser solves 16 bits in well under a second; a
script joining a thousand times a second pays a thousand times that.

Challenges are stateless: the token is an HMAC-signed record of the space, the time, the
difficulty and some randomness, so any node can check it. Only the set of tokens already
spent is kept (until they expire), so a solution cannot be replayed. A pure core: time,
keys and randomness are arguments.

Token text: unpadded base64url of ``version u8 | issued_ms u64 | difficulty u8 | salt 8 |
space_len u8 | space | mac 16``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

from podium.errors import InvalidInput

VERSION = 1
TTL_S = 120.0
MIN_DIFFICULTY = 8
MAX_DIFFICULTY = 26
MAX_TEXT = 400
MAX_NONCE = 32
_DOMAIN = b"podium-join-pow\x00"
_HEAD = struct.Struct(">BQB8s")
_MAC_BYTES = 16
_SHAPE = re.compile(r"[A-Za-z0-9_-]+")
_NONCE = re.compile(r"[0-9]{1,32}")


@dataclass(frozen=True, slots=True)
class Challenge:
    token: str
    difficulty: int
    expires_at: float


def issue(key: bytes, space_id: str, difficulty: int, now: float, salt: bytes) -> Challenge:
    """A fresh challenge for a join to ``space_id``; ``salt`` is 8 random bytes."""
    if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be in [{MIN_DIFFICULTY}, {MAX_DIFFICULTY}]")
    if len(salt) != 8:
        raise ValueError("salt must be 8 bytes")
    space = space_id.encode()
    if not 1 <= len(space) <= 255:
        raise ValueError("space_id must be 1 to 255 bytes")
    body = _HEAD.pack(VERSION, round(now * 1000), difficulty, salt) + bytes([len(space)]) + space
    token = base64.urlsafe_b64encode(body + _mac(key, body)).rstrip(b"=").decode("ascii")
    return Challenge(token, difficulty, now + TTL_S)


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def solve(token: str, difficulty: int, start: int = 0) -> str:
    """The first nonce from ``start`` that meets ``difficulty`` (what a client does)."""
    prefix = token.encode() + b":"
    nonce = start
    while leading_zero_bits(hashlib.sha256(prefix + str(nonce).encode()).digest()) < difficulty:
        nonce += 1
    return str(nonce)


class SpentTokens:
    """Tokens already used, kept until they expire, so a solution works once."""

    def __init__(self, max_tokens: int = 1_000_000) -> None:
        self._spent: dict[str, float] = {}
        self._max = max_tokens

    def spend(self, token: str, expires_at: float, now: float) -> bool:
        """Mark ``token`` spent; False if it already was."""
        if token in self._spent:
            return False
        if len(self._spent) >= self._max:
            self._prune(now)
        self._spent[token] = expires_at
        return True

    def _prune(self, now: float) -> None:
        self._spent = {t: exp for t, exp in self._spent.items() if exp > now}
        while len(self._spent) >= self._max:  # still full of live tokens: drop the oldest
            del self._spent[next(iter(self._spent))]

    def __len__(self) -> int:
        return len(self._spent)


def verify(key: bytes, token: str, nonce: str, space_id: str, now: float) -> Challenge:
    """Check a solution; return its challenge. Raises :class:`InvalidInput` saying why.

    The cost is one HMAC and one SHA-256, whatever was sent. Spending the token (so it
    cannot be reused) is the caller's, with :class:`SpentTokens`.
    """
    if not (0 < len(token) <= MAX_TEXT and _SHAPE.fullmatch(token)):
        raise InvalidInput("the proof-of-work token is malformed")
    if not _NONCE.fullmatch(nonce):
        raise InvalidInput(f"the proof-of-work nonce must be 1 to {MAX_NONCE} decimal digits")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("the proof-of-work token is malformed") from exc
    if len(raw) < _HEAD.size + 2 + _MAC_BYTES:
        raise InvalidInput("the proof-of-work token is malformed")
    body, tag = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(_mac(key, body), tag):
        raise InvalidInput("the proof-of-work token was not issued here; ask for a new one")
    version, issued_ms, difficulty, _ = _HEAD.unpack_from(body)
    size = body[_HEAD.size]
    space = body[_HEAD.size + 1 :]
    if version != VERSION or len(space) != size:
        raise InvalidInput("the proof-of-work token is malformed")
    if space.decode(errors="replace") != space_id:
        raise InvalidInput("the proof-of-work token is for another space")
    expires_at = issued_ms / 1000 + TTL_S
    if now >= expires_at:
        raise InvalidInput("the proof-of-work challenge expired; solve a new one")
    digest = hashlib.sha256(token.encode() + b":" + nonce.encode()).digest()
    if leading_zero_bits(digest) < difficulty:
        raise InvalidInput("the proof-of-work nonce does not solve the challenge")
    return Challenge(token, difficulty, expires_at)


def difficulty_for(pressure: float, base: int = 16) -> int:
    """Harder as join pressure (arrivals / the allowed rate) grows: +1 bit per doubling."""
    extra = 0
    while pressure >= 2.0 and extra < MAX_DIFFICULTY - base:
        pressure /= 2.0
        extra += 1
    return max(MIN_DIFFICULTY, min(MAX_DIFFICULTY, base + extra))


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + body, hashlib.sha256).digest()[:_MAC_BYTES]
