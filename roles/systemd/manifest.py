"""The manifest of the units one owner (a role) wrote: how a unit taken out of the inventory is
found, stopped, disabled and removed, and how a unit someone else wrote is never taken over.

The manifest (/var/lib/provisioner/units/<owner>/manifest) lists the unit files the owner put in
/etc/systemd/system and the template instances it enabled. One step, before any unit is
written, reads it together with the first line of every file the desired units would occupy;
its pure decision refuses a name that a package's unit or a file not written by this owner
already holds (writing it would shadow or overwrite theirs), and otherwise stops, disables and
removes each recorded entry the owner no longer wants (files to the backup tree), then records
the wanted ones. Recording comes before writing: a run that dies in between leaves a manifest
naming a unit that may not exist, which removing later tolerates; never the other way round,
which would leave a unit nothing knows to remove.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provisioner.commands import quote, write_bytes_command
from provisioner.ops.backups import move_to_backups_command
from provisioner.step import Plan, Probed, Refused, Step
from roles.systemd.render import ENVIRONMENT_DIR, HEADER_START, header
from roles.systemd.units import UnitSpec

UNIT_DIR = "/etc/systemd/system"
STATE_ROOT = "/var/lib/provisioner/units"
#: Where systemd finds units other than ours (systemd.unit(5)'s system unit search path:
#: packages', the runtime's, an admin's own in /usr/local/lib/systemd/system): a file of ours
#: in UNIT_DIR would shadow them.
OTHER_UNIT_DIRS = ("/etc/systemd/system.control", "/run/systemd/transient",
                   "/run/systemd/system", "/usr/local/lib/systemd/system",
                   "/usr/lib/systemd/system", "/lib/systemd/system")
_END = "== manifest end"


def state_dir(owner: str) -> str:
    return f"{STATE_ROOT}/{owner}"


def manifest_path(owner: str) -> str:
    return f"{state_dir(owner)}/manifest"


def restart_dir(owner: str) -> str:
    """Markers of units whose file or environment changed while they ran (machinery.py)."""
    return f"{state_dir(owner)}/restart"


@dataclass(frozen=True)
class ManifestState:
    """What the probe found: the recorded entries, and the first line of each occupied path."""

    recorded: tuple[str, ...]
    occupied: Mapping[str, str]


def entries(specs: Sequence[UnitSpec]) -> tuple[str, ...]:
    """What the manifest records for these specs: unit files, then enabled instances."""
    files = [name for spec in specs for name in spec.unit_files]
    instances = [unit for spec in specs if spec.name.endswith("@")
                 for unit in spec.started_units]
    return tuple(files + instances)


def probe_manifest(owner: str, specs: Sequence[UnitSpec]) -> str:
    """Read-only shell: the manifest's lines, an end line, then ``path|first line`` for each
    path a desired unit file would occupy or shadow that exists."""
    paths = " ".join(quote(f"{directory}/{name}") for name in entries(specs) if "@" not in
                     name or name.endswith("@.service")
                     for directory in (UNIT_DIR, *OTHER_UNIT_DIRS))
    manifest = quote(manifest_path(owner))
    loop = (f"for p in {paths}; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then "
            "printf '%s|%s\\n' \"$p\" \"$(head -n 1 -- \"$p\" 2>/dev/null)\"; fi; done") \
        if paths else ":"
    return f"if [ -f {manifest} ]; then cat -- {manifest}; fi; echo {quote(_END)}; {loop}"


def parse_manifest(output: str) -> ManifestState:
    recorded, _, rest = output.partition(_END + "\n")
    occupied = dict(line.split("|", 1) for line in rest.splitlines() if "|" in line)
    return ManifestState(tuple(line for line in recorded.splitlines() if line.strip()),
                         occupied)


def plan_manifest(owner: str, specs: Sequence[UnitSpec], state: ManifestState) -> Plan:
    """Refuse what would take over another's unit; remove stale entries; record the wanted."""
    wanted = entries(specs)
    _refuse_foreign(owner, wanted, state)
    stale = [entry for entry in state.recorded if entry not in wanted]
    if not stale and set(state.recorded) == set(wanted):
        return Plan(f"{len(wanted)} units recorded, none stale")
    reasons = []
    if stale:
        reasons.append(f"stale {', '.join(stale)} stopped, disabled and removed")
    new = [entry for entry in wanted if entry not in state.recorded]
    if new:
        reasons.append(f"recorded {', '.join(new)}")
    return Plan("; ".join(reasons) or "manifest rewritten",
                action=removal_command(owner, stale) + record_command(owner, wanted))


def _refuse_foreign(owner: str, wanted: Sequence[str], state: ManifestState) -> None:
    ours = header(owner).rstrip("\n")
    for name in wanted:
        if name in state.recorded:
            continue
        for directory in OTHER_UNIT_DIRS:
            if f"{directory}/{name}" in state.occupied:
                raise Refused(f"unit {name} already exists as {directory}/{name} (a package's "
                              f"or the runtime's): a file of the {owner} role would shadow it. "
                              "Give the unit another name.")
        first = state.occupied.get(f"{UNIT_DIR}/{name}")
        if first is not None and first != ours:
            who = "another role" if first.startswith(HEADER_START) else "someone else"
            raise Refused(f"{UNIT_DIR}/{name} exists and was not written by the {owner} role "
                          f"(written by {who}; its first line: {first[:80]!r}): refusing to "
                          "overwrite it. Remove it by hand or give the unit another name.")


def removal_command(owner: str, stale: Sequence[str]) -> str:
    """Shell stopping and disabling each stale unit (timers first), moving its files to the
    backup tree, then reloading systemd; a unit that is not there any more is skipped."""
    if not stale:
        return ""
    ordered = sorted(stale, key=lambda name: (not name.endswith(".timer"), name))
    lines = ["set -e"]
    for name in ordered:
        if not name.endswith("@.service"):
            lines.append(_stop_and_disable(name))
    for name in ordered:
        if "@" in name and not name.endswith("@.service"):
            continue  # an instance has no file of its own
        for path in (f"{UNIT_DIR}/{name}", *_environment_of(name)):
            lines.append(f"if [ -e {quote(path)} ]; then {move_to_backups_command(path)}; fi")
        lines.append(f"rm -f -- {quote(restart_dir(owner) + '/' + name)}")
    lines += ["systemctl daemon-reload",
              f"systemctl reset-failed -- {' '.join(quote(name) for name in ordered)} "
              ">/dev/null 2>&1 || true"]
    return "\n".join(lines) + "\n"


def _stop_and_disable(unit: str) -> str:
    name = quote(unit)
    return (f"if [ \"$(systemctl show -p LoadState --value -- {name})\" != not-found ]; then "
            f"case $(systemctl is-enabled -- {name} 2>/dev/null || true) in "
            f"enabled|enabled-runtime) systemctl disable --quiet -- {name} ;; esac; "
            f"systemctl stop -- {name}; fi")


def _environment_of(name: str) -> tuple[str, ...]:
    if not name.endswith(".service"):
        return ()
    return (f"{ENVIRONMENT_DIR}/{name.removesuffix('.service')}.env",)


def record_command(owner: str, wanted: Sequence[str]) -> str:
    """Shell writing the manifest (0600 in a 0700 directory) by rename, never half-written."""
    path = manifest_path(owner)
    content = "".join(f"{name}\n" for name in wanted).encode()
    temporary = quote(path + ".new")
    return (f"( umask 077 && mkdir -p {quote(posixpath.dirname(path))} ) && "
            f"{write_bytes_command(content, temporary)} && mv -f -- {temporary} {quote(path)}\n")


def manifest_step(owner: str, specs: Sequence[UnitSpec]) -> Step:
    """The step: refuse foreign units, remove stale ones, record the wanted (see the module)."""
    def decide(probed: Probed) -> Plan:
        return plan_manifest(owner, specs, parse_manifest(probed.output))

    return Step(f"units of the {owner} role: manifest {manifest_path(owner)}",
                probe_manifest(owner, specs), decide)
