"""Where a provisioner no-op spends its time, phase by phase, on one host.

Usage: PROVISIONER_ROLES_PATH=benchmarks/roles python -m benchmarks.profile_provisioner INVENTORY

Phases: interpreter start (measured separately as ``python -c pass``), importing invoke and the
engine, loading the inventory and roles (validation, templates), opening the SSH connection,
rendering the steps, the round trips, closing. Each phase is repeated ``--reps`` times in fresh
processes and the medians are printed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

PHASES_SCRIPT = r"""
import json, sys, time
marks = [("start", time.perf_counter())]
import invoke  # what `python -m invoke provision` imports before the engine
from provisioner import cli
from provisioner.run.engine import RunOptions
from provisioner.output.console import ConsoleReport
marks.append(("imports", time.perf_counter()))
inventory = cli.load(sys.argv[1])
jobs = cli.select_jobs(inventory, "", "", RunOptions())
marks.append(("inventory, roles, validation", time.perf_counter()))
from provisioner.run.session import host_session
with host_session(jobs[0]) as session:
    marks.append(("ssh connect + auth", time.perf_counter()))
    walk = session.walk(lambda change: None, lambda label: None)
    marks.append(("steps rendered (probed with remembered facts)", time.perf_counter()))
    walk.run()
    marks.append((f"walk ({session.round_trips} round trips)", time.perf_counter()))
marks.append(("close", time.perf_counter()))
print(json.dumps([(name, marks[i][1] - marks[i - 1][1]) for i, (name, _) in enumerate(marks)
                  if i]))
"""


def main() -> None:
    inventory = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    starts, phases = [], []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        starts.append(time.perf_counter() - started)
        done = subprocess.run([sys.executable, "-c", PHASES_SCRIPT, inventory],
                              capture_output=True, text=True, check=True)
        phases.append(json.loads(done.stdout))
    print(f"{statistics.median(starts):7.3f} s  interpreter start (python -c pass)")
    for index, (name, _) in enumerate(phases[0]):
        print(f"{statistics.median(rep[index][1] for rep in phases):7.3f} s  {name}")


if __name__ == "__main__":
    main()
