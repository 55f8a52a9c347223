"""Masking secret values in whatever is shown: step labels, reasons, command output, diffs."""

from __future__ import annotations

import json
from collections.abc import Iterable

from provisioner.secrets.values import MASK, Secret


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
    and so is a value without the blanks around it, which a template may have trimmed, and the
    value as Python's repr and JSON write it (escaped quotes and backslashes).
    """
    values = {secret.reveal() for secret in secrets}
    values |= {line for value in values if "\n" in value
               for line in value.splitlines() if len(line.strip()) >= 4}
    # A template may trim a value (`| trim`): its core must not show either.
    values |= {value.strip() for value in values if len(value.strip()) >= 4}
    # Python's repr (a traceback, a message with !r) and JSON escape quotes and backslashes.
    values |= {escaped for value in values
               for escaped in (repr(value)[1:-1], json.dumps(value)[1:-1])}
    for value in sorted(values, key=len, reverse=True):
        if value:
            text = text.replace(value, MASK)
    return text
