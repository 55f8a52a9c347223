"""Sandbox machines for the integration tests: booted once per session, removed at the end.

Set PROVISIONER_TEST_SUITE=trixie to run the suite against Debian 13 machines,
PROVISIONER_TEST_VARIANT=minimal to run it against the minimal image (no kmod, iproute2 or
python3; see provisioner/sandbox/image_recipe.py), and PROVISIONER_KEEP_SANDBOX=1 to leave the
machines running for inspection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner import sandbox
from provisioner.commands import quote
from provisioner.transport.kept_logins import close_keepers

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SUITE = os.environ.get("PROVISIONER_TEST_SUITE", "bookworm")
VARIANT = os.environ.get("PROVISIONER_TEST_VARIANT", "standard")
#: Appended to every machine prefix on a target other than Debian 12's standard image, so the
#: targets `invoke test` runs side by side never boot, use or remove each other's machines.
TARGET_TAG = ("" if SUITE == "bookworm" else SUITE[0]) + ("" if VARIANT == "standard"
                                                          else VARIANT[0])
CONTROLLER_ADDRESS = "10.77.0.1"
#: Roles that exist only for the tests, run through PROVISIONER_ROLES_PATH.
TEST_ROLES = PROJECT_ROOT / "tests" / "integration" / "roles"


@dataclass(frozen=True)
class Invocation:
    exit_code: int
    output: str
    report: dict[str, Any]


@dataclass(frozen=True)
class Sandbox:
    """The session's machines and an inventory describing them."""

    target: sandbox.Machine
    peer: sandbox.Machine
    inventory: Path

    def invoke(self, *arguments: str, inventory: Path | None = None) -> Invocation:
        """Run an invoke task like a user would, with a JSON report when it is provision."""
        return invoke_task(*arguments, inventory=inventory or self.inventory,
                           report=self.inventory.parent / "report.json")

    def variant(self, name: str, **ssh: object) -> Path:
        """The session's inventory with some defaults.ssh settings replaced, as a new file."""
        data = yaml.safe_load(self.inventory.read_text())
        data["defaults"]["ssh"].update(ssh)
        path = self.inventory.parent / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def ssh(self, machine: sandbox.Machine, command: str, timeout: int = 60
            ) -> subprocess.CompletedProcess[str]:
        """Run a command on a machine as the admin user through the OpenSSH client."""
        return admin_ssh(machine, command, timeout)


def invoke_task(*arguments: str, inventory: Path, report: Path,
                environment: dict[str, str] | None = None, timeout: int = 1200) -> Invocation:
    """Run an invoke task like a user would, with a JSON report (at ``report``) when it is
    provision."""
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "invoke", *arguments, "--inventory", str(inventory)]
    if arguments[0] == "provision":
        command += ["--report", str(report)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          check=False, timeout=timeout, env={**os.environ, **(environment or {})})
    data = json.loads(report.read_text()) if report.exists() else {}
    return Invocation(done.returncode, done.stdout + done.stderr, data)


def _ssh_saying_why(machine: sandbox.Machine) -> list[str]:
    """The admin's ssh at LogLevel INFO (ssh keeps the first value it reads): a login the
    machine closes exits 255 silently at ERROR; CI met that twice on a just-booted machine
    (.11) and could not say why, so the next one prints "Connection closed by ..."."""
    argv = sandbox.ssh_argv(machine, "admin")
    return [argv[0], "-o", "LogLevel=INFO", *argv[1:], "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10"]


def admin_ssh(machine: sandbox.Machine, command: str, timeout: int = 60
              ) -> subprocess.CompletedProcess[str]:
    """Run a command on a machine as the admin user through the OpenSSH client."""
    argv = [*_ssh_saying_why(machine), command]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)


def root_output(machine: sandbox.Machine, command: str, stdin: str | None = None,
                timeout: int = 120) -> str:
    """What a shell command run as root on a machine (admin's sudo over OpenSSH) printed; it
    must succeed. ``stdin`` keeps what must not be in a command line (sudo logs those)."""
    argv = [*_ssh_saying_why(machine), f"sudo -n sh -c {quote(command)}"]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def edit_inventory(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Change an inventory file's YAML in place."""
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def write_test_inventory(machines: list[sandbox.Machine], path: Path) -> None:
    """The sandbox inventory with the controller exempt from SSH rate limits and bans."""
    sandbox.write_inventory(machines, path)
    edit_inventory(path, lambda data: data["defaults"]["vars"].update({
        "ufw_ssh_unlimited_sources": [CONTROLLER_ADDRESS],
        "fail2ban_ignoreip": [CONTROLLER_ADDRESS],
        "ufw_rules": [{"port": 80, "proto": "tcp"}],
        # Fewer tries before a ban than the default 5, so the ban test stays clear of the SSH
        # rate limit (which also counts the other tests' connections from the peer).
        "fail2ban_maxretry": 3,
    }))


@contextmanager
def own_machines(tmp_path_factory: pytest.TempPathFactory, prefix: str, count: int = 1,
                 variant: str = VARIANT) -> Iterator[tuple[list[sandbox.Machine], Path]]:
    """Machines a module boots for itself, and the sandbox inventory written for them; at the
    end their kept logins close and they are removed (unless PROVISIONER_KEEP_SANDBOX)."""
    os.environ.setdefault("PROVISIONER_RUNTIME_DIR", str(tmp_path_factory.mktemp("kept")))
    os.environ.setdefault("PROVISIONER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    booted = sandbox.up(count=count, suite=SUITE, prefix=prefix + TARGET_TAG, progress=print,
                        variant=variant)
    inventory = tmp_path_factory.mktemp(prefix) / "inventory.yml"
    sandbox.write_inventory(booted, inventory)
    try:
        yield booted, inventory
    finally:
        close_keepers({machine.address for machine in booted})
        if not os.environ.get("PROVISIONER_KEEP_SANDBOX"):
            sandbox.down([machine.name for machine in booted])


@pytest.fixture(scope="session")
def machines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    # The runs' kept logins live in the session's own directory and end with it; so do the
    # hosts' remembered facts (a machine booted again under the same name starts unknown).
    os.environ["PROVISIONER_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("kept"))
    os.environ["PROVISIONER_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    booted = sandbox.up(count=2, suite=SUITE, prefix="it" + TARGET_TAG, progress=print,
                        variant=VARIANT)
    by_name = {machine.name: machine for machine in booted}
    target, peer = by_name[f"it{TARGET_TAG}1"], by_name[f"it{TARGET_TAG}2"]
    inventory = tmp_path_factory.mktemp("sandbox") / "inventory.yml"
    write_test_inventory([target, peer], inventory)
    # The tests name the hosts it1 and it2 on every target, whatever the machines are called.
    edit_inventory(inventory, lambda data: data.update(hosts={
        "it1": data["hosts"][target.name], "it2": data["hosts"][peer.name]}))
    yield Sandbox(target, peer, inventory)
    close_keepers()
    if not os.environ.get("PROVISIONER_KEEP_SANDBOX"):
        sandbox.down(list(by_name))
