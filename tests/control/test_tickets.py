from __future__ import annotations

import base64
import hashlib
import hmac
import random
import string
import struct

import pytest

from podium.control.tickets import MAX_TEXT, Ticket, issue, new_listener_id, verify
from podium.errors import Unauthenticated

KEY = b"k" * 32
OLD_KEY = b"o" * 32
NOW = 1_700_000_000.25


def _ticket(key: bytes = KEY, space: str = "space123abcd", ttl: float = 3600.0) -> str:
    return issue(key, space, "listener0000abcd", "free", NOW, ttl)


def test_round_trip_gives_the_fields_back() -> None:
    text = _ticket()
    assert len(text) < 120
    assert set(text) <= set(string.ascii_letters + string.digits + "-_")
    ticket = verify(KEY, text, "space123abcd", NOW + 10)
    assert ticket == Ticket("space123abcd", "listener0000abcd", "free", NOW, NOW + 3600)


def test_unicode_fields_round_trip() -> None:
    text = issue(KEY, "espace-é", "écouteur", "prémium", NOW, 5)
    assert verify(KEY, text, "espace-é", NOW).tier == "prémium"


def test_a_ticket_for_another_space_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="another space"):
        verify(KEY, _ticket(), "otherspace12", NOW)


def test_expiry_is_exclusive_at_expires_at() -> None:
    text = _ticket(ttl=60)
    assert verify(KEY, text, "space123abcd", NOW + 59.999).listener_id == "listener0000abcd"
    with pytest.raises(Unauthenticated, match="expired"):
        verify(KEY, text, "space123abcd", NOW + 60)
    with pytest.raises(Unauthenticated, match="expired 940 s ago"):
        verify(KEY, text, "space123abcd", NOW + 1000)


def test_every_single_bit_flip_is_refused() -> None:
    raw = base64.urlsafe_b64decode(_ticket() + "==")
    for i in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[i // 8] ^= 1 << (i % 8)
        text = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
        with pytest.raises(Unauthenticated, match="signature does not match"):
            verify(KEY, text, "space123abcd", NOW)


def test_wrong_key_is_refused_and_rotation_accepts_old_keys() -> None:
    old = _ticket(key=OLD_KEY)
    with pytest.raises(Unauthenticated, match="signature"):
        verify(KEY, old, "space123abcd", NOW)
    assert verify([KEY, OLD_KEY], old, "space123abcd", NOW).tier == "free"
    assert verify([KEY, OLD_KEY], _ticket(), "space123abcd", NOW).tier == "free"
    with pytest.raises(Unauthenticated, match="signature"):
        verify([KEY], old, "space123abcd", NOW)  # the old key is retired


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("a" * (MAX_TEXT + 1), "longer than"),
        ("abc.def", "not base64url"),
        ("abc+/def", "not base64url"),
        ("abcd=", "not base64url"),
        ("a", "not base64url"),
        ("AAAB", "too short"),
    ],
)
def test_malformed_texts_say_so(text: str, why: str) -> None:
    with pytest.raises(Unauthenticated, match=f"malformed: .*{why}"):
        verify(KEY, text, "space123abcd", NOW)


def test_non_canonical_base64_is_malformed() -> None:
    text = _ticket()
    # The last character of unpadded base64 carries spare low bits when the length is not a
    # multiple of 3; set one and the bytes are the same but the text is not canonical.
    assert len(base64.urlsafe_b64decode(text + "==")) % 3 != 0
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(text[-1])
    sibling = text[:-1] + alphabet[last | 1 if last % 2 == 0 else last & ~1]
    with pytest.raises(Unauthenticated, match="canonical"):
        verify(KEY, sibling, "space123abcd", NOW)


def test_issue_rejects_programming_errors() -> None:
    with pytest.raises(ValueError, match="key"):
        issue(b"short", "s", "l", "t", NOW, 60)
    with pytest.raises(ValueError, match="ttl"):
        issue(KEY, "s", "l", "t", NOW, 0)
    with pytest.raises(ValueError, match="tier"):
        issue(KEY, "s", "l", "", NOW, 60)
    with pytest.raises(ValueError, match="space_id"):
        issue(KEY, "s" * 256, "l", "t", NOW, 60)
    with pytest.raises(ValueError, match="key"):
        verify([], _ticket(), "s", NOW)


def test_listener_ids_are_random_and_url_safe() -> None:
    ids = {new_listener_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 and i.isalnum() for i in ids)


def test_fuzz_only_unauthenticated_is_ever_raised() -> None:
    rng = random.Random(20240607)
    good = _ticket()
    raw = base64.urlsafe_b64decode(good + "==")
    alphabet = string.ascii_letters + string.digits + "-_" + string.punctuation + " é\x00\n"
    accepted = 0
    messages: set[str] = set()
    for i in range(6000):
        kind = i % 5
        if kind == 0:  # random text
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 140)))
        elif kind == 1:  # random bytes, well-formed base64url
            blob = rng.randbytes(rng.randint(0, 200))
            text = base64.urlsafe_b64encode(blob).rstrip(b"=").decode()
        elif kind == 2:  # truncations and extensions of a good ticket
            text = good[: rng.randint(0, len(good))] + "".join(
                rng.choice(alphabet) for _ in range(rng.randint(0, 3))
            )
        elif kind == 3:  # a few random byte edits of a good ticket
            edited = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                edited[rng.randrange(len(edited))] = rng.randrange(256)
            text = base64.urlsafe_b64encode(bytes(edited)).rstrip(b"=").decode()
        else:  # a good body with random length bytes, re-signed with the real key
            text = _resigned_junk(rng)
        try:
            verify([KEY, OLD_KEY], text, "space123abcd", NOW)
            accepted += 1
        except Unauthenticated as exc:
            messages.add(str(exc).split(":")[0])
    # A random edit can leave a byte unchanged; nothing else may ever verify.
    assert accepted <= 10
    assert all(m.startswith("the ticket") for m in messages)


def _resigned_junk(rng: random.Random) -> str:
    """Correctly signed bodies of random shape: exercises the parser behind the MAC."""
    body = struct.pack(">BQI", rng.choice([1, 1, 2]), rng.getrandbits(64), rng.getrandbits(32))
    body += rng.randbytes(rng.randint(0, 40))
    mac = hmac.new(KEY, b"podium-listener-ticket\x00" + body, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()
