"""Remembers inventory documents that already passed validation, keyed by their exact content.

The "is anything drifting?" run is repeated many times a day on an inventory that rarely
changes; validating it again each time means importing pydantic (~60 ms) for the same answer.
An entry is the validated plain data, stored under the SHA-256 of the file's text together with
the source of everything that decides validity (the schema module, the YAML loader, the
installed pydantic's version), so any edit to the file or to those misses the cache and is
validated afresh. Only successful validations are stored: a broken inventory always produces
its error from the validator itself. Secret values never reach the cache (the file holds only
references), and an inventory a later check refuses before contact (a secret written as text
among them) is forgotten again, so the cache keeps no copy of it; entries are 0600 in a 0700
directory. The cache is an optimisation only: an
unreadable, corrupt or unwritable cache falls back to validating.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from provisioner.local_files import (
    cache_directory,
    keep_newest,
    private_cache_subdirectory,
    write_atomically,
)

#: How many validated documents to keep; older entries are removed when a new one is written.
KEEP_ENTRIES = 32


def fingerprint(text: str, validator_sources: Sequence[Path]) -> str:
    """The cache key: the document's text plus every source file that decides its validity."""
    digest = hashlib.sha256(b"provisioner-validated-inventory-v1\0")
    for source in (*validator_sources, _pydantic_version_file()):
        digest.update(source.read_bytes() if source.is_file() else b"(missing)")
        digest.update(b"\0")
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


def validated(text: str, validator_sources: Sequence[Path],
              validate: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``validate()``'s result for this text, from the cache when the same text passed before."""
    entry = _entry_path(fingerprint(text, validator_sources))
    cached = _read(entry)
    if cached is not None:
        return cached
    document = validate()
    _write(entry, document)
    return document


def forget(text: str, validator_sources: Sequence[Path]) -> None:
    """Remove the entry for this text: its inventory was refused after the schema passed it."""
    try:
        _entry_path(fingerprint(text, validator_sources)).unlink(missing_ok=True)
    except OSError:
        return


def _entry_path(key: str) -> Path:
    return cache_directory() / "validated-inventories" / f"{key}.json"


def _read(entry: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _write(entry: Path, document: dict[str, Any]) -> None:
    """Store the document if JSON gives it back unchanged (a YAML date or set would not)."""
    try:
        text = json.dumps(document)
    except (TypeError, ValueError):
        return
    if json.loads(text) != document:
        return
    try:
        private_cache_subdirectory(entry.parent.name)
        write_atomically(entry, text, mode=0o600)
        keep_newest(entry.parent, "*.json", KEEP_ENTRIES)
    except OSError:
        return


def _pydantic_version_file() -> Path:
    """pydantic's version.py, found without importing pydantic (that import is what we avoid)."""
    spec = importlib.util.find_spec("pydantic")
    if spec is None or spec.origin is None:
        return Path("/nonexistent/pydantic")
    return Path(spec.origin).with_name("version.py")
