"""pg_hba.conf and listen_addresses from the inventory: peer locally, SCRAM over TCP to the rest.

controls.md §6.2's recommended base (the "DO NOT DISABLE" postgres peer line first, local peer,
scram-sha-256 on 127.0.0.1 and ::1), then one scram-sha-256 line per address of each host of
the groups named in postgres_remote_groups, one per network of postgres_remote_networks (the
containers on this host's Docker bridge are no inventory host), and nothing else: a client
outside those is refused by PostgreSQL itself even when a firewall rule lets it through.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from provisioner.inventory.view import InventoryView

METHOD = "scram-sha-256"
_HEADER = "# Managed by provisioner (role postgres). Edits here are overwritten.\n"
_BASE = (("local", "all", "postgres", "", "peer"),
         ("local", "all", "all", "", "peer"),
         ("host", "all", "all", "127.0.0.1/32", METHOD),
         ("host", "all", "all", "::1/128", METHOD))


def remote_hosts(variables: Mapping[str, Any], inventory: InventoryView
                 ) -> list[tuple[str, str, str]]:
    """(group, host, address) of every host allowed in, in the inventory's order; an unknown
    group is a RoleError naming it (InventoryView.hosts)."""
    found = []
    for group in variables["postgres_remote_groups"]:
        for peer in inventory.hosts(str(group)):
            found.append((str(group), peer.name, peer.address))
    return found


def client_network(address: str) -> str:
    """An address as a pg_hba address field: an IP as a single-host network, a name as is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    return f"{ip}/{ip.max_prefixlen}"


def render_hba(remote: Sequence[tuple[str, str, str]], networks: Sequence[str] = ()) -> str:
    """The whole pg_hba.conf: the base lines, one line per remote host, then one per network
    (validated before contact: access_checks.check_remote_networks)."""
    rows = [(*line, "") for line in _BASE]
    rows += [("host", "all", "all", client_network(address), METHOD, f"# {host} ({group})")
             for group, host, address in remote]
    rows += [("host", "all", "all", str(ipaddress.ip_network(str(network))), METHOD,
              "# postgres_remote_networks") for network in networks]
    lines = [f"{kind:<7} {database:<8} {user:<9} {address:<40} {method} {note}".rstrip()
             if address else f"{kind:<7} {database:<8} {user:<9} {'':<40} {method}".rstrip()
             for kind, database, user, address, method, note in rows]
    return _HEADER + "\n".join(lines) + "\n"


def listen_addresses(variables: Mapping[str, Any], own_address: str) -> list[str]:
    """localhost alone without remote clients; else also the address facing them (the
    inventory's address of this host unless postgres_listen_address says another: with remote
    networks it must, access_checks.check_remote_networks). * alone, since it holds localhost:
    PostgreSQL binds the addresses in order, and after 127.0.0.1 the IPv4 wildcard's bind fails
    ("could not bind IPv4 address "0.0.0.0"") and no IPv4 client but localhost gets in."""
    if not variables["postgres_remote_groups"] and not variables["postgres_remote_networks"]:
        return ["localhost"]
    address = str(variables["postgres_listen_address"] or own_address)
    return ["*"] if address == "*" else ["localhost", address]
