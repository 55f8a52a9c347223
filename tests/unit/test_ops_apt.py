"""Packages: dpkg-query output parsed, installs and purges planned, lists refreshed if stale."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.ops.apt import (
    UPDATE_STAMP,
    LockHolder,
    PackageState,
    apt_command,
    ensure_packages,
    parse_packages,
    plan_packages,
    probe_packages,
    wait_for_dpkg_lock,
)
from provisioner.step import Probed
from tests.unit.fakes import make_host

FIXTURES = Path(__file__).parent / "fixtures"
WAIT = wait_for_dpkg_lock()
APT = ("DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=60 "
       "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")


def apt(arguments: str) -> str:
    """An apt-get command as actions send it: after waiting for the dpkg lock."""
    return f"(\n{WAIT}) && {APT} {arguments}"
WRITES = re.compile(r"(?<![0-9])>|\b(apt-get|dpkg -i|touch|mkdir|rm|mv)\b")


def state(*installed: str, age: int | None = 60) -> PackageState:
    return PackageState(frozenset(installed), age)


# --- parse_packages ---------------------------------------------------------------------------


def test_parse_packages_keeps_only_installed_packages_without_architecture() -> None:
    parsed = parse_packages((FIXTURES / "dpkg_query.txt").read_text())

    assert parsed == PackageState(frozenset({"openssh-server", "libc6", "nano"}), 7200)


def test_parse_packages_without_clock_line_has_unknown_age() -> None:
    assert parse_packages("nano\tii \n").lists_age is None


def test_parse_packages_counts_a_held_package_as_installed() -> None:
    assert parse_packages("openssh-server\thi \nnow 20\n").installed == {"openssh-server"}


def test_parse_packages_without_any_stamp_counts_the_lists_as_never_refreshed() -> None:
    assert parse_packages("now 1700000000\n").lists_age == 1700000000


# --- plan_packages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "present", "absent", "reason", "action"),
    [
        (state("ufw", "nano"), ["ufw"], [], "all present", None),
        (state("nano"), [], ["telnet"], "all absent", None),
        (state("nano", age=99999), ["nano"], [], "all present", None),
        (state(age=60), ["ufw", "fail2ban"], [], "install ufw, fail2ban",
         apt("install ufw fail2ban")),
        (state(age=7200), ["ufw"], [], "install ufw; package lists refreshed",
         f"{apt('update')} && mkdir -p /var/lib/provisioner && touch {UPDATE_STAMP} && "
         f"{apt('install ufw')}"),
        (state(age=None), ["ufw"], [], "install ufw; package lists refreshed",
         f"{apt('update')} && mkdir -p /var/lib/provisioner && touch {UPDATE_STAMP} && "
         f"{apt('install ufw')}"),
        (state("telnet", "rsh-client"), [], ["telnet", "rsh-client", "nis"],
         "purge telnet, rsh-client", apt("purge telnet rsh-client")),
        (state("telnet", age=60), ["ufw"], ["telnet"], "purge telnet; install ufw",
         f"{apt('install ufw')} && {apt('purge telnet')}"),
    ],
    ids=["installed", "already-absent", "stale-lists-but-nothing-missing", "missing-fresh-lists",
         "missing-stale-lists", "missing-unknown-age", "purge-installed-only",
         "install-and-purge"],
)
def test_plan_packages(current: PackageState, present: list[str], absent: list[str],
                       reason: str, action: str | None) -> None:
    plan = plan_packages(current, present, absent, cache_max_age=3600)

    assert (plan.reason, plan.action) == (reason, action)


def test_plan_packages_refreshes_lists_exactly_at_the_age_limit_only_when_older() -> None:
    at_limit = plan_packages(state(age=3600), ["ufw"], [], cache_max_age=3600)
    older = plan_packages(state(age=3601), ["ufw"], [], cache_max_age=3600)

    assert (" update " in (at_limit.action or ""), " update " in (older.action or "")) == (
        False, True)


def test_plan_packages_quotes_package_names() -> None:
    plan = plan_packages(state(), ["weird name"], [], cache_max_age=3600)

    assert plan.action == apt("install 'weird name'")


def test_plan_packages_can_leave_the_recommends_out_of_that_install_only() -> None:
    plan = plan_packages(state("needrestart"), ["docker.io"], ["needrestart"], cache_max_age=3600,
                         recommends=False)

    assert plan.action == " && ".join([apt("-o APT::Install-Recommends=false install docker.io"),
                                       apt("purge needrestart")])
    assert plan.reason == "purge needrestart; install docker.io (without Recommends)"


# --- the step ---------------------------------------------------------------------------------


def test_ensure_packages_probe_is_read_only() -> None:
    step = ensure_packages(make_host(), ["ufw"], ["telnet"])

    assert not WRITES.search(step.probe)


def test_ensure_packages_decides_from_the_recorded_probe() -> None:
    step = ensure_packages(make_host(), ["openssh-server", "ufw"], ["nano"])

    plan = step.decide(Probed((FIXTURES / "dpkg_query.txt").read_text()))

    assert plan.reason == "purge nano; install ufw; package lists refreshed"


def test_ensure_packages_label_names_the_packages() -> None:
    assert ensure_packages(make_host(), ["ufw"], ["telnet"]).label == "packages ufw telnet"


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian controller")
def test_probe_packages_runs_read_only_on_this_machine() -> None:
    completed = subprocess.run(["sh", "-c", probe_packages(["dpkg", "no-such-package-xyz"])],
                               capture_output=True, text=True, timeout=30, check=False)

    parsed = parse_packages(completed.stdout)

    assert parsed.installed == {"dpkg"}
    assert parsed.lists_age is not None


# --- the dpkg lock ----------------------------------------------------------------------------

LOCK_FILES = ("file fe00 1441860 1699990000 /var/lib/dpkg/lock-frontend\n"
              "file fe00 1441876 1699990000 /var/lib/dpkg/lock\n")


def test_parse_packages_names_the_process_holding_the_dpkg_lock() -> None:
    output = LOCK_FILES + "lock -1 00:28:58 - \nlock 812 fe:00:1441860 63 unattended-upgr\n"

    assert parse_packages(output).lock_holder == LockHolder(812, "unattended-upgr", 63)


def test_parse_packages_ignores_a_lock_on_the_same_inode_of_another_filesystem() -> None:
    # Sandbox machines share one image: another machine's lock file has the same inode number.
    output = LOCK_FILES + "lock 812 00:3c:1441860 63 apt-get\n"

    assert parse_packages(output).lock_holder is None


def test_plan_packages_says_who_held_the_dpkg_lock_it_waits_for() -> None:
    held = PackageState(frozenset(), 60, LockHolder(812, "unattended-upgr", 63))

    plan = plan_packages(held, ["ufw"], [], cache_max_age=3600)

    assert plan.reason == ("install ufw; after waiting for the dpkg lock, held by PID 812 "
                           "(unattended-upgr, running for 63 s) when probed")


def test_plan_packages_ignores_a_lock_holder_when_nothing_must_change() -> None:
    held = PackageState(frozenset({"ufw"}), 60, LockHolder(812, "unattended-upgr", 63))

    assert plan_packages(held, ["ufw"], [], cache_max_age=3600).action is None


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A lock file some other process holds for a few seconds, as unattended-upgrades would."""
    lock = tmp_path / "lock-frontend"
    lock.touch()
    holder = subprocess.Popen(["flock", str(lock), "sleep", "4"])
    deadline = time.monotonic() + 5
    while lock.stat().st_ino and str(lock.stat().st_ino) not in Path("/proc/locks").read_text():
        assert time.monotonic() < deadline, "flock never took the lock"
        time.sleep(0.05)
    yield lock, holder
    holder.kill()
    holder.wait()


def run_wait(lock: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", wait_for_dpkg_lock(timeout, [str(lock)]) + "echo apt"],
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock to hold a lock")
def test_waiting_for_the_dpkg_lock_names_its_holder_and_gives_up_at_the_deadline(
        held_lock: tuple[Path, subprocess.Popen[bytes]]) -> None:
    lock, holder = held_lock

    completed = run_wait(lock, timeout=1)

    assert (completed.returncode, completed.stdout) == (1, "")
    assert f"waiting for the dpkg lock {lock}: held by PID {holder.pid} (flock {lock} sleep 4)" \
        in completed.stderr
    assert f"gave up after 1 s waiting for the dpkg lock {lock}: it is still held by PID " \
        f"{holder.pid}" in completed.stderr


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock to hold a lock")
def test_waiting_for_the_dpkg_lock_goes_on_once_the_holder_is_done(
        held_lock: tuple[Path, subprocess.Popen[bytes]]) -> None:
    lock, holder = held_lock

    completed = run_wait(lock, timeout=60)

    assert (completed.returncode, completed.stdout) == (0, "apt\n")
    assert f"held by PID {holder.pid} (flock {lock} sleep 4), running for " in completed.stderr
    assert "dpkg lock free after" in completed.stderr


def test_a_free_dpkg_lock_costs_no_wait_and_no_message(tmp_path: Path) -> None:
    (tmp_path / "lock").touch()

    completed = run_wait(tmp_path / "lock", timeout=60)

    assert (completed.returncode, completed.stdout, completed.stderr) == (0, "apt\n", "")


def test_apt_command_waits_for_the_lock_before_apt_starts() -> None:
    command = apt_command("install ufw")

    assert command.index("provisioner_lock_holder") < command.index("apt-get")
