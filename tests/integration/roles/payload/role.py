"""A test role that hands a secret to another user's command on its stdin, slowly.

Its one step's probe reads, as ``payload_user``, the checksum of the file that user's command
wrote; its action pipes the payload (the marker secret, text that breaks naive quoting, and more
than one exec argument may hold) to ``sh -c 'sleep N; cat > FILE'`` run as that user. Probe and
action start in /root, which that user may not enter, as a hardened admin's home would be. The
integration test watches every process's argv and environment on the host meanwhile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from provisioner.commands import run_as, with_stdin
from provisioner.host import Host
from provisioner.step import Plan, Probed, Step

PAYLOAD_FILE = "/tmp/provisioner-payload.txt"
#: Quotes, backslashes, expansions, printf formats, a here-document's delimiter, no final newline.
AWKWARD = "it's \"quoted\" \\back\\slash $(id) `id` ${HOME} $$ %s %d\nEOF\nünïcødé ✓"
#: Linux refuses an argv string over 128 KiB: a payload that arrives whole never was one.
FILLER = "z" * (200 << 10)


def payload(marker: str) -> str:
    """What the reader must receive, the marker at both ends."""
    return f"{marker}\n{AWKWARD}\n{FILLER}\n{marker}"


def reader_command(delay: int) -> str:
    """What ``payload_user`` runs: wait, then read stdin into the file (whole, or not at all)."""
    return f"sleep {delay}; cat > {PAYLOAD_FILE}.part && mv -f {PAYLOAD_FILE}.part {PAYLOAD_FILE}"


def steps(host: Host) -> Iterator[Step]:
    user = str(host.vars["payload_user"])
    text = payload(str(host.vars["payload_marker"]))
    wanted = hashlib.sha256(text.encode()).hexdigest()
    probe = "cd /root && " + run_as(user, "sh", "-c", f"sha256sum < {PAYLOAD_FILE} || true")
    action = "cd /root && " + with_stdin(
        run_as(user, "sh", "-c", reader_command(int(host.vars["payload_read_delay"]))), text)

    def decide(probed: Probed) -> Plan:
        if probed.output.split()[:1] == [wanted]:
            return Plan(f"{user} already has the payload")
        return Plan(f"payload handed to {user}", action=action)

    yield Step(f"payload on the stdin of a command run as {user}", probe, decide,
               secrets=host.secrets)
