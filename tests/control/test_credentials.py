from __future__ import annotations

import random
import string

from podium.control.credentials import Credential, hash_secret


def test_round_trip_and_match() -> None:
    credential = Credential.new("pdm")
    parsed = Credential.parse(credential.render(), "pdm")
    assert parsed == credential
    assert parsed.matches(hash_secret(credential.secret))
    assert not parsed.matches(hash_secret(credential.secret + "x"))


def test_wrong_prefix_or_shape_is_not_a_credential() -> None:
    credential = Credential.new("pdm").render()
    assert Credential.parse(credential, "pds") is None
    assert Credential.parse(credential.replace(".", ""), "pdm") is None
    assert Credential.parse("pdm_short.secret", "pdm") is None
    assert Credential.parse("pdm_abc/../../x." + "a" * 40, "pdm") is None


def test_fuzz_parse_never_raises() -> None:
    rng = random.Random(7)
    alphabet = string.printable + "é\x00"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90)))
        if rng.random() < 0.3:
            text = "pdm_" + text
        assert Credential.parse(text, "pdm") is None or text.startswith("pdm_")


def test_new_ids_use_every_letter_of_the_alphabet_evenly() -> None:
    from collections import Counter

    from podium.control.credentials import _ID_ALPHABET, new_id

    assert len(_ID_ALPHABET) == 32  # new_id picks a letter with 5 bits of a random byte
    letters = Counter("".join(new_id(16) for _ in range(2000)))
    assert set(letters) == set(_ID_ALPHABET)
    expected = 2000 * 16 / 32
    assert all(abs(n - expected) < expected * 0.2 for n in letters.values())
