"""What one timed run costs: wall time, controller CPU, target CPU, and how noisy the machine was.

Controller CPU is the RUSAGE_CHILDREN delta around the run, so it counts every process the tool
started and that was reaped, plus what the processes a tool keeps between runs (ControlPersist
masters, provisioner's connection keepers) used meanwhile: the runner makes itself a child
subreaper, so those daemonised processes are its children, alive or reaped. Target CPU is what
the sandbox machines' own processes used (they run on this same machine). Whatever else the
machine's CPUs did meanwhile (other people's work) is "foreign" CPU; with the hypervisor's steal
it decides whether a rep is flagged noisy.
"""

from __future__ import annotations

import ctypes
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36

#: A rep is noisy when the hypervisor stole more than this share of the CPU time...
NOISY_STEAL_SHARE = 0.05
#: ...or when other people's processes kept this many cores busy on average.
NOISY_FOREIGN_CORES = 0.35


@dataclass(frozen=True)
class CpuTimes:
    """The machine-wide counters of /proc/stat's first line, in seconds."""

    busy: float
    steal: float
    total: float


def parse_proc_stat(text: str) -> CpuTimes:
    """user nice system idle iowait irq softirq steal guest guest_nice (guests are in user)."""
    fields = [int(value) for value in text.splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    total = busy + idle + iowait + steal
    return CpuTimes(busy / CLOCK_TICKS, steal / CLOCK_TICKS, total / CLOCK_TICKS)


def read_cpu_times() -> CpuTimes:
    return parse_proc_stat(Path("/proc/stat").read_text(encoding="ascii"))


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def live_children_cpu_seconds() -> float:
    """CPU so far of the runner's live children: the daemons tools keep between runs."""
    pids = []
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids += children.read_text().split()
        except OSError:
            continue  # a thread (a watchdog timer) ended since the listing
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
        except OSError:
            continue
    return total


def become_subreaper() -> None:
    """Orphans (daemonised ssh masters) become our children, so we reap and count them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_orphans() -> None:
    """Reap exited orphans that were reparented to us; nothing blocks."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def process_cpu_seconds(stat_text: str) -> float:
    """utime + stime + cutime + cstime of one /proc/PID/stat (its own and its reaped children)."""
    fields = stat_text.rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def namespace_cpu_seconds(namespaces: Iterable[str]) -> float:
    """CPU of every process whose PID namespace is one of these (each machine's processes).

    Every process that ever ran in a machine is either alive or was reaped by a live one, whose
    cutime/cstime then holds it, so a sum over live processes sees all of it.
    """
    wanted = set(namespaces)
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/pid") in wanted:
                total += process_cpu_seconds(Path(f"/proc/{entry.name}/stat").read_text())
        except OSError:
            continue
    return total


def machine_namespaces(nspawn_pids: Iterable[int]) -> list[str]:
    """The PID namespace of each machine, read from the child of its systemd-nspawn process."""
    found = []
    for pid in nspawn_pids:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children:
                found.append(os.readlink(f"/proc/{children[0]}/ns/pid"))
        except OSError:
            continue
    return found


@dataclass(frozen=True)
class Sample:
    """One timed run."""

    wall: float
    controller_cpu: float
    target_cpu: float
    steal: float
    foreign_cpu: float
    noisy: bool


def classify(wall: float, controller_cpu: float, target_cpu: float, before: CpuTimes,
             after: CpuTimes) -> Sample:
    """Turn raw deltas into a Sample with the noisy flag; pure."""
    total = max(after.total - before.total, 1e-9)
    steal = after.steal - before.steal
    foreign = max(0.0, (after.busy - before.busy) - controller_cpu - target_cpu)
    noisy = steal / total > NOISY_STEAL_SHARE or foreign / max(wall, 1e-9) > NOISY_FOREIGN_CORES
    return Sample(wall, controller_cpu, target_cpu, steal, foreign, noisy)


def timed(action: Callable[[], T], namespaces: Sequence[str],
          settle: Callable[[], None] | None = None) -> tuple[T, Sample]:
    """Run action and measure it; the result of action comes back with the Sample.

    ``settle`` runs after the clock stopped and before CPU is read: it ends what the tool left
    running that must not outlive the run (ssh masters to a machine about to be replaced); its
    exit is not timed.
    """
    reap_orphans()
    cpu_before, target_before = read_cpu_times(), namespace_cpu_seconds(namespaces)
    # A kept daemon reaped during the run brings all its CPU into RUSAGE_CHILDREN; what it had
    # used before is in the live sum taken here, so the difference is only this run's share.
    children_before = children_cpu_seconds() + live_children_cpu_seconds()
    started = time.perf_counter()
    result = action()
    wall = time.perf_counter() - started
    if settle is not None:
        settle()
    reap_orphans()
    controller = children_cpu_seconds() + live_children_cpu_seconds() - children_before
    target = namespace_cpu_seconds(namespaces) - target_before
    return result, classify(wall, controller, max(0.0, target), cpu_before, read_cpu_times())


@dataclass(frozen=True)
class Summary:
    median: float
    minimum: float
    maximum: float


def summarise(values: Sequence[float]) -> Summary:
    return Summary(statistics.median(values), min(values), max(values))
