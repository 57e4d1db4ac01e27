"""Listener tickets: the signed, expiring proof of a join that any node verifies alone.

Joining is stateless (DESIGN.md, principle 2): the join endpoint mints a listener id and
returns a ticket; beacons, reactions and the room state present it, and whichever node
receives them checks it with a shared key and the clock, without a database.

The text is unpadded base64url (RFC 4648 §5) of one small binary record::

    version  u8      1
    issued   u64     milliseconds since the Unix epoch
    ttl      u32     milliseconds (so a ticket lives at most ~49.7 days)
    space    u8 len + UTF-8
    listener u8 len + UTF-8
    tier     u8 len + UTF-8
    mac      16 bytes: HMAC-SHA256(key, DOMAIN || everything above), truncated

A 128-bit tag is the usual truncation floor (NIST SP 800-107 §5.3.4 allows ≥ 64 bits; 128
leaves forging out of reach at any request rate). A typical ticket is about 100 characters.

Checks run in an order that leaks nothing to a forger: shape first, then the signature (in
constant time, against every key still accepted), and only for a genuine ticket the space
and the expiry, each refused with its own :class:`~podium.errors.Unauthenticated` message
so a client can tell "join again" from "you sent garbage".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from podium.control.credentials import new_id
from podium.errors import Unauthenticated

VERSION = 1
MAC_BYTES = 16
MAX_TTL = 0xFFFF_FFFF / 1000  # the u32 millisecond field
MAX_TEXT = 600  # longest text worth decoding: three 255-byte fields in base64 is ~1050,
#                 but no real ticket comes near this, and it caps the work a junk header costs
MIN_KEY_BYTES = 16

# Domain separation: the same key may one day sign other things; a MAC made for them can
# never pass as a ticket.
_DOMAIN = b"podium-listener-ticket\x00"
_HEAD = struct.Struct(">BQI")
_TEXT_SHAPE = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Ticket:
    """A verified ticket. Times are seconds since the Unix epoch (millisecond precision)."""

    space_id: str
    listener_id: str
    tier: str
    issued_at: float
    expires_at: float


def new_listener_id() -> str:
    """A fresh random listener id (16 characters, 80 bits), minted by the join endpoint."""
    return new_id(16)


def issue(key: bytes, space_id: str, listener_id: str, tier: str, now: float, ttl: float) -> str:
    """Sign a ticket for ``listener_id`` in ``space_id``, valid for ``ttl`` seconds from ``now``.

    ``key`` is the current signing key (the first of the list given to :func:`verify`).
    Raises :class:`ValueError` for a short key, a ttl outside (0, ~49.7 days], or a field
    that is empty or longer than 255 bytes in UTF-8: these are programming errors, not input.
    """
    _check_key(key)
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"ttl must be in (0, {MAX_TTL:.0f}] seconds")
    if not 0 <= now < 2**53 / 1000:
        raise ValueError("now must be seconds since the Unix epoch")
    body = _HEAD.pack(VERSION, round(now * 1000), round(ttl * 1000))
    for name, value in (("space_id", space_id), ("listener_id", listener_id), ("tier", tier)):
        raw = value.encode()
        if not 1 <= len(raw) <= 255:
            raise ValueError(f"{name} must be 1 to 255 bytes of UTF-8")
        body += bytes([len(raw)]) + raw
    return _b64encode(body + _mac(key, body))


def verify(keys: bytes | Sequence[bytes], text: str, space_id: str, now: float) -> Ticket:
    """Return the ticket ``text`` if it is genuine, for ``space_id`` and unexpired at ``now``.

    ``keys`` is one key or the keys still accepted, newest first: rotating means prepending a
    new key (it signs from then on) and dropping the old one once the longest ttl has passed.
    A ticket expires at ``expires_at``: it is refused when ``now >= expires_at``.

    Raises :class:`Unauthenticated`, and nothing else, with a message that says which of
    these it was: malformed, bad signature, another space, expired.
    """
    key_list = [keys] if isinstance(keys, bytes) else list(keys)
    if not key_list:
        raise ValueError("at least one key is needed to verify tickets")
    for key in key_list:
        _check_key(key)
    raw = _decode(text)
    body, tag = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    # Every key is tried, with no early exit, so timing does not tell which one matched.
    genuine = False
    for key in key_list:
        genuine |= hmac.compare_digest(_mac(key, body), tag)
    if not genuine:
        raise Unauthenticated(
            "the ticket's signature does not match: it was altered or signed with a retired"
            " key; join again"
        )
    ticket = _parse_body(body)
    if ticket.space_id != space_id:
        raise Unauthenticated("the ticket is for another space; join this space to get one")
    if now >= ticket.expires_at:
        raise Unauthenticated(
            f"the ticket expired {now - ticket.expires_at:.0f} s ago; join again for a new one"
        )
    return ticket


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a ticket key must be at least {MIN_KEY_BYTES} bytes")


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + body, hashlib.sha256).digest()[:MAC_BYTES]


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _malformed(why: str) -> Unauthenticated:
    return Unauthenticated(f"the ticket is malformed: {why}")


def _decode(text: str) -> bytes:
    """The bytes of ``text``, which must be canonical unpadded base64url of a plausible size."""
    if not text:
        raise _malformed("it is empty")
    if len(text) > MAX_TEXT:
        raise _malformed(f"it is longer than {MAX_TEXT} characters")
    if not _TEXT_SHAPE.fullmatch(text):
        raise _malformed("it is not base64url text")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _malformed("it is not base64url text") from exc
    # Non-canonical spellings (stray low bits in the last character) decode to the same bytes;
    # refusing them keeps one ticket to one text, so caches and logs cannot be fooled.
    if _b64encode(raw) != text:
        raise _malformed("it is not canonical base64url")
    if len(raw) < _HEAD.size + 3 + MAC_BYTES:
        raise _malformed("it is too short")
    return raw


def _parse_body(body: bytes) -> Ticket:
    """Parse a body whose MAC has been checked; a genuine body that fails is still refused."""
    version, issued_ms, ttl_ms = _HEAD.unpack_from(body)
    if version != VERSION:
        raise _malformed(f"version {version} is not understood (expected {VERSION})")
    fields: list[str] = []
    at = _HEAD.size
    for _ in range(3):
        if at >= len(body):
            raise _malformed("a field is missing")
        size = body[at]
        value = body[at + 1 : at + 1 + size]
        if size == 0 or len(value) != size:
            raise _malformed("a field is cut short")
        try:
            fields.append(value.decode())
        except UnicodeDecodeError as exc:
            raise _malformed("a field is not UTF-8") from exc
        at += 1 + size
    if at != len(body):
        raise _malformed("it has trailing bytes")
    space_id, listener_id, tier = fields
    return Ticket(
        space_id=space_id,
        listener_id=listener_id,
        tier=tier,
        issued_at=issued_ms / 1000,
        expires_at=(issued_ms + ttl_ms) / 1000,
    )
