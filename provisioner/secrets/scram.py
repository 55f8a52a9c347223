"""SCRAM-SHA-256 verifiers exactly as PostgreSQL stores them in ``pg_authid.rolpassword``.

Computed on the controller so a password never has to reach the server as text: the role gets
the verifier (``ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'``), which PostgreSQL stores as it
is, and a later run asks "does the stored verifier belong to this password?" without changing
anything (RFC 5802 / RFC 7677; PostgreSQL's src/common/scram-common.c).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

#: PostgreSQL's default (scram_iterations, PG 16+; fixed before), and its salt length.
DEFAULT_ITERATIONS = 4096
SALT_BYTES = 16
PREFIX = "SCRAM-SHA-256$"


def scram_verifier(password: str, *, salt: bytes | None = None,
                   iterations: int = DEFAULT_ITERATIONS) -> str:
    """The verifier PostgreSQL would store for this password (a fresh random salt by default)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    stored_key, server_key = _keys(password, salt, iterations)
    return (f"{PREFIX}{iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}")


def scram_matches(verifier: str, password: str) -> bool:
    """True when ``verifier`` (as read from pg_authid) was made from ``password``.

    Anything that is not a well-formed SCRAM-SHA-256 verifier (an md5 hash, NULL, garbage)
    does not match: the role's password is then set again, as a SCRAM verifier."""
    parsed = parse_verifier(verifier)
    if parsed is None:
        return False
    iterations, salt, stored_key, server_key = parsed
    wanted_stored, wanted_server = _keys(password, salt, iterations)
    return (hmac.compare_digest(wanted_stored, stored_key)
            and hmac.compare_digest(wanted_server, server_key))


def parse_verifier(verifier: str) -> tuple[int, bytes, bytes, bytes] | None:
    """(iterations, salt, StoredKey, ServerKey) of a verifier, or None when it is not one."""
    if not verifier.startswith(PREFIX):
        return None
    try:
        head, keys = verifier[len(PREFIX):].split("$", 1)
        iterations_text, salt_text = head.split(":", 1)
        stored_text, server_text = keys.split(":", 1)
        iterations = int(iterations_text)
        salt, stored, server = (base64.b64decode(part, validate=True)
                                for part in (salt_text, stored_text, server_text))
    except ValueError:  # binascii.Error is a ValueError
        return None
    if iterations < 1 or len(stored) != 32 or len(server) != 32:
        return None
    return iterations, salt, stored, server


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", _normalized(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def _normalized(password: str) -> bytes:
    """The password's bytes after SASLprep (RFC 4013), as PostgreSQL's pg_saslprep does it.

    PostgreSQL falls back to the raw bytes when SASLprep refuses a string (prohibited or
    unassigned characters, bad bidirectional text), so this does too."""
    if password.isascii() and all(0x20 <= ord(char) < 0x7F for char in password):
        return password.encode()
    mapped = "".join(" " if stringprep.in_table_c12(char) else char for char in password
                     if not stringprep.in_table_b1(char))
    prepared = unicodedata.normalize("NFKC", mapped)
    if any(_prohibited(char) for char in prepared) or not _bidi_ok(prepared):
        return password.encode()
    return prepared.encode()


def _prohibited(char: str) -> bool:
    return any(check(char) for check in (
        stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
        stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
        stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
        stringprep.in_table_a1))


def _bidi_ok(text: str) -> bool:
    """RFC 3454 §6: text with right-to-left characters has no left-to-right ones and starts
    and ends with a right-to-left character."""
    if not any(stringprep.in_table_d1(char) for char in text):
        return True
    if any(stringprep.in_table_d2(char) for char in text):
        return False
    return stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
