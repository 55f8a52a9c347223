"""Host secrets on a real machine (hs1): generated there once, rendered into what uses them,
listed by name and age, rotated on purpose, and never shown by any command.

Only the secretuser test role runs (tests/integration/roles/secretuser): an environment file
holding a DSN with the database password and a signing key, both host secrets.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner import sandbox
from tests.integration.conftest import (
    TEST_ROLES,
    Invocation,
    edit_inventory,
    invoke_task,
    own_machines,
    root_output,
)
from tests.integration.roles.secretuser.role import ENV_FILE

pytestmark = pytest.mark.integration

STORE = "/etc/provisioner/secrets"
DECLARED = {"db_password": {"kind": "password", "length": 24}, "signing_key": {}}


@dataclass(frozen=True)
class SecretHost:
    machine: sandbox.Machine
    inventory: Path

    def invoke(self, *arguments: str) -> Invocation:
        return invoke_task(*arguments, inventory=self.inventory, timeout=300,
                           report=self.inventory.parent / "report.json",
                           environment={"PROVISIONER_ROLES_PATH": str(TEST_ROLES)})

    def root(self, command: str) -> str:
        return root_output(self.machine, command)

    def secret(self, name: str) -> str:
        return self.root(f"cat {STORE}/{name}")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretHost]:
    with own_machines(tmp_path_factory, "hs") as (booted, inventory):
        edit_inventory(inventory, lambda data: data["hosts"][booted[0].name].update(
            groups=[], roles=["secretuser"], vars={
                "host_secrets": DECLARED,
                "secretuser_db_password": {"secret": "host:db_password"},
                "secretuser_signing_key": {"secret": "host:signing_key"}}))
        yield SecretHost(booted[0], inventory)


@pytest.fixture(scope="module")
def first_run(host: SecretHost) -> Invocation:
    return host.invoke("provision")


def shown(run: Invocation) -> str:
    return run.output + json.dumps(run.report)


def test_the_first_run_generates_each_declared_secret_on_the_host(host: SecretHost,
                                                                   first_run: Invocation) -> None:
    assert first_run.exit_code == 0, first_run.output
    modes = host.root(f"stat -c \"%n %U:%G %a\" {STORE} {STORE}/*").split("\n")
    password, key = host.secret("db_password"), host.secret("signing_key")

    assert modes[:3] == [f"{STORE} root:root 700", f"{STORE}/db_password root:root 600",
                         f"{STORE}/signing_key root:root 600"]
    assert len(password) == 24 and password.isalnum()
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")


def test_the_consumer_gets_the_values_and_no_output_shows_them(host: SecretHost,
                                                              first_run: Invocation) -> None:
    password, key = host.secret("db_password"), host.secret("signing_key")

    assert host.root(f"cat {ENV_FILE}") == (
        f"DATABASE_URL=postgresql://app:{password}@127.0.0.1:6432/app\nSIGNING_KEY={key}\n")
    assert password not in shown(first_run) and key not in shown(first_run)


def test_a_second_run_changes_nothing_keeps_every_value_in_one_round_trip(
        host: SecretHost, first_run: Invocation) -> None:
    before = host.secret("db_password"), host.secret("signing_key")

    host.invoke("provision")  # the first run changed what facts describe: learn them again
    again = host.invoke("provision")

    assert again.exit_code == 0, again.output
    result = again.report["hosts"][host.machine.name]
    assert (result["changed"], result["round_trips"]) == (0, 1), result
    assert (host.secret("db_password"), host.secret("signing_key")) == before


def test_the_list_names_each_secret_with_its_kind_and_age_and_never_its_value(
        host: SecretHost, first_run: Invocation) -> None:
    listing = host.invoke("secrets.list", "--host", host.machine.name)

    assert listing.exit_code == 0, listing.output
    assert "db_password" in listing.output and "password, 24 characters" in listing.output
    assert "signing_key" in listing.output and "256-bit random, hex" in listing.output
    assert host.secret("db_password") not in listing.output
    assert host.secret("signing_key") not in listing.output


def test_a_rotation_changes_one_secret_and_updates_its_consumer(host: SecretHost,
                                                                first_run: Invocation) -> None:
    old_password, key = host.secret("db_password"), host.secret("signing_key")

    rotated = host.invoke("secrets.rotate", "--host", host.machine.name, "--name", "db_password")

    new_password = host.secret("db_password")
    assert rotated.exit_code == 0, rotated.output
    assert new_password != old_password and len(new_password) == 24
    assert host.secret("signing_key") == key
    assert f"app:{new_password}@" in host.root(f"cat {ENV_FILE}")
    assert "previous" not in host.root(f"ls -a {STORE}")
    assert old_password not in rotated.output and new_password not in rotated.output


def test_rotating_a_secret_the_host_does_not_declare_contacts_nothing(
        host: SecretHost, first_run: Invocation) -> None:
    refused = host.invoke("secrets.rotate", "--host", host.machine.name, "--name", "api_key")

    assert refused.exit_code == 2
    assert "declares no host secret 'api_key' (declared: db_password, signing_key)" in \
        refused.output


def test_a_consumer_naming_an_undeclared_secret_is_refused_before_contact(
        host: SecretHost, first_run: Invocation, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(host.inventory.read_text())
    edit_inventory(broken, lambda data: data["hosts"][host.machine.name]["vars"].update(
        secretuser_signing_key={"secret": "host:signing_kye"}))

    refused = invoke_task("provision", inventory=broken, report=tmp_path / "r.json",
                          environment={"PROVISIONER_ROLES_PATH": str(TEST_ROLES)})

    assert refused.exit_code == 2
    assert "host secret 'signing_kye' is used but host" in refused.output


def test_no_log_on_the_host_holds_a_secret(host: SecretHost, first_run: Invocation) -> None:
    values = "\n".join(host.secret(name) for name in DECLARED) + "\n"
    # The values go on stdin: in the command line, sudo's own log line would hold them.
    search = ("sudo -n sh -c 'f=$(mktemp); cat > $f; journalctl --no-pager -o cat | "
              "grep -cFf $f; grep -rlFf $f /var/log /home; rm $f'")
    found = subprocess.run([*sandbox.ssh_argv(host.machine, "admin"), "-o", "BatchMode=yes",
                            search], input=values, capture_output=True, text=True, timeout=60)

    assert found.stdout.split() == ["0"], found.stdout


def test_an_emptied_secret_is_refused_and_its_consumer_left_alone(
        host: SecretHost, first_run: Invocation) -> None:
    password, env_file = host.secret("db_password"), host.root(f"cat {ENV_FILE}")
    host.root(f": > {STORE}/db_password")
    try:
        refused = host.invoke("provision")
        checked = host.invoke("provision", "--check")
    finally:
        host.root(f"printf %s {password} > {STORE}/db_password")

    for run in (refused, checked):
        assert run.exit_code == 1, run.output
        assert f"{STORE}/db_password is empty" in run.output
    assert host.root(f"cat {ENV_FILE}") == env_file
    assert host.invoke("provision").exit_code == 0


def test_a_rotation_that_did_not_finish_is_finished_before_the_next_one(
        host: SecretHost, first_run: Invocation) -> None:
    current = host.secret("db_password")
    host.root(f"cp -p {STORE}/db_password {STORE}/db_password.previous")

    rotated = host.invoke("secrets.rotate", "--host", host.machine.name, "--name", "db_password")

    assert rotated.exit_code == 0, rotated.output
    assert "an earlier rotation of db_password did not finish" in rotated.output
    assert host.secret("db_password") not in (current, "")
    assert "previous" not in host.root(f"ls -a {STORE}")
    assert f"app:{host.secret('db_password')}@" in host.root(f"cat {ENV_FILE}")
