"""age recipients: bech32 with HRP "age" and a 32-byte key, checksum included, before contact."""

from __future__ import annotations

import pytest

from roles.backups.age_keys import (
    CHARSET,
    _expanded,
    _polymod,
    age_recipient_problem,
    bech32_decode,
)

# A recipient age-keygen wrote (age's own documentation example).
RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def changed(text: str, index: int) -> str:
    """``text`` with the character at ``index`` replaced by the next one of the alphabet."""
    char = text[index]
    return text[:index] + CHARSET[(CHARSET.index(char) + 1) % 32] + text[index + 1:]


def encoded(hrp: str, payload: bytes) -> str:
    """BIP 173 bech32 of ``payload``, as age writes its keys."""
    bits = "".join(f"{byte:08b}" for byte in payload)
    bits += "0" * (-len(bits) % 5)
    data = [int(bits[index:index + 5], 2) for index in range(0, len(bits), 5)]
    check = _polymod(_expanded(hrp) + data + [0] * 6) ^ 1
    data += [(check >> 5 * (5 - index)) & 31 for index in range(6)]
    return hrp + "1" + "".join(CHARSET[value] for value in data)


def test_a_real_recipient_is_accepted() -> None:
    assert age_recipient_problem(RECIPIENT) is None
    assert age_recipient_problem(encoded("age", bytes(range(32)))) is None
    assert bech32_decode(RECIPIENT)[0] == "age"


@pytest.mark.parametrize("index", [4, 10, 30, 58, 61])
def test_one_changed_character_fails_the_checksum(index: int) -> None:
    problem = age_recipient_problem(changed(RECIPIENT, index))

    assert problem == "its checksum does not match (a mistyped or changed character)"


def test_two_swapped_characters_fail_the_checksum() -> None:
    swapped = RECIPIENT[:10] + RECIPIENT[11] + RECIPIENT[10] + RECIPIENT[12:]

    assert age_recipient_problem(swapped) is not None


@pytest.mark.parametrize(("text", "problem"), [
    ("age1", "it has no '1' separator followed by data and a checksum"),
    ("Age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "mixes upper and lower"),
    ("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8b", "outside the bech32"),
    ("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8", "checksum does not match"),
    # BIP 173's own valid test vectors: right checksums, but no age X25519 key.
    ("a12uel5l", "it is a bech32 key of kind 'a', not an age recipient"),
    (encoded("age", bytes(16)), "it holds 16 bytes where an X25519 key has 32"),
    (encoded("age", bytes(33)), "it holds 33 bytes where an X25519 key has 32"),
    ("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw", "of kind 'abcdef', not an age recipient"),
])
def test_what_is_no_age_recipient_says_why(text: str, problem: str) -> None:
    found = age_recipient_problem(text)

    assert found is not None and problem in found
