"""Finds and undoes mounts under a directory, so deleting it never reaches into a mounted tree.

shutil.rmtree follows into mount points; a leftover overlay, or a /proc that an interrupted
debootstrap left mounted, must be unmounted before the directory holding it is removed.
"""

import shutil
from pathlib import Path

from provisioner.sandbox.errors import SandboxError
from provisioner.sandbox.process import succeeds

MOUNTINFO = Path("/proc/self/mountinfo")


def decode_mount_path(field: str) -> str:
    """Undo mountinfo's octal escapes (`\\040` for a space) in a mount point."""
    return field.encode("latin-1").decode("unicode_escape")


def mount_points_below(directory: Path, mountinfo: str | None = None) -> list[Path]:
    """Mount points at or under directory, deepest first so they can be unmounted in order."""
    text = mountinfo if mountinfo is not None else MOUNTINFO.read_text(encoding="utf-8")
    base = str(directory).rstrip("/")
    found = set()
    for line in text.splitlines():
        point = decode_mount_path(line.split()[4])
        if point == base or point.startswith(base + "/"):
            found.add(point)
    return [Path(point) for point in sorted(found, key=len, reverse=True)]


def unmount_below(directory: Path, passes: int = 5) -> None:
    """Unmount everything at or under directory; lazily when still busy, since it is going away.

    Mounts can be stacked on one mount point, so it repeats until nothing is left or the passes
    run out; remove_tree then reports whatever could not be unmounted.
    """
    for _ in range(passes):
        points = mount_points_below(directory)
        if not points:
            return
        for point in points:
            if not succeeds(["umount", str(point)]):
                succeeds(["umount", "--lazy", str(point)])


def remove_tree(directory: Path) -> None:
    """Delete directory and everything in it, after making sure nothing under it is mounted."""
    if not directory.exists():
        return
    unmount_below(directory)
    if mount_points_below(directory):
        raise SandboxError(
            f"{directory} still has mounts under it after unmounting; remove them with umount and "
            "run `sandbox.down` again."
        )
    shutil.rmtree(directory)


def is_mount_point(directory: Path) -> bool:
    """Whether something is mounted exactly at directory."""
    return directory in mount_points_below(directory)
