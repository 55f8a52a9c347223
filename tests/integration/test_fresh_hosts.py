"""Fresh Debian machines the tool did not build: what a first run must survive (issue 14).

Two machines of this module's own (fh1, fh2), never the session's it1/it2: fh1 loses kmod (so it
has no /etc/modprobe.d) and gets a private /etc/issue.net before its first run; fh2 stays fresh
and has its dpkg lock held by another process while ufw is installed. A third machine, fhmin1,
is booted from the sandbox's minimal image (no kmod, procps, iproute2 or python3) and converged.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner import sandbox
from provisioner.transport.kept_logins import close_keepers
from tests.integration.conftest import SUITE, Invocation, admin_ssh, invoke_task

pytestmark = pytest.mark.integration

NAMES = ["fh1", "fh2"]

@dataclass(frozen=True)
class FreshHosts:
    machines: dict[str, sandbox.Machine]
    inventory: Path
    runtime_directory: Path

    def invoke(self, *arguments: str) -> Invocation:
        """An invoke task as a user runs it, with a JSON report when it is provision."""
        return invoke_task(*arguments, inventory=self.inventory,
                           report=self.inventory.parent / "report.json")

    def root(self, name: str, command: str) -> subprocess.CompletedProcess[str]:
        """A command as root on a machine, through the OpenSSH client as the admin user."""
        return admin_ssh(self.machines[name], "sudo sh -c " + shlex.quote(command), 120)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshHosts]:
    saved = {name: os.environ.get(name)
             for name in ("PROVISIONER_RUNTIME_DIR", "PROVISIONER_CACHE_DIR")}
    runtime = tmp_path_factory.mktemp("fh-kept")
    os.environ["PROVISIONER_RUNTIME_DIR"] = str(runtime)
    os.environ["PROVISIONER_CACHE_DIR"] = str(tmp_path_factory.mktemp("fh-cache"))
    sandbox.down(NAMES)  # machines left by an earlier run are not fresh any more
    booted = {machine.name: machine for machine in
              sandbox.up(count=len(NAMES), suite=SUITE, prefix="fh", progress=print)}
    inventory = tmp_path_factory.mktemp("fh") / "inventory.yml"
    sandbox.write_inventory([booted[name] for name in NAMES], inventory)
    yield FreshHosts(booted, inventory, runtime)
    close_keepers()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if not os.environ.get("PROVISIONER_KEEP_SANDBOX"):
        sandbox.down(NAMES)


@pytest.fixture(scope="module")
def checked_without_kmod(fresh: FreshHosts) -> Invocation:
    """fh1 with kmod purged (no /etc/modprobe.d) and a 0600 /etc/issue.net, run in check mode."""
    prepared = fresh.root("fh1", "apt-get purge -y -q kmod >/dev/null 2>&1; "
                          "chmod 0600 /etc/issue.net; test ! -e /etc/modprobe.d")
    assert prepared.returncode == 0, prepared.stderr
    return fresh.invoke("provision", "--host", "fh1", "--check")


@pytest.fixture(scope="module")
def converged_without_kmod(fresh: FreshHosts, checked_without_kmod: Invocation) -> Invocation:
    """The same fh1, provisioned after the check run."""
    return fresh.invoke("provision", "--host", "fh1")


def test_check_mode_says_which_missing_directory_a_write_creates(
        fresh: FreshHosts, checked_without_kmod: Invocation) -> None:
    run = checked_without_kmod
    assert run.exit_code == 0, run.output
    assert "would change: created, with missing directory /etc/modprobe.d" in run.output
    assert fresh.root("fh1", "test ! -e /etc/modprobe.d").returncode == 0


def test_a_host_without_kmod_converges(converged_without_kmod: Invocation) -> None:
    run = converged_without_kmod
    assert run.exit_code == 0, run.output
    assert run.report["hosts"]["fh1"]["failed"] == 0, run.output
    assert "created, with missing directory /etc/modprobe.d" in run.output


def test_a_host_without_kmod_verifies(fresh: FreshHosts,
                                      converged_without_kmod: Invocation) -> None:
    assert converged_without_kmod.report["hosts"]["fh1"]["failed"] == 0
    run = fresh.invoke("verify", "--host", "fh1")
    assert run.exit_code == 0, run.output


def test_second_run_on_the_host_without_kmod_changes_nothing(
        fresh: FreshHosts, converged_without_kmod: Invocation) -> None:
    run = fresh.invoke("provision", "--host", "fh1")
    assert run.exit_code == 0, run.output
    assert run.report["hosts"]["fh1"]["changed"] == 0, run.report["hosts"]["fh1"]


def test_backup_of_a_replaced_0600_file_is_0600_in_a_0700_tree(
        fresh: FreshHosts, converged_without_kmod: Invocation) -> None:
    listing = fresh.root("fh1", "stat -c '%a %n' /etc/issue.net "
                         "/var/backups/provisioner/etc/issue.net.*; "
                         "find /var/backups/provisioner /var/lib/provisioner/safeguard -type d "
                         "! -perm 0700")
    lines = listing.stdout.splitlines()
    assert lines[0] == "644 /etc/issue.net"  # replaced by the role's banner
    assert [line.split()[0] for line in lines[1:] if "issue.net." in line] == ["600"]
    assert [line for line in lines[1:] if "issue.net." not in line] == []  # no other mode


def test_verify_leaves_no_ssh_process_behind(fresh: FreshHosts,
                                             converged_without_kmod: Invocation) -> None:
    address = fresh.machines["fh1"].address
    run = fresh.invoke("verify", "--host", "fh1")
    assert run.exit_code == 0, run.output
    sockets = subprocess.run(["ss", "-Htnp", "dst", address], capture_output=True, text=True,
                             check=True).stdout
    assert [line for line in sockets.splitlines() if '(("ssh",' in line] == []


def test_the_connection_keepers_log_is_private(fresh: FreshHosts,
                                               converged_without_kmod: Invocation) -> None:
    log = fresh.runtime_directory / "keepers.log"
    assert log.exists()
    assert log.stat().st_mode & 0o777 == 0o600


def test_a_provision_waiting_on_a_held_dpkg_lock_says_who_holds_it(fresh: FreshHosts) -> None:
    # A POSIX lock, the kind apt, dpkg and unattended-upgrades take (flock(1) takes another kind,
    # which apt would not even wait for).
    held = fresh.root("fh2", "systemd-run --quiet --unit=fh-holds-dpkg-lock python3 -c "
                      "'import fcntl, time; lock = open(\"/var/lib/dpkg/lock-frontend\", \"w\"); "
                      "fcntl.lockf(lock, fcntl.LOCK_EX); time.sleep(40)' && sleep 1 && "
                      "grep -c POSIX /proc/locks")
    assert held.returncode == 0, held.stderr
    run = fresh.invoke("provision", "--host", "fh2", "--roles", "ufw")
    assert run.exit_code == 0, run.output
    assert "after waiting for the dpkg lock, held by PID" in run.output
    assert "(python3, running for" in run.output
    # Said while it waited, before the step's own line, which comes only once apt is done.
    waiting = run.output.find("fh2  waiting  ")
    assert waiting >= 0, run.output
    assert "waiting for the dpkg lock" in run.output[waiting:].splitlines()[0]
    assert waiting < run.output.find("after waiting for the dpkg lock")
    still = fresh.root("fh2", "systemctl is-active fh-holds-dpkg-lock.service || true")
    assert still.stdout.strip() != "active"  # the install ran once the lock was free


@pytest.fixture(scope="module")
def minimal(fresh: FreshHosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshHosts]:
    """fhmin1 from the sandbox's minimal image, with the module's kept logins and cache."""
    sandbox.down(["fhmin1"])
    booted = sandbox.up(count=1, suite=SUITE, prefix="fhmin", variant="minimal", progress=print)
    inventory = tmp_path_factory.mktemp("fhmin") / "inventory.yml"
    sandbox.write_inventory(booted, inventory)
    yield FreshHosts({machine.name: machine for machine in booted}, inventory,
                     fresh.runtime_directory)
    if not os.environ.get("PROVISIONER_KEEP_SANDBOX"):
        sandbox.down(["fhmin1"])


def test_a_minimal_host_converges_verifies_and_then_changes_nothing(minimal: FreshHosts) -> None:
    first = minimal.invoke("provision", "--host", "fhmin1")
    assert first.exit_code == 0, first.output
    verified = minimal.invoke("verify", "--host", "fhmin1")
    assert verified.exit_code == 0, verified.output
    second = minimal.invoke("provision", "--host", "fhmin1")
    assert second.exit_code == 0, second.output
    assert second.report["hosts"]["fhmin1"]["changed"] == 0, second.report["hosts"]["fhmin1"]
