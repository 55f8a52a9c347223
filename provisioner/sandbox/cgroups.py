"""A cgroup of its own for every machine, in each hierarchy a machine's systemd manages.

With `--keep-unit` nspawn stays in its caller's cgroup and splits it into `supervisor` and
`payload`; the machine's systemd then runs its whole tree (init.scope, system.slice/...) inside
`payload`. Machines started from the same cgroup therefore shared one `payload`: one machine's
systemd removing `system.slice/foo.service` while another's was starting `foo.service` in the very
same directory failed that unit at its CGROUP step (about one boot in 60 came up degraded; when
it hit systemd-user-sessions, /run/nologin stayed and every admin login was refused). Starting
each nspawn in `<caller's cgroup>/provisioner-sandbox/<machine>` keeps their trees apart.

Only the hierarchies systemd tracks processes in are split: the named `systemd` v1 hierarchy and
cgroup v2. Resource controllers (cpu, memory, ...) are shared by design and stay as they are.
"""

import contextlib
import time
from collections.abc import Iterable
from pathlib import Path

SANDBOX_GROUP = "provisioner-sandbox"
MOUNTINFO = Path("/proc/self/mountinfo")
OWN_CGROUP = Path("/proc/self/cgroup")


def tracking_hierarchies(mountinfo: str, own_cgroup: str) -> list[Path]:
    """Where this process's cgroup lies in each mounted process-tracking hierarchy.

    `mountinfo` and `own_cgroup` are the texts of /proc/self/mountinfo and /proc/self/cgroup, so
    the choice is testable with any host's layout.
    """
    membership = own_tracking_paths(own_cgroup)
    found = []
    for line in mountinfo.splitlines():
        fields, _, filesystem = line.partition(" - ")
        parts, filesystem_parts = fields.split(), filesystem.split()
        if len(parts) < 5 or len(filesystem_parts) < 3:
            continue
        mount_root, mount_point = parts[3], parts[4]
        own_path = membership.get(hierarchy_kind(filesystem_parts[0], filesystem_parts[2]), "")
        if not own_path.startswith(mount_root):
            continue
        relative = own_path[len(mount_root):].strip("/")
        found.append(Path(mount_point, relative) if relative else Path(mount_point))
    return found


def own_tracking_paths(own_cgroup: str) -> dict[str, str]:
    """{"systemd" | "cgroup2": this process's cgroup path} from /proc/self/cgroup's text."""
    membership = {}
    for line in own_cgroup.splitlines():
        number, controllers, path = line.split(":", 2)
        if number == "0" and not controllers:
            membership["cgroup2"] = path
        elif "name=systemd" in controllers.split(","):
            membership["systemd"] = path
    return membership


def hierarchy_kind(filesystem: str, options: str) -> str:
    """"systemd" or "cgroup2" for a process-tracking hierarchy's mount, "" for any other mount."""
    if filesystem == "cgroup" and "name=systemd" in options.split(","):
        return "systemd"
    return "cgroup2" if filesystem == "cgroup2" else ""


def sandbox_groups() -> list[Path]:
    """The directories under which the machines' cgroups live, one per tracking hierarchy."""
    hierarchies = tracking_hierarchies(
        MOUNTINFO.read_text(encoding="utf-8"), OWN_CGROUP.read_text(encoding="utf-8")
    )
    return [base / SANDBOX_GROUP for base in hierarchies]


def machine_cgroups(name: str) -> list[Path]:
    """The cgroup directories machine `name` gets, one per process-tracking hierarchy."""
    return [group / name for group in sandbox_groups()]


def create(directories: Iterable[Path]) -> list[Path]:
    """Create the machine's cgroups; return the `cgroup.procs` files that move a process in."""
    procs = []
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        procs.append(directory / "cgroup.procs")
    return procs


def remove(directories: Iterable[Path], timeout: float = 5.0) -> None:
    """Remove a stopped machine's cgroup trees, deepest first.

    The kernel releases a cgroup shortly after its last process is reaped, so a busy directory is
    tried again for a while; one still busy after that is left for the next `down` to remove.
    """
    deadline = time.monotonic() + timeout
    for directory in directories:
        if directory.is_dir():
            for path in deepest_first(directory):
                remove_when_released(path, deadline)


def deepest_first(directory: Path) -> list[Path]:
    """directory and every directory below it, children before their parents."""
    below = [path for path in directory.rglob("*") if path.is_dir()]
    return [*sorted(below, key=lambda path: len(path.parts), reverse=True), directory]


def remove_when_released(path: Path, deadline: float) -> None:
    """rmdir path, retrying while the kernel still holds it, until the deadline."""
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)


def remove_unused() -> None:
    """Remove the cgroups every stopped machine left (a crashed `up`); busy ones stay."""
    for group in sandbox_groups():
        with contextlib.suppress(OSError):
            remove([path for path in group.iterdir() if path.is_dir()], timeout=1.0)
