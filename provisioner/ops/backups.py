"""Copies of files taken before they change: the backup tree, and the saves a safeguard restores.

Both trees are root's alone (0700 from their roots down) and every copy keeps its original's
mode and owner, so a 0600 file never becomes readable to anyone through its copy.
"""

from __future__ import annotations

import posixpath

from provisioner.commands import quote
from provisioner.ops.path_state import directories_above

BACKUP_ROOT = "/var/backups/provisioner"
#: Copies kept per path, newest first: enough to undo the last few changes by hand, few enough
#: that a rotated-out secret in an old copy of a file does not stay at rest for ever.
KEEP_COPIES = 5
SAFEGUARD_ROOT = "/var/lib/provisioner/safeguard"


def backup_path(path: str) -> str:
    """Where a replaced or removed path's copy goes (a timestamp is appended on the host)."""
    return BACKUP_ROOT + path


def _private_tree(root: str, directory: str) -> str:
    """Shell making ``directory`` (below ``root``) exist with it and every directory between
    them 0700, root's alone: created under umask 077, and tightened if an older run left them
    0755. A copy inside then keeps its original's mode without anyone else reaching it."""
    chain = [root] + [item for item in directories_above(directory + "/x")
                      if item.startswith(root + "/")]
    return (f"( umask 077 && mkdir -p {quote(directory)} && "
            f"chmod 0700 {' '.join(quote(item) for item in chain)} )")


def _stamped_copy(path: str) -> str:
    """The copy's path, quoted, with the time the host takes it appended."""
    return quote(backup_path(path)) + ".$(date +%Y%m%dT%H%M%S)"


def backup_command(path: str) -> str:
    """Shell that copies ``path``, when it exists, into the backup tree before it is replaced.

    The copy keeps the original's mode and owner (``cp -p``) inside a tree only root can enter
    (0700 from /var/backups/provisioner down), so a 0600 file never becomes readable to anyone
    through its backup. One line; a failed copy ends the action (``exit 1``) before the file is
    replaced. Also for actions that replace a file other than through write_file_action (a
    filter rewriting it in place, as hardening does with /etc/ssh/moduli).
    """
    target = quote(path)
    tree = _private_tree(BACKUP_ROOT, posixpath.dirname(backup_path(path)))
    failed = quote(f"could not back up {path}; it was not replaced")
    return (f"if [ -e {target} ]; then {{ {tree} && cp -p {target} {_stamped_copy(path)}; }} || "
            f"{{ echo {failed} >&2; exit 1; }}; {_prune_copies(path)}; fi")


def _prune_copies(path: str) -> str:
    """Shell removing all but the newest KEEP_COPIES copies of path (names sort by time)."""
    return (f"ls -1d {quote(backup_path(path))}.[0-9]* 2>/dev/null | sort | "
            f"head -n -{KEEP_COPIES} | while IFS= read -r old; do rm -f -- \"$old\"; done")


def move_to_backups_command(path: str) -> str:
    """Shell moving ``path`` into the backup tree: a removal that can be undone by hand."""
    tree = _private_tree(BACKUP_ROOT, posixpath.dirname(backup_path(path)))
    return f"{tree} && mv -f {quote(path)} {_stamped_copy(path)}"


def safeguard_save(name: str, path: str) -> str:
    """Shell that records a file's current state (once) so the safeguard's revert can restore it.

    The saved copy keeps the original's mode inside a 0700 tree (like the backups), and a save
    that fails stops the action: a guarded change whose revert could not restore the file must
    not be made.
    """
    root = f"{SAFEGUARD_ROOT}/{name}"
    manifest = quote(root + "/manifest")
    saved = root + "/files" + path
    failed = quote(f"could not save {path} for the revert of safeguard {name}; nothing changed")
    return (f"if ! grep -qsxF {quote('saved ' + path)} {manifest} && "
            f"! grep -qsxF {quote('absent ' + path)} {manifest}; then "
            f"if [ -e {quote(path)} ]; then "
            f"{_private_tree(SAFEGUARD_ROOT, posixpath.dirname(saved))} && "
            f"cp -p {quote(path)} {quote(saved)} && echo {quote('saved ' + path)} >> {manifest}; "
            f"else echo {quote('absent ' + path)} >> {manifest}; fi || "
            f"{{ echo {failed} >&2; exit 1; }}; fi\n")

