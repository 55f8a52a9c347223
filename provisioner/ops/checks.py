"""States only a tool can read and set: act unless the probe's answer is the one wanted.

For pam-auth-update, chage, systemctl mask, aideinit and the like, whose state is no file a
step could compare: the probe asks the tool, the pure decision compares its answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from provisioner.host import Host
from provisioner.step import Plan, Probed, ProbeUnreadable, Safeguard, Step


def ensure_command_result(host: Host, label: str, probe: str, *, wanted: str, action: str,
                          reason: str, notify: Sequence[str] = (),
                          safeguard: Safeguard | None = None) -> Step:
    """Run ``action`` unless the probe's trimmed output equals ``wanted``.

    For states only a tool can read and set (pam-auth-update, chage, ssh-keygen -A); the probe
    prints ``unreadable: <why>`` when an earlier step must run first (a package install).
    """
    def decide(probed: Probed) -> Plan:
        return plan_command_result(probed.output, wanted, action, reason)

    return Step(label, probe, decide, tuple(notify), safeguard)


def plan_command_result(output: str, wanted: str, action: str, reason: str) -> Plan:
    """Pure half of ensure_command_result."""
    result = output.strip()
    if result.startswith("unreadable:"):
        raise ProbeUnreadable(result.removeprefix("unreadable:").strip())
    if result == wanted:
        return Plan("already " + wanted)
    return Plan(f"{result or 'nothing'} -> {reason}", action=action)
