"""The run's JSON report (``--report``) and its ``--profile`` lines, built from RunResult."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from provisioner.change import Change
from provisioner.local_files import write_atomically
from provisioner.output.control_codes import strip_control_codes
from provisioner.run.results import RunResult


def report_data(run: RunResult) -> dict[str, Any]:
    """The JSON report: per host, counts, the label of every changed or failed step, each step's
    duration, the round trips and whether the login was new or reused; for the run, the exit
    code and the round trips of all hosts."""
    hosts = {}
    for name, result in run.hosts.items():
        hosts[name] = {
            "ok": result.count("ok"), "changed": result.count("changed"),
            "failed": result.count("failed") + result.count("refused") + (1 if result.error else 0),
            "error": result.error,
            "skipped": result.skipped,
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
    """Write the report readable by its owner only (0600): its reasons and step labels describe
    the hosts' configuration, which is nobody else's business. An existing file is made 0600
    too: it is written as a new file and renamed into place, so a symbolic link planted at the
    path is replaced, never followed."""
    write_atomically(path, json.dumps(report_data(run), indent=2) + "\n", mode=0o600,
                     make_parents=False)


def slowest_steps(run: RunResult, count: int = 10) -> list[tuple[str, Change]]:
    """The slowest steps across hosts, for ``--profile``."""
    every = [(name, change) for name, result in run.hosts.items() for change in result.changes]
    return sorted(every, key=lambda item: item[1].duration, reverse=True)[:count]


def profile_lines(run: RunResult, count: int = 10) -> list[str]:
    """``--profile``: the slowest steps, then each host's time and round trips.

    A step's time runs from when the walk reaches it to when its outcome is known. In check
    mode no action is sent, so that is only its deciding (microseconds) and the host's time is
    its login and the probes' round trips; saying so beats a list of zeros that reads as if
    the host cost nothing."""
    lines = ["slowest steps:"]
    lines += [f"{change.duration:9.3f} s  {host}  {strip_control_codes(change.label)}"
              for host, change in slowest_steps(run, count)] or ["  (no steps ran)"]
    lines.append("time per host:")
    for name, result in run.hosts.items():
        in_steps = sum(change.duration for change in result.changes)
        lines.append(f"{result.duration:9.3f} s  {name}  {result.round_trips} round trip(s), "
                     f"{len(result.changes)} steps, {in_steps:.3f} s of it in steps")
    if run.check:
        lines.append("check mode: steps send no action, so a step's time is only its deciding; "
                     "the rest of a host's time is logging in and the round trips that probe "
                     "the steps (all of them travel together)")
    return lines
