"""Lines in files: one line set (replacing the lines a pattern matches), or many keyed lines.

For config files whose other lines belong to a package or an administrator: the step rewrites
the file through file_writes' atomic write, keeping its owner and mode, and never touches
lines that are not its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from provisioner.change import unified_diff
from provisioner.commands import quote
from provisioner.host import Host
from provisioner.ops.file_writes import (
    DIRECTORY_MODE,
    DesiredFile,
    created_reason,
    write_file_action,
)
from provisioner.ops.path_state import missing_directories, parse_path_state, probe_path
from provisioner.step import Plan, Probed, ProbeUnreadable, Step


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
                    action=write_file_action(desired), all_or_nothing=True,
                    diff=unified_diff(path, old.encode() if old else None, new.encode()))

    return Step(label or f"line in {path}", probe_path(path, with_content=True), decide,
                tuple(notify), writes_only=path)


def plan_keyed_lines(text: str | None, lines: Mapping[str, str]) -> str | None:
    """New content with each ``KEY value`` line set once, or None when all already are.

    A line counts as the key's when it starts with the key followed by blanks, ``=`` or its end;
    commented-out defaults (``#PASS_MAX_DAYS``) are left as documentation.
    """
    current = text
    for key, line in lines.items():
        updated = plan_line(current, line, rf"^\s*{re.escape(key)}(\s|=|$)")
        if updated is not None:
            current = updated
    return None if current == text else current


def ensure_keyed_lines(host: Host, path: str, lines: Mapping[str, str], *,
                       label: str = "") -> Step:
    """Set several ``KEY value`` lines of an existing config file in one write.

    One step instead of one ``ensure_line`` per key, so a first run costs one action, not twenty.
    The file keeps its owner and mode; a missing file is an error (its package is absent).
    """
    def decide(probed: Probed) -> Plan:
        current = parse_path_state(probed.output)
        if current is None or current.content is None:
            raise ProbeUnreadable(f"{path} does not exist (is its package installed?)")
        old = current.content.decode()
        new = plan_keyed_lines(old, lines)
        if new is None:
            return Plan("all values already set")
        desired = DesiredFile(path, new.encode(), current.owner, current.group, current.mode)
        changed = sorted(key for key, line in lines.items() if line not in old.splitlines())
        return Plan("set " + ", ".join(changed), action=write_file_action(desired),
                    all_or_nothing=True)

    return Step(label or f"lines in {path}", probe_path(path, with_content=True), decide)
