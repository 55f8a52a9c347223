"""UFW: the rule set equal to the inventory's (extra rules removed), and the firewall enabled.

Rules are compared as the canonical commands ``ufw show added`` prints, so a converged firewall
reads as one probe. New rules are added before stale ones are deleted, so the SSH rule is never
briefly missing; enabling is a Safeguard step, proven by a new SSH connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.commands import join
from provisioner.host import Host
from provisioner.step import Plan, Probed, ProbeUnreadable, Safeguard, Step

ACTIONS = ("allow", "limit", "deny", "reject")
PROTOCOLS = ("tcp", "udp", "any")


@dataclass(frozen=True, order=True)
class Rule:
    """One inbound rule: ``action`` traffic to ``port``/``proto`` from ``source``."""

    port: str
    proto: str = "tcp"
    source: str = "any"
    action: str = "allow"

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"ufw action {self.action!r} is not one of {', '.join(ACTIONS)}")
        if self.proto not in PROTOCOLS:
            raise ValueError(f"ufw proto {self.proto!r} is not one of {', '.join(PROTOCOLS)}")
        if self.source != "any":
            ipaddress.ip_network(self.source, strict=False)
        low, _, high = str(self.port).partition(":")
        if not low.isdigit() or (high and not high.isdigit()) or not 0 < int(low) < 65536:
            raise ValueError(f"ufw port {self.port!r} is not a port or a range like 6000:6010")

    def arguments(self) -> list[str]:
        """The rule as ufw's own canonical arguments (what ``ufw show added`` prints)."""
        if self.source == "any":
            port = self.port if self.proto == "any" else f"{self.port}/{self.proto}"
            return [self.action, port]
        args = [self.action, "from", self.source, "to", "any", "port", str(self.port)]
        return args if self.proto == "any" else [*args, "proto", self.proto]

    def canonical(self) -> str:
        return "ufw " + " ".join(self.arguments())


def parse_added_rules(output: str) -> set[str]:
    """The user rules from ``ufw show added`` as canonical command strings."""
    return {line.strip() for line in output.splitlines() if line.startswith("ufw ")}


def plan_rules(current: set[str], desired: Sequence[Rule]) -> Plan:
    """Commands that make the user rules exactly the desired set; additions first.

    New rules are appended in the inventory's order (ufw matches the first rule that fits, so an
    unlimited allow for the admin network must come before the rate limit). Rules already present
    keep their place.
    """
    wanted = {rule.canonical(): rule for rule in desired}
    to_add = [rule for text, rule in wanted.items() if text not in current]
    to_delete = sorted(current - set(wanted))
    if not to_add and not to_delete:
        return Plan(f"{len(wanted)} rules as desired")
    commands = [join("ufw", *rule.arguments()) for rule in to_add]
    commands += [join("ufw", "delete", *text.split()[1:]) for text in to_delete]
    reasons = [f"add {rule.canonical()[4:]}" for rule in to_add]
    reasons += [f"remove {text[4:]}" for text in to_delete]
    return Plan("; ".join(reasons), action=" && ".join(commands))


def ensure_ufw_rules(host: Host, rules: Sequence[Rule], *, label: str = "") -> Step:
    """UFW's user rules equal to ``rules``: missing ones added, unlisted ones removed."""
    def decide(probed: Probed) -> Plan:
        if probed.exit_code != 0 or "Added user rules" not in probed.output:
            raise ProbeUnreadable("ufw is not installed or cannot list its rules")
        return plan_rules(parse_added_rules(probed.output), rules)

    return Step(label or "ufw rules", "ufw show added", decide)


def ensure_ufw_enabled(host: Host, *, safeguard: Safeguard, label: str = "") -> Step:
    """UFW active and enabled at boot, proven by a new SSH connection before the run trusts it."""
    def decide(probed: Probed) -> Plan:
        if "Status:" not in probed.output:
            raise ProbeUnreadable("ufw is not installed")
        if "Status: active" in probed.output:
            return Plan("active")
        return Plan("inactive -> active", action="ufw --force enable")

    return Step(label or "ufw enabled", "ufw status", decide, safeguard=safeguard)
