"""The wire format of a round trip: actions (none, one or several), then probes, in one script.

Each probe runs in its own subshell (so an ``exit`` in one cannot end the others) and is followed
by a marker line carrying its exit code. The marker holds a random token per script, so no probe
output can forge a boundary. Actions run first, in order, each in its own subshell; the first one
that fails ends the script, so nothing after it runs and no probe reports a state it changed.
Grouped probes (step.ProbeGroup) are answered by one snippet per group, sent before the others.

An action can tell the controller how it is getting on while it runs (a wait for the dpkg lock
that may last minutes) with ``provisioner_progress TEXT``: the line goes to the script's own
stderr (fd 3 inside actions, whose stderr is their output), marked with the script's token, and
the walk shows it as it arrives (``progress_text``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from provisioner.step import GroupedProbe, Probed, ProbeGroup


@dataclass(frozen=True)
class BatchScript:
    text: str
    token: str
    action_count: int = 0
    #: Per probe, in order: its section name, and the group item it is when grouped.
    layout: tuple[tuple[str, GroupedProbe | None], ...] = ()


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


def build_batch(probes: Sequence[str | GroupedProbe],
                actions: str | Sequence[str] | None = None) -> BatchScript:
    """Compose one script from actions (run in order, stopping at a failure) and probes.

    The script itself arrives on the shell's stdin, so every part reads from /dev/null instead.
    """
    token = "PROVISIONER-" + secrets.token_hex(8)
    if actions is None:
        actions = ()
    elif isinstance(actions, str):
        actions = (actions,)
    parts = [_progress_function(token)] if actions else []
    parts += [f"( {action}\n) </dev/null 2>&1\nrc=$?\n"
             f"printf '\\n{token} action-{index} %s\\n' \"$rc\"\n[ \"$rc\" -eq 0 ] || exit 0"
             for index, action in enumerate(actions)]
    groups = _group_items(probes)
    sections = [(f"g{index}", group.build(items))
                for index, (group, items) in enumerate(groups.values())]
    group_sections = {name: f"g{index}" for index, name in enumerate(groups)}
    layout: list[tuple[str, GroupedProbe | None]] = []
    for index, probe in enumerate(probes):
        if isinstance(probe, GroupedProbe):
            layout.append((group_sections[probe.group.name], probe))
        else:
            sections.append((str(index), probe))
            layout.append((str(index), None))
    parts += [f"( {snippet}\n) </dev/null 2>/dev/null\nprintf '\\n{token} {name} %s\\n' \"$?\""
              for name, snippet in sections]
    return BatchScript("\n".join(parts) + "\n", token, len(actions), tuple(layout))


def _progress_function(token: str) -> str:
    return (f"exec 3>&2\nprovisioner_progress() {{ printf '%s progress %s\\n' {token} \"$*\" "
            ">&3; }")


def progress_text(script: BatchScript, line: str) -> str | None:
    """What an action reported with provisioner_progress, if ``line`` is such a report."""
    mark = f"{script.token} progress "
    return line[len(mark):] if line.startswith(mark) else None


def _group_items(probes: Sequence[str | GroupedProbe]) -> dict[str, tuple[ProbeGroup, list[str]]]:
    """Each group's distinct items, in the order the probes name them."""
    groups: dict[str, tuple[ProbeGroup, list[str]]] = {}
    for probe in probes:
        if isinstance(probe, GroupedProbe):
            items = groups.setdefault(probe.group.name, (probe.group, []))[1]
            if probe.item not in items:
                items.append(probe.item)
    return groups


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
    return BatchResult(actions, _probe_results(script, sections))


def _probe_results(script: BatchScript, sections: dict[str, tuple[str, int]]) -> list[Probed]:
    """One Probed per probe in order, stopping at the first whose section never arrived."""
    split: dict[str, Mapping[str, str]] = {}
    probes: list[Probed] = []
    for name, grouped in script.layout:
        if name not in sections:
            break
        output, code = sections[name]
        if grouped is None:
            probes.append(Probed(output, code))
            continue
        if name not in split:
            items = dict.fromkeys(g.item for n, g in script.layout if n == name and g)
            split[name] = grouped.group.split(output, list(items))
        if grouped.item not in split[name]:
            break
        probes.append(Probed(split[name][grouped.item], 0))
    return probes


def last_lines(output: str, limit: int = 800) -> str:
    """The end of an action's output, cut at a line's start (never mid-word), marked as cut."""
    text = output.strip()
    if len(text) <= limit:
        return text
    return "... " + text[-limit:].split("\n", 1)[-1]
