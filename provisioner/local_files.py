"""Writes controller-side files atomically, so an interrupted run never leaves half a file.

Used by the sandbox (its state, known_hosts, inventory) and by the validation cache; it lives
outside provisioner.sandbox so that a provision run does not import the sandbox package.
"""

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write text through a temp file in the same directory and rename it into place.

    A failed write removes its temp file, so a full disk leaves no litter behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as temp_file:
            temp_file.write(text)
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
