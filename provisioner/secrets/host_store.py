"""Secrets that live on the host: declared in the inventory, generated there, never sent back
to be stored anywhere else.

An inventory declares them under the variable ``host_secrets`` (merged across defaults, groups
and the host, name by name) and uses one by reference, ``{secret: host:NAME}``, wherever a
variable may hold a secret. The engine generates every declared secret on the host before the
first role runs (``/etc/provisioner/secrets/NAME``, 0600 in a 0700 directory, both root's) and
never again: a later run, another controller or a lost cache cannot change it; only
``invoke secrets.rotate`` does, on purpose. A step that needs the value reads it in its own probe
(ops/secret_store.py), so using a host secret costs no extra round trip.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.errors import RoleError

STORE_DIR = "/etc/provisioner/secrets"
#: The variable that declares them.
DECLARATIONS = "host_secrets"
#: A store file name: no dots (nothing like ``x.previous`` or ``.tmp`` can be declared), no slash.
SECRET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: Printable passwords use letters and digits only: safe in URLs, DSNs, env files and shells.
PASSWORD_ALPHABET = "A-Za-z0-9"
KINDS = ("hex", "base64", "password")
DEFAULT_BITS = 256
DEFAULT_LENGTH = 32
#: Bits for hex/base64, characters for passwords (BuildToValue: 256-bit keys, 20+ characters).
BIT_RANGE = (128, 4096)
LENGTH_RANGE = (20, 256)


@dataclass(frozen=True)
class SecretDeclaration:
    """What a secret is made of when the host does not have it yet."""

    name: str
    kind: str = "hex"
    bits: int = DEFAULT_BITS
    length: int = DEFAULT_LENGTH

    @property
    def description(self) -> str:
        if self.kind == "password":
            return f"password, {self.length} characters"
        return f"{self.bits}-bit random, {self.kind}"

    def generate_command(self) -> str:
        """Shell printing a fresh value on stdout, from the host's kernel random source
        (coreutils only: the minimal image has no python or openssl)."""
        if self.kind == "password":
            # 64 random bytes per wanted character leave thousands of letters and digits to
            # pick from; a short read is caught by the length check of the write.
            return (f"head -c {self.length * 64} /dev/urandom | LC_ALL=C tr -dc "
                    f"'{PASSWORD_ALPHABET}' | head -c {self.length}")
        if self.kind == "base64":
            return f"head -c {self.bits // 8} /dev/urandom | base64 -w0"
        return f"head -c {self.bits // 8} /dev/urandom | od -An -v -tx1 | tr -d ' \\n'"

    @property
    def value_length(self) -> int:
        """How many characters a freshly generated value has."""
        if self.kind == "password":
            return self.length
        if self.kind == "base64":
            return 4 * ((self.bits // 8 + 2) // 3)
        return self.bits // 4


class HostSecret:
    """A reference to a secret in the host's store: the controller never knows its value until
    a step reads it in its probe, so turning one into text is a mistake in the role."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        raise RoleError(
            f"host secret {self.name!r} is only known on the host, so it cannot be put into "
            "a command or a variable's text on the controller; use it in a template "
            "(ensure_template reads it on the host) or in a step that reads it "
            "(provisioner.ops.secret_store)")

    def __repr__(self) -> str:
        return f"HostSecret({self.name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostSecret) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("host secret", self.name))


def parse_declaration(name: str, raw: Any) -> SecretDeclaration:
    """One ``host_secrets`` entry; raises ValueError saying what is wrong with it."""
    if not SECRET_NAME.fullmatch(str(name)):
        raise ValueError(f"{name!r} is not a usable secret name: lower-case letters, digits, "
                         "'_' and '-', starting with a letter or digit, at most 64")
    spec = {} if raw is None else raw
    if not isinstance(spec, Mapping):
        raise ValueError(f"{name}: give a mapping such as {{kind: password, length: 32}} "
                         f"or {{}} for a {DEFAULT_BITS}-bit hex key")
    unknown = set(spec) - {"kind", "bits", "length"}
    if unknown:
        raise ValueError(f"{name}: unknown setting(s) {', '.join(sorted(map(str, unknown)))} "
                         "(known: kind, bits, length)")
    kind = spec.get("kind", "hex")
    if kind not in KINDS:
        raise ValueError(f"{name}: kind {kind!r} is not one of {', '.join(KINDS)}")
    bits = _whole(name, "bits", spec.get("bits", DEFAULT_BITS), BIT_RANGE)
    length = _whole(name, "length", spec.get("length", DEFAULT_LENGTH), LENGTH_RANGE)
    if bits % 8:
        raise ValueError(f"{name}: bits must be a multiple of 8, got {bits}")
    if (kind == "password" and "bits" in spec) or (kind != "password" and "length" in spec):
        wanted = "length" if kind == "password" else "bits"
        raise ValueError(f"{name}: a {kind} secret is sized by {wanted!r}")
    return SecretDeclaration(str(name), kind, bits, length)


def _whole(name: str, key: str, value: Any, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not \
            bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name}: {key} must be a whole number from {bounds[0]} to "
                         f"{bounds[1]}, got {value!r}")
    return value


def declarations_of(variables: Mapping[str, Any]) -> dict[str, SecretDeclaration]:
    """The host's declared secrets (already validated by the inventory loader)."""
    raw = variables.get(DECLARATIONS) or {}
    return {name: parse_declaration(name, spec) for name, spec in raw.items()}


def host_secrets_in(value: Any) -> list[HostSecret]:
    """Every host secret reference inside a value (lists and mappings too), in order."""
    if isinstance(value, HostSecret):
        return [value]
    if isinstance(value, Mapping):
        return [found for item in value.values() for found in host_secrets_in(item)]
    if isinstance(value, list | tuple):
        return [found for item in value for found in host_secrets_in(item)]
    return []
