"""A Host for unit tests: a Debian 12 VM that is never contacted."""

from __future__ import annotations

from pathlib import Path

from provisioner.facts import Facts
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig, SshSettings

DEBIAN12_FACTS = Facts("debian", "12", "bookworm", (), 2, 2 << 30, (), "systemd", "kvm", "web1",
                       "6.1.0-28-amd64", "amd64", False, (9, 2))


def make_host(*, show_diff: bool = False, check: bool = False) -> Host:
    """web1 at 192.0.2.10, logged in as root, facts of a Debian 12 VM with OpenSSH 9.2."""
    ssh = SshSettings(identity_file=None, known_hosts=Path("/dev/null"), trust_on_first_use=False,
                      jump_host=None, connect_timeout=10.0, command_timeout=60.0,
                      sudo_password=None)
    config = HostConfig("web1", "192.0.2.10", 22, "root", (), ("ufw",), {}, ssh)
    return Host(config, {}, gather_facts=lambda: DEBIAN12_FACTS, show_diff=show_diff,
                check=check)
