"""ufw spec: the firewall is active, denies by default, and holds exactly the inventory's rules."""

from __future__ import annotations

from typing import Any

import pytest


def test_firewall_is_active_and_enabled_at_boot(host: Any) -> None:
    assert "Status: active" in host.check_output("ufw status")
    assert host.service("ufw").is_enabled


def test_default_policy_denies_incoming_and_routed_traffic(host: Any,
                                                          role_vars: dict[str, Any]) -> None:
    verbose = host.check_output("ufw status verbose")
    incoming = role_vars["ufw_default_incoming"]
    assert f"Default: {incoming} (incoming), {role_vars['ufw_default_outgoing']} (outgoing)" \
        in verbose


def test_ssh_is_allowed_on_its_port(host: Any, role_vars: dict[str, Any]) -> None:
    added = host.check_output("ufw show added")
    action = "limit" if role_vars["ufw_ssh_limit"] else "allow"
    port = role_vars["ufw_ssh_port"]
    assert f"ufw {action} {port}/tcp" in added or f"port {port} proto tcp" in added


def test_every_inventory_rule_is_present(host: Any, role_vars: dict[str, Any]) -> None:
    added = host.check_output("ufw show added")
    for rule in role_vars["ufw_rules"]:
        assert f"{rule['port']}" in added


def test_no_rule_beyond_ssh_and_the_inventory(host: Any, role_vars: dict[str, Any]) -> None:
    added = [line for line in host.check_output("ufw show added").splitlines()
             if line.startswith("ufw ")]
    fixed = [rule for rule in role_vars["ufw_rules"] if "from_group" not in rule]
    expected = (len(role_vars["ufw_ssh_sources"]) or 1) + len(fixed) + \
        len(role_vars["ufw_ssh_unlimited_sources"])
    # A from_group rule is one rule per address of its group, which a spec cannot count (it
    # sees the host's variables, not the inventory): each opens its port from an address.
    grouped = {str(rule["port"]) for rule in role_vars["ufw_rules"] if "from_group" in rule}
    from_groups = [line for line in added if " from " in line
                   and line.split(" port ")[-1].split()[0] in grouped]
    assert len(added) - len(from_groups) == expected


@pytest.mark.parametrize("setting", ["IPT_SYSCTL="])
def test_ufw_does_not_reset_hardening_sysctls(host: Any, setting: str) -> None:
    lines = host.file("/etc/default/ufw").content_string.splitlines()
    assert not any(line.startswith(setting) for line in lines)
