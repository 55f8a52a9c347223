"""docker: Debian's Docker engine, hardened, whose published ports the firewall still guards.

Implements issue 18's docker role and controls.md §5 with §3.2 and §1.11 #1:

- **daemon.json** from the inventory (daemon.py): the CIS Docker items of §5.2. It is checked by
  the host's dockerd before it goes live where that dockerd can (``--validate``, Docker 23+),
  and only a change to it restarts Docker, once. live-restore keeps containers running then.
- **Published ports never bypass the firewall.** Docker's DNAT sends them through FORWARD, past
  ufw's INPUT rules; the ufw role, seeing this role on the host, loads the inventory's rules
  into DOCKER-USER too (roles/ufw/docker_user.py). Hence ufw must come before docker in the
  host's roles, so the chain is there before dockerd first starts. Ports publish on 127.0.0.1
  unless a container asks for more (``docker_default_bind_ip``), for nginx in front.
- **Forwarding agrees with hardening** (forwarding.py): on, in a drop-in of its own, refused
  before contact when the hardening role would switch it off, and refused on the host when a
  file ``sysctl --system`` reads later would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.view import InventoryView
from provisioner.ops.apt import ensure_packages
from provisioner.ops.files import ensure_directory, ensure_file
from provisioner.ops.systemd import ensure_service, restart_service
from provisioner.ops.users import ensure_group_member
from provisioner.step import Step
from roles.docker import daemon
from roles.docker.forwarding import check_hardening_agrees, forwarding_steps

UNIT = "docker.service"
RESTART = "docker:restart"
#: Restarted Docker answers on its socket again (containers restored by live-restore).
READY = f"systemctl is-active --quiet {UNIT} && docker info --format '{{{{.ID}}}}' >/dev/null"
HANDLERS = (restart_service(UNIT, RESTART, ready=READY, ready_timeout=60),)
_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def packages(host: Host) -> list[str]:
    """Debian 13 split the docker command off into docker-cli, which docker.io only
    recommends. Without the Recommends, AppArmor comes along outside containers: on a kernel
    with AppArmor on, dockerd without apparmor_parser cannot load the docker-default profile
    and no container starts."""
    names = list(host.vars["docker_packages"])
    facts = host.facts
    if facts.os_id == "debian" and facts.os_major >= 13 and "docker-cli" not in names:
        names.append("docker-cli")
    if not host.vars["docker_install_recommends"] and not facts.is_container:
        names.append("apparmor")
    return list(dict.fromkeys(names))


def steps(host: Host) -> Iterator[Step]:
    # Without docker.io's Recommends unless docker_install_recommends (controls §5.1; Lynis
    # HRDN-7220/7222: needrestart brings binutils, an assembler and linker).
    yield ensure_packages(host, packages(host),
                          recommends=host.vars["docker_install_recommends"])
    yield ensure_directory(host, "/etc/docker", mode=0o755)
    yield ensure_file(host, daemon.PATH, daemon.render_daemon_json(host.vars), mode=0o644,
                      validate=daemon.VALIDATE, notify=[RESTART],
                      label=f"file {daemon.PATH} [controls §5.2]")
    yield from forwarding_steps(host)
    yield ensure_service(host, UNIT, label=f"service {UNIT} enabled and running")
    for user in host.vars["docker_users"]:
        yield ensure_group_member(host, user, "docker",
                                  label=f"{user} in group docker (root-equivalent, CIS 1.1.2)")


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse, before contact, a daemon.json dockerd would refuse or that undoes §5.2, and a
    hardening role that would switch forwarding off under Docker."""
    daemon.check_daemon_settings(variables)
    check_hardening_agrees(variables)
    users = variables["docker_users"]
    for user in users:
        if not isinstance(user, str) or not _NAME.fullmatch(user):
            raise RoleError(f"docker_users entry {user!r} is not a login name.")


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """Refuse ufw listed after docker: dockerd would start, and publish ports, before the
    DOCKER-USER rules exist."""
    peer = inventory.host(variables.get("host_name", ""))
    if peer is None or "ufw" not in peer.roles or "docker" not in peer.roles:
        return
    if peer.roles.index("ufw") > peer.roles.index("docker"):
        raise RoleError(f"host {peer.name} lists ufw after docker ({', '.join(peer.roles)}): "
                        "Docker would start and publish ports before the firewall's "
                        "DOCKER-USER rules exist. List ufw before docker.")
