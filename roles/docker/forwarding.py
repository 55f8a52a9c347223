"""IPv4 forwarding: on for Docker, in a sysctl drop-in of its own, and never switched off again by
a file that ``sysctl --system`` (or the next boot) reads after it (controls.md §1.11 #1, §13).

Docker enables forwarding when it starts, but a later ``sysctl --system`` applying a file that
says 0 (dev-sec's default) cuts every container off without a word. The hardening role agrees
through its variable (checked before contact, role.py); any other file is found on the host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.ops.sysctl import ensure_sysctl
from provisioner.step import Plan, Probed, ProbeUnreadable, Refused, Step

SYSCTL_FILE = "/etc/sysctl.d/95-provisioner-docker.conf"
KEY = "net.ipv4.ip_forward"
#: Where ``sysctl --system`` reads files, in its order of precedence: a name in an earlier
#: directory hides the same name in a later one; the files then apply sorted by name, and
#: /etc/sysctl.conf last.
DIRECTORIES = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d",
               "/lib/sysctl.d")
SYSCTL_CONF = "/etc/sysctl.conf"
_SETTING = re.compile(r"^\s*-?\s*net[./]ipv4[./]ip_forward\s*=\s*(\S*)")
PROBE = ("grep -Hs -E '^[[:space:]]*-?[[:space:]]*net[./]ipv4[./]ip_forward[[:space:]]*=' "
         + " ".join(f"{directory}/*.conf" for directory in DIRECTORIES) + f" {SYSCTL_CONF}"
         + "; true")


def forwarding_steps(host: Host) -> Iterator[Step]:
    """The drop-in and the running value, then the proof that nothing read later undoes it."""
    yield from ensure_sysctl(host, SYSCTL_FILE, {KEY: 1},
                             header="Managed by provisioner (docker role): containers need "
                                    "forwarding (controls.md §1.11)",
                             label=f"sysctl file {SYSCTL_FILE} [controls §1.11]")
    yield Step(f"{KEY} stays 1 after sysctl --system [controls §13]", PROBE, decide_lasting)


def decide_lasting(probed: Probed) -> Plan:
    path, value = last_word(probed.output.splitlines())
    if path is None:
        raise ProbeUnreadable(f"no sysctl file sets {KEY} yet")
    if value != "1":
        raise Refused(f"{path} sets {KEY} = {value} and sysctl --system reads it after "
                      f"{SYSCTL_FILE}: the next boot or sysctl --system would switch forwarding "
                      "off and cut the containers off. Remove that line (or set it to 1).")
    return Plan(f"1 (last set by {path})")


def last_word(lines: Sequence[str]) -> tuple[str | None, str]:
    """The file whose setting ``sysctl --system`` applies last, and that value; pure."""
    settings: dict[str, str] = {}
    for line in lines:
        path, _, text = line.partition(":")
        match = _SETTING.match(text)
        if match:
            settings[path] = match.group(1)
    effective: dict[str, str] = {}
    for directory in reversed(DIRECTORIES):  # an earlier directory hides the same name
        for path in settings:
            if path.rpartition("/")[0] == directory:
                effective[path.rpartition("/")[2]] = path
    order = [effective[name] for name in sorted(effective)]
    order += [SYSCTL_CONF] if SYSCTL_CONF in settings else []
    if not order:
        return None, ""
    return order[-1], settings[order[-1]]


def check_hardening_agrees(variables: Mapping[str, Any]) -> None:
    """With the hardening role on the host, its sysctl file must say 1 as well, or each role
    would set the running value back every run (and the later file would win at boot)."""
    if "hardening_ip_forward" not in variables or not variables["hardening_sysctl_enabled"]:
        return
    overrides = variables["hardening_sysctl_overrides"]
    if KEY in overrides and str(overrides[KEY]) != "1":
        raise RoleError(f"hardening_sysctl_overrides sets {KEY} to {overrides[KEY]!r}, and the "
                        "docker role on this host needs 1: containers lose their network when "
                        "it is 0. Remove that override and set hardening_ip_forward: true.")
    if KEY not in overrides and not variables["hardening_ip_forward"]:
        raise RoleError(f"hardening_ip_forward is false, so the hardening role would set {KEY} "
                        "to 0 under the docker role, which needs 1 (containers lose their "
                        "network, and each role would set it back every run). Set "
                        "hardening_ip_forward: true for this host (controls.md §1.11 #1, §13; "
                        "Lynis' KRNL-6000 loses its points on a Docker host).")
