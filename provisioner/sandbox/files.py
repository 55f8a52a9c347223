"""Writes host files atomically, so an interrupted run never leaves a half-written file behind."""

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write text through a temp file in the same directory and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as temp_file:
        temp_file.write(text)
    os.chmod(temp_name, mode)
    os.replace(temp_name, path)
