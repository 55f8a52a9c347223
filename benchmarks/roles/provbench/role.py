"""provbench: the benchmark's workload W, written as a role like any product role.

Packages, a directory of ten templated files (a changed one reloads nginx), sysctls in one
drop-in, nginx and cron running, a deploy user with one key, a ufw firewall and a cron.d file.
pyinfra and Ansible do the same work in benchmarks/peers/; the floor does it in plain shell.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.ops.apt import ensure_packages
from provisioner.ops.cron import ensure_cron_file
from provisioner.ops.files import ensure_directory, ensure_template
from provisioner.ops.sysctl import ensure_sysctl
from provisioner.ops.systemd import ensure_service, reload_service
from provisioner.ops.ufw import (
    DEFAULT_POLICIES,
    Rule,
    ensure_ufw_default,
    ensure_ufw_enabled,
    ensure_ufw_rules,
)
from provisioner.ops.users import ensure_authorized_keys, ensure_user
from provisioner.step import Safeguard, Step

HANDLERS = (reload_service("nginx.service"),)

#: The file template gets each file's index from steps(), not from the inventory.
TEMPLATE_ARGUMENTS = {"etc/provbench/file.conf.j2": ("provbench_file_index",)}


def steps(host: Host) -> Iterator[Step]:
    variables = host.vars
    yield ensure_packages(host, variables["provbench_packages"],
                          cache_max_age=int(variables["provbench_apt_cache_max_age"]))
    directory = variables["provbench_directory"]
    yield ensure_directory(host, directory, mode=0o755)
    for index in range(int(variables["provbench_file_count"])):
        yield ensure_template(host, f"{directory}/file{index}.conf", "etc/provbench/file.conf.j2",
                              mode=0o644, notify=["nginx:reload"], provbench_file_index=index)
    yield from ensure_sysctl(host, variables["provbench_sysctl_file"],
                             variables["provbench_sysctls"], header=variables["provbench_header"])
    for unit in variables["provbench_services"]:
        yield ensure_service(host, unit)
    user = variables["provbench_user"]
    yield ensure_user(host, user, shell=variables["provbench_user_shell"])
    yield from ensure_authorized_keys(host, user, [variables["provbench_authorized_key"]])
    yield ensure_ufw_default(host, variables["provbench_ufw_default_incoming"], "incoming")
    rules = [Rule(str(port), "tcp") for port in variables["provbench_ufw_tcp_ports"]]
    yield ensure_ufw_rules(host, rules)
    safeguard = Safeguard("ufw", undo="ufw --force disable",
                          timeout=int(variables["provbench_ufw_safeguard_timeout"]))
    yield ensure_ufw_enabled(host, safeguard=safeguard)
    yield ensure_cron_file(host, variables["provbench_cron_name"],
                           [variables["provbench_cron_job"]], header=variables["provbench_header"])


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse an unknown policy or a malformed port before any host is contacted."""
    policy = variables["provbench_ufw_default_incoming"]
    if policy not in DEFAULT_POLICIES:
        raise RoleError(f"provbench_ufw_default_incoming is {policy!r}; use one of "
                        f"{', '.join(DEFAULT_POLICIES)}.")
    for port in variables["provbench_ufw_tcp_ports"]:
        try:
            Rule(str(port), "tcp")
        except ValueError as error:
            raise RoleError(f"provbench_ufw_tcp_ports: {error}.") from None
