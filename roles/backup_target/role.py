"""backup_target: the backup host that database hosts copy their archives to (controls.md §10).

One account (``backup_target_user``) whose authorized_keys accepts each client's key only from
that client's inventory address (``from=``), with every forwarding, pty and rc file off
(``restrict``), and only to run rrsync write-only in the client's own directory: a database host
can add and trim its own archives and can neither read them back, nor reach another client's,
nor get a shell. The home and its ``.ssh`` belong to root, so no client can change the keys.
With age on the database host's side, what lands here is ciphertext only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.view import InventoryView
from provisioner.ops.apt import ensure_packages
from provisioner.ops.files import ensure_directory, ensure_file
from provisioner.ops.users import ensure_user
from provisioner.step import Step
from roles.backup_target.clients import (
    ABSOLUTE_PATH,
    USER_NAME,
    authorized_line,
    client_address,
    read_clients,
)


def steps(host: Host) -> Iterator[Step]:
    user, home = host.vars["backup_target_user"], host.vars["backup_target_directory"]
    clients = read_clients(host.vars["backup_target_clients"])
    yield ensure_packages(host, host.vars["backup_target_packages"])
    yield ensure_user(host, user, shell="/bin/sh", home=home, groups=account_groups(host.vars))
    yield ensure_directory(host, home, mode=0o755)
    yield ensure_directory(host, f"{home}/.ssh", mode=0o755)
    lines = [authorized_line(client, client_address(host.inventory, client.host), host.vars)
             for client in clients]
    yield ensure_file(host, f"{home}/.ssh/authorized_keys", "".join(lines), mode=0o644,
                      label=f"file {home}/.ssh/authorized_keys [controls §10]")
    for client in clients:
        yield ensure_directory(host, f"{home}/{client.host}", owner=user, group=user,
                               mode=0o700)


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse a malformed client list, account or directory before any contact."""
    if not USER_NAME.match(str(variables["backup_target_user"])):
        raise RoleError(f"backup_target_user is {variables['backup_target_user']!r}; it must be "
                        "a user name (lower-case letters, digits, '_' and '-').")
    for name in ("backup_target_directory", "backup_target_rrsync"):
        if not ABSOLUTE_PATH.match(str(variables[name])):
            raise RoleError(f"{name} is {variables[name]!r}; it must be an absolute path of "
                            "letters, digits, '_', '.' and '-'.")
    read_clients(variables["backup_target_clients"])


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """Refuse a client the inventory does not have, before any contact."""
    for client in read_clients(variables["backup_target_clients"]):
        client_address(inventory, client.host)


def account_groups(variables: Mapping[str, Any]) -> list[str]:
    """The extra groups, and the hardening role's SSH group when that role is here too (its
    AllowGroups would refuse the account otherwise)."""
    groups = [str(group) for group in variables["backup_target_groups"]]
    ssh_group = variables.get("hardening_ssh_allow_group")
    if ssh_group and ssh_group not in groups:
        groups.append(str(ssh_group))
    return groups


