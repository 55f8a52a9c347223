"""A test role that makes the controller's login go dead mid-run, then sends it a command.

Step 1 schedules, on the host, a firewall rule that drops the controller's SSH traffic two
seconds later and removes it ``deadlink_block_seconds`` later. Step 2's decision waits on the
controller until the drop is in place, then sends a command that leaves a marker file: it can
only be queued on the dead login. The integration test checks that the run fails that host
promptly and that the marker never appears, even after the drop is lifted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from provisioner.commands import quote
from provisioner.host import Host
from provisioner.step import Plan, Probed, Step

MARKER = "/root/stale-command-marker"


def steps(host: Host) -> Iterator[Step]:
    controller = str(host.vars["deadlink_controller"])
    seconds = int(host.vars["deadlink_block_seconds"])
    rule = f"INPUT -s {quote(controller)} -p tcp --dport 22 -j DROP"
    at = "systemd-run --quiet --timer-property=AccuracySec=100ms --on-active"
    block = f"rm -f {MARKER}; {at}=2 iptables -I {rule} && {at}={seconds} iptables -D {rule}"
    yield Step("drop the controller's SSH traffic in 2 s", "true",
               lambda probed: Plan("scheduled", action=block))

    def after_the_drop(probed: Probed) -> Plan:
        time.sleep(4)  # on the controller: the drop is in place when the action is sent
        return Plan("written", action=f"touch {MARKER}")

    yield Step("a command sent into the dead login", "true", after_the_drop)
