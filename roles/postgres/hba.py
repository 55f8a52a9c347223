"""pg_hba.conf and listen_addresses from the inventory: peer locally, SCRAM over TCP, remote groups.

controls.md §6.2's recommended base (the "DO NOT DISABLE" postgres peer line first, local peer,
scram-sha-256 on 127.0.0.1 and ::1), then one scram-sha-256 line per address of each host of
the groups named in postgres_remote_groups, and nothing else: a host outside those groups is
refused by PostgreSQL itself even when a firewall rule lets it through.
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


def render_hba(remote: Sequence[tuple[str, str, str]]) -> str:
    """The whole pg_hba.conf: the base lines, then one line per remote host."""
    rows = [(*line, "") for line in _BASE]
    rows += [("host", "all", "all", client_network(address), METHOD, f"# {host} ({group})")
             for group, host, address in remote]
    lines = [f"{kind:<7} {database:<8} {user:<9} {address:<40} {method} {note}".rstrip()
             if address else f"{kind:<7} {database:<8} {user:<9} {'':<40} {method}".rstrip()
             for kind, database, user, address, method, note in rows]
    return _HEADER + "\n".join(lines) + "\n"


def listen_addresses(variables: Mapping[str, Any], own_address: str) -> list[str]:
    """localhost alone without remote groups; else also the address facing them (the
    inventory's address of this host unless postgres_listen_address says another)."""
    if not variables["postgres_remote_groups"]:
        return ["localhost"]
    return ["localhost", str(variables["postgres_listen_address"] or own_address)]
