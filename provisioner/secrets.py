"""Secret values: resolved from references in the inventory, masked wherever they could be shown.

An inventory never holds a secret in plain text; it holds a reference such as
``{secret: env:DB_PASSWORD}`` or ``{secret: file:~/.secrets/db}``. The resolved value travels as
a Secret whose str/repr is masked, and every diff and report passes through ``redact``. What is
sent to the host (templates, command arguments) carries the real value (``reveal_all``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

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


def resolve_reference(reference: str, base_dir: Path) -> Secret:
    """Turn ``env:NAME`` or ``file:PATH`` into a Secret; raises ValueError with what is wrong."""
    kind, _, target = reference.partition(":")
    if kind == "env":
        if target not in os.environ:
            raise ValueError(f"environment variable {target!r} is not set")
        return Secret(os.environ[target], reference)
    if kind == "file":
        path = (base_dir / Path(target).expanduser()).resolve()
        if not path.is_file():
            raise ValueError(f"secret file {path} does not exist")
        return Secret(path.read_text().rstrip("\n"), reference)
    raise ValueError("that is not a secret reference (never repeated here, in case it is the "
                     "secret itself); use env:NAME or file:PATH")


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


def redact_diff(diff: str, secrets: Iterable[Secret]) -> str:
    """A diff with the secrets masked and, when it held one, every removed line masked too:
    the old side of a changed secret line holds the secret's previous value, which is no
    longer one of the run's secrets and would show in clear."""
    masked = redact(diff, secrets)
    if masked == diff:
        return diff
    return "".join("-" + MASK + "\n" if line.startswith("-") and not line.startswith("---")
                   else line for line in masked.splitlines(keepends=True))


def redact(text: str, secrets: Iterable[Secret]) -> str:
    """Replace every secret value that appears in text with the mask.

    Longer values go first so one secret containing another never leaks its tail, each line
    of a multi-line secret (a private key) is masked on its own, since a diff splits it by lines,
    and so is a value without the blanks around it, which a template may have trimmed.
    """
    values = {secret.reveal() for secret in secrets}
    values |= {line for value in values if "\n" in value
               for line in value.splitlines() if len(line.strip()) >= 4}
    # A template may trim a value (`| trim`): its core must not show either.
    values |= {value.strip() for value in values if len(value.strip()) >= 4}
    for value in sorted(values, key=len, reverse=True):
        if value:
            text = text.replace(value, MASK)
    return text
