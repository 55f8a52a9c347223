"""A payload on a command's stdin never shows in any process's argv or environment on the host.

Its own machine (sp1), where only the payload test role runs (tests/integration/roles/payload).
While a run hands the role's marker secret to a command that ``nobody`` runs and that reads its
stdin only after a few seconds, a second SSH login samples, as root, every process's command
line and environment (and ``ps``, where procps is installed), and the controller looks for the
marker in all of it. The script reaches the host on a shell's stdin either way a run sends it:
``sudo /bin/sh -s`` on a new login, and the connection keeper's root shell on a kept one.
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner import sandbox
from tests.integration.conftest import (
    TEST_ROLES,
    Invocation,
    admin_ssh,
    edit_inventory,
    invoke_task,
    own_machines,
)
from tests.integration.roles.payload.role import PAYLOAD_FILE, payload, reader_command

pytestmark = pytest.mark.integration

STOP_FILE = "/tmp/provisioner-sampler-stop"
#: Every process's argv and environment as root, as fast as the host allows, until told to stop.
SAMPLER = (
    f"sudo -n sh -c 'rm -f {STOP_FILE}; while [ ! -e {STOP_FILE} ]; do "
    "grep -a -H -s \"\" /proc/[0-9]*/cmdline /proc/[0-9]*/environ; "
    "if command -v ps >/dev/null; then ps -eww -o pid=,user=,args=; fi; echo ---sample---; "
    "done'")


@dataclass(frozen=True)
class PayloadHost:
    machine: sandbox.Machine
    inventory: Path

    def provision(self, marker: str, *, kept_login: bool) -> Invocation:
        """Run the payload role with this marker, on a new login or through a kept one."""
        data = yaml.safe_load(self.inventory.read_text())
        data["defaults"]["ssh"]["control_persist"] = 300 if kept_login else 0
        inventory = self.inventory.parent / ("kept.yml" if kept_login else "new.yml")
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        return invoke_task("provision", inventory=inventory, timeout=300,
                           report=self.inventory.parent / "report.json",
                           environment={"PROVISIONER_ROLES_PATH": str(TEST_ROLES),
                                        "PAYLOAD_MARKER": marker})

    def sampled_provision(self, marker: str, *, kept_login: bool) -> tuple[Invocation, bytes]:
        """A run, and what the sampler saw on the host while it ran.

        The samples go straight to a file: read only at the end through a pipe, they would
        fill it and the SSH window within a second, and the sampler would stop sampling.
        """
        samples = self.inventory.parent / "samples"
        with samples.open("wb") as output:
            sampler = subprocess.Popen(
                [*sandbox.ssh_argv(self.machine, "admin"), "-o", "BatchMode=yes", SAMPLER],
                stdout=output, stderr=subprocess.DEVNULL)
            try:
                time.sleep(2)  # logged in and sampling before the run's own login
                run = self.provision(marker, kept_login=kept_login)
            finally:
                admin_ssh(self.machine, f"touch {STOP_FILE}")
                sampler.wait(timeout=60)
        return run, samples.read_bytes()

    def ssh(self, command: str) -> str:
        done = admin_ssh(self.machine, command)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayloadHost]:
    def payload_only(data: dict[str, Any]) -> None:
        data["hosts"][machine.name].update({"roles": ["payload"], "groups": []})
        data["defaults"]["vars"]["payload_marker"] = {"secret": "env:PAYLOAD_MARKER"}

    with own_machines(tmp_path_factory, "sp") as ((machine,), inventory):
        edit_inventory(inventory, payload_only)
        yield PayloadHost(machine, inventory)


def new_marker() -> str:
    return "PAYLOAD-MARKER-" + secrets.token_hex(12)


def assert_delivered_unseen(host: PayloadHost, marker: str, run: Invocation,
                            seen: bytes) -> None:
    assert run.exit_code == 0, run.output
    assert run.report["hosts"][host.machine.name]["changed"] == 1, run.output
    reader_seen = reader_command(3).encode() in seen
    assert reader_seen, "the sampler never saw the reader waiting for its stdin"
    assert [line for line in seen.split(b"\n") if marker.encode() in line] == []
    assert marker not in run.output and marker not in str(run.report)
    received = host.ssh(f"sha256sum < {PAYLOAD_FILE}").split()[0]
    assert received == hashlib.sha256(payload(marker).encode()).hexdigest()
    assert host.ssh(f"stat -c %U {PAYLOAD_FILE}").strip() == "nobody"


def test_a_payload_handed_over_a_new_login_shows_in_no_process(host: PayloadHost) -> None:
    marker = new_marker()

    run, seen = host.sampled_provision(marker, kept_login=False)

    assert_delivered_unseen(host, marker, run, seen)


def test_a_second_run_finds_the_payload_delivered_by_a_probe_run_as_the_user(
        host: PayloadHost) -> None:
    marker = new_marker()
    assert host.provision(marker, kept_login=False).exit_code == 0

    run = host.provision(marker, kept_login=False)

    assert run.exit_code == 0, run.output
    assert run.report["hosts"][host.machine.name]["changed"] == 0, run.output


def test_a_payload_handed_through_a_kept_root_shell_shows_in_no_process(
        host: PayloadHost) -> None:
    assert host.provision(new_marker(), kept_login=True).exit_code == 0  # keeper and root shell
    marker = new_marker()

    run, seen = host.sampled_provision(marker, kept_login=True)

    assert run.report["hosts"][host.machine.name]["connection"] == "reused", run.output
    root_shell_seen = b"provisioner-root-shell" in seen
    assert root_shell_seen, "the run did not go through the kept root shell"
    assert_delivered_unseen(host, marker, run, seen)
