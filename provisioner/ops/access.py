"""Owner, group and mode of existing paths, many in one probe, a mode as a ceiling if asked.

For paths a package or the system owns (account databases, cron): the step never creates one,
and it can remove permission bits without adding any, so it tightens without ever loosening
what a distribution made stricter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.commands import join, quote
from provisioner.host import Host
from provisioner.step import Plan, Probed, Step


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
