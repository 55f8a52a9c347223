"""The backup_target role: each client's key restricted to rrsync in its own directory."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import merge_role_variables
from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.view import InventoryView
from provisioner.step import Probed, Step
from roles.backup_target.role import validate_inventory
from tests.unit.fakes import host_config, no_facts

ROLE = load_role(PROJECT_ROOT / "roles" / "backup_target")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOfLgIEVizpS+RmkyStzKbk0oGodV/pHrFU3S7eynBjV db1"
INVENTORY = InventoryView.of_hosts([host_config("db1", "192.0.2.20", groups=["db"]),
                                    host_config("vault1", "192.0.2.30", groups=["backup"])])
CLIENTS = [{"host": "db1", "public_key": KEY}]


def merged(**inventory: Any) -> dict[str, Any]:
    return merge_role_variables([ROLE], {"backup_target_clients": CLIENTS, **inventory}, "test")


def role_steps(**inventory: Any) -> dict[str, Step]:
    config = host_config("vault1", "192.0.2.30", groups=["backup"], roles=["backup_target"])
    host = Host(config, merged(**inventory), no_facts, inventory=INVENTORY, show_diff=True)
    return {step.label: step for step in ROLE.steps(host.for_role(ROLE.template_dir))}


def authorized_keys(steps: dict[str, Step]) -> str:
    plan = steps["file /srv/provisioner-backups/.ssh/authorized_keys [controls §10]"].decide(
        Probed("absent"))
    assert plan.diff is not None
    return "".join(line[1:] + "\n" for line in plan.diff.splitlines()[2:]
                   if line.startswith("+"))


def test_a_clients_key_works_only_from_its_address_only_for_rrsync_write_only() -> None:
    assert authorized_keys(role_steps()) == (
        'restrict,from="192.0.2.20",command="/usr/bin/rrsync -wo /srv/provisioner-backups/db1"'
        f" {KEY}\n")


def test_each_client_gets_a_directory_only_the_account_can_enter() -> None:
    step = role_steps()["directory /srv/provisioner-backups/db1"]

    action = step.decide(Probed("absent")).action
    assert action is not None and "pgbackup:pgbackup" in action and "0700" in action


def test_the_account_joins_the_hardening_roles_ssh_group_when_that_role_is_there() -> None:
    step = role_steps(hardening_ssh_allow_group="ssh-users")["user pgbackup"]

    assert "--groups ssh-users" in (step.decide(Probed("")).action or "")


@pytest.mark.parametrize(("clients", "message"), [
    ([{"host": "db1"}], r"backup_target_clients\[0\] must be a mapping of exactly host and "),
    ([{"host": "db 1", "public_key": KEY}], r"backup_target_clients\[0\]\.host is 'db 1'"),
    ([{"host": "db1", "public_key": "AAAA"}], r"backup_target_clients\[0\]\.public_key must"),
    ([CLIENTS[0], CLIENTS[0]], r"backup_target_clients\[1\]\.host 'db1' is listed twice"),
])
def test_a_bad_client_is_refused_before_contact(clients: list[Any], message: str) -> None:
    with pytest.raises(RoleError, match=message):
        merged(backup_target_clients=clients)


def test_a_client_the_inventory_lacks_is_a_role_error() -> None:
    with pytest.raises(RoleError, match="names host 'db9', which is no host"):
        role_steps(backup_target_clients=[{"host": "db9", "public_key": KEY}])


@pytest.mark.parametrize(("variable", "value"), [
    ("backup_target_user", "Backup User"), ("backup_target_directory", "srv/backups"),
    ("backup_target_rrsync", "rrsync -ro"),
])
def test_a_bad_account_or_path_is_refused_naming_it(variable: str, value: str) -> None:
    with pytest.raises(RoleError, match=f"^test: {variable} is"):
        merged(**{variable: value})


def test_a_client_the_inventory_lacks_is_refused_before_contact() -> None:
    variables = merged(backup_target_clients=[{"host": "db9", "public_key": KEY}])

    with pytest.raises(RoleError, match="names host 'db9', which is no host"):
        validate_inventory(variables, INVENTORY)
