"""Who may connect, checked before any host is contacted: the remote groups and networks,
the address PostgreSQL listens on, and the firewall rules that must let them in (validation.py
runs these with the role's other checks)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from provisioner.errors import RoleError


def check_remote_groups(variables: Mapping[str, Any]) -> None:
    groups = variables["postgres_remote_groups"]
    if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
        raise RoleError("postgres_remote_groups must be a list of inventory group names.")


def check_remote_networks(variables: Mapping[str, Any]) -> None:
    """Each network is one pg_hba and ufw read alike (no host bits: 172.17.0.1/16 names the
    bridge's address, not its network), and the listen address is named: the default, the
    host's inventory address, is not where a container on its Docker bridge connects, and the
    bridge's own address exists only once Docker runs (after this role), so * is the usual one."""
    networks = variables["postgres_remote_networks"]
    if not isinstance(networks, list):
        raise RoleError(f"postgres_remote_networks is {networks!r}: it must be a list of "
                        "networks in CIDR form, e.g. [172.17.0.0/16] (Docker's default bridge).")
    for network in networks:
        if (problem := network_problem(str(network))) is not None:
            raise RoleError(f"postgres_remote_networks has {network!r}, {problem}.")
    if networks and variables["postgres_listen_address"] in ("", "localhost"):
        raise RoleError("postgres_remote_networks is set but postgres_listen_address is "
                        f"{variables['postgres_listen_address']!r}, so PostgreSQL would not "
                        "listen where those networks connect (the host's inventory address "
                        "faces its LAN, not its Docker bridge, whose address exists only once "
                        "Docker runs); set postgres_listen_address: \"*\" (every address: "
                        "pg_hba.conf and the firewall keep out everyone else) or the address "
                        "the clients connect to.")


def network_problem(text: str) -> str | None:
    """Why ``text`` is not a network pg_hba.conf and ufw read alike (None: it is one)."""
    try:
        ipaddress.ip_network(text)
    except ValueError:
        pass
    else:
        return None
    try:
        meant = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return ("which is not a network: write it as ADDRESS/PREFIX with a prefix of 0-32 "
                "(IPv4) or 0-128 (IPv6), e.g. 172.17.0.0/16")
    return (f"an address with its host bits set, not a network: the network it lies in is "
            f"{meant}; write that")


def check_firewall(variables: Mapping[str, Any]) -> None:
    """With the ufw role on the host, each remote group and network needs its rule opening the
    port (asked only once the groups are known to exist: validate_inventory)."""
    if "ufw_rules" not in variables:
        return
    port = str(variables["postgres_port"])
    rules = [rule for rule in variables["ufw_rules"]
             if isinstance(rule, Mapping) and str(rule.get("port")) == port
             and rule.get("action", "allow") == "allow"]
    opened = {str(rule.get("from_group")) for rule in rules}
    for group in variables["postgres_remote_groups"]:
        if group not in opened:
            raise RoleError(f"postgres_remote_groups names {group!r}, but ufw_rules has no rule "
                            f"opening port {port} to it, so the firewall would drop its "
                            f"connections; add to ufw_rules: {{port: {port}, proto: tcp, "
                            f"from_group: {group}}}.")
    for network in variables["postgres_remote_networks"]:
        if not any(opens_to(rule, str(network)) for rule in rules):
            raise RoleError(f"postgres_remote_networks has {network}, but ufw_rules has no "
                            f"rule opening port {port} to it, so the firewall would drop its "
                            f"connections; add to ufw_rules: {{port: {port}, proto: tcp, "
                            f"from: {network}}}.")


def opens_to(rule: Mapping[str, Any], network: str) -> bool:
    """Whether a ufw rule's ``from`` (a network, an address or any; no from_group: those are
    inventory hosts) lets in every address of ``network``."""
    if "from_group" in rule:
        return False
    source = str(rule.get("from", "any"))
    if source == "any":
        return True
    try:
        allowed, wanted = ipaddress.ip_network(source, strict=False), ipaddress.ip_network(network)
    except ValueError:
        return False
    return wanted.network_address in allowed and wanted.broadcast_address in allowed


def check_listen_address(variables: Mapping[str, Any]) -> None:
    """postgres_listen_address: an IP address (the server binds it), or * or localhost."""
    address = variables["postgres_listen_address"]
    if address in ("", "*", "localhost"):
        return
    try:
        ipaddress.ip_address(str(address))
    except ValueError:
        raise RoleError(f"postgres_listen_address is {address!r}, which is not an IP address; "
                        "give the address PostgreSQL listens on besides localhost (e.g. "
                        "10.0.2.10), * for every address, or leave it empty for the host's "
                        "inventory address.") from None
