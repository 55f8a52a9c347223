"""Human output (a line per step, a summary table) and the JSON report; the engine never prints."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.control import strip_control_codes
from rich.table import Table
from rich.text import Text

from provisioner.change import Change
from provisioner.engine import HostResult, RunResult

_STYLES = {"ok": "green", "changed": "yellow", "failed": "bold red"}


class ConsoleReport:
    """Listener printing one line per step; colour only on a terminal (rich honours NO_COLOR)."""

    def __init__(self, console: Console | None = None, show_diff: bool = False,
                 check: bool = False) -> None:
        self.console = console or Console(highlight=False)
        self.show_diff = show_diff
        self.check = check
        self._lock = threading.Lock()
        self._paint = {style: _ansi_codes(self.console, style)
                       for style in (*_STYLES.values(), "dim")}

    def host_started(self, host: str) -> None:
        with self._lock:
            mode = " (check mode: nothing will be changed)" if self.check else ""
            self.console.print(Text(f"{host}: connecting{mode}", style="bold"))

    def action_started(self, host: str, label: str) -> None:
        with self._lock:
            self.console.print(Text(f"{host}  ...      {label}", style="dim"))

    def step_finished(self, host: str, change: Change) -> None:
        """One line, written straight to the console's file: a no-op on five hosts prints over
        a hundred of these, and rich's full render costs 0.1 ms a line, as much as the rest of
        a host's share of the run's own work. The colours still come from rich (_ansi_codes)."""
        start, end = self._paint[_STYLES[change.status]]
        dim_start, dim_end = self._paint["dim"]
        line = strip_control_codes(f"{host}  {start}{change.status:<8}{end} {change.label}  "
                                   f"{dim_start}({change.reason}){dim_end}") + "\n"
        with self._lock:
            self.console.file.write(line)
            self.console.file.flush()
            if self.show_diff and change.diff:
                self.console.print(Text(change.diff.rstrip("\n")), style="cyan")

    def host_finished(self, result: HostResult) -> None:
        if result.error:
            with self._lock:
                self.console.print(Text(f"{result.name}  failed   {result.error}",
                                        style="bold red"))

    def summary(self, run: RunResult) -> None:
        table = Table(title="check run: what would change" if run.check else "summary")
        for column in ("host", "ok", "changed", "failed", "round trips", "seconds"):
            table.add_column(column, justify="left" if column == "host" else "right")
        for result in run.hosts.values():
            failed = result.count("failed") + (1 if result.error else 0)
            table.add_row(result.name, str(result.count("ok")), str(result.count("changed")),
                          Text(str(failed), style="bold red" if failed else ""),
                          str(result.round_trips), f"{result.duration:.2f}")
        self.console.print(table)


def _ansi_codes(console: Console, style: str) -> tuple[str, str]:
    """What rich writes before and after a text in this style on this console: escape codes on a
    colour terminal, nothing on a pipe or under NO_COLOR."""
    with console.capture() as captured:
        console.print(Text("\0", style=style), end="")
    start, _, end = captured.get().partition("\0")
    return start, end


def report_data(run: RunResult) -> dict[str, Any]:
    """The JSON report: per host, counts, the label of every changed or failed step, each step's
    duration, the round trips and whether the login was new or reused; for the run, the exit
    code and the round trips of all hosts."""
    hosts = {}
    for name, result in run.hosts.items():
        hosts[name] = {
            "ok": result.count("ok"), "changed": result.count("changed"),
            "failed": result.count("failed") + (1 if result.error else 0),
            "error": result.error,
            "changed_steps": [c.label for c in result.changes if c.changed],
            "failed_steps": [c.label for c in result.changes if c.failed],
            "round_trips": result.round_trips,
            "connection": result.connection or None,
            "duration_seconds": round(result.duration, 3),
            "steps": [{"label": c.label, "status": c.status, "reason": c.reason,
                       "duration_seconds": round(c.duration, 4)} for c in result.changes],
        }
    return {"check": run.check, "exit_code": run.exit_code,
            "round_trips": sum(result.round_trips for result in run.hosts.values()),
            "hosts": hosts}


def write_report(run: RunResult, path: Path) -> None:
    path.write_text(json.dumps(report_data(run), indent=2) + "\n", encoding="utf-8")


def slowest_steps(run: RunResult, count: int = 10) -> list[tuple[str, Change]]:
    """The slowest steps across hosts, for ``--profile``."""
    every = [(name, change) for name, result in run.hosts.items() for change in result.changes]
    return sorted(every, key=lambda item: item[1].duration, reverse=True)[:count]
