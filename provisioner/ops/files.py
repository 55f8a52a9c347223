"""Files, templates, directories and lines: compared by checksum, written atomically.

One probe per path prints type, owner, group, mode and SHA-256 (and the content, base64, only in
diff mode). A write goes to a temp file in the destination directory, gets its owner and mode,
passes the validator, has the old file copied to /var/backups/provisioner, and is renamed over
the target, so a reader never sees half a file and an invalid config never goes live.
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


def probe_path(path: str, with_content: bool = False) -> str:
    """Read-only shell printing ``kind|owner|group|mode|sha256`` (+ base64 content) or absent.

    Two programs per existing path (stat, sha256sum), no command substitution and no pipe: a
    converged host runs this once per managed file, so every process start saved counts.
    sha256sum's line carries the path after the digest; the parser keeps the digest only.
    """
    target = quote(path)
    content = f"; printf 'content:'; base64 -w0 -- {target}" if with_content else ""
    return (f"if [ -e {target} ]; then stat --printf '%F|%U|%G|%a|' -- {target}; "
            f"if [ -f {target} ]; then sha256sum -- {target}{content}; "
            f"else echo; fi; else echo absent; fi")


def parse_path_state(output: str) -> FileState | None:
    lines = output.split("\n")
    if not lines[0] or lines[0] == "absent":
        return None
    kind, owner, group, mode, checksum = lines[0].split("|", 4)
    sha = checksum.split()[0].lstrip("\\") if checksum.strip() else ""  # "\" marks escaped names
    content = None
    if len(lines) > 1 and lines[1].startswith("content:"):
        content = base64.b64decode(lines[1].removeprefix("content:"))
    return FileState(kind, owner, group, int(mode, 8), sha, content)


def probe_paths(paths: Sequence[str]) -> str:
    """Read-only shell answering probe_path (without content) for many paths at once.

    One stat for the paths that exist (``-e`` follows symlinks, as probe_path's does), then one
    sha256sum for the regular files among them (a FIFO or device must never be read); the tests
    are shell builtins. NUL separators keep any file name intact; a double NUL (impossible inside
    stat's part) ends stat's part.
    """
    targets = " ".join(quote(path) for path in paths)
    return (f"set --; for p in {targets}; do if [ -e \"$p\" ]; then set -- \"$@\" \"$p\"; fi; "
            "done; if [ \"$#\" -gt 0 ]; then stat --printf '%n\\0%F|%U|%G|%a\\0' -- \"$@\"; fi; "
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
    return {path: f"{attributes[path]}|{checksums.get(path, '')}\n" if path in attributes
            else "absent\n" for path in paths}


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
              save: str = "") -> Plan:
    """Decide what a file needs; pure, so every branch is unit-tested."""
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
        reason = "created" if current is None else "content changed"
        return Plan(reason, action=save + write_file_action(desired), diff=diff)
    reasons = plan_file_attributes(current, desired.owner, desired.group, desired.mode)
    return _attributes_plan(desired, reasons, save)


def _attributes_plan(desired: DesiredFile, reasons: list[str], save: str) -> Plan:
    if not reasons:
        return Plan("already as desired")
    action = (f"{save}chown {quote(desired.owner + ':' + desired.group)} {quote(desired.path)}"
              f" && chmod {desired.mode:04o} {quote(desired.path)}")
    return Plan(", ".join(reasons), action=action)


def write_file_action(desired: DesiredFile) -> str:
    """Shell for an atomic, validated, backed-up replacement of one file."""
    path = quote(desired.path)
    directory = quote(posixpath.dirname(desired.path) or "/")
    backup_dir = quote(BACKUP_ROOT + posixpath.dirname(desired.path))
    backup = quote(BACKUP_ROOT + desired.path)
    validate = ""
    if desired.validate:
        command = desired.validate.replace("%s", '"$tmp"')
        message = quote(f"validation failed ({desired.validate}): ")
        validate = (f'if ! out=$({command} 2>&1); then printf "%s%s\\n" {message} "$out" >&2; '
                    'exit 1; fi\n')
    return (f"set -e\ntmp=$(mktemp {directory}/.provisioner-XXXXXX)\n"
            f"trap 'rm -f \"$tmp\"' EXIT\n"
            f"{write_bytes_command(desired.content or b'', chr(34) + '$tmp' + chr(34))}\n"
            f"chown {quote(desired.owner + ':' + desired.group)} \"$tmp\"\n"
            f"chmod {desired.mode:04o} \"$tmp\"\n{validate}"
            f"if [ -e {path} ]; then mkdir -p {backup_dir}; "
            f"cp -p {path} {backup}.$(date +%Y%m%dT%H%M%S); fi\n"
            f"mv -f \"$tmp\" {path}\ntrap - EXIT")


def safeguard_save(name: str, path: str) -> str:
    """Shell that records a file's current state (once) so the safeguard's revert can restore it."""
    root = f"{SAFEGUARD_ROOT}/{name}"
    manifest = quote(root + "/manifest")
    saved = root + "/files" + path
    return (f"if ! grep -qsxF {quote('saved ' + path)} {manifest} && "
            f"! grep -qsxF {quote('absent ' + path)} {manifest}; then "
            f"if [ -e {quote(path)} ]; then mkdir -p {quote(posixpath.dirname(saved))} && "
            f"cp -p {quote(path)} {quote(saved)} && echo {quote('saved ' + path)} >> {manifest}; "
            f"else echo {quote('absent ' + path)} >> {manifest}; fi; fi\n")


def ensure_file(host: Host, path: str, content: str | bytes | None = None, *,
                owner: str = "root", group: str = "root", mode: int = 0o644,
                validate: str | None = None, notify: Sequence[str] = (),
                safeguard: Safeguard | None = None, label: str = "") -> Step:
    """A file with this content (or only these attributes when content is None)."""
    data = content.encode() if isinstance(content, str) else content
    desired = DesiredFile(path, data, owner, group, mode, validate)
    save = safeguard_save(safeguard.name, path) if safeguard else ""
    show_diff = host.show_diff

    def decide(probed: Probed) -> Plan:
        return plan_file(parse_path_state(probed.output), desired, show_diff, save)

    return Step(label or f"file {path}", probe_path(path, with_content=show_diff), decide,
                tuple(notify), safeguard, host.secrets, writes_only=path,
                grouped=grouped_path_probe(path, with_content=show_diff))


def ensure_template(host: Host, path: str, template: str, *, owner: str = "root",
                    group: str = "root", mode: int = 0o644, validate: str | None = None,
                    notify: Sequence[str] = (), safeguard: Safeguard | None = None,
                    label: str = "", **extra: object) -> Step:
    """A file rendered from one of the role's Jinja2 templates."""
    content = host.render(template, **extra)
    return ensure_file(host, path, content, owner=owner, group=group, mode=mode,
                       validate=validate, notify=notify, safeguard=safeguard,
                       label=label or f"template {path}")


def ensure_absent(host: Host, path: str, *, notify: Sequence[str] = (),
                  safeguard: Safeguard | None = None, label: str = "") -> Step:
    """No file at path (a backup of a removed file is kept)."""
    save = safeguard_save(safeguard.name, path) if safeguard else ""
    backup = quote(BACKUP_ROOT + path)

    def decide(probed: Probed) -> Plan:
        if parse_path_state(probed.output) is None:
            return Plan("already absent")
        action = (f"{save}mkdir -p {quote(BACKUP_ROOT + posixpath.dirname(path))} && "
                  f"mv -f {quote(path)} {backup}.$(date +%Y%m%dT%H%M%S)")
        return Plan("removed", action=action)

    return Step(label or f"absent {path}", probe_path(path), decide, tuple(notify), safeguard,
                writes_only=path, grouped=grouped_path_probe(path))


def ensure_directory(host: Host, path: str, *, owner: str = "root", group: str = "root",
                     mode: int = 0o755, label: str = "") -> Step:
    """A directory with this owner and mode (parents created as needed)."""
    def decide(probed: Probed) -> Plan:
        current = parse_path_state(probed.output)
        owner_group = quote(f"{owner}:{group}")
        if current is None:
            return Plan("created", action=f"mkdir -p {quote(path)} && chown {owner_group} "
                        f"{quote(path)} && chmod {mode:04o} {quote(path)}")
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
                mode: int = 0o644, notify: Sequence[str] = (), label: str = "") -> Step:
    """A line present in a file, replacing the line that matches pattern if there is one."""
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
        desired = DesiredFile(path, new.encode(), owner, group, file_mode)
        return Plan("line added" if old is None or not pattern else "line set",
                    action=write_file_action(desired),
                    diff=unified_diff(path, old.encode() if old else None, new.encode()))

    return Step(label or f"line in {path}", probe_path(path, with_content=True), decide,
                tuple(notify), writes_only=path)
