"""The JSON record of what the sandbox created, so later runs can find, reuse and remove it.

The file is rewritten atomically; a reader either sees the old or the new record. Besides the
machines it remembers host changes made once for all machines (whether ip_forward was off before),
so the last `down` can undo exactly what `up` did.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.local_files import write_atomically
from provisioner.sandbox.image_recipe import DEFAULT_VARIANT
from provisioner.sandbox.machine import Machine
from provisioner.sandbox.paths import STATE_PATH

STATE_VERSION = 1


@dataclass
class SandboxState:
    """Machines ordered by name, plus the host settings to restore when the last one goes."""

    machines: list[Machine] = field(default_factory=list)
    restore_ip_forward: str | None = None

    def find(self, name: str) -> Machine | None:
        """The machine called name, if the state knows one."""
        return next((machine for machine in self.machines if machine.name == name), None)

    def without(self, names: set[str]) -> list[Machine]:
        """The machines whose names are not in names."""
        return [machine for machine in self.machines if machine.name not in names]


def machine_to_json(machine: Machine) -> dict[str, Any]:
    """A machine as a JSON object; paths become strings."""
    return {
        "name": machine.name,
        "address": machine.address,
        "suite": machine.suite,
        "variant": machine.variant,
        "pid": machine.pid,
        "root": str(machine.root),
    }


def machine_from_json(data: dict[str, Any]) -> Machine:
    """The inverse of machine_to_json; records written before variants existed are standard."""
    return Machine(
        name=str(data["name"]),
        address=str(data["address"]),
        suite=str(data["suite"]),
        pid=int(data["pid"]),
        root=Path(data["root"]),
        variant=str(data.get("variant", DEFAULT_VARIANT)),
    )


def dump_state(state: SandboxState) -> str:
    """The state file's text: stable key order and indentation so it diffs and reads well."""
    data = {
        "version": STATE_VERSION,
        "restore_ip_forward": state.restore_ip_forward,
        "machines": [machine_to_json(machine) for machine in state.machines],
    }
    return json.dumps(data, indent=2) + "\n"


def parse_state(text: str) -> SandboxState:
    """The inverse of dump_state."""
    data = json.loads(text)
    return SandboxState(
        machines=[machine_from_json(item) for item in data.get("machines", [])],
        restore_ip_forward=data.get("restore_ip_forward"),
    )


def load_state(path: Path = STATE_PATH) -> SandboxState:
    """The saved state, or an empty one when the sandbox has nothing running."""
    if not path.exists():
        return SandboxState()
    return parse_state(path.read_text(encoding="utf-8"))


def save_state(state: SandboxState, path: Path = STATE_PATH) -> None:
    """Write the state atomically; an empty state removes the file, as after a full `down`."""
    if not state.machines and state.restore_ip_forward is None:
        path.unlink(missing_ok=True)
        return
    write_atomically(path, dump_state(state))
