"""age recipients checked on the controller: bech32 (BIP 173) with HRP "age", a 32-byte X25519 key.

A recipient with one character changed still matches ``age1`` and 58 characters of the bech32
alphabet, so a shape check let a typo through, and age on the host then refused every backup's
encryption (or, worse, a wrong but valid-looking key would be caught only by its checksum). The
checksum is six characters that catch any single changed character, which this module checks
before any host is contacted.
"""

from __future__ import annotations

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATORS = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
#: An X25519 public key's length in bytes.
KEY_BYTES = 32


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for bit, generator in enumerate(_GENERATORS):
            if (top >> bit) & 1:
                check ^= generator
    return check


def _expanded(hrp: str) -> list[int]:
    return [ord(char) >> 5 for char in hrp] + [0] + [ord(char) & 31 for char in hrp]


def bech32_decode(text: str) -> tuple[str, list[int]]:
    """(HRP, 5-bit data without the checksum) of a bech32 string; ValueError saying what is
    wrong (mixed case, no separator, a character outside the alphabet, a bad checksum)."""
    if text.lower() != text and text.upper() != text:
        raise ValueError("it mixes upper and lower case")
    lowered = text.lower()
    hrp, separator, rest = lowered.rpartition("1")
    if not separator or not hrp or len(rest) < 6:
        raise ValueError("it has no '1' separator followed by data and a checksum")
    if any(char not in CHARSET for char in rest):
        raise ValueError("it has a character outside the bech32 alphabet")
    data = [CHARSET.index(char) for char in rest]
    if _polymod(_expanded(hrp) + data) != 1:
        raise ValueError("its checksum does not match (a mistyped or changed character)")
    return hrp, data[:-6]


def _to_bytes(data: list[int]) -> bytes:
    """5-bit groups to bytes; ValueError for padding that is not zeros or longer than 4 bits."""
    accumulator, bits, out = 0, 0, bytearray()
    for value in data:
        accumulator = (accumulator << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((accumulator >> bits) & 0xFF)
    if bits >= 5 or accumulator & ((1 << bits) - 1):
        raise ValueError("its data does not end on a whole byte")
    return bytes(out)


def age_recipient_problem(text: str) -> str | None:
    """Why ``text`` is not an age X25519 recipient ("age1..."), or None when it is one."""
    try:
        hrp, data = bech32_decode(text)
        key = _to_bytes(data)
    except ValueError as error:
        return str(error)
    if hrp != "age":
        return f"it is a bech32 key of kind {hrp!r}, not an age recipient ('age1...')"
    if len(key) != KEY_BYTES:
        return f"it holds {len(key)} bytes where an X25519 key has {KEY_BYTES}"
    return None
