"""ufw for pyinfra, which has no ufw operation: a fact and operations as its docs teach.

The fact reads ``ufw status verbose`` and ``ufw show added`` in one command; the operations yield
a command only when the fact shows something to change, so a converged firewall is a no-op.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, operation


class UfwState(FactBase):
    """``{"active": bool, "incoming": "deny"|..., "rules": set of "ufw allow 22/tcp" lines}``."""

    @staticmethod
    def default() -> dict:
        return {"active": False, "incoming": None, "rules": set()}

    def requires_command(self) -> str:
        return "ufw"

    def command(self) -> str:
        return "ufw status verbose; echo '--'; ufw show added"

    def process(self, output: list[str]) -> dict:
        state = self.default()
        for line in output:
            if line.startswith("Status:"):
                state["active"] = line.split(":", 1)[1].strip() == "active"
            elif line.startswith("Default:"):
                state["incoming"] = line.split(":", 1)[1].split("(incoming)")[0].strip()
            elif line.startswith("ufw "):
                state["rules"].add(line.strip())
        return state


@operation()
def default_policy(policy: str, direction: str = "incoming"):
    """The default policy of one direction (``ufw default deny incoming``)."""
    if direction != "incoming":
        raise ValueError("only the incoming direction is managed here")
    if host.get_fact(UfwState)["incoming"] != policy:
        yield f"ufw default {policy} {direction}"
    else:
        host.noop(f"ufw default {direction} is already {policy}")


@operation()
def rules(allowed_tcp_ports: list[int]):
    """The user rules exactly ``allow PORT/tcp`` for each port: missing added, others deleted."""
    current = host.get_fact(UfwState)["rules"]
    wanted = [f"ufw allow {port}/tcp" for port in allowed_tcp_ports]
    for rule in wanted:
        if rule not in current:
            yield rule
    for rule in sorted(current - set(wanted)):
        yield "ufw delete " + rule.removeprefix("ufw ")
    if current == set(wanted):
        host.noop("ufw rules are as wanted")


@operation()
def enabled():
    """The firewall active (and so started at boot)."""
    if host.get_fact(UfwState)["active"]:
        host.noop("ufw is active")
    else:
        yield "ufw --force enable"
