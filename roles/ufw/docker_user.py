"""DOCKER-USER: the inventory's firewall rules applied to the ports containers publish.

Docker routes a published port with DNAT in the nat table, so its traffic crosses FORWARD and
never meets ufw's INPUT rules (controls.md §3.2). Docker jumps to DOCKER-USER first in FORWARD,
and keeps what that chain holds; ufw loads it from /etc/ufw/after.rules on every start and
reload, so the two stay in step. Each inventory rule matches the port the client asked for (the
original destination, before DNAT), in the inventory's order, and whatever no rule allows is
dropped as ufw's default incoming policy drops it. A rule matches DNATed connections only: a
client that routes to a container's own address (172.17.0.2:80) asked for no published port,
and with the container port alone matching, an allowed host port 80 opened every container's
port 80 to the link (a breaker reached a loopback-published container that way).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from provisioner.ops.ufw import Rule

#: What ufw's default incoming policy becomes for a new connection to a published port.
DEFAULT_TARGETS = {"deny": "DROP", "reject": "REJECT", "allow": "RETURN"}
#: allow and limit let the connection on to Docker's own chains (RETURN); ufw's rate limit has
#: no counterpart here, so a limited port is allowed without it.
RULE_TARGETS = {"allow": "RETURN", "limit": "RETURN", "deny": "DROP", "reject": "REJECT"}

#: Replies, the containers' own traffic (out, and between containers, where Docker's icc setting
#: decides) and ports published on loopback: a forwarded packet that asked for 127.0.0.0/8 came
#: from another machine on the link (moby#45610, Docker before 28), never from this host.
PREAMBLE = (
    "-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
    "-A DOCKER-USER -m conntrack --ctstate INVALID -j DROP",
    "-A DOCKER-USER -i docker0 -j RETURN",
    "-A DOCKER-USER -i br-+ -j RETURN",
    "-A DOCKER-USER -m conntrack --ctorigdst 127.0.0.0/8 -j DROP",
)


def docker_user_lines(rules: Sequence[Rule], default_incoming: str) -> list[str]:
    """iptables-restore lines of the DOCKER-USER chain for these ufw rules (IPv4: Docker's
    IPv6 is off unless the daemon enables it, and then it publishes nothing over IPv6)."""
    lines = [":DOCKER-USER - [0:0]", *PREAMBLE]
    for rule in rules:
        lines += rule_lines(rule)
    target = DEFAULT_TARGETS[default_incoming]
    if target != "RETURN":
        lines.append(f"-A DOCKER-USER -m conntrack --ctstate NEW -j {target}")
    lines.append("-A DOCKER-USER -j RETURN")
    return lines


def rule_lines(rule: Rule) -> list[str]:
    """One line per protocol (``any`` is tcp and udp: only they have ports); none for a rule
    from an IPv6 source."""
    if rule.source != "any" and ipaddress.ip_network(rule.source).version == 6:
        return []
    source = "" if rule.source == "any" else f" -s {rule.source}"
    protocols = ("tcp", "udp") if rule.proto == "any" else (rule.proto,)
    return [f"-A DOCKER-USER -p {proto}{source} -m conntrack --ctstate NEW "
            f"--ctorigdstport {rule.port} --ctdir ORIGINAL -m conntrack --ctstate DNAT "
            f"-j {RULE_TARGETS[rule.action]}"
            for proto in protocols]
