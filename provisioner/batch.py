"""The wire format of a round trip: an optional action, then many probes, in one shell script.

Each probe runs in its own subshell (so an ``exit`` in one cannot end the others) and is followed
by a marker line carrying its exit code. The marker holds a random token per script, so no probe
output can forge a boundary. An action, when present, runs first; if it fails, no probe runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.step import Probed


@dataclass(frozen=True)
class BatchScript:
    text: str
    token: str
    probe_count: int
    has_action: bool


@dataclass(frozen=True)
class BatchResult:
    """Parsed output: the action's exit code and output (if any) and each probe's result."""

    action_exit_code: int | None
    action_output: str
    probes: list[Probed]


def build_batch(probes: Sequence[str], action: str | None = None) -> BatchScript:
    """Compose one script from an optional action and a list of probe snippets.

    The script itself arrives on the shell's stdin, so every part reads from /dev/null instead.
    """
    token = "PROVISIONER-" + secrets.token_hex(8)
    parts: list[str] = []
    if action is not None:
        parts.append(f"( {action}\n) </dev/null 2>&1\nrc=$?\n"
                     f"printf '\\n{token} action %s\\n' \"$rc\"\n[ \"$rc\" -eq 0 ] || exit 0")
    for index, probe in enumerate(probes):
        parts.append(f"( {probe}\n) </dev/null 2>/dev/null\n"
                     f"printf '\\n{token} {index} %s\\n' \"$?\"")
    return BatchScript("\n".join(parts) + "\n", token, len(probes), action is not None)


def parse_batch(script: BatchScript, output: str) -> BatchResult:
    """Split a batch's stdout into the action result and one Probed per probe.

    Each marker is preceded by a newline the script added, so joining a section's lines gives
    back exactly what the snippet printed.
    """
    sections: dict[str, tuple[str, int]] = {}
    current: list[str] = []
    for line in output.split("\n"):
        if line.startswith(script.token + " "):
            _, name, code = line.split(" ")
            sections[name] = ("\n".join(current), int(code))
            current = []
        else:
            current.append(line)
    action_code = sections["action"][1] if "action" in sections else None
    action_output = sections.get("action", ("", 0))[0]
    probes = [Probed(*sections[str(i)]) for i in range(script.probe_count) if str(i) in sections]
    return BatchResult(action_code, action_output, probes)
