"""The engine's contracts on real hosts: decided notifications, a restart superseding a reload,
handlers that wait until their service is ready, handlers never lost when a run fails, the host
session as a public unit, and serial batches that stop at the first failure.

Its own machines (ec1, ec2) run only the test role tests/integration/roles/contracts, whose
service takes two seconds after each start to be ready.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner import sandbox
from provisioner.content.roles import available_roles
from provisioner.inventory.loader import load_inventory
from provisioner.run.engine import RunOptions, prepare
from provisioner.run.session import host_session
from tests.integration.conftest import (
    TEST_ROLES,
    Invocation,
    admin_ssh,
    edit_inventory,
    invoke_task,
    own_machines,
)

pytestmark = pytest.mark.integration

RECORDS = "/var/lib/provisioner/handlers/contracts"
LOG = "/var/log/contracts-handlers"


@dataclass(frozen=True)
class Hosts:
    first: sandbox.Machine
    second: sandbox.Machine
    inventory: Path

    def provision(self, *flags: str, **host_vars: dict[str, Any]) -> Invocation:
        """provision with per-host variables (host name -> vars) written into the inventory."""
        data = yaml.safe_load(self.inventory.read_text())
        for name, entry in data["hosts"].items():
            entry["vars"] = host_vars.get(name, {})
        variant = self.inventory.with_name("run.yml")
        variant.write_text(yaml.safe_dump(data, sort_keys=False))
        return invoke_task("provision", *flags, inventory=variant,
                           report=self.inventory.with_name("report.json"),
                           environment={"PROVISIONER_ROLES_PATH": str(TEST_ROLES)})

    def on(self, machine: sandbox.Machine, command: str) -> str:
        done = admin_ssh(machine, f"sudo sh -c {command!r}")
        return done.stdout.strip()


def steps_of(run: Invocation, host: str) -> dict[str, tuple[str, str]]:
    return {step["label"]: (step["status"], step["reason"])
            for step in run.report["hosts"][host]["steps"]}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    def contracts_only(data: dict[str, Any]) -> None:
        data["groups"] = {"contracts": {"roles": ["contracts"]}}
        for entry in data["hosts"].values():
            entry["groups"] = ["contracts"]

    with own_machines(tmp_path_factory, "ec", count=2) as ((first, second), inventory):
        edit_inventory(inventory, contracts_only)
        yield Hosts(first, second, inventory)


def main_pid(hosts: Hosts) -> str:
    return hosts.on(hosts.first, "systemctl show -p MainPID --value contracts-app")


def test_a_restart_handler_waits_until_its_service_is_ready(hosts: Hosts) -> None:
    run = hosts.provision("--host", "ec1")
    assert run.exit_code == 0, run.output
    status, reason = steps_of(run, "ec1")["handler app:restart"]
    assert status == "changed" and "is ready" in reason
    # Ready means the service had copied its new config before the run returned.
    assert hosts.on(hosts.first, "cat /run/contracts-ready") == "value=one"


def test_decide_reloads_only_when_no_restart_setting_changed(hosts: Hosts) -> None:
    before = main_pid(hosts)
    run = hosts.provision("--host", "ec1", ec1={"contracts_reload_setting": "2"})
    assert run.exit_code == 0, run.output
    labels = steps_of(run, "ec1")
    assert labels["handler app:reload"][0] == "changed" and "handler app:restart" not in labels
    assert main_pid(hosts) == before


def test_a_restart_setting_change_restarts_the_service(hosts: Hosts) -> None:
    before = main_pid(hosts)
    run = hosts.provision("--host", "ec1", ec1={"contracts_restart_setting": "2",
                                                "contracts_reload_setting": "2"})
    assert run.exit_code == 0, run.output
    labels = steps_of(run, "ec1")
    assert labels["handler app:restart"][0] == "changed"
    assert "handler app:reload" not in labels  # decide chose the restart alone
    assert main_pid(hosts) != before


def test_a_restart_supersedes_a_reload_notified_in_the_same_run(hosts: Hosts) -> None:
    reloads = hosts.on(hosts.first, f"grep -c reloaded {LOG}")
    run = hosts.provision("--host", "ec1", ec1={"contracts_restart_setting": "2",
                                                "contracts_reload_setting": "3",
                                                "contracts_value": "two"})
    assert run.exit_code == 0, run.output
    labels = steps_of(run, "ec1")
    assert labels["handler app:restart"][0] == "changed"
    assert labels["handler app:reload"] == ("ok", "not run: app:restart runs instead and "
                                            "supersedes it")
    assert hosts.on(hosts.first, f"grep -c reloaded {LOG}") == reloads
    assert hosts.on(hosts.first, "cat /run/contracts-ready") == "value=two"


def test_a_run_that_fails_after_a_change_leaves_its_handler_to_the_next_run(
        hosts: Hosts) -> None:
    settled = {"contracts_restart_setting": "2", "contracts_reload_setting": "3"}
    failed = hosts.provision("--host", "ec1", ec1={**settled, "contracts_value": "three",
                                                   "contracts_fail": True})
    assert failed.exit_code == 1
    assert "handler app:restart" not in steps_of(failed, "ec1")
    assert hosts.on(hosts.first, f"ls {RECORDS}") == "app:restart"
    assert hosts.on(hosts.first, "cat /run/contracts-ready") == "value=two"  # still the old

    checked = hosts.provision("--host", "ec1", "--check",
                              ec1={**settled, "contracts_value": "three"})
    assert steps_of(checked, "ec1")["handler app:restart"][1].startswith(
        "would run (notified by an earlier run's change (file /etc/contracts/app.conf)")
    assert hosts.on(hosts.first, f"ls {RECORDS}") == "app:restart"

    again = hosts.provision("--host", "ec1", ec1={**settled, "contracts_value": "three"})
    assert again.exit_code == 0, again.output
    steps = steps_of(again, "ec1")
    assert steps["file /etc/contracts/app.conf"][0] == "ok"
    assert steps["handler app:restart"][0] == "changed"
    assert hosts.on(hosts.first, "cat /run/contracts-ready") == "value=three"
    assert hosts.on(hosts.first, f"ls {RECORDS}") == ""

    last = hosts.provision("--host", "ec1", ec1={**settled, "contracts_value": "three"})
    assert last.report["hosts"]["ec1"]["changed"] == 0


def test_serial_batches_never_start_the_second_host_after_the_first_failed(
        hosts: Hosts) -> None:
    run = hosts.provision("--serial", "1", ec1={"contracts_fail": True})
    assert run.exit_code == 1
    assert run.report["hosts"]["ec1"]["failed"] == 1
    assert run.report["hosts"]["ec2"]["skipped"] == "not started: ec1 failed in an earlier batch"
    assert "ec2  skipped" in run.output
    assert hosts.on(hosts.second, "test -e /etc/contracts/app.conf && echo there") == ""


def test_serial_batches_reach_every_host_when_none_fails(hosts: Hosts) -> None:
    run = hosts.provision("--serial", "1")
    assert run.exit_code == 0, run.output
    assert hosts.on(hosts.second, "cat /etc/contracts/app.conf") == "value=one"


def test_a_host_session_logs_in_gives_facts_and_runs_a_command_as_root(hosts: Hosts) -> None:
    inventory = load_inventory(hosts.inventory, available_roles((TEST_ROLES,)))
    [job] = prepare([inventory.hosts["ec2"]], RunOptions(role_dirs=(TEST_ROLES,)))
    with host_session(job) as session:
        assert session.run_script("id -u").stdout == "0\n"
        assert session.facts().os_id == "debian"
        assert session.round_trips == 2
