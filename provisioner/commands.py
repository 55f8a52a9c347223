"""The one quoting path: argv tuples become shell text here and nowhere else."""

from __future__ import annotations

import base64
import shlex
from collections.abc import Iterable

from provisioner.secrets.values import Secret


def quote(value: str | int | Secret) -> str:
    """Quote one argument for POSIX sh; a Secret as its real value (commands go to the host,
    and the walk masks secrets in whatever output of theirs it shows)."""
    return shlex.quote(value.reveal() if isinstance(value, Secret) else str(value))


def join(*argv: str | int | Secret) -> str:
    """Join argv into a shell command line with every argument quoted."""
    return " ".join(quote(arg) for arg in argv)


def script(lines: Iterable[str]) -> str:
    """A multi-line shell fragment that stops at the first failing command."""
    return "set -e\n" + "\n".join(lines) + "\n"


def write_bytes_command(data: bytes, target: str) -> str:
    """Shell that writes data to target exactly, carried inline as base64 (no second transfer)."""
    encoded = base64.b64encode(data).decode("ascii")
    return f"printf '%s' {quote(encoded)} | base64 -d > {target}"
