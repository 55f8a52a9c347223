"""ufw rules with from_group: one rule per address of the group's hosts, unknown groups refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT
from provisioner.errors import RoleError
from provisioner.inventory.view import InventoryView
from provisioner.ops.ufw import Rule
from tests.unit.fakes import host_config


def ufw_role() -> Any:
    spec = importlib.util.spec_from_file_location("ufw_role_groups",
                                                  Path(PROJECT_ROOT, "roles/ufw/role.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROLE = ufw_role()
INVENTORY = InventoryView.of_hosts([
    host_config("db1", "10.0.2.10", groups=["db"]),
    host_config("api1", "10.0.1.10", groups=["api"]),
    host_config("api2", "10.0.1.11", groups=["api"])])


def variables(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"ufw_ssh_port": 22, "ufw_ssh_limit": True, "ufw_ssh_sources": [],
            "ufw_ssh_unlimited_sources": [], "ufw_rules": list(rules),
            "ufw_safeguard_timeout": 120}


def test_a_from_group_rule_opens_the_port_to_each_host_of_the_group() -> None:
    rules = ROLE.desired_rules(variables({"port": 5432, "from_group": "api"}), INVENTORY)

    assert rules[1:] == [Rule("5432", "tcp", "10.0.1.10"), Rule("5432", "tcp", "10.0.1.11")]


def test_a_from_group_rule_keeps_its_place_among_the_others() -> None:
    rules = ROLE.desired_rules(variables({"port": 80}, {"port": 5432, "from_group": "db"},
                                         {"port": 443}), INVENTORY)

    assert [rule.canonical() for rule in rules[1:]] == [
        "ufw allow 80/tcp", "ufw allow from 10.0.2.10 to any port 5432 proto tcp",
        "ufw allow 443/tcp"]


def test_an_unknown_group_is_refused_naming_it() -> None:
    with pytest.raises(RoleError, match="'apii' is not a group of the inventory"):
        ROLE.desired_rules(variables({"port": 5432, "from_group": "apii"}), INVENTORY)


def test_validate_inventory_refuses_an_unknown_group_before_contact() -> None:
    with pytest.raises(RoleError, match=r"ufw_rules\[0\].*apii"):
        ROLE.validate_inventory(variables({"port": 5432, "from_group": "apii"}), INVENTORY)


def test_from_and_from_group_together_are_refused() -> None:
    with pytest.raises(RoleError, match="exclude each other"):
        ROLE.validate(variables({"port": 5432, "from": "10.0.0.1", "from_group": "api"}))


def test_validating_the_variables_alone_checks_a_group_rules_port() -> None:
    with pytest.raises(RoleError, match="not a port"):
        ROLE.validate(variables({"port": 99999, "from_group": "api"}))


def test_validating_the_variables_alone_accepts_a_group_rule() -> None:
    ROLE.validate(variables({"port": 5432, "from_group": "api"}))
