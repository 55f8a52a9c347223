"""What a run produces: one HostResult per host, the RunResult, and the Listener that hears it.

Output (provisioner/output) listens through Listener and reads these results; the run never
prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from provisioner.change import Change


class Listener(Protocol):
    """Receives progress; output/console.py implements it. Called from worker threads."""

    def host_started(self, host: str) -> None: ...
    def action_started(self, host: str, label: str) -> None: ...
    def action_progress(self, host: str, label: str, text: str) -> None: ...
    def step_finished(self, host: str, change: Change) -> None: ...
    def host_finished(self, result: HostResult) -> None: ...


@dataclass
class HostResult:
    name: str
    changes: list[Change] = field(default_factory=list)
    error: str | None = None
    round_trips: int = 0
    duration: float = 0.0
    #: "reused" when the run went through a login an earlier run left open, else "new".
    connection: str = ""
    #: Why the host was never started (a serial strategy stopped before its batch), else None.
    skipped: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or any(change.failed for change in self.changes)

    def count(self, status: str) -> int:
        return sum(change.status == status for change in self.changes)


@dataclass
class RunResult:
    hosts: dict[str, HostResult]
    check: bool = False

    @property
    def exit_code(self) -> int:
        """1 when a host failed or was never started, else 0."""
        unfinished = any(r.failed or r.skipped for r in self.hosts.values())
        return 1 if unfinished else 0
