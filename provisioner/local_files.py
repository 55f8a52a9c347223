"""Controller-side files: written atomically, so an interrupted run never leaves half a file.

Used by the sandbox (its state, known_hosts, inventory) and by the caches a run keeps (validated
inventories, hosts' facts); it lives outside provisioner.sandbox so that a provision run does not
import the sandbox package.
"""

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, mode: int = 0o644, *,
                     make_parents: bool = True) -> None:
    """Write text through a temp file in the same directory and rename it into place.

    A failed write removes its temp file, so a full disk leaves no litter behind. A user's
    report goes only where its directory still is (``make_parents=False``).
    """
    if make_parents:
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


def can_create_in(directory: Path) -> bool:
    """Whether a file can be made there now: tried, since root passes every os.access check
    (a read-only mount, /proc, an immutable directory)."""
    try:
        handle, name = tempfile.mkstemp(dir=directory, prefix=".provisioner-check.")
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True


def cache_directory() -> Path:
    """$PROVISIONER_CACHE_DIR, else $XDG_CACHE_HOME/provisioner, else ~/.cache/provisioner."""
    explicit = os.environ.get("PROVISIONER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "provisioner"


def private_cache_subdirectory(name: str) -> Path:
    """The cache directory's ``name`` subdirectory, both made 0700 when missing (what a run
    remembers about inventories and hosts is nobody else's business)."""
    top = cache_directory()
    top.parent.mkdir(parents=True, exist_ok=True)
    for directory in (top, top / name):
        directory.mkdir(mode=0o700, exist_ok=True)
    return top / name


def keep_newest(directory: Path, pattern: str, count: int) -> None:
    """Remove all but the ``count`` most recently written files matching ``pattern``, so a
    cache keyed by content or host never grows without bound."""
    entries = sorted(directory.glob(pattern), key=lambda path: path.stat().st_mtime)
    for stale in entries[:-count]:
        stale.unlink(missing_ok=True)
