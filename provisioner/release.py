"""What a role that ships releases gives ``invoke deploy``: the shell of each stage, as data.

A deploy is the engine's (provisioner/deploy/): which hosts, in which order, the lock, the
upload, the history, rolling back. What each stage does on the host is the role's: a role
module that defines ``release(host) -> Release`` ships releases, and the deploy finds it among
the host's roles by that function, never by the role's name. Everything here is pure (scripts
to send, parsers of what they print), so the rollout is unit-tested against a fake host.

``move`` is the heart of it: one instance taken from the version it runs to another in one
script and one round trip, whatever its health check waits for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

#: The deploy lock's record and the history, in a release's ``state_dir`` (the deploy writes
#: them; a role's provisioning reads the lock, to stay out of a deploy's way).
LOCK_FILE = "deploy.lock"
HISTORY_FILE = "history"
#: A version as an image tag can hold it (Docker's rule), so it names files and tags alike.
VERSION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Artifact:
    """A file the controller sends before a version can start (an image archive)."""

    local: Path
    remote: str


@dataclass(frozen=True)
class Preflight:
    """What a host said before anything changed: why it cannot take the version (problems),
    and whether it already holds the version's image (then nothing needs sending)."""

    problems: tuple[str, ...]
    image_present: bool
    #: The sha256 of the version's archive already on the host, if one is there.
    remote_archive_sha256: str = ""


@dataclass(frozen=True)
class InstanceState:
    """What one instance runs: the port serving it now and the version there."""

    instance: str
    port: int
    version: str
    healthy: bool | None = None


class Release(Protocol):
    """The stages of shipping one application to one host (see the module docstring)."""

    @property
    def name(self) -> str:
        """The application's name: lock, history and state are kept under it."""
        ...

    @property
    def instances(self) -> tuple[str, ...]:
        """The instances, in the order they are moved."""
        ...

    @property
    def keep_releases(self) -> int:
        """How many versions (the current one included) stay on the host."""
        ...

    @property
    def state_dir(self) -> str:
        """The directory on the host holding the app's deploy lock and history."""
        ...

    @property
    def backup_host(self) -> str:
        """The inventory host whose backups role backs up the database before a migration."""
        ...

    @property
    def move_timeout(self) -> int:
        """Seconds one move may take at most (start, health check, reload, drain, stop)."""
        ...

    def artifact(self, version: str) -> Artifact | None:
        """The file to send for this version, or None when the host pulls it itself."""
        ...

    def preflight(self, version: str) -> str:
        """Read-only shell whose output ``parse_preflight`` reads."""
        ...

    def parse_preflight(self, output: str) -> Preflight: ...

    def prepare(self, version: str) -> str:
        """Shell making the version startable (load the sent archive, pull the image) and
        installing the move program of this inventory."""
        ...

    def migration(self, version: str) -> str | None:
        """Shell running the migration once with the new version, or None without one."""
        ...

    def move(self, instance: str, version: str) -> str:
        """Shell moving one instance to the version: exit 0 when it serves the version, else
        non-zero with the reason and the new container's last log lines, the old container
        still serving."""
        ...

    def states(self) -> str:
        """Read-only shell printing every instance's state, for ``parse_states``."""
        ...

    def parse_states(self, output: str) -> list[InstanceState]: ...

    def prune(self, keep: list[str]) -> str:
        """Shell removing releases (images, archives) not in ``keep``."""
        ...
