"""One changing run at a time per host from this controller.

Two runs working on one host at once can undo each other: the second finds the first's
safeguard armed and unproven, takes it for an interrupted run's and reverts it, while the first
goes on to report its change as made. So a run holds an exclusive lock per host (address and
port) in the cache directory for as long as it works on that host; the kernel drops it when the
run ends however it ends, so an interrupted run never leaves it behind. Check mode changes
nothing and takes none. Runs from different controllers are not covered (see README).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from provisioner.errors import ProvisionerError
from provisioner.inventory.hosts import HostConfig
from provisioner.local_files import private_cache_subdirectory


@contextmanager
def host_lock(config: HostConfig) -> Iterator[None]:
    """Hold this host's lock; ProvisionerError at once when another run holds it."""
    name = hashlib.sha256(f"{config.address}:{config.port}".encode()).hexdigest()[:24]
    try:
        path = private_cache_subdirectory("locks") / f"{name}.lock"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield  # no usable cache directory: runs cannot meet here, as they cannot share facts
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            raise ProvisionerError(
                f"Another run on this controller (pid {holder}) is working on {config.name} "
                f"({config.address}:{config.port}); wait for it to end, then run again. Two "
                "runs at once could undo each other's unproven changes.") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)
