"""Bearer credentials: random identifiers and secrets, and how they are stored.

A credential reads ``<prefix>_<id>.<secret>``. The id finds the row; only a SHA-256 of
the 256-bit secret is stored, compared in constant time. A fast hash is right here (unlike
for passwords) because the secret is random, not chosen by a person.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 letters: see new_id


def new_id(length: int = 12) -> str:
    """A random identifier that is safe in URLs and unambiguous when read aloud."""
    # One read of the system's randomness, not one per character (joins mint one each).
    # The alphabet has 32 letters, so the low 5 bits of each byte pick one uniformly.
    return "".join(_ID_ALPHABET[b & 31] for b in secrets.token_bytes(length))


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class Credential:
    prefix: str
    id: str
    secret: str

    @classmethod
    def new(cls, prefix: str) -> Credential:
        return cls(prefix, new_id(), secrets.token_urlsafe(32))

    @classmethod
    def parse(cls, text: str, prefix: str) -> Credential | None:
        """Return the credential, or ``None`` if ``text`` does not have the shape."""
        head, sep, secret = text.partition(".")
        if not sep or not head.startswith(prefix + "_") or not 20 <= len(secret) <= 64:
            return None
        ident = head[len(prefix) + 1 :]
        if not 8 <= len(ident) <= 24 or not ident.isalnum():
            return None
        return cls(prefix, ident, secret)

    def render(self) -> str:
        return f"{self.prefix}_{self.id}.{self.secret}"

    def matches(self, stored_hash: bytes) -> bool:
        return hmac.compare_digest(hash_secret(self.secret), stored_hash)
