"""Small step builders this role needs and provisioner.ops does not offer (yet).

Each follows the engine's contract: a read-only probe, a pure ``plan_*`` decision that the unit
tests call with recorded probe output, and an action only when something differs. File writes
reuse ops.files' atomic, backed-up ``write_file_action`` so they behave like ``ensure_file``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provisioner.commands import join, quote
from provisioner.host import Host
from provisioner.ops.files import (
    DesiredFile,
    parse_path_state,
    plan_line,
    probe_path,
    write_file_action,
)
from provisioner.step import Plan, Probed, ProbeUnreadable, Safeguard, Step


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
        return Plan("set " + ", ".join(changed), action=write_file_action(desired))

    return Step(label or f"lines in {path}", probe_path(path, with_content=True), decide)


@dataclass(frozen=True)
class Access:
    """Desired owner, group and mode of a path; None leaves that attribute as it is.

    With ``remove_only`` the mode is a ceiling (like ``chmod og-rwx``): bits outside it are
    removed, a stricter mode is kept, so hardening never loosens what a distribution tightened.
    """

    path: str
    owner: str | None
    group: str | None
    mode: int
    remove_only: bool = False

    def wanted_mode(self, current: int) -> int:
        return current & self.mode if self.remove_only else self.mode


def probe_access(paths: Sequence[str]) -> str:
    """``path|owner|group|mode`` for each path that exists; absent paths print nothing."""
    return "; ".join(f"[ -e {quote(path)} ] && stat -c '%n|%U|%G|%a' {quote(path)}"
                     for path in paths) + "; true"


def plan_access(output: str, wanted: Sequence[Access]) -> Plan:
    """chown/chmod for every existing path whose attributes differ; absent paths are skipped."""
    found = {fields[0]: fields[1:] for fields in
             (line.split("|") for line in output.splitlines()) if len(fields) == 4}
    commands, reasons = [], []
    for item in wanted:
        if item.path not in found:
            continue
        owner, group, mode = found[item.path]
        want_owner, want_group = item.owner or owner, item.group or group
        if (owner, group) != (want_owner, want_group):
            commands.append(join("chown", f"{want_owner}:{want_group}", item.path))
            reasons.append(f"{item.path} {owner}:{group} -> {want_owner}:{want_group}")
        current_mode = int(mode, 8)
        wanted_mode = item.wanted_mode(current_mode)
        if current_mode != wanted_mode:
            commands.append(join("chmod", f"{wanted_mode:04o}", item.path))
            reasons.append(f"{item.path} {current_mode:04o} -> {wanted_mode:04o}")
    if not commands:
        return Plan("all as desired (absent paths skipped)")
    return Plan("; ".join(reasons), action=" && ".join(commands))


def ensure_access(host: Host, wanted: Sequence[Access], *, label: str) -> Step:
    """Owner/group/mode of many existing paths in one probe; paths that do not exist are skipped.

    Skipping matters for cron files: cron is not installed on a minimal Debian, and creating its
    directories would be a lie about what the host runs.
    """
    def decide(probed: Probed) -> Plan:
        return plan_access(probed.output, wanted)

    return Step(label, probe_access([item.path for item in wanted]), decide)


def ensure_group(host: Host, name: str, *, label: str = "") -> Step:
    """A system group with this name (nothing else about it is managed)."""
    def decide(probed: Probed) -> Plan:
        if probed.output.startswith(f"{name}:"):
            return Plan("exists")
        return Plan("created", action=join("groupadd", "--system", name))

    return Step(label or f"group {name}", f"getent group {quote(name)} || true", decide)


def ensure_command_result(host: Host, label: str, probe: str, *, wanted: str, action: str,
                          reason: str, notify: Sequence[str] = (),
                          safeguard: Safeguard | None = None) -> Step:
    """Run ``action`` unless the probe's trimmed output equals ``wanted``.

    For states only a tool can read and set (pam-auth-update, chage, ssh-keygen -A); the probe
    prints ``unreadable: <why>`` when an earlier step must run first (a package install).
    """
    def decide(probed: Probed) -> Plan:
        return plan_command_result(probed.output, wanted, action, reason)

    return Step(label, probe, decide, tuple(notify), safeguard)


def plan_command_result(output: str, wanted: str, action: str, reason: str) -> Plan:
    """Pure half of ensure_command_result."""
    result = output.strip()
    if result.startswith("unreadable:"):
        raise ProbeUnreadable(result.removeprefix("unreadable:").strip())
    if result == wanted:
        return Plan("already " + wanted)
    return Plan(f"{result or 'nothing'} -> {reason}", action=action)
