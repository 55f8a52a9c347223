"""Debian packages: one dpkg-query for every package of a step, lists refreshed only when stale.

The package lists are refreshed only when something must be installed and they are older than
``cache_max_age`` seconds, so a converged host is never touched. apt waits for the dpkg lock
(``DPkg::Lock::Timeout``) instead of failing when unattended-upgrades holds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.commands import join
from provisioner.host import Host
from provisioner.step import Plan, Probed, Step

UPDATE_STAMP = "/var/lib/provisioner/apt-lists-updated"
_APT = ("DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 "
        "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")


@dataclass(frozen=True)
class PackageState:
    installed: frozenset[str]
    lists_age: int | None


def probe_packages(names: Sequence[str]) -> str:
    """dpkg status of the packages, then the clock and the package lists' refresh stamps.

    The lists count as missing (no ``now`` line) when no Packages index is on disk, as in a
    freshly built image, whatever the stamps say: installing would fail without an update. The
    glob and test are shell builtins and the newest stamp is picked on the controller, so the
    age costs the host two process starts, not seven.
    """
    return (f"dpkg-query -W -f '${{Package}}\\t${{db:Status-Abbrev}}\\n' {join(*names)}; "
            "set -- /var/lib/apt/lists/*_Packages*; [ -e \"$1\" ] || exit 0; "
            "date +'now %s'; stat -c 'stamp %Y' -- /var/lib/apt/periodic/update-success-stamp"
            f" /var/cache/apt/pkgcache.bin {UPDATE_STAMP} 2>/dev/null")


def parse_packages(output: str) -> PackageState:
    """Installed packages, and the lists' age: now minus the newest stamp (no stamp: epoch)."""
    installed, now, stamps = set(), None, [0]
    for line in output.splitlines():
        if line.startswith("now "):
            now = int(line.split()[1])
        elif line.startswith("stamp "):
            stamps.append(int(line.split()[1]))
        elif "\t" in line:
            name, status = line.split("\t", 1)
            if status[1:2] == "i":  # ii, hi (held): unpacked and configured
                installed.add(name.split(":")[0])
    return PackageState(frozenset(installed), None if now is None else now - max(stamps))


def plan_packages(state: PackageState, present: Sequence[str], absent: Sequence[str],
                  cache_max_age: int) -> Plan:
    """Install what is missing and purge what must go; refresh lists first only when stale."""
    missing = [name for name in present if name not in state.installed]
    unwanted = [name for name in absent if name in state.installed]
    if not missing and not unwanted:
        return Plan("all present" if present else "all absent")
    commands, reasons = [], []
    if missing:
        if state.lists_age is None or state.lists_age > cache_max_age:
            commands.append(f"{_APT} update && mkdir -p /var/lib/provisioner && "
                            f"touch {UPDATE_STAMP}")
            reasons.append("package lists refreshed")
        commands.append(f"{_APT} install {join(*missing)}")
        reasons.insert(0, "install " + ", ".join(missing))
    if unwanted:
        commands.append(f"{_APT} purge {join(*unwanted)}")
        reasons.insert(0, "purge " + ", ".join(unwanted))
    return Plan("; ".join(reasons), action=" && ".join(commands))


def ensure_packages(host: Host, present: Sequence[str] = (), absent: Sequence[str] = (), *,
                    cache_max_age: int = 3600, label: str = "") -> Step:
    """These packages installed (and those purged), with one dpkg query for all of them."""
    names = [*present, *absent]

    def decide(probed: Probed) -> Plan:
        return plan_packages(parse_packages(probed.output), present, absent, cache_max_age)

    return Step(label or "packages " + " ".join(names), probe_packages(names), decide)
