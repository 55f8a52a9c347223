"""Facts: what a host is (OS, hardware, init, OpenSSH), gathered in one round trip per run.

Only things a run cannot change belong here; anything a step can change (files, packages, units)
is probed by that step just before it decides. The parsers are pure and tested on recorded output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Mounts are sorted (a point mounted twice then reads the same each time) and leave out the
#: ones that come and go while the host stays what it is: /run/credentials/* (systemd 256+,
#: while a service with credentials runs), /run/user/* (while the user has another login),
#: and Docker's and containerd's (with each container). Each made a converged host's facts
#: differ from its last run's, and each difference costs a round trip (facts/remembered.py).
FACTS_SCRIPT = r"""
echo "== os"; cat /etc/os-release
echo "== cpus"; nproc
echo "== memory"; while read -r key rest; do case $key in MemTotal:|SwapTotal:)
  echo "$key $rest";; esac; done < /proc/meminfo
echo "== disks"; for d in /sys/block/*; do n=${d##*/}; case $n in loop*|ram*|zram*) continue;; esac
  size=; rotational=; read -r size < "$d/size"; read -r rotational < "$d/queue/rotational"
  echo "$n $size $rotational"; done 2>/dev/null
echo "== init"; if [ -d /run/systemd/system ]; then echo systemd; else cat /proc/1/comm; fi
echo "== virt"; systemd-detect-virt 2>/dev/null || echo none
echo "== hostname"; name=; read -r name < /proc/sys/kernel/hostname; printf '%s\n' "$name"
echo "== kernel"; release=; read -r release < /proc/sys/kernel/osrelease; printf '%s\n' "$release"
echo "== arch"; dpkg --print-architecture 2>/dev/null || uname -m
echo "== efi"; [ -d /sys/firmware/efi ] && echo yes || echo no
echo "== openssh"; dpkg-query -W -f '${Version}\n' openssh-server 2>/dev/null
echo "== mounts"; while read -r _ point type _; do case $point in /run/credentials/*|/run/user/*|\
  /run/docker/*|/run/netns/*|/run/containerd/*|/var/lib/docker/*) ;;
  *) printf '%s %s\n' "$point" "$type";; esac; done < /proc/mounts | sort -u
echo "== apt"; grep -hE '^(deb |URIs:|Suites:)' /etc/apt/sources.list \
  /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null
echo "== end"
"""


@dataclass(frozen=True)
class Disk:
    name: str
    size_bytes: int
    rotational: bool


@dataclass(frozen=True)
class Facts:
    """Immutable description of a host for the length of a run."""

    os_id: str
    os_version: str
    os_codename: str
    os_like: tuple[str, ...]
    cpus: int
    memory_bytes: int
    disks: tuple[Disk, ...]
    init: str
    virtualization: str
    hostname: str
    kernel: str
    architecture: str
    efi: bool
    openssh_version: tuple[int, int] | None
    mounts: dict[str, str] = field(default_factory=dict)
    apt_sources: tuple[str, ...] = ()

    @property
    def is_container(self) -> bool:
        """True inside nspawn/lxc/docker, where kernel sysctls and modules belong to the host."""
        return self.virtualization in {"systemd-nspawn", "lxc", "lxc-libvirt", "docker",
                                       "podman", "openvz", "container-other"}

    @property
    def os_major(self) -> int:
        head = self.os_version.split(".")[0]
        return int(head) if head.isdigit() else 0


def split_sections(output: str) -> dict[str, list[str]]:
    """Split ``== name`` sectioned output into lines per section."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in output.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:].strip(), [])
        else:
            current.append(line)
    return sections


def parse_shell_assignments(lines: list[str]) -> dict[str, str]:
    """``KEY=value`` lines as in /etc/os-release or /etc/default/*; quotes stripped, last wins."""
    values: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def parse_openssh_version(package_version: str) -> tuple[int, int] | None:
    """``1:9.2p1-2+deb12u3`` -> (9, 2); None when OpenSSH is not installed."""
    text = package_version.strip().split(":")[-1]
    major, _, rest = text.partition(".")
    minor = "".join(ch for ch in rest if ch.isdigit() or ch == "p").split("p")[0]
    if not major.isdigit() or not minor.isdigit():
        return None
    return int(major), int(minor)


def parse_memory(lines: list[str]) -> int:
    for line in lines:
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def parse_disks(lines: list[str]) -> tuple[Disk, ...]:
    disks = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            disks.append(Disk(parts[0], int(parts[1]) * 512, parts[2] == "1"))
    return tuple(disks)


def facts_complete(output: str) -> bool:
    """True when FACTS_SCRIPT ran to its end (a script cut short must not be remembered)."""
    return output.rstrip().endswith("\n== end") or output.strip() == "== end"


def parse_facts(output: str) -> Facts:
    """Build Facts from the output of FACTS_SCRIPT."""
    sections = split_sections(output)

    def first(name: str, default: str = "") -> str:
        lines = sections.get(name) or [default]
        return lines[0].strip()

    release = parse_shell_assignments(sections.get("os", []))
    return Facts(
        os_id=release.get("ID", "unknown"), os_version=release.get("VERSION_ID", ""),
        os_codename=release.get("VERSION_CODENAME", ""),
        os_like=tuple(release.get("ID_LIKE", "").split()),
        cpus=int(first("cpus", "1") or 1), memory_bytes=parse_memory(sections.get("memory", [])),
        disks=parse_disks(sections.get("disks", [])), init=first("init", "unknown"),
        virtualization=first("virt", "none"), hostname=first("hostname"),
        kernel=first("kernel"), architecture=first("arch"), efi=first("efi") == "yes",
        openssh_version=parse_openssh_version(first("openssh")),
        mounts=dict(line.split(" ", 1) for line in sections.get("mounts", []) if " " in line),
        apt_sources=tuple(sections.get("apt", [])),
    )
