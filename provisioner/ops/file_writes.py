"""Writing a file on the host: atomically, validated, backed up, with the directories above it.

A write creates the missing directories above the file (root-owned, 0755 unless the step asks
otherwise: a minimal image lacks /etc/modprobe.d without kmod), writes a temp file in the
destination directory, gives it its owner and mode, runs the validator, copies the old file
into the backup tree (backups.py), and renames the temp file over the target, so a reader
never sees half a file and an invalid config never goes live. A write that fails removes its
temp file and the directories it created.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.commands import quote, write_bytes_command
from provisioner.ops.backups import backup_command
from provisioner.ops.path_state import directories_above

#: Mode of a missing directory that a write creates above its file (owner root:root).
DIRECTORY_MODE = 0o755


@dataclass(frozen=True)
class DesiredFile:
    path: str
    content: bytes | None
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644
    validate: str | None = None
    #: Mode of each missing directory above the file, created root-owned by the write.
    directory_mode: int = DIRECTORY_MODE


def created_reason(missing: Sequence[str]) -> str:
    """"created", naming the directories created with it, if any."""
    if not missing:
        return "created"
    noun = "directory" if len(missing) == 1 else "directories"
    return f"created, with missing {noun} {', '.join(missing)}"



def make_directories_command(directories: Sequence[str], mode: int = DIRECTORY_MODE) -> str:
    """Shell creating each of these directories that is missing, shallowest first, root-owned
    with ``mode``; each it creates sets a flag ``m<index>`` (see undo_directories_command).

    The directories are tested on the host when the action runs, not taken from the probe: an
    earlier action of the same run (a package install) may have created them since.
    """
    return "".join(f"if [ ! -d {quote(directory)} ]; then mkdir -m {mode:04o} {quote(directory)}; "
                   f"chown root:root {quote(directory)}; m{index}=1; fi\n"
                   for index, directory in enumerate(directories))


def undo_directories_command(directories: Sequence[str]) -> str:
    """Shell removing, deepest first, exactly the directories make_directories_command created."""
    return "".join(f"if [ -n \"$m{index}\" ]; then rmdir {quote(directory)} 2>/dev/null || :; fi; "
                   for index, directory in reversed(list(enumerate(directories))))


def write_file_action(desired: DesiredFile) -> str:
    """Shell for an atomic, validated, backed-up replacement of one file.

    Missing directories above the file are created first (root-owned, ``directory_mode``); a
    write that fails anywhere (validation included) removes its temp file and the directories it
    created, so a refused config leaves the host exactly as it was.
    """
    path = quote(desired.path)
    directory = quote(posixpath.dirname(desired.path) or "/")
    parents = directories_above(desired.path)
    validate = ""
    if desired.validate:
        command = desired.validate.replace("%s", '"$tmp"')
        message = quote(f"validation failed ({desired.validate}): ")
        validate = (f'if ! out=$({command} 2>&1); then printf "%s%s\\n" {message} "$out" >&2; '
                    'exit 1; fi\n')
    flags = "".join(f" m{index}=" for index in range(len(parents)))
    return (f"set -e\ntmp={flags}\n"
            f"undo_write() {{ rm -f \"$tmp\"; {undo_directories_command(parents)}}}\n"
            "trap undo_write EXIT\n"
            f"{make_directories_command(parents, desired.directory_mode)}"
            f"tmp=$(mktemp {directory}/.provisioner-XXXXXX)\n"
            f"{write_bytes_command(desired.content or b'', chr(34) + '$tmp' + chr(34))}\n"
            f"chown {quote(desired.owner + ':' + desired.group)} \"$tmp\"\n"
            f"chmod {desired.mode:04o} \"$tmp\"\n{validate}"
            f"{backup_command(desired.path)}\n"
            f"mv -f \"$tmp\" {path}\ntrap - EXIT")

