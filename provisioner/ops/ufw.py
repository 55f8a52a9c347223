"""UFW: the rule set equal to the inventory's (extra rules removed), and the firewall enabled.

Rules are compared as the canonical commands ``ufw show added`` prints, so a converged firewall
reads as one probe. Rule order is kept (ufw uses the first rule that matches). Changing rules and
enabling the firewall are both Safeguard steps: a new SSH connection must work afterwards or the
previous rules (or the disabled firewall) come back.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.commands import join, quote
from provisioner.facts import parse_shell_assignments
from provisioner.host import Host
from provisioner.ops.backups import safeguard_save
from provisioner.step import Plan, Probed, ProbeUnreadable, Safeguard, Step

ACTIONS = ("allow", "limit", "deny", "reject")
RULE_FILES = ("/etc/ufw/user.rules", "/etc/ufw/user6.rules")
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
            object.__setattr__(self, "source", normalized_source(self.source))
        ends = str(self.port).split(":")
        if len(ends) > 2 or not all(end.isdigit() and 0 < int(end) < 65536 for end in ends):
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


def group_rules(port: str, proto: str, action: str, addresses: Sequence[str]) -> list[Rule]:
    """One rule per address of an inventory group's hosts (a ``from_group`` rule): ufw takes
    one source per rule, and the group's addresses are what pg_hba lets in, too."""
    return [Rule(port, proto, address, action) for address in addresses]


def normalized_source(source: str) -> str:
    """The source as ufw stores it: host bits cleared, a single address without its /32 or /128.

    Comparing the inventory's spelling with ufw's would otherwise rebuild the rule every run.
    """
    network = ipaddress.ip_network(source, strict=False)
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def rules_probe(directory: str = "/etc/ufw") -> str:
    """Reads ufw's rule files instead of running ufw (a Python program, ~100 ms per call on a
    small host): one awk prints every ``### tuple ###`` line, tagged with its address family.

    Only when a rule has a shape the tuple reader does not model (interface, app profile,
    destination, comment...) does awk exit 0 and the probe fall back to ``ufw show added``.
    """
    rules, rules6 = quote(f"{directory}/user.rules"), quote(f"{directory}/user6.rules")
    return (
        f"command -v ufw >/dev/null && [ -f {rules} ] || exit 0; echo ufw-installed; "
        f"set -- {rules}; if [ -f {rules6} ]; then set -- \"$@\" {rules6}; fi; "
        "if awk 'FNR == 1 { family = FILENAME ~ /user6[.]rules$/ ? \"tuple6\" : \"tuple4\" } "
        "sub(/^### tuple ### /, \"\") { print family \" \" $0; "
        "if (NF != 7 || $7 != \"in\" || $5 != \"any\" || $3 == \"any\" || "
        "($4 != \"0.0.0.0/0\" && $4 != \"::/0\")) odd = 1 } END { exit !odd }' \"$@\"; "
        "then ufw show added; fi"
    )


RULES_PROBE = rules_probe()
STATUS_PROBE = (
    "command -v ufw >/dev/null || exit 0; "
    "if grep -qx 'ENABLED=yes' /etc/ufw/ufw.conf && iptables -n -L ufw-user-input "
    ">/dev/null 2>&1; then echo active; else echo inactive; fi"
)
_ANY = ("0.0.0.0/0", "::/0")


def rules_from_tuples(lines: Sequence[str]) -> list[str]:
    """Canonical ``ufw ...`` commands from the ``### tuple ###`` lines of ufw's rule files.

    A rule for every address family sits in both files; it is listed once, in IPv4 order,
    followed by the IPv6-only rules, as ``ufw show added`` does.
    """
    commands: list[str] = []
    for line in lines:
        _, action, proto, port, _, _, source, _ = line.split()
        port_text = port if proto == "any" else f"{port}/{proto}"
        if source in _ANY:
            command = f"ufw {action} {port_text}"
        else:
            command = f"ufw {action} from {source} to any port {port}"
            command += "" if proto == "any" else f" proto {proto}"
        if command not in commands:
            commands.append(command)
    return commands


def read_rules(output: str) -> list[str]:
    """The current user rules from RULES_PROBE output; ProbeUnreadable without ufw."""
    lines = output.splitlines()
    if "ufw-installed" not in lines:
        raise ProbeUnreadable("ufw is not installed or cannot list its rules")
    shown = parse_added_rules(output)
    if shown or "Added user rules" in output:
        return shown
    return rules_from_tuples([line for line in lines if line.startswith("tuple")])


def parse_added_rules(output: str) -> list[str]:
    """The user rules from ``ufw show added`` as canonical command strings, in rule order."""
    return [line.strip() for line in output.splitlines() if line.startswith("ufw ")]


def plan_rules(current: Sequence[str], desired: Sequence[Rule], save: str = "") -> Plan:
    """Commands that make the user rules exactly the desired list, in the desired order.

    Order matters: ufw applies the first rule that matches, so an unlimited allow for the admin
    network must precede the SSH rate limit. The rules that already form the start of the desired
    list stay; everything after that is deleted and the rest appended in order. Established
    connections (the provisioning session) are untouched by the brief rebuild, and the step is
    under a safeguard that restores the previous rules if a new connection fails afterwards.
    """
    wanted = [rule.canonical() for rule in desired]
    if list(current) == wanted:
        return Plan(f"{len(wanted)} rules as desired")
    keep = 0
    while keep < min(len(current), len(wanted)) and current[keep] == wanted[keep]:
        keep += 1
    to_delete, to_add = current[keep:], desired[keep:]
    commands = [join("ufw", "delete", *shlex.split(text)[1:]) for text in to_delete]
    commands += [join("ufw", *rule.arguments()) for rule in to_add]
    reasons = [f"add {rule.canonical()[4:]}" for rule in to_add
               if rule.canonical() not in current]
    reasons += [f"remove {text[4:]}" for text in to_delete if text not in wanted]
    if not reasons:
        reasons = ["reorder rules"]
    return Plan("; ".join(reasons), action=save + " && ".join(commands))


def ensure_ufw_rules(host: Host, rules: Sequence[Rule], *, safeguard: Safeguard | None = None,
                     label: str = "") -> Step:
    """UFW's user rules equal to ``rules`` in this order; unlisted ones removed."""
    save = "".join(safeguard_save(safeguard.name, path) for path in RULE_FILES) \
        if safeguard else ""

    def decide(probed: Probed) -> Plan:
        return plan_rules(read_rules(probed.output), rules, save)

    return Step(label or "ufw rules", RULES_PROBE, decide, safeguard=safeguard)


def ensure_ufw_enabled(host: Host, *, safeguard: Safeguard, label: str = "") -> Step:
    """UFW active and enabled at boot, proven by a new SSH connection before the run trusts it."""
    def decide(probed: Probed) -> Plan:
        state = probed.output.strip()
        if state not in ("active", "inactive"):
            raise ProbeUnreadable("ufw is not installed")
        if state == "active":
            return Plan("active")
        return Plan("inactive -> active", action="ufw --force enable")

    return Step(label or "ufw enabled", STATUS_PROBE, decide, safeguard=safeguard)


#: ufw's words for a default policy, and what /etc/default/ufw records for each.
DEFAULT_POLICIES = {"deny": "DROP", "reject": "REJECT", "allow": "ACCEPT"}
#: The directions ``ufw default`` takes, and the /etc/default/ufw key of each.
DEFAULT_KEYS = {"incoming": "DEFAULT_INPUT_POLICY", "outgoing": "DEFAULT_OUTPUT_POLICY",
                "routed": "DEFAULT_FORWARD_POLICY"}


def plan_ufw_default(recorded: str | None, policy: str, direction: str) -> Plan:
    """Whether ``ufw default POLICY DIRECTION`` must run, given what /etc/default/ufw records.

    ufw writes the policy there whether or not the firewall is active, so this reads the same
    before and after ``ufw enable``.
    """
    if recorded is None:
        raise ProbeUnreadable(f"ufw is not installed (/etc/default/ufw has no "
                              f"{DEFAULT_KEYS[direction]})")
    wanted = DEFAULT_POLICIES[policy]
    if recorded == wanted:
        return Plan(f"{direction} {policy}")
    return Plan(f"{direction} {recorded} -> {wanted}",
                action=join("ufw", "default", policy, direction) + " >/dev/null")


def ensure_ufw_default(host: Host, policy: str, direction: str = "incoming", *,
                       label: str = "") -> Step:
    """ufw's default policy for one direction (deny, reject or allow)."""
    if policy not in DEFAULT_POLICIES or direction not in DEFAULT_KEYS:
        raise ValueError(f"ufw default {policy!r} {direction!r}: the policy is one of "
                         f"{', '.join(DEFAULT_POLICIES)}, the direction one of "
                         f"{', '.join(DEFAULT_KEYS)}")
    key = DEFAULT_KEYS[direction]

    def decide(probed: Probed) -> Plan:
        recorded = parse_shell_assignments(probed.output.splitlines()).get(key)
        return plan_ufw_default(recorded, policy, direction)

    return Step(label or f"ufw default {direction} {policy}",
                f"grep '^{key}=' /etc/default/ufw", decide)
