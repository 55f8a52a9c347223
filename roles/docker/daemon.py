"""daemon.json: the hardened settings of controls.md §5.2 from the inventory, checked before
contact, and checked again by the host's own dockerd before the file goes live."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from provisioner.errors import RoleError

PATH = "/etc/docker/daemon.json"
#: Variable -> the daemon.json key it sets.
SETTINGS = {
    "docker_icc": "icc",
    "docker_live_restore": "live-restore",
    "docker_no_new_privileges": "no-new-privileges",
    "docker_userland_proxy": "userland-proxy",
    "docker_log_level": "log-level",
    "docker_default_bind_ip": "ip",
}
MANAGED_KEYS = {*SETTINGS.values(), "log-driver", "log-opts"}
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
_SIZE = re.compile(r"^[1-9][0-9]*[kmg]$")

#: dockerd checks a candidate file itself from Docker 23 (``--validate``); Debian 12's 20.10
#: cannot, and gets only the file this role rendered with json.dumps from checked values.
VALIDATE = ("sh -c 'if dockerd --help 2>/dev/null | grep -q -e --validate; then "
            "dockerd --validate --config-file \"$1\" >/dev/null; fi' validate %s")


def daemon_options(variables: Mapping[str, Any]) -> dict[str, Any]:
    """daemon.json's content; log-opts values are strings, as dockerd demands."""
    options: dict[str, Any] = {key: variables[name] for name, key in SETTINGS.items()}
    options["log-driver"] = "json-file"
    options["log-opts"] = {"max-size": variables["docker_log_max_size"],
                           "max-file": str(variables["docker_log_max_file"])}
    options.update(variables["docker_daemon_extra_options"])
    return options


def render_daemon_json(variables: Mapping[str, Any]) -> str:
    return json.dumps(daemon_options(variables), indent=2, sort_keys=True) + "\n"


def check_daemon_settings(variables: Mapping[str, Any]) -> None:
    """RoleError naming the field for a value dockerd would refuse or that undoes §5.2."""
    for name in ("docker_icc", "docker_live_restore", "docker_no_new_privileges",
                 "docker_userland_proxy"):
        if not isinstance(variables[name], bool):
            raise RoleError(f"{name} is {variables[name]!r}; it is true or false.")
    if variables["docker_log_level"] not in LOG_LEVELS:
        raise RoleError(f"docker_log_level is {variables['docker_log_level']!r}; dockerd takes "
                        f"one of {', '.join(LOG_LEVELS)} (CIS 2.3 wants info).")
    if not _SIZE.fullmatch(str(variables["docker_log_max_size"])):
        raise RoleError(f"docker_log_max_size is {variables['docker_log_max_size']!r}; it is a "
                        "size such as 10m (a whole number and k, m or g).")
    count = variables["docker_log_max_file"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise RoleError(f"docker_log_max_file is {count!r}; it is how many log files are kept "
                        "per container, a whole number of at least 1.")
    try:
        ipaddress.ip_address(str(variables["docker_default_bind_ip"]))
    except ValueError:
        raise RoleError(f"docker_default_bind_ip is {variables['docker_default_bind_ip']!r}; "
                        "it is an address such as 127.0.0.1.") from None
    check_extra_options(variables["docker_daemon_extra_options"])


def check_extra_options(extra: Mapping[str, Any]) -> None:
    managed = sorted(MANAGED_KEYS & set(extra))
    if managed:
        raise RoleError(f"docker_daemon_extra_options sets {', '.join(managed)}, which the role "
                        "sets from its own variables (see roles/docker/defaults.yml): set those.")
    for key in ("iptables", "ip-forward"):
        if key in extra and extra[key] is not True:
            raise RoleError(f"docker_daemon_extra_options sets {key!r}: {extra[key]!r}; it is "
                            "true or left out. Without it "
                            "published ports escape the firewall's DOCKER-USER rules or "
                            "containers lose their network (CIS 2.4); leave it out.")
    if extra.get("insecure-registries"):
        raise RoleError("docker_daemon_extra_options sets insecure-registries: images would "
                        "come over unauthenticated connections (CIS 2.5). Give the registry "
                        "a certificate instead.")
    hosts = extra.get("hosts") or []
    if isinstance(hosts, str) or not isinstance(hosts, Sequence) or \
            not all(isinstance(host, str) and host.startswith(("unix://", "fd://"))
                    for host in hosts):
        raise RoleError(f"docker_daemon_extra_options.hosts is {hosts!r}; it is a list of "
                        "unix:// sockets: a TCP socket makes anyone who reaches it root on "
                        "this host (CIS 2.7). Keep the unix socket only.")
