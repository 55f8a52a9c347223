"""ufw: deny inbound by default, SSH allowed (rate-limited) before enabling, the inventory's rules.

Implements controls.md §3. Rules the inventory no longer lists are removed. Enabling the firewall
is guarded: a new SSH connection must succeed afterwards or the firewall is disabled again. On a
host with the docker role the same rules guard the ports containers publish (docker_user.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.ops.apt import ensure_packages
from provisioner.ops.files import ensure_template
from provisioner.ops.ufw import Rule, ensure_ufw_enabled, ensure_ufw_rules, group_rules
from provisioner.step import Handler, Safeguard, Step, check_safeguard_timeout
from roles.ufw.docker_user import docker_user_lines

#: The names its after.rules template gets from the role, not from the inventory.
TEMPLATE_ARGUMENTS = {"etc/ufw/after.rules.j2": {"docker_user_lines"}}

HANDLERS = (
    Handler("ufw:reload", "if ufw status | grep -q 'Status: active'; then ufw reload; fi"),
)


def steps(host: Host) -> Iterator[Step]:
    yield ensure_packages(host, host.vars["ufw_packages"])
    yield ensure_template(host, "/etc/default/ufw", "etc/default/ufw.j2", notify=["ufw:reload"],
                          label="template /etc/default/ufw [controls §1.8, §1.11.3]")
    timeout = int(host.vars["ufw_safeguard_timeout"])
    rules_guard = Safeguard("ufw-rules", undo="ufw reload", timeout=timeout)
    rules = desired_rules(host.vars, host.inventory)
    yield ensure_ufw_rules(host, rules, safeguard=rules_guard, label="ufw rules [controls §3.1]")
    yield after_rules(host, rules, rules_guard)
    enable_guard = Safeguard("ufw", undo="ufw --force disable", timeout=timeout)
    yield ensure_ufw_enabled(host, safeguard=enable_guard, label="ufw enabled [controls §3.1]")


def after_rules(host: Host, rules: list[Rule], safeguard: Safeguard) -> Step:
    """Debian's after.rules, and on a host with the docker role the DOCKER-USER chain holding the
    same rules for published container ports (docker_user.py). Under the rules' safeguard: a
    file ufw cannot load would leave the firewall half up."""
    lines = docker_user_lines(rules, host.vars["ufw_default_incoming"]) \
        if "docker" in host.config.roles else []
    return ensure_template(host, "/etc/ufw/after.rules", "etc/ufw/after.rules.j2",
                           notify=["ufw:reload"], safeguard=safeguard, docker_user_lines=lines,
                           label="template /etc/ufw/after.rules (DOCKER-USER) [controls §3.2]")


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse a malformed rule or a revert too quick to guard anything, before any contact."""
    desired_rules(variables)
    check_safeguard_timeout("ufw_safeguard_timeout", variables["ufw_safeguard_timeout"])


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """Refuse a rule naming a group the inventory does not have, before any contact."""
    desired_rules(variables, inventory)


def validate_login(config: HostConfig, variables: Mapping[str, Any]) -> None:
    """Refuse a firewall that would close the port the inventory logs in on."""
    if str(variables["ufw_ssh_port"]) != str(config.port):
        raise RoleError(f"ufw_ssh_port is {variables['ufw_ssh_port']} but the inventory logs in "
                        f"on port {config.port}: the firewall would shut this login out. Keep "
                        "ufw_ssh_port equal to the port sshd listens on (and the inventory's "
                        "port:).")


def desired_rules(variables: Mapping[str, Any], inventory: InventoryView | None = None
                  ) -> list[Rule]:
    """SSH first (admin networks unlimited, then everyone allowed rate-limited), then the rest.

    A rule with ``from_group`` becomes one rule per address of that group's hosts, in the
    inventory's order; without ``inventory`` (validation of the variables alone) it is checked
    for its shape only."""
    try:
        rules = _ssh_rules(variables)
    except (ValueError, TypeError) as error:
        raise RoleError(f"the SSH firewall variables are invalid: {error}. ufw_ssh_port must be "
                        "a port, ufw_ssh_sources and ufw_ssh_unlimited_sources lists of "
                        "addresses or networks.") from None
    for index, entry in enumerate(variables["ufw_rules"]):
        try:
            rules.extend(_inventory_rules(entry, inventory))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise RoleError(f"ufw_rules[{index}] ({entry!r}) is invalid: {error}. Each rule "
                            "needs port, and may have proto, from or from_group, "
                            "action.") from None
        except RoleError as error:
            raise RoleError(f"ufw_rules[{index}] ({entry!r}): {error}") from None
    return rules


def _ssh_rules(variables: Mapping[str, Any]) -> list[Rule]:
    port = str(variables["ufw_ssh_port"])
    action = "limit" if variables["ufw_ssh_limit"] else "allow"
    rules = [Rule(port, "tcp", str(source), "allow")
             for source in variables["ufw_ssh_unlimited_sources"]]
    return rules + [Rule(port, "tcp", str(source), action)
                    for source in variables["ufw_ssh_sources"] or ["any"]]


def _inventory_rules(entry: Mapping[str, Any], inventory: InventoryView | None) -> list[Rule]:
    unknown = set(entry) - {"port", "proto", "from", "from_group", "action"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    port, proto = str(entry["port"]), entry.get("proto", "tcp")
    action = entry.get("action", "allow")
    if "from_group" not in entry:
        return [Rule(port, proto, str(entry.get("from", "any")), action)]
    if "from" in entry:
        raise ValueError("from and from_group exclude each other")
    group = entry["from_group"]
    if not isinstance(group, str) or not group:
        raise ValueError("from_group must name an inventory group")
    Rule(port, proto, "any", action)  # the port, proto and action checked without addresses
    if inventory is None:
        return []
    return group_rules(port, proto, action, inventory.addresses(group))
