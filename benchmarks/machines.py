"""The benchmark's sandbox machines (always named bench1..benchN) and their package cache.

Fresh machines are made by removing and booting them again (about 2 s each). Before a first
converge, every fresh machine gets the same host-side copy of the package lists (dated two hours
back, so every tool still refreshes them, as W requires) and of the .deb files W installs, so the
benchmark measures the tools and dpkg rather than the mirror's mood. The copy is taken from the
first machine the runner converged.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from provisioner import sandbox
from provisioner.sandbox import Machine
from provisioner.sandbox.acme import AcmeServer, start_acme_server

PREFIX = "bench"
#: The stack scenarios' ACME server (Debian's Pebble): not a benchN, so no tool ever runs on it.
ACME_PREFIX = "benchacme"
SUITE = "bookworm"
APT_CACHE = Path("/var/cache/provisioner-bench/apt")
LISTS = Path("var/lib/apt/lists")
ARCHIVES = Path("var/cache/apt/archives")
SUCCESS_STAMP = Path("var/lib/apt/periodic/update-success-stamp")
LISTS_AGE_SECONDS = 2 * 3600

Progress = Callable[[str], None]


def names(count: int) -> list[str]:
    return [f"{PREFIX}{number}" for number in range(1, count + 1)]


def running() -> list[Machine]:
    """Our machines that run now (benchN only; other people's machines are never touched)."""
    return [machine for machine in sandbox.list_machines()
            if machine.name.startswith(PREFIX) and machine.name[len(PREFIX):].isdigit()]


def boot(count: int, progress: Progress) -> list[Machine]:
    """bench1..benchN running (the ones already up are kept)."""
    return sandbox.up(count=count, suite=SUITE, prefix=PREFIX, progress=progress)


def recreate(count: int, progress: Progress) -> list[Machine]:
    """bench1..benchN as fresh as a new cloud VM: removed if they exist, then booted."""
    sandbox.down(names(count))
    return boot(count, progress)


def remove_all() -> None:
    mine = [machine.name for machine in running()]
    mine += [machine.name for machine in sandbox.list_machines()
             if machine.name == f"{ACME_PREFIX}1"]
    if mine:
        sandbox.down(mine)


def acme_server(names: dict[str, str]) -> AcmeServer:
    """The stack's Pebble (booted once, kept running: its accounts live in its memory),
    resolving ``names`` (server name -> bench machine address) for HTTP-01 validation."""
    (machine,) = sandbox.up(count=1, suite=SUITE, prefix=ACME_PREFIX, progress=lambda line: None)
    return start_acme_server(machine, names)


def has_package_cache() -> bool:
    lists = APT_CACHE / "lists"
    return lists.is_dir() and any(lists.iterdir()) and any((APT_CACHE / "archives").glob("*.deb"))


def harvest_package_cache(machine: Machine) -> None:
    """Keep the package lists and .deb files of a machine that converged W."""
    lists, archives = APT_CACHE / "lists", APT_CACHE / "archives"
    for directory in (lists, archives):
        directory.mkdir(parents=True, exist_ok=True)
    for source in (machine.root / LISTS).iterdir():
        if source.is_file() and source.name != "lock":
            shutil.copy2(source, lists / source.name)
    for deb in (machine.root / ARCHIVES).glob("*.deb"):
        shutil.copy2(deb, archives / deb.name)


def seed_package_cache(machines: Sequence[Machine]) -> None:
    """Give fresh machines the cached lists (two hours old) and .deb files; same for every tool."""
    if not has_package_cache():
        return
    stale = time.time() - LISTS_AGE_SECONDS
    for machine in machines:
        lists = machine.root / LISTS
        for source in (APT_CACHE / "lists").iterdir():
            shutil.copy2(source, lists / source.name)
            os.utime(lists / source.name, (stale, stale))
        os.utime(lists, (stale, stale))
        for deb in (APT_CACHE / "archives").glob("*.deb"):
            shutil.copy2(deb, machine.root / ARCHIVES / deb.name)


def mark_lists_fresh(machines: Sequence[Machine]) -> None:
    """Package lists younger than an hour for every tool's rule (no-op scenarios stay no-ops)."""
    for machine in machines:
        stamp = machine.root / SUCCESS_STAMP
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
