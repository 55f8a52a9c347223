"""What the last run of each command found on each host, kept on this machine.

``invoke provision``, ``verify`` and ``audit`` each leave one JSON record per host here, so
``invoke report`` can draw a host's page later without contacting it again. Records are keyed by
the inventory's resolved path (two inventories may name a host alike) and live in the private
cache directory (0700 directories, 0600 files): step reasons and findings describe the host.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from provisioner.local_files import private_cache_subdirectory, write_atomically

#: The kinds of record: one file each per host.
KINDS = ("provision", "verify", "audit")


def inventory_key(inventory_path: Path) -> str:
    """A short stable name for an inventory file, from its resolved path."""
    return hashlib.sha256(str(inventory_path.resolve()).encode()).hexdigest()[:16]


def record_path(inventory_path: Path, host: str, kind: str) -> Path:
    """Where the ``kind`` record of ``host`` of this inventory is kept."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r} (one of {', '.join(KINDS)})")
    return private_cache_subdirectory("records") / inventory_key(inventory_path) / host / \
        f"{kind}.json"


def save_record(inventory_path: Path, host: str, kind: str, data: dict[str, Any]) -> Path:
    """Keep ``data`` as the host's latest ``kind`` record (written atomically, 0600)."""
    path = record_path(inventory_path, host, kind)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)
    return path


def load_record(inventory_path: Path, host: str, kind: str) -> dict[str, Any] | None:
    """The host's latest ``kind`` record, or None when there is none or it cannot be read."""
    path = record_path(inventory_path, host, kind)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
