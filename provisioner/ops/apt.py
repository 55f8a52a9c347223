"""Debian packages: one dpkg-query for every package of a step, lists refreshed only when stale.

The package lists are refreshed only when something must be installed and they are older than
``cache_max_age`` seconds, so a converged host is never touched.

Another apt or dpkg (unattended-upgrades on a freshly booted cloud VM, an operator's apt) may
hold the dpkg lock. apt's own ``DPkg::Lock::Timeout`` would wait for it silently, so before each
apt command the action waits itself: it reads the holder from /proc/locks and /proc/PID (fuser
and lslocks are absent from minimal images), prints a line naming it every
``LOCK_REPORT_INTERVAL`` seconds, and gives up with a clear message after ``lock_timeout``
seconds. The probe reads who holds the lock too, so the step's reason names a holder it found.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.commands import join, quote
from provisioner.host import Host
from provisioner.step import Plan, Probed, Step

UPDATE_STAMP = "/var/lib/provisioner/apt-lists-updated"
#: The locks apt and dpkg take, frontend first (apt holds it for a whole install).
DPKG_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")
#: Seconds an action waits for another process to release the dpkg lock before it gives up.
LOCK_TIMEOUT = 600
#: Seconds between the lines a waiting action prints about the lock's holder.
LOCK_REPORT_INTERVAL = 10
#: apt's own wait, a backstop for a holder that takes the lock between our wait and apt's start.
_APT_LOCK_BACKSTOP = 60
_STAMPS = ("/var/lib/apt/periodic/update-success-stamp", "/var/cache/apt/pkgcache.bin",
           UPDATE_STAMP)
_APT = ("DEBIAN_FRONTEND=noninteractive apt-get -q -y "
        f"-o DPkg::Lock::Timeout={_APT_LOCK_BACKSTOP} "
        "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")

#: Shell printing ``lock PID DEV:INODE SECONDS COMM`` for each lock /proc/locks lists (waiters,
#: the ``->`` lines, skipped), SECONDS being how long PID has run; builtins only, so the probe of
#: a converged host starts no program for it. /proc/PID/stat's fields after the last ``)`` start
#: at the state: the start time (clock ticks since boot, 100 a second) is the 20th of them.
_READ_LOCKS = (
    "read -r up _ < /proc/uptime; up=${up%.*}; "
    "while read -r _ kind _ _ pid file _; do [ \"$kind\" = \"${kind#-}\" ] || continue; "
    "comm=; age=; if [ \"$pid\" -gt 0 ] 2>/dev/null && read -r comm < /proc/$pid/comm; then "
    "read -r st < /proc/$pid/stat; st=${st##*) }; set -- $st; age=$((up - ${20} / 100)); fi; "
    "echo \"lock $pid $file ${age:--} $comm\"; done < /proc/locks 2>/dev/null")


@dataclass(frozen=True)
class LockHolder:
    """A process holding a dpkg lock when the probe ran (pid -1 or 0: not visible from here)."""

    pid: int
    command: str
    seconds: int | None

    def describe(self) -> str:
        if self.pid <= 0:
            return "a process this host's view cannot name"
        running = f", running for {self.seconds} s" if self.seconds is not None else ""
        return f"PID {self.pid} ({self.command or 'unknown'}{running})"


@dataclass(frozen=True)
class PackageState:
    installed: frozenset[str]
    lists_age: int | None
    lock_holder: LockHolder | None = None


def probe_packages(names: Sequence[str]) -> str:
    """dpkg status of the packages, the lock files and refresh stamps, the locks held, and the
    clock when package lists are on disk.

    The lists count as missing (no ``now`` line) when no Packages index is on disk, as in a
    freshly built image, whatever the stamps say: installing would fail without an update. One
    stat answers for the lock files' identity and the stamps' age, the lock table is read with
    builtins, and the newest stamp and the lock's holder are picked on the controller, so a
    converged host pays three process starts.
    """
    files = " ".join(quote(path) for path in (*DPKG_LOCKS, *_STAMPS))
    return (f"dpkg-query -W -f '${{Package}}\\t${{db:Status-Abbrev}}\\n' {join(*names)}; "
            f"stat -c 'file %D %i %Y %n' -- {files} 2>/dev/null; {_READ_LOCKS}; "
            "set -- /var/lib/apt/lists/*_Packages*; [ -e \"$1\" ] || exit 0; date +'now %s'")


def parse_packages(output: str) -> PackageState:
    """Installed packages; the lists' age (now minus the newest stamp, no stamp: epoch); and
    the holder of a dpkg lock, if any."""
    installed, now, stamps = set(), None, [0]
    lock_files: set[tuple[int, int, int]] = set()
    locks: list[tuple[tuple[int, int, int], LockHolder]] = []
    for line in output.splitlines():
        if line.startswith("now "):
            now = int(line.split()[1])
        elif line.startswith("file "):
            _, device, inode, mtime, name = line.split(" ", 4)
            if name in DPKG_LOCKS:
                lock_files.add(_file_identity(int(device, 16), int(inode)))
            else:
                stamps.append(int(mtime))
        elif line.startswith("lock "):
            locks.extend(_parse_lock(line))
        elif "\t" in line:
            name, status = line.split("\t", 1)
            if status[1:2] == "i":  # ii, hi (held): unpacked and configured
                installed.add(name.split(":")[0])
    holder = next((who for identity, who in locks if identity in lock_files), None)
    return PackageState(frozenset(installed), None if now is None else now - max(stamps),
                        holder)


def _file_identity(device: int, inode: int) -> tuple[int, int, int]:
    return os.major(device), os.minor(device), inode


def _parse_lock(line: str) -> list[tuple[tuple[int, int, int], LockHolder]]:
    """``lock PID MAJ:MIN:INODE SECONDS COMM`` (major and minor in hex, as /proc/locks has them)."""
    words = line.split(" ", 5)
    try:
        major, minor, inode = words[2].split(":")
        identity = (int(major, 16), int(minor, 16), int(inode))
        seconds = int(words[3]) if words[3].lstrip("-").isdigit() else None
        return [(identity, LockHolder(int(words[1]), words[4] if len(words) > 4 else "",
                                      seconds))]
    except (ValueError, IndexError):
        return []


#: Shell function: prints ``PID LOCKFILE`` for the first of its arguments some process holds a
#: lock on (matched by inode in /proc/locks, waiters skipped), else fails.
_LOCK_HOLDER_FUNCTION = (
    "provisioner_lock_holder() { for f in \"$@\"; do [ -e \"$f\" ] || continue; "
    "i=$(stat -c %i -- \"$f\"); while read -r _ kind _ _ pid file _; do "
    "[ \"$kind\" = \"${kind#-}\" ] || continue; "
    "case $file in *:\"$i\") echo \"$pid $f\"; return 0 ;; esac; "
    "done < /proc/locks; done; return 1; }\n")
#: Shell function: describes PID $1 by its command line and how long it has run.
_DESCRIBE_FUNCTION = (
    "provisioner_describe() { if [ \"$1\" -gt 0 ] 2>/dev/null && [ -r /proc/$1/cmdline ]; "
    "then cmd=$(tr '\\0' ' ' < /proc/$1/cmdline | cut -c1-200); cmd=${cmd% }; "
    "read -r up _ < /proc/uptime; read -r st < /proc/$1/stat; st=${st##*) }; set -- $1 $st; "
    "echo \"PID $1 ($cmd), running for $((${up%.*} - ${21} / 100)) s\"; "
    "else echo \"a process this host's view cannot name (PID $1)\"; fi; }\n")


def wait_for_dpkg_lock(timeout: int = LOCK_TIMEOUT,
                       locks: Sequence[str] = DPKG_LOCKS) -> str:
    """Shell that returns once no process holds any of ``locks``, saying who does while it waits.

    Every LOCK_REPORT_INTERVAL seconds it prints (to stderr, and as progress the run shows at
    once: run/batch.py's provisioner_progress) the lock, the holder's PID and command line, how
    long that process has run and how long this has waited; after ``timeout``
    seconds it gives up naming the holder (exit 1), before apt ever starts.
    """
    paths = " ".join(quote(path) for path in locks)
    return (
        f"{_LOCK_HOLDER_FUNCTION}{_DESCRIBE_FUNCTION}waited=0\n"
        f"while holder=$(provisioner_lock_holder {paths}); do\n"
        "  who=$(provisioner_describe \"${holder%% *}\")\n"
        f"  if [ \"$waited\" -ge {timeout} ]; then\n"
        "    echo \"gave up after $waited s waiting for the dpkg lock ${holder#* }: it is still "
        "held by $who; let that finish (or stop it) and run again\" >&2; exit 1\n"
        "  fi\n"
        f"  if [ $((waited % {LOCK_REPORT_INTERVAL})) -eq 0 ]; then msg=\"waiting for the dpkg "
        f"lock ${{holder#* }}: held by $who; waited $waited s of at most {timeout} s\"; "
        "echo \"$msg\" >&2; if command -v provisioner_progress >/dev/null 2>&1; then "
        "provisioner_progress \"$msg\"; fi; fi\n"
        "  sleep 1; waited=$((waited + 1))\n"
        "done\n"
        "if [ \"$waited\" -gt 0 ]; then echo \"dpkg lock free after $waited s\" >&2; fi\n")


def apt_command(arguments: str, lock_timeout: int = LOCK_TIMEOUT) -> str:
    """``apt-get <arguments>`` once the dpkg lock is free (see wait_for_dpkg_lock)."""
    return f"(\n{wait_for_dpkg_lock(lock_timeout)}) && {_APT} {arguments}"


def plan_packages(state: PackageState, present: Sequence[str], absent: Sequence[str],
                  cache_max_age: int, lock_timeout: int = LOCK_TIMEOUT, *,
                  recommends: bool = True) -> Plan:
    """Install what is missing and purge what must go; refresh lists first only when stale.
    ``recommends=False`` leaves out what the packages only recommend (apt's own switch, for
    this install alone)."""
    missing = [name for name in present if name not in state.installed]
    unwanted = [name for name in absent if name in state.installed]
    if not missing and not unwanted:
        return Plan("all present" if present else "all absent")
    commands, reasons = [], []
    if missing:
        if state.lists_age is None or state.lists_age > cache_max_age:
            commands.append(f"{apt_command('update', lock_timeout)} && "
                            f"mkdir -p /var/lib/provisioner && touch {UPDATE_STAMP}")
            reasons.append("package lists refreshed")
        switch = "" if recommends else "-o APT::Install-Recommends=false "
        commands.append(apt_command(f"{switch}install {join(*missing)}", lock_timeout))
        reasons.insert(0, "install " + ", ".join(missing)
                       + ("" if recommends else " (without Recommends)"))
    if unwanted:
        commands.append(apt_command(f"purge {join(*unwanted)}", lock_timeout))
        reasons.insert(0, "purge " + ", ".join(unwanted))
    if state.lock_holder is not None:
        reasons.append(f"after waiting for the dpkg lock, held by "
                       f"{state.lock_holder.describe()} when probed")
    return Plan("; ".join(reasons), action=" && ".join(commands))


def ensure_packages(host: Host, present: Sequence[str] = (), absent: Sequence[str] = (), *,
                    cache_max_age: int = 3600, lock_timeout: int = LOCK_TIMEOUT,
                    label: str = "", recommends: bool = True) -> Step:
    """These packages installed (and those purged), with one dpkg query for all of them."""
    names = [*present, *absent]

    def decide(probed: Probed) -> Plan:
        return plan_packages(parse_packages(probed.output), present, absent, cache_max_age,
                             lock_timeout, recommends=recommends)

    return Step(label or "packages " + " ".join(names), probe_packages(names), decide,
                changes_facts=True)  # openssh-server's version is a fact
