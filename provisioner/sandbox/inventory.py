"""Writes the project inventory that points the rest of the project at the sandbox machines.

The text is rendered by hand rather than with yaml.dump so that it keeps its header comment and
reads like the hand-written inventories next to it; the strict inventory loader validates the keys.
"""

import json
from collections.abc import Sequence
from pathlib import Path

from provisioner.local_files import write_atomically
from provisioner.sandbox.machine import Machine
from provisioner.sandbox.paths import KEY_PATH, KNOWN_HOSTS_PATH
from provisioner.sandbox.ssh import read_public_key

HEADER = (
    "# Written by `invoke sandbox.up`: local throwaway sandbox machines. "
    "Regenerated on every up; do not edit.\n"
)
ADMIN_USER = "admin"
BASE_ROLES = ("hardening", "ufw", "fail2ban")


def render_inventory(machines: Sequence[Machine], public_key: str) -> str:
    """The inventory YAML: machines in group `base`, reached as admin with the sandbox key."""
    lines = [
        "defaults:",
        f"  user: {ADMIN_USER}",
        "  port: 22",
        "  ssh:",
        f"    identity_file: {KEY_PATH}",
        f"    known_hosts: {KNOWN_HOSTS_PATH}",
        "  vars:",
        f"    hardening_admin_user: {ADMIN_USER}",
        "    hardening_admin_authorized_keys:",
        f"      - {json.dumps(public_key)}",
        "groups:",
        "  base:",
        f"    roles: [{', '.join(BASE_ROLES)}]",
        "hosts:" if machines else "hosts: {}",
    ]
    for machine in machines:
        lines += [f"  {machine.name}:", f"    address: {machine.address}", "    groups: [base]"]
    return HEADER + "".join(line + "\n" for line in lines)


def write_inventory(
    machines: Sequence[Machine], path: str | Path, public_key: str | None = None
) -> None:
    """Write the sandbox inventory to path atomically (public_key defaults to the sandbox key's)."""
    key = public_key if public_key is not None else read_public_key()
    write_atomically(Path(path), render_inventory(machines, key))
