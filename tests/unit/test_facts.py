"""Facts: parsed from recorded output of FACTS_SCRIPT for Debian 12 and 13."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from provisioner.facts import (
    FACTS_SCRIPT,
    Disk,
    Facts,
    facts_complete,
    parse_facts,
    parse_openssh_version,
    split_sections,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def bookworm() -> Facts:
    return parse_facts((FIXTURES / "facts_debian12.txt").read_text())


@pytest.fixture(scope="module")
def trixie() -> Facts:
    return parse_facts((FIXTURES / "facts_debian13_nspawn.txt").read_text())


def test_debian_12_os_fields(bookworm: Facts) -> None:
    assert (bookworm.os_id, bookworm.os_version, bookworm.os_codename, bookworm.os_major,
            bookworm.os_like) == ("debian", "12", "bookworm", 12, ())


def test_debian_12_hardware(bookworm: Facts) -> None:
    assert (bookworm.cpus, bookworm.memory_bytes, bookworm.efi) == (4, 8131852 * 1024, True)
    assert bookworm.disks == (Disk("sda", 83886080 * 512, False), Disk("sr0", 2097151 * 512, True))


def test_debian_12_system(bookworm: Facts) -> None:
    assert (bookworm.init, bookworm.virtualization, bookworm.hostname, bookworm.kernel,
            bookworm.architecture) == ("systemd", "kvm", "web1", "6.1.0-28-amd64", "amd64")


def test_debian_12_openssh_version(bookworm: Facts) -> None:
    assert bookworm.openssh_version == (9, 2)


def test_debian_12_mounts_and_apt_sources(bookworm: Facts) -> None:
    assert bookworm.mounts["/"] == "ext4"
    assert bookworm.mounts["/boot/efi"] == "vfat"
    assert bookworm.apt_sources[0] == "deb http://deb.debian.org/debian bookworm main"


def test_debian_12_on_kvm_is_not_a_container(bookworm: Facts) -> None:
    assert bookworm.is_container is False


def test_debian_13_in_nspawn(trixie: Facts) -> None:
    assert (trixie.os_codename, trixie.os_major, trixie.openssh_version) == ("trixie", 13, (10, 0))
    assert (trixie.virtualization, trixie.is_container) == ("systemd-nspawn", True)


def test_debian_13_without_disks_or_swap(trixie: Facts) -> None:
    assert (trixie.disks, trixie.memory_bytes, trixie.efi) == ((), 2035480 * 1024, False)


def test_debian_13_deb822_sources_are_kept(trixie: Facts) -> None:
    assert trixie.apt_sources == ("URIs: http://deb.debian.org/debian",
                                  "Suites: trixie trixie-updates",
                                  "URIs: http://deb.debian.org/debian-security",
                                  "Suites: trixie-security")


def test_missing_sections_fall_back_to_defaults() -> None:
    facts = parse_facts("== os\nID=debian\n== openssh\n== end\n")

    assert (facts.cpus, facts.init, facts.virtualization, facts.openssh_version,
            facts.os_major) == (1, "unknown", "none", None, 0)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1:9.2p1-2+deb12u3", (9, 2)),
        ("1:10.0p1-7", (10, 0)),
        ("1:8.4p1-5+deb11u3", (8, 4)),
        ("1:7.9p1-10+deb10u2", (7, 9)),
        ("1:9.6p1-3ubuntu13.5", (9, 6)),
        ("9.2p1-2", (9, 2)),
        ("  1:9.2p1-2+deb12u3\n", (9, 2)),
        ("", None),
        ("garbage", None),
    ],
    ids=["bookworm", "trixie", "bullseye", "buster", "ubuntu-noble", "no-epoch",
         "surrounding-whitespace", "not-installed", "garbage"],
)
def test_parse_openssh_version(version: str, expected: tuple[int, int] | None) -> None:
    assert parse_openssh_version(version) == expected


@pytest.mark.parametrize(
    ("virtualization", "container"),
    [("systemd-nspawn", True), ("lxc", True), ("docker", True), ("podman", True),
     ("kvm", False), ("qemu", False), ("none", False)],
)
def test_is_container(bookworm: Facts, virtualization: str, container: bool) -> None:
    assert replace(bookworm, virtualization=virtualization).is_container is container


@pytest.mark.parametrize(("version", "major"), [("12", 12), ("13.1", 13), ("", 0),
                                                ("n/a", 0)])
def test_os_major(bookworm: Facts, version: str, major: int) -> None:
    assert replace(bookworm, os_version=version).os_major == major


def test_split_sections_keeps_lines_per_section() -> None:
    assert split_sections("== a\n1\n2\n== b\n== c\nx\n") == {"a": ["1", "2"], "b": [],
                                                             "c": ["x"]}


def test_facts_script_runs_on_this_machine_and_parses() -> None:
    plain = {key: value for key, value in os.environ.items() if not key.startswith("OMP_")}
    completed = subprocess.run(["sh", "-c", FACTS_SCRIPT], capture_output=True, text=True,
                               timeout=60, check=False, env=plain)

    facts = parse_facts(completed.stdout)

    assert facts_complete(completed.stdout)
    assert facts.cpus == len(os.sched_getaffinity(0))
    assert facts.memory_bytes == this_machine_memory()
    assert facts.kernel == platform.release()
    assert facts.hostname == socket.gethostname()
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    assert facts.mounts == {fields[1]: fields[2] for fields in mounts}
    assert facts.disks == this_machine_disks()


def this_machine_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def this_machine_disks() -> tuple[Disk, ...]:
    disks = []
    for device in sorted(Path("/sys/block").iterdir()):
        if device.name.startswith(("loop", "ram", "zram")):
            continue
        rotational = (device / "queue" / "rotational").read_text().strip() == "1"
        size = int((device / "size").read_text()) * 512
        disks.append(Disk(device.name, size, rotational))
    return tuple(disks)
