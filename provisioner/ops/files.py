"""Files, templates, directories and lines: compared by checksum, written atomically.

One probe per path prints type, owner, group, mode and SHA-256 (and the content, base64, only in
diff mode); for a missing path, how many of the directories above it are missing too. A write
creates those directories (root-owned, 0755 unless the step asks otherwise: a minimal image lacks
/etc/modprobe.d without kmod), writes a temp file in the destination directory, gives it its owner
and mode, runs the validator, copies the old file into /var/backups/provisioner (a root-only 0700
tree, the copy keeping the original's mode), and renames the temp file over the target, so a
reader never sees half a file and an invalid config never goes live. A write that fails removes
its temp file and the directories it created.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.change import unified_diff
from provisioner.commands import quote, write_bytes_command
from provisioner.host import Host
from provisioner.step import GroupedProbe, Plan, Probed, ProbeGroup, Safeguard, Step

BACKUP_ROOT = "/var/backups/provisioner"
SAFEGUARD_ROOT = "/var/lib/provisioner/safeguard"
#: Mode of a missing directory that a write creates above its file (owner root:root).
DIRECTORY_MODE = 0o755


@dataclass(frozen=True)
class FileState:
    kind: str
    owner: str
    group: str
    mode: int
    sha256: str
    content: bytes | None = None


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


#: Shell counting into $n the missing directories above the absent path $p (builtins only, so
#: a converged host, whose paths all exist, never runs it).
_COUNT_MISSING_DIRECTORIES = (
    'n=0; case $p in */*) d=${p%/*} ;; *) d= ;; esac; '
    'while [ -n "$d" ] && [ ! -d "$d" ]; do n=$((n + 1)); '
    'case $d in */*) d=${d%/*} ;; *) d= ;; esac; done')


def probe_path(path: str, with_content: bool = False) -> str:
    """Read-only shell printing ``kind|owner|group|mode|sha256`` (+ base64 content), or
    ``absent`` (``absent N`` when the N deepest directories above the path are missing too).

    Two programs per existing path (stat, sha256sum), no command substitution and no pipe: a
    converged host runs this once per managed file, so every process start saved counts.
    sha256sum's line carries the path after the digest; the parser keeps the digest only.
    """
    target = quote(path)
    content = f"; printf 'content:'; base64 -w0 -- {target}" if with_content else ""
    return (f"if [ -e {target} ]; then stat --printf '%F|%U|%G|%a|' -- {target}; "
            f"if [ -f {target} ]; then sha256sum -- {target}{content}; "
            f"else echo; fi; else p={target}; {_COUNT_MISSING_DIRECTORIES}; "
            'if [ "$n" -eq 0 ]; then echo absent; else echo "absent $n"; fi; fi')


def _is_absent(first_line: str) -> bool:
    return first_line == "absent" or first_line.startswith("absent ")


def parse_path_state(output: str) -> FileState | None:
    lines = output.split("\n")
    if not lines[0] or _is_absent(lines[0]):
        return None
    kind, owner, group, mode, checksum = lines[0].split("|", 4)
    sha = checksum.split()[0].lstrip("\\") if checksum.strip() else ""  # "\" marks escaped names
    content = None
    if len(lines) > 1 and lines[1].startswith("content:"):
        content = base64.b64decode(lines[1].removeprefix("content:"))
    return FileState(kind, owner, group, int(mode, 8), sha, content)


def directories_above(path: str) -> list[str]:
    """Every directory above path, shallowest first, without ``/``: what a write may create."""
    parts = posixpath.normpath(posixpath.dirname(path)).split("/")
    return ["/".join(parts[:end]) for end in range(2, len(parts) + 1) if parts[1:end] != [""]]


def missing_directories(path: str, output: str) -> list[str]:
    """The directories above path that its probe found missing, shallowest first."""
    words = output.split("\n", 1)[0].split(" ")
    if words[0] != "absent" or len(words) != 2 or not words[1].isdigit() or words[1] == "0":
        return []
    return directories_above(path)[-int(words[1]):]


def probe_paths(paths: Sequence[str]) -> str:
    """Read-only shell answering probe_path (without content) for many paths at once.

    One stat for the paths that exist (``-e`` follows symlinks, as probe_path's does), then one
    sha256sum for the regular files among them (a FIFO or device must never be read); the tests
    are shell builtins. NUL separators keep any file name intact; a double NUL (impossible inside
    stat's part) ends stat's part. A missing path below missing directories is answered in that
    part too, as ``absent N``.
    """
    targets = " ".join(quote(path) for path in paths)
    return (f"set --; for p in {targets}; do if [ -e \"$p\" ]; then set -- \"$@\" \"$p\"; "
            f"else {_COUNT_MISSING_DIRECTORIES}; if [ \"$n\" -gt 0 ]; then "
            "printf '%s\\0absent %s\\0' \"$p\" \"$n\"; fi; fi; done; "
            "if [ \"$#\" -gt 0 ]; then stat --printf '%n\\0%F|%U|%G|%a\\0' -- \"$@\"; fi; "
            f"printf '\\0\\0'; set --; for p in {targets}; do if [ -f \"$p\" ]; then "
            'set -- "$@" "$p"; fi; done; if [ "$#" -gt 0 ]; then sha256sum -z -- "$@"; fi')


def split_paths_output(output: str, paths: Sequence[str]) -> dict[str, str]:
    """probe_paths output -> per path, probe_path's format (the digest without the file name
    sha256sum prints after it), so parse_path_state reads both alike."""
    attributes_part, _, checksums_part = output.partition("\0\0")
    fields = attributes_part.split("\0")
    attributes = dict(zip(fields[0::2], fields[1::2], strict=False))
    checksums = {record[66:]: record[:64] for record in checksums_part.split("\0")
                 if len(record) > 66 and record[64:66] in ("  ", " *")}
    return {path: _path_answer(attributes.get(path), checksums.get(path, "")) for path in paths}


def _path_answer(attributes: str | None, checksum: str) -> str:
    if attributes is None:
        return "absent\n"
    return f"{attributes}\n" if _is_absent(attributes) else f"{attributes}|{checksum}\n"


#: File probes answered together: thirty managed files cost three process starts, not sixty.
PATHS = ProbeGroup("paths", probe_paths, split_paths_output)


def grouped_path_probe(path: str, with_content: bool = False) -> GroupedProbe | None:
    """A path step's probe as a PATHS item; a probe that must also read the content is not."""
    return None if with_content else GroupedProbe(PATHS, path)


def plan_file_attributes(current: FileState, owner: str, group: str, mode: int) -> list[str]:
    """Human reasons for every owner/group/mode difference (empty when all match)."""
    reasons = []
    if (current.owner, current.group) != (owner, group):
        reasons.append(f"owner {current.owner}:{current.group} -> {owner}:{group}")
    if current.mode != mode:
        reasons.append(f"mode {current.mode:04o} -> {mode:04o}")
    return reasons


def plan_file(current: FileState | None, desired: DesiredFile, show_diff: bool = False,
              save: str = "", missing: Sequence[str] = ()) -> Plan:
    """Decide what a file needs; pure, so every branch is unit-tested.

    ``missing`` names the directories above an absent file that its probe found missing; the
    write creates them, and the reason says so (in check mode too).
    """
    if current is not None and current.kind not in ("regular file", "regular empty file"):
        return Plan(f"{desired.path} is a {current.kind}, refusing to replace it",
                    action="echo 'refusing to replace a non-file' >&2; exit 1")
    if desired.content is None:
        if current is None:
            return Plan(f"{desired.path} is missing and no content was given",
                        action=f"echo {quote(desired.path + ' does not exist')} >&2; exit 1")
        reasons = plan_file_attributes(current, desired.owner, desired.group, desired.mode)
        return _attributes_plan(desired, reasons, save)
    wanted_sha = hashlib.sha256(desired.content).hexdigest()
    if current is None or current.sha256 != wanted_sha:
        diff = unified_diff(desired.path, current.content if current else None,
                            desired.content) if show_diff else None
        reason = created_reason(missing) if current is None else "content changed"
        return Plan(reason, action=save + write_file_action(desired), diff=diff)
    reasons = plan_file_attributes(current, desired.owner, desired.group, desired.mode)
    return _attributes_plan(desired, reasons, save)


def created_reason(missing: Sequence[str]) -> str:
    """"created", naming the directories created with it, if any."""
    if not missing:
        return "created"
    noun = "directory" if len(missing) == 1 else "directories"
    return f"created, with missing {noun} {', '.join(missing)}"


def _attributes_plan(desired: DesiredFile, reasons: list[str], save: str) -> Plan:
    if not reasons:
        return Plan("already as desired")
    action = (f"{save}chown {quote(desired.owner + ':' + desired.group)} {quote(desired.path)}"
              f" && chmod {desired.mode:04o} {quote(desired.path)}")
    return Plan(", ".join(reasons), action=action)


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


def backup_command(path: str) -> str:
    """Shell that copies ``path``, when it exists, into the backup tree before it is replaced.

    The copy keeps the original's mode and owner (``cp -p``) inside a tree only root can enter
    (0700 from /var/backups/provisioner down), so a 0600 file never becomes readable to anyone
    through its backup. One line; a failed copy ends the action (``exit 1``) before the file is
    replaced. Also for actions that replace a file other than through write_file_action (a
    filter rewriting it in place, as hardening does with /etc/ssh/moduli).
    """
    target = quote(path)
    copy = quote(backup_path(path)) + ".$(date +%Y%m%dT%H%M%S)"
    tree = _private_tree(BACKUP_ROOT, posixpath.dirname(backup_path(path)))
    failed = quote(f"could not back up {path}; it was not replaced")
    return (f"if [ -e {target} ]; then {{ {tree} && cp -p {target} {copy}; }} || "
            f"{{ echo {failed} >&2; exit 1; }}; fi")


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


def ensure_file(host: Host, path: str, content: str | bytes | None = None, *,
                owner: str = "root", group: str = "root", mode: int = 0o644,
                validate: str | None = None, notify: Sequence[str] = (),
                safeguard: Safeguard | None = None, label: str = "",
                directory_mode: int = DIRECTORY_MODE) -> Step:
    """A file with this content (or only these attributes when content is None); missing
    directories above it are created root-owned with ``directory_mode``."""
    data = content.encode() if isinstance(content, str) else content
    desired = DesiredFile(path, data, owner, group, mode, validate, directory_mode)
    save = safeguard_save(safeguard.name, path) if safeguard else ""
    show_diff = host.show_diff

    def decide(probed: Probed) -> Plan:
        return plan_file(parse_path_state(probed.output), desired, show_diff, save,
                         missing_directories(path, probed.output))

    return Step(label or f"file {path}", probe_path(path, with_content=show_diff), decide,
                tuple(notify), safeguard, host.secrets, writes_only=path,
                grouped=grouped_path_probe(path, with_content=show_diff))


def ensure_template(host: Host, path: str, template: str, *, owner: str = "root",
                    group: str = "root", mode: int = 0o644, validate: str | None = None,
                    notify: Sequence[str] = (), safeguard: Safeguard | None = None,
                    label: str = "", directory_mode: int = DIRECTORY_MODE,
                    **extra: object) -> Step:
    """A file rendered from one of the role's Jinja2 templates."""
    content = host.render(template, **extra)
    return ensure_file(host, path, content, owner=owner, group=group, mode=mode,
                       validate=validate, notify=notify, safeguard=safeguard,
                       label=label or f"template {path}", directory_mode=directory_mode)


def ensure_absent(host: Host, path: str, *, notify: Sequence[str] = (),
                  safeguard: Safeguard | None = None, label: str = "") -> Step:
    """No file at path (the removed file is kept in the 0700 backup tree, mode unchanged)."""
    save = safeguard_save(safeguard.name, path) if safeguard else ""
    backup = quote(backup_path(path))
    tree = _private_tree(BACKUP_ROOT, posixpath.dirname(backup_path(path)))

    def decide(probed: Probed) -> Plan:
        if parse_path_state(probed.output) is None:
            return Plan("already absent")
        action = f"{save}{tree} && mv -f {quote(path)} {backup}.$(date +%Y%m%dT%H%M%S)"
        return Plan("removed", action=action)

    return Step(label or f"absent {path}", probe_path(path), decide, tuple(notify), safeguard,
                writes_only=path, grouped=grouped_path_probe(path))


def ensure_directory(host: Host, path: str, *, owner: str = "root", group: str = "root",
                     mode: int = 0o755, label: str = "") -> Step:
    """A directory with this owner and mode; missing parents are created root-owned, 0755
    (not with the umask, which a hardened host sets to 027)."""
    def decide(probed: Probed) -> Plan:
        current = parse_path_state(probed.output)
        owner_group = quote(f"{owner}:{group}")
        if current is None:
            parents = make_directories_command(directories_above(path))
            return Plan(created_reason(missing_directories(path, probed.output)),
                        action=f"set -e\n{parents}mkdir -m {mode:04o} {quote(path)}\n"
                        f"chown {owner_group} {quote(path)}\nchmod {mode:04o} {quote(path)}")
        if current.kind != "directory":
            return Plan(f"{path} is a {current.kind}, not a directory",
                        action=f"echo {quote(path + ' is not a directory')} >&2; exit 1")
        reasons = plan_file_attributes(current, owner, group, mode)
        if not reasons:
            return Plan("already as desired")
        return Plan(", ".join(reasons), action=f"chown {owner_group} {quote(path)} && "
                    f"chmod {mode:04o} {quote(path)}")

    return Step(label or f"directory {path}", probe_path(path), decide, writes_only=path,
                grouped=grouped_path_probe(path))


def plan_line(text: str | None, line: str, pattern: str | None) -> str | None:
    """New file content with ``line`` present, or None when nothing needs to change.

    Without a pattern the line is appended unless present. With one, the lines matching it
    collapse into ``line`` at the place of the last match (appended when none match), so a second
    run always finds exactly one matching line and changes nothing.
    """
    lines = (text or "").splitlines()
    if pattern is None:
        return None if line in lines else "\n".join([*lines, line]) + "\n"
    matches = [i for i, item in enumerate(lines) if re.search(pattern, item)]
    if [lines[i] for i in matches] == [line]:
        return None
    if matches:
        lines[matches[-1]] = line
        lines = [item for i, item in enumerate(lines) if i not in matches[:-1]]
    else:
        lines.append(line)
    return "\n".join(lines) + "\n"


def ensure_line(host: Host, path: str, line: str, *, pattern: str | None = None,
                mode: int = 0o644, notify: Sequence[str] = (), label: str = "",
                directory_mode: int = DIRECTORY_MODE) -> Step:
    """A line present in a file, replacing the line that matches pattern if there is one; a
    missing file is created (and missing directories above it, with ``directory_mode``)."""
    desired_mode = mode

    def decide(probed: Probed) -> Plan:
        current = parse_path_state(probed.output)
        if current is not None and current.kind not in ("regular file", "regular empty file"):
            return Plan(f"{path} is a {current.kind}, refusing to edit it",
                        action=f"echo {quote(path + ' is not a regular file')} >&2; exit 1")
        old = current.content.decode() if current and current.content is not None else None
        new = plan_line(old, line, pattern)
        if new is None:
            return Plan("line already present")
        owner, group = (current.owner, current.group) if current else ("root", "root")
        file_mode = current.mode if current else desired_mode
        desired = DesiredFile(path, new.encode(), owner, group, file_mode,
                              directory_mode=directory_mode)
        reason = "line added" if old is None or not pattern else "line set"
        missing = missing_directories(path, probed.output)
        return Plan(f"{reason} ({created_reason(missing)})" if missing else reason,
                    action=write_file_action(desired),
                    diff=unified_diff(path, old.encode() if old else None, new.encode()))

    return Step(label or f"line in {path}", probe_path(path, with_content=True), decide,
                tuple(notify), writes_only=path)
