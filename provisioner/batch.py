"""The wire format of a round trip: actions (none, one or several), then probes, in one script.

Each probe runs in its own subshell (so an ``exit`` in one cannot end the others) and is followed
by a marker line carrying its exit code. The marker holds a random token per script, so no probe
output can forge a boundary. Actions run first, in order, each in its own subshell; the first one
that fails ends the script, so nothing after it runs and no probe reports a state it changed.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from provisioner.step import Probed


@dataclass(frozen=True)
class BatchScript:
    text: str
    token: str
    probe_count: int
    action_count: int = 0


@dataclass(frozen=True)
class ActionResult:
    exit_code: int
    output: str  # stdout and stderr together


@dataclass(frozen=True)
class BatchResult:
    """Parsed output: the result of every action that ran (in order) and of each probe."""

    actions: list[ActionResult] = field(default_factory=list)
    probes: list[Probed] = field(default_factory=list)

    @property
    def action_exit_code(self) -> int | None:
        """The last action's exit code: the failed one, or the last of all when all succeeded."""
        return self.actions[-1].exit_code if self.actions else None

    @property
    def action_output(self) -> str:
        return self.actions[-1].output if self.actions else ""


def build_batch(probes: Sequence[str], actions: str | Sequence[str] | None = None) -> BatchScript:
    """Compose one script from actions (run in order, stopping at a failure) and probe snippets.

    The script itself arrives on the shell's stdin, so every part reads from /dev/null instead.
    """
    token = "PROVISIONER-" + secrets.token_hex(8)
    if actions is None:
        actions = ()
    elif isinstance(actions, str):
        actions = (actions,)
    parts: list[str] = []
    for index, action in enumerate(actions):
        parts.append(f"( {action}\n) </dev/null 2>&1\nrc=$?\n"
                     f"printf '\\n{token} action-{index} %s\\n' \"$rc\"\n"
                     "[ \"$rc\" -eq 0 ] || exit 0")
    for index, probe in enumerate(probes):
        parts.append(f"( {probe}\n) </dev/null 2>/dev/null\n"
                     f"printf '\\n{token} {index} %s\\n' \"$?\"")
    return BatchScript("\n".join(parts) + "\n", token, len(probes), len(actions))


def parse_batch(script: BatchScript, output: str) -> BatchResult:
    """Split a batch's stdout into one ActionResult per action that ran and one Probed per probe.

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
    actions = [ActionResult(sections[f"action-{i}"][1], sections[f"action-{i}"][0])
               for i in range(script.action_count) if f"action-{i}" in sections]
    probes = [Probed(*sections[str(i)]) for i in range(script.probe_count) if str(i) in sections]
    return BatchResult(actions, probes)
