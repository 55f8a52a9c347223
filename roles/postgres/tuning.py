"""PGTune as a pure function: the settings le0pard/pgtune computes for a machine and a workload.

Pinned to PGTune's current code, revision 7caef27c (2026-07-30,
``src/features/configuration/configurationSlice.js``), as controls.md §6.1 records it and tests
it against PGTune run under node: Linux, ``dbSize = mid_ram`` (PGTune's default; our hosts do not
say how big their data will grow), the work_mem formula of 2025-04-30 onwards with its 4MB
minimum, huge_pages ``try`` from 2GB of shared_buffers, the settings added in 2026
(wal_compression, autovacuum_max_workers, autovacuum_work_mem, PG 18's io_method). The desktop
workload is not offered: a server role never tunes for a desktop.

Memory goes in as the kB PostgreSQL may have (the host's RAM times the role's share, see
role.py), not the machine's: PGTune assumes the database owns the machine (§6.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The PGTune revision implemented here.
REVISION = "7caef27c"
WORKLOADS = ("web", "oltp", "dw", "mixed")
DISKS = ("ssd", "hdd", "san", "nvme")
KB_PER_MB = 1024
KB_PER_GB = 1024 * 1024

_MAX_CONNECTIONS = {"web": 200, "oltp": 300, "dw": 40, "mixed": 100}
_WAL_SIZES_MB = {"web": (1024, 4096), "oltp": (2048, 8192), "dw": (4096, 16384),
                 "mixed": (1024, 4096)}
_WORK_MEM_DIVISOR = {"web": 1, "oltp": 1, "dw": 2, "mixed": 2}
_IO_CONCURRENCY = {"hdd": 2, "ssd": 200, "san": 300, "nvme": 1000}
#: PGTune's parallel-worker count when it has no CPU count or fewer than 4 (the server default).
_DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class Machine:
    """PGTune's inputs: memory in kB, CPUs, disk kind, workload, connections, PostgreSQL major."""

    memory_kb: int
    cpus: int
    disk: str = "ssd"
    workload: str = "web"
    #: None: PGTune's default for the workload.
    connections: int | None = None
    version: int = 15

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload {self.workload!r} is not one of {', '.join(WORKLOADS)}")
        if self.disk not in DISKS:
            raise ValueError(f"disk {self.disk!r} is not one of {', '.join(DISKS)}")
        if self.memory_kb < 1 or self.cpus < 1:
            raise ValueError("memory and CPUs must be positive")


def format_kb(value: int) -> str:
    """PGTune's formatValue: GB when the kB divide by 1048576, else MB when by 1024, else kB."""
    if value % KB_PER_GB == 0:
        return f"{value // KB_PER_GB}GB"
    if value % KB_PER_MB == 0:
        return f"{value // KB_PER_MB}MB"
    return f"{value}kB"


def tune(machine: Machine) -> dict[str, str]:
    """Every setting PGTune gives this machine, in PGTune's order and formatting."""
    memory, workload = machine.memory_kb, machine.workload
    connections = machine.connections or _MAX_CONNECTIONS[workload]
    shared_buffers = memory // 4
    maintenance = min(memory // (8 if workload == "dw" else 16), 8 * KB_PER_GB)
    min_wal, max_wal = _WAL_SIZES_MB[workload]
    settings = {
        "max_connections": str(connections),
        "shared_buffers": format_kb(shared_buffers),
        "effective_cache_size": format_kb(memory * 3 // 4),
        "maintenance_work_mem": format_kb(maintenance),
        "checkpoint_completion_target": "0.9",
        "wal_buffers": format_kb(wal_buffers(shared_buffers)),
        "default_statistics_target": "500" if workload == "dw" else "100",
        "random_page_cost": "4" if machine.disk == "hdd" or workload == "dw" else "1.1",
        "effective_io_concurrency": str(_IO_CONCURRENCY[machine.disk]),
    }
    parallel = parallel_settings(machine.cpus, workload)
    workers = int(parallel.get("max_worker_processes", _DEFAULT_WORKERS))
    settings["work_mem"] = format_kb(work_mem(memory, shared_buffers, connections, workers,
                                              workload))
    settings["huge_pages"] = "try" if shared_buffers >= 2 * KB_PER_GB else "off"
    settings["min_wal_size"] = format_kb(min_wal * KB_PER_MB)
    settings["max_wal_size"] = format_kb(max_wal * KB_PER_MB)
    settings.update(parallel)
    settings.update(_newer_settings(machine, maintenance))
    return settings


def wal_buffers(shared_buffers: int) -> int:
    """3% of shared_buffers, at most 16MB, rounded up to 16MB from 14MB, at least 32kB."""
    value = min(3 * shared_buffers // 100, 16 * KB_PER_MB)
    if 14 * KB_PER_MB <= value < 16 * KB_PER_MB:
        value = 16 * KB_PER_MB
    return max(value, 32)


def work_mem(memory: int, shared_buffers: int, connections: int, workers: int,
             workload: str) -> int:
    """(RAM - shared_buffers) / ((connections + workers) * 3) / the workload's divisor, at
    least 4MB (mid_ram: no size factor)."""
    per_connection = (memory - shared_buffers) / ((connections + workers) * 3)
    return max(math.floor(per_connection / _WORK_MEM_DIVISOR[workload]), 4 * KB_PER_MB)


def parallel_settings(cpus: int, workload: str) -> dict[str, str]:
    """The parallel-worker settings, emitted from 4 CPUs on."""
    if cpus < 4:
        return {}
    per_gather = math.ceil(cpus / 2)
    if workload != "dw":
        per_gather = min(per_gather, 4)
    return {"max_worker_processes": str(cpus),
            "max_parallel_workers_per_gather": str(per_gather),
            "max_parallel_workers": str(cpus),
            "max_parallel_maintenance_workers": str(min(math.ceil(cpus / 2), 4))}


def _newer_settings(machine: Machine, maintenance: int) -> dict[str, str]:
    """jit, and what PGTune added in 2026: WAL compression, autovacuum workers and memory, and
    PostgreSQL 18's asynchronous I/O."""
    settings = {} if machine.workload == "dw" else {"jit": "off"}
    settings["wal_compression"] = "lz4" if machine.version >= 15 else "on"
    if machine.cpus >= 32:
        settings["autovacuum_max_workers"] = "5"
    elif machine.cpus >= 16:
        settings["autovacuum_max_workers"] = "4"
    if maintenance >= 2 * KB_PER_GB:
        settings["autovacuum_work_mem"] = "2GB"
    if machine.version >= 18:
        settings["io_method"] = "io_uring"
    return settings
