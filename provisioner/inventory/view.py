"""The inventory as a role may read it: which hosts are in a group, their addresses and roles.

A database role opens 5432 only to the API hosts and writes pg_hba from the same list, so it must
see the other hosts of the inventory, not only its own; a backup role checks that the host it
copies to has the backup_target role and lists it as a client. It sees names, addresses, roles
and the variables set in the inventory file, never a secret: another host's credentials are
none of its business (every value holding one is left out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import RoleError
from provisioner.inventory.hosts import HostConfig, Inventory
from provisioner.secrets.values import holds_secret


@dataclass(frozen=True)
class PeerHost:
    """Another host of the inventory, as a role may know it."""

    name: str
    address: str
    #: Its roles, its groups' included, in the inventory's order.
    roles: tuple[str, ...] = ()
    #: Its inventory variables (role defaults not merged), without any value holding a secret.
    vars: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InventoryView:
    """Read-only: group -> its hosts, in the inventory's order; every host of the file, whatever
    this run selected."""

    groups: Mapping[str, tuple[PeerHost, ...]] = field(default_factory=dict)
    #: Every host by name, in a group or not (a backup host names its clients).
    by_name: Mapping[str, PeerHost] = field(default_factory=dict)

    @classmethod
    def of(cls, inventory: Inventory) -> InventoryView:
        return cls.of_hosts(inventory.hosts.values(), inventory.groups)

    @classmethod
    def of_hosts(cls, hosts: Iterable[HostConfig], group_names: Iterable[str] = ()
                 ) -> InventoryView:
        members: dict[str, list[PeerHost]] = {name: [] for name in group_names}
        by_name = {}
        for config in hosts:
            public = {key: value for key, value in config.vars.items()
                      if not holds_secret(value)}
            peer = by_name[config.name] = PeerHost(config.name, config.address, config.roles,
                                                   public)
            for group in config.groups:
                members.setdefault(group, []).append(peer)
        return cls({name: tuple(peers) for name, peers in members.items()}, by_name)

    def host(self, name: str) -> PeerHost | None:
        """The inventory's host of this name, or None when it has none."""
        return self.by_name.get(name)

    def hosts(self, group: str) -> tuple[PeerHost, ...]:
        """The hosts of ``group``; RoleError naming the groups there are when it is unknown (a
        typo in a role variable must not open a port to nobody, silently)."""
        if group not in self.groups:
            known = ", ".join(sorted(self.groups)) or "none"
            raise RoleError(f"group {group!r} is not a group of the inventory (groups: {known}).")
        return self.groups[group]

    def addresses(self, *groups: str) -> tuple[str, ...]:
        """The addresses of every host in these groups, each once, in the inventory's order."""
        found = [peer.address for group in groups for peer in self.hosts(group)]
        return tuple(dict.fromkeys(found))
