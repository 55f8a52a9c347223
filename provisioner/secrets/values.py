"""Secret values: resolved from references in the inventory, masked wherever they could be shown.

An inventory never holds a secret in plain text; it holds a reference such as
``{secret: env:DB_PASSWORD}`` or ``{secret: file:~/.secrets/db}`` (or ``{secret: host:NAME}``,
a secret that never leaves the host: host_store.py). The resolved value travels as
a Secret whose str/repr is masked, and every diff and report passes through ``redact``
(redaction.py). What is sent to the host (templates, command arguments) carries the real
value (``reveal_all``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.secrets.host_store import SECRET_NAME, HostSecret

MASK = "***"


class Secret:
    """A string that refuses to print itself."""

    __slots__ = ("_value", "reference")

    def __init__(self, value: str, reference: str = "") -> None:
        self._value = value
        self.reference = reference

    def reveal(self) -> str:
        """The real value, for the one place that needs it (a template, a command's stdin)."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({self.reference or MASK})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretNotAvailable(ValueError):
    """A well-formed reference whose value is not here: the variable is not set, the file is
    not there or not readable."""


def resolve_reference(reference: str, base_dir: Path) -> Secret | HostSecret:
    """Turn ``env:NAME`` or ``file:PATH`` into a Secret, ``host:NAME`` into a reference to the
    host's store (host_store.py); raises ValueError with what is wrong (SecretNotAvailable when
    the reference is right but its value cannot be read here)."""
    kind, _, target = reference.partition(":")
    if kind == "host":
        if not SECRET_NAME.fullmatch(target):
            raise ValueError("what follows host: is not a host secret name (lower-case "
                             "letters, digits, '_' and '-'; not repeated, in case it is the "
                             "secret itself)")
        return HostSecret(target)
    if kind == "env":
        if target not in os.environ:
            raise SecretNotAvailable(f"environment variable {target!r} is not set")
        return Secret(os.environ[target], reference)
    if kind == "file":
        path = (base_dir / Path(target).expanduser()).resolve()
        if not path.is_file():
            raise SecretNotAvailable(f"secret file {path} does not exist")
        try:
            value = path.read_text().rstrip("\n")
        except (OSError, UnicodeDecodeError) as error:
            raise SecretNotAvailable(f"secret file {path} cannot be read "
                                     f"({getattr(error, 'strerror', None) or error})") from None
        if not value.strip():
            # `touch secrets/db_password` must not become an empty password on a host
            raise SecretNotAvailable(f"secret file {path} is empty; put the secret in it")
        return Secret(value, reference)
    raise ValueError("that is not a secret reference (never repeated here, in case it is the "
                     "secret itself); use env:NAME, file:PATH or host:NAME")


def holds_secret(value: Any) -> bool:
    """Whether a value holds a Secret or a host secret reference anywhere (lists and mappings
    too): what may never be shown, nor handed to a role that has no business with it."""
    if isinstance(value, Secret | HostSecret):
        return True
    if isinstance(value, Mapping):
        return any(holds_secret(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(holds_secret(item) for item in value)
    return False


def reveal_all(value: Any) -> Any:
    """The value with every Secret inside it (lists and mappings too) replaced by its text.

    For what goes to the host (a rendered template, a command's argument): the host must get
    the real value. Masking belongs to what the controller shows and stores, which passes
    through ``redact`` with the host's secrets."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Mapping):
        return {key: reveal_all(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(reveal_all(item) for item in value)
    return value
