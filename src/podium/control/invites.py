"""Invitations to speak: signed, expiring links a host or co-host hands out.

An invite reads ``<expires>.<mac>``: the expiry (Unix seconds) and an HMAC-SHA256 over
the space and the expiry, so any node checks it without a database and it is good for
this space only. Whoever holds it may join the stage until it expires (like any link,
share it with the person meant to use it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from podium.errors import Unauthenticated

_LABEL = b"podium-invite\0"
MAX_TTL = 7 * 24 * 3600.0


def _mac(key: bytes, space_id: str, expires: int) -> str:
    digest = hmac.new(key, _LABEL + f"{space_id}\0{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def issue(key: bytes, space_id: str, now: float, ttl: float) -> tuple[str, int]:
    """An invite for ``space_id`` good for ``ttl`` seconds; returns it and its expiry."""
    if not 0 < ttl <= MAX_TTL:
        raise ValueError("an invite lasts between 0 and 7 days")
    expires = int(now + ttl)
    return f"{expires}.{_mac(key, space_id, expires)}", expires


def verify(keys: bytes | Sequence[bytes], text: str, space_id: str, now: float) -> None:
    """Raise :class:`Unauthenticated` unless ``text`` is a live invite to ``space_id``
    signed with one of ``keys`` (the current one first, then one retired by rotation)."""
    head, sep, mac = text.partition(".")
    if not sep or not head.isdigit() or len(head) > 12 or len(mac) != 24:
        raise Unauthenticated("the invite link is malformed")
    expires = int(head)
    candidates = [keys] if isinstance(keys, bytes) else list(keys)
    if not any(hmac.compare_digest(mac, _mac(key, space_id, expires)) for key in candidates):
        raise Unauthenticated("the invite is not valid for this space")
    if now >= expires:
        raise Unauthenticated("the invite has expired; ask the host for a new one")
