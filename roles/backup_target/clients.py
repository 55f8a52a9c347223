"""The backup host's clients: the inventory's list of database hosts, and their key lines.

Kept apart from role.py so the parsing and the authorized_keys line are importable (and
unit-tested) like any module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.errors import RoleError
from provisioner.inventory.view import InventoryView

USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_CLIENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+"
                         r"( [^\s\"]+)?$")
ABSOLUTE_PATH = re.compile(r"^(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$")


@dataclass(frozen=True)
class Client:
    """A database host allowed to copy here."""

    host: str
    public_key: str


def read_clients(entries: Sequence[Any]) -> list[Client]:
    """backup_target_clients as Clients; RoleError naming the entry that is wrong."""
    clients: list[Client] = []
    for index, entry in enumerate(entries):
        where = f"backup_target_clients[{index}]"
        if not isinstance(entry, Mapping) or set(entry) != {"host", "public_key"}:
            raise RoleError(f"{where} must be a mapping of exactly host and public_key, e.g. "
                            "{host: db1, public_key: 'ssh-ed25519 AAAA...'}.")
        client = Client(str(entry["host"]), str(entry["public_key"]).strip())
        if not _CLIENT.fullmatch(client.host):
            raise RoleError(f"{where}.host is {client.host!r}; give the database host's "
                            "inventory name.")
        if not _PUBLIC_KEY.fullmatch(client.public_key):
            raise RoleError(f"{where}.public_key must be one OpenSSH public key line "
                            "('ssh-ed25519 AAAA... comment'), the public half of that host's "
                            "backups_offhost.private_key.")
        if any(known.host == client.host for known in clients):
            raise RoleError(f"{where}.host {client.host!r} is listed twice; one key per host.")
        clients.append(client)
    return clients


#: The forced command of every client key: rrsync, add-only (role.py's docstring says how).
RECEIVE = "/usr/local/sbin/provisioner-backup-target receive"
#: Where the backup host keeps what only it writes: per client, the ledger of arrivals (the
#: account's, outside the directory its key reaches), and the last pruning's result (root's).
STATE = "/var/lib/provisioner-backup-target"


def authorized_line(client: Client, address: str, variables: Mapping[str, Any]) -> str:
    """One client's key: from its address only, able only to add files to its own directory."""
    directory = f"{variables['backup_target_directory']}/{client.host}"
    ledger = f"{STATE}/{client.host}/ledger"
    return (f'restrict,from="{address}",command="{RECEIVE} {directory} {ledger}" '
            f"{client.public_key}\n")


def client_address(inventory: InventoryView, name: str) -> str:
    """A client's address, from the inventory."""
    peer = inventory.host(name)
    if peer is None:
        raise RoleError(f"backup_target_clients names host {name!r}, which is no host of the "
                        "inventory: use the database host's inventory name.")
    return peer.address
